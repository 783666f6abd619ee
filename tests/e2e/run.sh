#!/usr/bin/env bash
# End-to-end test: a kind cluster with Istio (rendered by istioctl, applied by kubectl), Jaeger
# all-in-one and myhelloworld + backend; requests through the ingress gateway, with and without
# a client's trace context; then check-trace.jq must find each request in Jaeger as one trace:
# ingress gateway -> app's sidecar -> app [-> backend's sidecar -> backend], which waterfall.jq
# prints.
#
#   nix run .#e2e [-- --provider zipkin|opentelemetry]
#
# --provider: the mesh's tracer (k8s/istio/): zipkin (default; B3 headers, spans to Jaeger's
# Zipkin port) or opentelemetry (W3C traceparent/tracestate, OTLP to Jaeger's 4317). The client's
# trace context is sent in the provider's format: the gateway reads no other.
# Run by writeShellApplication (runtimeInputs kind kubectl istioctl curl jq coreutils) on a
# machine with a Docker engine for kind. The cluster has its own kubeconfig, a temporary file:
# the user's kubeconfig and current context are never read or changed. Environment:
#   IMAGE_ARCHIVE   uncompressed docker-archive of myhelloworld:0.1.0 (kind load image-archive)
#   MANIFESTS       a copy of k8s/          E2E_DIR   a copy of tests/e2e/
#   CLUSTER_NAME    default myhelloworld-e2e (must not exist yet)
#   KIND_NODE_IMAGE default below           KEEP_CLUSTER=1 keeps the cluster for a look in Jaeger
set -euo pipefail

usage() {
  echo "usage: e2e [--provider zipkin|opentelemetry]" >&2
  exit 2
}
provider=zipkin
while [ "$#" -gt 0 ]; do
  case $1 in
    --provider)
      [ "$#" -ge 2 ] || usage
      provider=$2
      shift 2
      ;;
    --provider=*)
      provider=${1#--provider=}
      shift
      ;;
    *) usage ;;
  esac
done
case $provider in
  zipkin | opentelemetry) ;;
  *) usage ;;
esac

: "${IMAGE_ARCHIVE:?path to the uncompressed image tar of myhelloworld:0.1.0}"
: "${MANIFESTS:?path to the k8s/ manifests}"
: "${E2E_DIR:?path to tests/e2e/ (check-trace.jq, kind-config.yaml)}"
cluster=${CLUSTER_NAME:-myhelloworld-e2e}
# The node image kind v0.31.0 was released with (digest from its release notes): Kubernetes 1.35,
# which Istio 1.29 and 1.30 both support. Pass the matching one when kind is much newer.
node_image=${KIND_NODE_IMAGE:-kindest/node:v1.35.0@sha256:452d707d4862f52530247495d180205e029056831160e22870e37e3f6c1ac31f}
gateway=http://127.0.0.1:18080 # hostPort that kind-config.yaml maps to the gateway's NodePort 30080
jaeger=http://127.0.0.1:16686  # kubectl port-forward to the jaeger-query Service, started below

work=$(mktemp -d)
created='' pf_pid=''
# kind writes the cluster's credentials here, and every kubectl below reads them from here.
export KUBECONFIG=$work/kubeconfig

log() { echo "e2e: $*" >&2; }
die() {
  echo "e2e: FAILED: $*" >&2
  exit 1
}
# kubectl on this cluster only
k() { kubectl --context "kind-$cluster" "$@"; }

cleanup() {
  local rc=$?
  if [ -n "$pf_pid" ]; then kill "$pf_pid" 2>/dev/null || true; fi
  if [ -n "$created" ] && [ "$rc" -ne 0 ]; then
    log "pods at the time of the failure:"
    k get pods -A -o wide >&2 || true
  fi
  if [ -n "$created" ] && [ "${KEEP_CLUSTER:-}" = 1 ]; then
    log "kept cluster $cluster; its kubeconfig: kind get kubeconfig --name $cluster >$cluster.kubeconfig"
    log "  delete it with: kind delete cluster --name $cluster --kubeconfig $cluster.kubeconfig"
  elif [ -n "$created" ]; then
    kind delete cluster --name "$cluster" --kubeconfig "$KUBECONFIG" >&2 || true
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT

# rand_hex N: N random bytes as 2N lower-case hex digits
rand_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }
# wait_for SECONDS CMD...: runs CMD every 2 s until it succeeds; fails once SECONDS have passed
# (the last try can run past them by its own timeout, a few seconds at most below).
wait_for() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 2
  done
}

