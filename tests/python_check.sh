#!/usr/bin/env bash
# Runs one Python check of tests/ against the debug binary:
#   python_check.sh CHECK.py REQUIREMENT...   (e.g. apache_thrift_check.py thrift==0.22.0)
# Installs the pinned REQUIREMENTs from PyPI into .venv (made with python3's venv if absent),
# builds the binary, and runs tests/CHECK.py with the binary's path, cut at 60 s. The check's
# own header says what it checks and prints; the exit status is the check's.
set -euo pipefail

check=$1
shift
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

if [ ! -x "$root/.venv/bin/python" ]; then
  python3 -m venv "$root/.venv"
fi
"$root/.venv/bin/pip" install -q --disable-pip-version-check "$@"
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

timeout --kill-after=5 60 "$py" "$root/tests/$check" "$bin" &
checker=$!
rc=0
wait "$checker" || rc=$?
checker=
exit "$rc"
