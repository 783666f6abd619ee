#!/usr/bin/env bash
# The Jaeger datagrams, read by the reference implementation: Apache Thrift's own Python
# library (PyPI `thrift`) decodes what the service sends to a stand-in agent on loopback, and
# tests/apache_thrift_check.py checks every field against jaeger.thrift and the requests made.
# The unit tests in src/jaeger_thrift.rs compare our encoder with thrift_codec; this is the
# independent check. Needs python3 with venv; installs `thrift` into .venv (tests/venv.sh).
# Prints `apache thrift: N datagrams, M spans decoded, all checks passed`; exits non-zero on
# any failure. Takes a few seconds after the build; the whole check is cut at 60 s.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
py=$(bash "$root/tests/venv.sh")/python

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
# Run through the trap, which shellcheck does not see:
# shellcheck disable=SC2329
cleanup() {
  if [ -n "$checker" ] && kill -0 "$checker" 2>/dev/null; then
    kill -TERM "$checker" 2>/dev/null || true
    wait "$checker" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

timeout --kill-after=5 60 "$py" "$root/tests/apache_thrift_check.py" "$bin" &
checker=$!
rc=0
wait "$checker" || rc=$?
checker=
exit "$rc"
