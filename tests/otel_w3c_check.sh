#!/usr/bin/env bash
# Our W3C Trace Context against a published propagator: OpenTelemetry's Python API and SDK
# (PyPI `opentelemetry-api`, `opentelemetry-sdk`) write the traceparent/tracestate of real
# spans that the service must join, and read back the ones the service writes on /chain
# (tests/otel_w3c_check.py). The table tests in src/w3c.rs follow the spec and its test suite;
# this is the independent check. Needs python3 with venv; installs into .venv (PyPI).
# Prints `opentelemetry w3c: N cases, both directions, all checks passed`; exits non-zero on
# any failure. Takes a few seconds after the build; the whole check is cut at 60 s.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
otel_version=1.45.2

if [ ! -x "$root/.venv/bin/python" ]; then
  python3 -m venv "$root/.venv"
fi
"$root/.venv/bin/pip" install -q --disable-pip-version-check \
  "opentelemetry-api==$otel_version" "opentelemetry-sdk==$otel_version"
py=$root/.venv/bin/python

cd "$root"
cargo build --quiet --bin myhelloworld
bin=${CARGO_TARGET_DIR:-$root/target}/debug/myhelloworld
[ -x "$bin" ] || {
  echo "no binary at $bin after cargo build" >&2
  exit 1
}

# The checker runs in the background so that a signal to this script reaches the trap at
# once; the checker kills the service when it is stopped (and the kernel does if it dies).
checker=
# Run through the trap, which shellcheck 0.9 does not see:
# shellcheck disable=SC2317
cleanup() {
  if [ -n "$checker" ] && kill -0 "$checker" 2>/dev/null; then
    kill -TERM "$checker" 2>/dev/null || true
    wait "$checker" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

timeout --kill-after=5 60 "$py" "$root/tests/otel_w3c_check.py" "$bin" &
checker=$!
rc=0
wait "$checker" || rc=$?
checker=
exit "$rc"
