#!/usr/bin/env bash
# Makes .venv at the repository root (if missing) and installs tests/requirements.txt into it
# from PyPI; quick when everything is installed already. Prints the venv's bin directory:
#   bin=$(bash tests/venv.sh)
# Needs python3 with its venv module.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ ! -x "$root/.venv/bin/python" ]; then
  python3 -m venv "$root/.venv" >&2
fi
"$root/.venv/bin/pip" install -q --disable-pip-version-check -r "$root/tests/requirements.txt" >&2
echo "$root/.venv/bin"
