#!/usr/bin/env bash
# Tests check-trace.jq on Jaeger query API responses: fixtures/good-gettime.json (a /gettime found
# by search) and fixtures/good-chain.json (a /chain whose client sent a b3 header) must pass; each
# broken variant, a jq edit of one of them, must fail with its own reason.
# Needs jq. Prints one line per case and `N passed, N failed`; exits non-zero on any failure.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0

services=(--arg app myhelloworld --arg sidecar myhelloworld.myhelloworld --arg gateway istio-ingressgateway.istio-system)
backend=(--arg backend myhelloworld-backend --arg backend_sidecar myhelloworld-backend.myhelloworld)
# helpers for the edits: a span by id, and removing every span of one process
# shellcheck disable=SC2016 # $id and $p are jq's
defs='def span($id): .data[0].spans[] | select(.spanID == $id);
      def drop($p): del(.data[0].spans[] | select(.processID == $p));'

# run_case NAME FIXTURE EDIT EXPECTED [ARGS...]: runs the filter (with ARGS) on fixtures/FIXTURE
# edited by the jq expression EDIT. EXPECTED is `pass`, or text that the error must contain.
run_case() {
  local name=$1 fixture=$2 edit=$3 expected=$4 out rc=0
  shift 4
  jq "$defs $edit" "$here/fixtures/$fixture" >"$tmp/response.json"
  out=$(jq -e -r -f "$here/check-trace.jq" "${services[@]}" "$@" "$tmp/response.json" 2>&1) || rc=$?
  if [ "$expected" = pass ] && [ "$rc" -eq 0 ]; then
    ok=1
  elif [ "$expected" != pass ] && [ "$rc" -eq 5 ] && [[ $out == *"$expected"* ]]; then
    ok=1 # exit 5: stopped by error(), not by a jq usage or syntax error
  else
    ok=0
  fi
  if [ "$ok" = 1 ]; then
    echo "ok   $name"
    passed=$((passed + 1))
  else
    echo "FAIL $name: expected $expected, got exit $rc: $out"
    failed=$((failed + 1))
  fi
}

# good-gettime.json: gateway 2f3c1d8a9e7b6c41 -> gateway upstream 7b0e4d2a91c3f658
#   -> sidecar c81f5a3e2d7b9046 -> app server e4a9b7c2d1f03856
run_case "good /gettime trace" good-gettime.json . pass
run_case "Jaeger's 404: no trace" good-gettime.json \
  '{data: null, total: 0, limit: 0, offset: 0, errors: [{code: 404, msg: "trace not found"}]}' \
  'no trace in the response: [{"code":404,"msg":"trace not found"}]'
run_case "two trace ids" good-gettime.json \
  '.data += [.data[0] | .traceID = "0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a" | .spans[].traceID = .traceID]' \
  "expected exactly one trace id, found 2: 0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a, 5af7183fb1d4cf5f2f3c1d8a9e7b6c41"
run_case "no gateway span" good-gettime.json 'drop("p1")' \
  "no span of the ingress gateway (service istio-ingressgateway.istio-system)"
run_case "no sidecar span" good-gettime.json 'drop("p2")' \
  "no span of the app's sidecar (service myhelloworld.myhelloworld)"
run_case "no app span" good-gettime.json 'drop("p3")' "no span of the app (service myhelloworld)"
run_case "two app server spans" good-gettime.json \
  '.data[0].spans += [span("e4a9b7c2d1f03856") | .spanID = "e4a9b7c2d1f03857"]' \
  "expected one server span (span.kind=server) of the app, found 2"
run_case "app server span without parent" good-gettime.json '(span("e4a9b7c2d1f03856") | .references) = []' \
  "the app's server span e4a9b7c2d1f03856 (myhelloworld \"GET /gettime\") has no CHILD_OF reference"
run_case "app server span's parent not in the trace" good-gettime.json \
  '(span("e4a9b7c2d1f03856") | .references[0].spanID) = "ffffffffffffffff"' \
  "the app's server span's parent ffffffffffffffff is not in the trace"
run_case "app server span's parent is not the sidecar's" good-gettime.json \
  '(span("e4a9b7c2d1f03856") | .references[0].spanID) = "7b0e4d2a91c3f658"' \
  "the app's server span's parent is 7b0e4d2a91c3f658 (istio-ingressgateway.istio-system \"router outbound|8080||myhelloworld.myhelloworld.svc.cluster.local egress\"), not a span of the sidecar myhelloworld.myhelloworld"
run_case "sidecar span not under the gateway" good-gettime.json \
  '(span("c81f5a3e2d7b9046") | .references[0].spanID) = "eeeeeeeeeeeeeeee"' \
  "the app's server span's parent chain does not reach the ingress gateway istio-ingressgateway.istio-system"

# good-chain.json: gateway 5e2a9c7d1b3f8046 (child of the client's 0c1d2e3f4a5b6c7d) -> gateway
#   upstream 91d4f6b8a2c0e357 -> sidecar 3b7e0a5c9d2f4186 -> app server d62c8f1a4e9b0573
#   -> app client 08f3b5d7e1a9c264 -> sidecar outbound e7a1c9f3b5d20846
#   -> backend sidecar 4c9e2b6a0f8d1375 -> backend server b15d7f9e3a2c6084
run_case "good /chain trace with the client's trace id" good-chain.json . pass \
  "${backend[@]}" --arg trace_id a3e8c1f07b2d4965e0c7a9b1d3f58264
run_case "trace id is not the client's" good-chain.json . \
  "trace id a3e8c1f07b2d4965e0c7a9b1d3f58264 is not the id 0af7651916cd43dd8448eb211c80319c the client sent" \
  "${backend[@]}" --arg trace_id 0af7651916cd43dd8448eb211c80319c
run_case "/chain: no app client span" good-chain.json 'del(span("08f3b5d7e1a9c264"))' \
  "expected one client span (span.kind=client) of the app, found 0" "${backend[@]}"
run_case "/chain: app client span not under the app server span" good-chain.json \
  '(span("08f3b5d7e1a9c264") | .references[0].spanID) = "3b7e0a5c9d2f4186"' \
  "the app's client span 08f3b5d7e1a9c264 (myhelloworld \"GET /gettime\") is not a child of the app's server span d62c8f1a4e9b0573" \
  "${backend[@]}"
run_case "/chain: no backend span" good-chain.json 'drop("p5")' \
  "no span of the backend (service myhelloworld-backend)" "${backend[@]}"
run_case "/chain: backend not under the app's call" good-chain.json \
  '(span("4c9e2b6a0f8d1375") | .references[0].spanID) = "dddddddddddddddd"' \
  "the backend's server span's parent chain does not reach the app's client span 08f3b5d7e1a9c264" "${backend[@]}"
run_case "/chain: backend reached without its sidecar" good-chain.json \
  'drop("p4") | (span("b15d7f9e3a2c6084") | .references[0].spanID) = "e7a1c9f3b5d20846"' \
  "the backend's server span reaches the app's client span without a span of the backend's sidecar myhelloworld-backend.myhelloworld" \
  "${backend[@]}"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
