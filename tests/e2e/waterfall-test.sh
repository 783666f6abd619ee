#!/usr/bin/env bash
# Tests waterfall.jq on the recorded Jaeger answers in fixtures/: the /gettime trace must print
# exactly the picture below (offsets, durations and bars worked out by hand from the fixture:
# trace 2.950 ms on 40 columns, 73.75 us a column); the /chain trace and edited answers must
# print every span once, in tree order, whatever the references.
# Needs jq. Prints one line per case and `N passed, N failed`; exits non-zero on any failure.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0

# result NAME OK DETAIL: counts and prints one case.
result() {
  if [ "$2" = 1 ]; then
    echo "ok   $1"
    passed=$((passed + 1))
  else
    echo "FAIL $1: $3"
    failed=$((failed + 1))
  fi
}
# waterfall FIXTURE EDIT: the waterfall of fixtures/FIXTURE edited by the jq expression EDIT;
# sets $out and $rc.
waterfall() {
  jq "$2" "$here/fixtures/$1" >"$tmp/answer.json"
  rc=0
  out=$(jq -r -f "$here/waterfall.jq" "$tmp/answer.json" 2>&1) || rc=$?
}

# gateway 0-2950 us, its upstream span 180-2790, the sidecar 640-2360, the app 1010-1430:
# columns floor(start / 73.75) to ceil(end / 73.75): 0-40, 2-38, 8-32, 13-20.
expected='trace 5af7183fb1d4cf5f2f3c1d8a9e7b6c41: 4 spans, 2.950 ms
service                              operation                             start ms    dur ms  |0                               2.950 ms|
istio-ingressgateway.istio-system    myhelloworld.myhelloworld.svc.clust~     0.000     2.950  |########################################|
  istio-ingressgateway.istio-system  router outbound|8080||myhelloworld.~     0.180     2.610  |  ####################################  |
    myhelloworld.myhelloworld        myhelloworld.myhelloworld.svc.clust~     0.640     1.720  |        ########################        |
      myhelloworld                   GET /gettime                             1.010     0.420  |             #######                    |'
waterfall good-gettime.json .
result "/gettime: the picture" "$([ "$rc" -eq 0 ] && [ "$out" = "$expected" ] && echo 1)" \
  "exit $rc, got:"$'\n'"$out"

# span_lines: the output without its two header lines
span_lines() { tail -n +3 <<<"$out"; }

# /chain: the client's span (not in the trace) is the gateway's parent, so the gateway is the
# root; each span is one level under its parent, the backend's app span 7 levels down.
waterfall good-chain.json .
order=$(span_lines | awk '{print $1}' | paste -sd' ')
result "/chain: 8 spans in tree order" \
  "$([ "$rc" -eq 0 ] && [ "$order" = "istio-ingressgateway.istio-system istio-ingressgateway.istio-system myhelloworld.myhelloworld myhelloworld myhelloworld myhelloworld.myhelloworld myhelloworld-backend.myhelloworld myhelloworld-backend" ] && echo 1)" \
  "exit $rc, order: $order"
line=$(span_lines | tail -n 1)
result "/chain: the backend's app span 7 levels deep, 2.360 ms in, 0.390 ms long" \
  "$([[ $line == "              myhelloworld-backend "*"GET /gettime"*" 2.360     0.390  |"* ]] && echo 1)" "$line"

# Siblings by start time: the backend's sidecar span made a child of the app's server span,
# starting before that span's other child (the app's client span), is printed first.
waterfall good-chain.json '.data[0].spans |= map(if .spanID == "4c9e2b6a0f8d1375" then .references[0].spanID = "d62c8f1a4e9b0573" | .startTime = 1763770005124500 else . end)'
result "siblings ordered by start time" "$([ "$rc" -eq 0 ] && [ "$(span_lines | sed -n '5p' | awk '{print $1}')" = myhelloworld-backend.myhelloworld ] && echo 1)" \
  "exit $rc:"$'\n'"$out"

# A reference cycle (sidecar <-> app) leaves two spans no tree reaches: printed once each, last.
waterfall good-gettime.json '(.data[0].spans[] | select(.spanID == "c81f5a3e2d7b9046") | .references[0].spanID) = "e4a9b7c2d1f03856"'
result "a reference cycle: every span once, no hang" \
  "$([ "$rc" -eq 0 ] && [ "$(span_lines | wc -l)" -eq 4 ] && [ "$(span_lines | tail -n 2 | awk '{print $1}' | paste -sd' ')" = "myhelloworld.myhelloworld myhelloworld" ] && echo 1)" \
  "exit $rc:"$'\n'"$out"

# Spans without duration: one column each, no division by zero.
waterfall good-gettime.json '.data[0].spans[] |= (.duration = 0 | .startTime = 1763770000123456)'
result "zero-length trace" "$([ "$rc" -eq 0 ] && [ "$(span_lines | grep -c '|#       ')" -eq 4 ] && echo 1)" \
  "exit $rc:"$'\n'"$out"

waterfall good-gettime.json '{data: [], total: 0}'
result "no span: an error" "$([ "$rc" -eq 5 ] && [[ $out == *"no span in the answer"* ]] && echo 1)" "exit $rc: $out"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