# A cluster of that name may be someone's: refuse rather than delete it at exit.
while IFS= read -r name; do
  [ "$name" != "$cluster" ] || die "a kind cluster named $cluster exists; delete it or set CLUSTER_NAME"
done < <(kind get clusters 2>/dev/null)

log "creating kind cluster $cluster ($node_image), kubeconfig $KUBECONFIG"
created=1 # from here on the cluster is ours to delete, even if creation fails half-way
kind create cluster --name "$cluster" --image "$node_image" --config "$E2E_DIR/kind-config.yaml" \
  --kubeconfig "$KUBECONFIG" --wait 3m

# The provider switch of k8s/istio/istio-operator.yaml: an overlay for OpenTelemetry.
overlays=(-f "$MANIFESTS/istio/istio-operator.yaml")
if [ "$provider" = opentelemetry ]; then overlays+=(-f "$MANIFESTS/istio/tracing-opentelemetry.yaml"); fi
log "installing Istio with istioctl $(istioctl version --remote=false 2>/dev/null), tracing provider $provider"
k create namespace istio-system
istioctl manifest generate "${overlays[@]}" >"$work/istio.yaml"
# The rendered file holds the CRDs and resources of those kinds: the first apply can fail on the
# latter until the CRDs are established, so wait for them and apply again (istio.io's procedure).
k apply -f "$work/istio.yaml" >/dev/null || log "first apply incomplete (CRDs not established yet), applying again"
k wait --for=condition=established crd --all --timeout=120s
k apply -f "$work/istio.yaml" >/dev/null
k -n istio-system rollout status deploy/istiod --timeout=300s
k -n istio-system rollout status deploy/istio-ingressgateway --timeout=300s
k apply -f "$MANIFESTS/istio/telemetry.yaml" # mesh-wide: 100 % sampling at the gateway

log "installing Jaeger"
k apply -f "$MANIFESTS/jaeger/"
k -n observability rollout status deploy/jaeger --timeout=300s

log "loading $IMAGE_ARCHIVE"
kind load image-archive "$IMAGE_ARCHIVE" --name "$cluster"

log "deploying myhelloworld"
k apply -f "$MANIFESTS" # top-level files only: istio/ and jaeger/ are not applied again
k -n myhelloworld rollout status deploy/myhelloworld-backend --timeout=180s
k -n myhelloworld rollout status deploy/myhelloworld --timeout=180s
containers=$(k -n myhelloworld get pods -l app=myhelloworld \
  -o jsonpath='{.items[*].spec.containers[*].name} {.items[*].spec.initContainers[*].name}')
[[ " $containers " == *" istio-proxy "* ]] ||
  die "no istio-proxy sidecar in the myhelloworld pod (containers: $containers); is namespace myhelloworld labelled istio-injection=enabled?"

# The gateway serves the Ingress once istiod has pushed its routes: until then it answers 404.
gateway_wait=120
log "waiting up to $gateway_wait s for the ingress gateway at $gateway"
wait_for "$gateway_wait" curl -fs -o /dev/null --max-time 5 "$gateway/" ||
  die "$gateway/ did not answer 2xx within $gateway_wait s"

# Requests. Without client headers the gateway starts the trace; such a trace is found by its
# request's unique query string, which the app records in http.url. With client headers, the
# trace id is ours. Its first hex digit is not 0 so that it reads the same in every form of a
# 128-bit id (Jaeger prints the high half without leading zeros in some versions).
search_start=$((($(date +%s) - 60) * 1000000)) # Jaeger's search window starts here (us)
nonce=$(rand_hex 8)
gettime_id=a$(rand_hex 16 | cut -c2-)
chain_id=b$(rand_hex 16 | cut -c2-)
curl -fsS --max-time 10 -o /dev/null "$gateway/gettime?e2e=$nonce-gettime"
curl -fsS --max-time 10 -o /dev/null "$gateway/chain?e2e=$nonce-chain"
if [ "$provider" = zipkin ]; then
  curl -fsS --max-time 10 -o /dev/null -H "x-b3-traceid: $gettime_id" -H "x-b3-spanid: $(rand_hex 8)" \
    -H "x-b3-sampled: 1" "$gateway/gettime"
  curl -fsS --max-time 10 -o /dev/null -H "b3: $chain_id-$(rand_hex 8)-1" "$gateway/chain" # single-header form
