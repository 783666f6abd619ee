#!/usr/bin/env bash
# The Jaeger datagrams, read by the reference implementation: Apache Thrift's own Python
# library (PyPI `thrift`) decodes what the service sends to a stand-in agent on loopback, and
# tests/apache_thrift_check.py checks every field against jaeger.thrift and the requests made.
# The unit tests in src/jaeger_thrift.rs compare our encoder with thrift_codec; this is the
# independent check. Needs python3 with venv; installs tests/requirements.txt into .venv (PyPI).
# Prints `apache thrift: N datagrams, M spans decoded, all checks passed`; exits non-zero on
# any failure. Takes a few seconds after the build; the whole check is cut at 60 s.
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/python_check.sh" apache_thrift_check.py
