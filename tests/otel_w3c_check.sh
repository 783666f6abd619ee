#!/usr/bin/env bash
# Our W3C Trace Context against a published propagator: OpenTelemetry's Python API and SDK
# (PyPI `opentelemetry-api`, `opentelemetry-sdk`) write the traceparent/tracestate of real
# spans that the service must join, and read back the ones the service writes on /chain
# (tests/otel_w3c_check.py). The table tests in src/w3c.rs follow the spec and its test suite;
# this is the independent check. Needs python3 with venv; installs tests/requirements.txt
# into .venv (PyPI).
# Prints `opentelemetry w3c: N cases, both directions, all checks passed`; exits non-zero on
# any failure. Takes a few seconds after the build; the whole check is cut at 60 s.
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/python_check.sh" otel_w3c_check.py
