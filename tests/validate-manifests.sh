#!/usr/bin/env bash
# Validates every YAML under k8s/ (recursively) and the e2e's kind config, offline:
# 1. tests/manifests/validate_istio.py: Istio kinds against Istio's CRD schemas (+ CEL rules,
#    tests/manifests/crd-all.gen.yaml), Kubernetes kinds against the Kubernetes schema of the
#    version the e2e's kind node runs;
# 2. tests/manifests/check_other_kinds.py: the documents step 1 skips (IstioOperator, kind
#    Cluster), and references between files.
# Needs python3 with venv; installs tests/requirements.txt into .venv (tests/venv.sh).
# Prints one line per check and `N passed, N failed`; exits non-zero on any failure.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
k8s_version=1.35 # kindest/node:v1.35.0, the e2e's node image (tests/e2e/run.sh)
py=$(bash "$root/tests/venv.sh")/python

cd "$root"
files=()
while IFS= read -r f; do files+=("$f"); done < <(find k8s -name '*.yaml' | sort)
files+=(tests/e2e/kind-config.yaml)

passed=0 failed=0 skipped=()
# count_lines OUTPUT: counts the OK / INVALID / ERROR lines both tools print and collects the
# documents validate_istio.py skips, echoing everything.
count_lines() {
  local line
  while IFS= read -r line; do
    echo "$line"
    case $line in
      "OK "*) passed=$((passed + 1)) ;;
      "INVALID "* | "ERROR "*) failed=$((failed + 1)) ;;
      "SKIP "*)
        line=${line#SKIP }
        line=${line#"${line%%[! ]*}"} # strip the padding
        skipped+=(--skipped "${line%% *}")
        ;;
    esac
  done <<<"$1"
}

# run TOOL ARGS...: runs a checker and counts its lines; a non-zero exit that printed no failure
# line (a crash, exit 2 for unreadable input) counts as one failure too.
run() {
  local out rc=0 failed_before=$failed
  out=$("$py" "$@" 2>&1) || rc=$?
  count_lines "$out"
  if [ "$rc" -ne 0 ] && [ "$failed" -eq "$failed_before" ]; then
    echo "INVALID ${1##*/} exited $rc"
    failed=$((failed + 1))
  fi
}

run "$root/tests/manifests/validate_istio.py" --cel --k8s-version "$k8s_version" "${files[@]}"
run "$root/tests/manifests/check_other_kinds.py" --k8s-version "$k8s_version" "${skipped[@]}" "${files[@]}"

if [ $((passed + failed)) -eq 0 ]; then
  echo "no check ran" >&2
  failed=1
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
