# Asserts that one Jaeger query API response (GET /api/traces/{id}, or a /api/traces?service=...
# search that matched one request) holds one end-to-end trace of a request through Istio:
#   ingress gateway -> app's sidecar -> app server span
#   [/chain: -> app client span -> ... -> backend's sidecar -> backend app span]
#
#   jq -e -r -f check-trace.jq --arg app myhelloworld --arg sidecar myhelloworld.myhelloworld \
#     --arg gateway istio-ingressgateway.istio-system \
#     [--arg backend myhelloworld-backend --arg backend_sidecar myhelloworld-backend.myhelloworld] \
#     [--arg trace_id <32 hex>] response.json
#
# The arguments are Jaeger service names: the app's JAEGER_SERVICE_NAME, and <app label>.<namespace>
# for Istio's proxies. Prints a one-line summary, or stops at the first failed check with
# error("reason") (jq exit status 5).

include "trace" {search: "./"};

def arg($name): $ARGS.named[$name] // "";
def check(cond; reason): if cond then . else error(reason) end;
def of($service): map(select(.service == $service));
def kind($k): map(select(tag("span.kind") == $k));
# The spans up the CHILD_OF chain of the input span, nearest first, as far as they are in the
# trace (a client's own span, named by its B3 headers, is not). Bounded in case of a cycle.
def ancestors($byid):
  def up: parent as $p | if $p != null and ($byid | has($p)) then $byid[$p] | (., up) else empty end;
  [limit($byid | length; up)];
def describe: "\(.spanID) (\(.service) \"\(.operationName)\")";
# The one span of a list, or an error naming what is missing or ambiguous.
def one($what):
  check(length == 1;
        "expected one \($what), found \(length)\(if length > 0 then ": " + (map(describe) | join(", ")) else "" end)")
  | .[0];

arg("app") as $app | arg("sidecar") as $sidecar | arg("gateway") as $gateway
| arg("backend") as $backend | arg("backend_sidecar") as $backend_sidecar | arg("trace_id") as $trace_id
| check($app != "" and $sidecar != "" and $gateway != "" and ($backend == "") == ($backend_sidecar == "");
        "usage: --arg app, --arg sidecar, --arg gateway [--arg backend and --arg backend_sidecar] [--arg trace_id]")

| check((.data | type) == "array" and (.data | length) > 0;
        "no trace in the response\(if .errors then ": " + (.errors | tostring) else "" end)")
| spans as $spans
| ($spans | map(.traceID) | unique) as $ids
| check($ids | length == 1; "expected exactly one trace id, found \($ids | length): \($ids | join(", "))")
| $ids[0] as $id
| check($trace_id == "" or $id == $trace_id; "trace id \($id) is not the id \($trace_id) the client sent")
| (reduce $spans[] as $s ({}; .[$s.spanID] = $s)) as $byid

| check($spans | of($gateway) | length > 0; "no span of the ingress gateway (service \($gateway))")
| check($spans | of($sidecar) | length > 0; "no span of the app's sidecar (service \($sidecar))")
| check($spans | of($app) | length > 0; "no span of the app (service \($app))")
| ($spans | of($app) | kind("server") | one("server span (span.kind=server) of the app")) as $server
| ($server | parent) as $p
| check($p != null; "the app's server span \($server | describe) has no CHILD_OF reference")
| check($byid | has($p); "the app's server span's parent \($p) is not in the trace")
| check($byid[$p].service == $sidecar;
        "the app's server span's parent is \($byid[$p] | describe), not a span of the sidecar \($sidecar)")
| check(any($server | ancestors($byid)[]; .service == $gateway);
        "the app's server span's parent chain does not reach the ingress gateway \($gateway)")

| if $backend == "" then . else
    ($spans | of($app) | kind("client") | one("client span (span.kind=client) of the app")) as $client
    | check(($client | parent) == $server.spanID;
            "the app's client span \($client | describe) is not a child of the app's server span \($server.spanID)")
    | check($spans | of($backend) | length > 0; "no span of the backend (service \($backend))")
    | ($spans | of($backend) | kind("server") | one("server span (span.kind=server) of the backend")) as $bserver
    | ($bserver | ancestors($byid)) as $chain
    | ($chain | map(.spanID) | index($client.spanID)) as $i
    | check($i != null; "the backend's server span's parent chain does not reach the app's client span \($client.spanID)")
    | check(any($chain[:$i][]; .service == $backend_sidecar);
            "the backend's server span reaches the app's client span without a span of the backend's sidecar \($backend_sidecar)")
  end

| "trace \($id): \($spans | length) spans: "
  + ($spans | group_by(.service) | map("\(.[0].service) \(length)") | join(", "))
