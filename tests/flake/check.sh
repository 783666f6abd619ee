#!/usr/bin/env bash
# Offline structure check of flake.nix, with no Nix binary cache and no nixpkgs source:
# - flake.nix parses; flake.lock matches the flake's inputs;
# - every output evaluates (`nix flake check --no-build`) with nixpkgs replaced by
#   tests/flake/nixpkgs-stub, a strict stand-in with the attribute paths and argument names of
#   the nixpkgs functions the flake uses, which throws on any other argument or attribute;
# - every packages.x86_64-linux.* gives a derivation; every apps.x86_64-linux.* has
#   type = "app" and a program that resolves (Nix 2.8's `flake check` skips apps).
# Passing proves the flake's structure, never that the real nixpkgs builds it.
# Needs nix (Debian's nix-bin, 2.8, is enough) and a git checkout in which flake.nix and what
# it reads are tracked (a flake in a git checkout sees tracked files only).
# Prints one line per check and `N passed, N failed`; exits non-zero on any failure.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
command -v nix >/dev/null || {
  echo "nix not found: install Debian's nix-bin (.ci/run does)" >&2
  exit 1
}
# The stand-in must be a flake of its own, outside this repository's git tree.
stub=$(mktemp -d)
trap 'rm -rf "$stub"' EXIT
cp "$root/tests/flake/nixpkgs-stub/flake.nix" "$stub/flake.nix"

cd "$root"
F=(--extra-experimental-features 'nix-command flakes')
# No build users, no substituters, no sandbox: evaluation only, as root or not.
O=(--option build-users-group "" --option substituters "" --option sandbox false)
OV=(--no-write-lock-file --override-input nixpkgs "path:$stub" "${O[@]}")
passed=0 failed=0
# step NAME CMD...: runs CMD; on failure prints its error lines.
step() {
  local name=$1 out
  shift
  if out=$("$@" 2>&1); then
    passed=$((passed + 1))
    echo "ok    $name"
  else
    failed=$((failed + 1))
    echo "FAIL  $name"
    echo "$out" | grep -E "error|stub " | sed 's/^/      /' | tail -n 8
  fi
}
# attr_names ATTRPATH: the names of a flake output attribute set, one per line.
attr_names() {
  nix "${F[@]}" eval --json ".#$1" --apply builtins.attrNames "${OV[@]}" 2>/dev/null | jq -r '.[]'
}

step "flake.nix parses" nix-instantiate --parse flake.nix
step "flake.lock matches the inputs" nix "${F[@]}" flake metadata --no-update-lock-file "${O[@]}"
step "outputs evaluate (flake check)" nix "${F[@]}" flake check --no-build "${OV[@]}"
system=x86_64-linux
packages=$(attr_names "packages.$system")
apps=$(attr_names "apps.$system")
[ -n "$packages" ] || step "packages.$system is not empty" false
[ -n "$apps" ] || step "apps.$system is not empty" false
for attr in $packages; do
  step "packages.$system.$attr evaluates" nix "${F[@]}" eval --raw ".#packages.$system.$attr.drvPath" "${OV[@]}"
done
for attr in $apps; do
  # shellcheck disable=SC2016 # ${a.type} is Nix's
  step "apps.$system.$attr has type app" nix "${F[@]}" eval ".#apps.$system.$attr" \
    --apply 'a: if a.type == "app" then true else throw "type is ${a.type}"' "${OV[@]}"
  step "apps.$system.$attr program" nix "${F[@]}" eval --raw ".#apps.$system.$attr.program" "${OV[@]}"
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