else
  curl -fsS --max-time 10 -o /dev/null -H "traceparent: 00-$gettime_id-$(rand_hex 8)-01" "$gateway/gettime"
  curl -fsS --max-time 10 -o /dev/null -H "traceparent: 00-$chain_id-$(rand_hex 8)-01" \
    -H "tracestate: e2e=$nonce" "$gateway/chain"
fi
log "sent /gettime and /chain, without client headers (e2e=$nonce-*) and with trace ids $gettime_id, $chain_id"

# kubectl itself in the background (not through k), so that $! is its pid for the cleanup
kubectl --context "kind-$cluster" -n observability port-forward svc/jaeger-query 16686:16686 \
  >"$work/port-forward.log" 2>&1 &
pf_pid=$!
wait_for 30 curl -fs -o /dev/null --max-time 2 "$jaeger/api/services" ||
  die "Jaeger query API not reachable through port-forward within 30 s: $(cat "$work/port-forward.log")"

services=(--arg app myhelloworld --arg sidecar myhelloworld.myhelloworld --arg gateway istio-ingressgateway.istio-system)
backend=(--arg backend myhelloworld-backend --arg backend_sidecar myhelloworld-backend.myhelloworld)
# search_url URL: the Jaeger search for the app's span of the request to URL, among the traces
# since this run sent its requests (Jaeger v2's search takes start/end, not lookback).
search_url() {
  local tags
  tags=$(jq -rn --arg url "$1" '{"http.url": $url} | tojson | @uri')
  echo "$jaeger/api/traces?service=myhelloworld&tags=$tags&start=$search_start&limit=10"
}
# complete_trace URL ANSWER [ARGS...]: fetches URL into ANSWER; true when check-trace.jq (with
# ARGS) accepts it.
complete_trace() {
  local url=$1 answer=$2
  shift 2
  curl -sS --max-time 5 -o "$answer" "$url" || return 1
  jq -e -f "$E2E_DIR/check-trace.jq" "${services[@]}" "$@" "$answer" >/dev/null 2>&1
}
# expect_trace NAME URL [ARGS...]: polls the Jaeger query URL until check-trace.jq (with ARGS)
# accepts the answer, then prints its summary and waterfall; spans arrive late (Envoy sends
# them every 5 s, the app every 1 s).
trace_wait=120
expect_trace() {
  local name=$1 url=$2 answer=$work/$1.json
  shift 2
  if wait_for "$trace_wait" complete_trace "$url" "$answer" "$@"; then
    log "$name: $(jq -r -f "$E2E_DIR/check-trace.jq" "${services[@]}" "$@" "$answer")"
    jq -r -f "$E2E_DIR/waterfall.jq" "$answer" >&2
    return 0
  fi
  log "$name: Jaeger's last answer to $url:"
  { cat "$answer" && echo; } >&2 || true
  jq -e -f "$E2E_DIR/check-trace.jq" "${services[@]}" "$@" "$answer" >/dev/null || true # prints the reason
  die "$name: no complete trace in Jaeger within $trace_wait s (reason above)"
}

expect_trace gettime "$(search_url "/gettime?e2e=$nonce-gettime")"
expect_trace chain "$(search_url "/chain?e2e=$nonce-chain")" "${backend[@]}"
expect_trace "gettime-$provider-context" "$jaeger/api/traces/$gettime_id" --arg trace_id "$gettime_id"
expect_trace "chain-$provider-context" "$jaeger/api/traces/$chain_id" "${backend[@]}" --arg trace_id "$chain_id"

log "PASSED ($provider provider): 4 traces, each through the ingress gateway, the sidecar(s) and the app(s)"
if [ "${KEEP_CLUSTER:-}" = 1 ]; then
  log "Jaeger UI (kubeconfig: see below): kubectl --kubeconfig $cluster.kubeconfig -n observability port-forward svc/jaeger-query 16686:16686"
  log "  then http://127.0.0.1:16686/trace/$chain_id (and $gettime_id)"
fi
