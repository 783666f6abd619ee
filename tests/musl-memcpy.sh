#!/usr/bin/env bash
# The static musl binary (what the image ships) copies with our memcpy and memmove
# (src/memcpy.rs), not musl's: musl's object file for them is not linked (its __memcpy_fwd
# would be there), and neither function calls anything or jumps out of itself (LLVM turning
# one of their copies into a call of memcpy would recurse forever).
#
#   tests/musl-memcpy.sh target/x86_64-unknown-linux-musl/release/myhelloworld
set -euo pipefail
bin=${1:?usage: tests/musl-memcpy.sh BINARY}
symbols=$(nm "$bin" 2>/dev/null || true)
if ! grep -q ' T ' <<<"$symbols"; then
  echo "FAIL: $bin has no symbol table (stripped?): nothing to check" >&2
  exit 1
fi
if grep -qw __memcpy_fwd <<<"$symbols"; then
  echo "FAIL: musl's memcpy is linked into $bin" >&2
  exit 1
fi
for f in memcpy memmove; do
  if ! awk -v f="$f" '$2 == "T" && $3 == f { found = 1 } END { exit !found }' <<<"$symbols"; then
    echo "FAIL: $bin defines no $f" >&2
    exit 1
  fi
  body=$(objdump -d --no-show-raw-insn --disassemble="$f" "$bin")
  count=$(grep -cE '^\s+[0-9a-f]+:' <<<"$body" || true)
  if [ "$count" -eq 0 ]; then
    echo "FAIL: no instructions of $f disassembled" >&2
    exit 1
  fi
  # A call of anything, or a jump (conditional too) to anywhere but an offset inside the
  # function itself.
  escapes=$(grep -E '\s(call|j[a-z]+)\s' <<<"$body" | grep -v "<$f+0x" || true)
  if [ -n "$escapes" ]; then
    printf 'FAIL: %s leaves itself:\n%s\n' "$f" "$escapes" >&2
    exit 1
  fi
  echo "ok    $f is ours and self-contained ($count instructions)"
done
