#!/usr/bin/env bash
# Runs one Python check of tests/ against the debug binary:
#   python_check.sh CHECK.py   (e.g. apache_thrift_check.py)
# Installs tests/requirements.txt into .venv (tests/venv.sh), builds the binary, and runs
# tests/CHECK.py with the binary's path, cut at 60 s. The check's own header says what it
# checks and prints; the exit status is the check's.
set -euo pipefail

check=$1
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

timeout --kill-after=5 60 "$py" "$root/tests/$check" "$bin" &
checker=$!
rc=0
wait "$checker" || rc=$?
checker=
exit "$rc"
