#!/usr/bin/env bash
# Is the release binary distroless-ready? Checked without Nix and without Docker.
#
# The image (`nix build .#image`) holds only the static musl binary and a CA bundle, runs as
# 65532:65532 and has no shell, no libc, no /etc/passwd. musl targets cannot be downloaded here,
# so this builds the same crate statically for the gnu target (crt-static) instead, then:
#   * checks that the ELF has no program interpreter and no NEEDED shared libraries;
#   * copies it ALONE into an empty directory and runs it there, as PID 1 of a new PID namespace
#     (as in a container, where PID 1 gets no default SIGTERM action), chrooted, as 65532:65532,
#     with no /etc and no /proc;
#   * GET /gettime answers 200 "The time is ...", a Jaeger UDP datagram with the span arrives at
#     a receiver on 127.0.0.1, and SIGTERM makes the service exit 0 within a few seconds.
# DISTROLESS_EXE=path skips the build and checks that binary instead (e.g. the Nix-built musl one).
# Needs root (unshare, chroot), cargo, readelf (binutils), curl, python3. Everything listens on
# 127.0.0.1 only; every wait is bounded. Prints ok/FAIL per check and "N passed, N failed".
# Functions run only through trap and poll look never invoked to shellcheck:
# shellcheck disable=SC2329
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
triple="$(uname -m)-unknown-linux-gnu"
target_dir=${DISTROLESS_TARGET_DIR:-$root/target/distroless}
service_uid=65532

pass=0
fail=0
ok() {
  pass=$((pass + 1))
  echo "ok    $*"
}
bad() {
  fail=$((fail + 1))
  echo "FAIL  $*"
}
finish() {
  echo "$pass passed, $fail failed"
  if [ "$fail" -eq 0 ]; then exit 0; else exit 1; fi
}

work=$(mktemp -d)
unshare_pid=
service_pid=
receiver_pid=
cleanup() {
  # SIGKILL the service and let unshare reap it and exit; SIGKILL unshare only if it does not
  # (--kill-child then takes the service down with it).
  if [ -n "$service_pid" ]; then kill -KILL "$service_pid" 2>/dev/null || true; fi
  if [ -n "$unshare_pid" ]; then poll 2 unshare_exited || kill -KILL "$unshare_pid" 2>/dev/null || true; fi
  if [ -n "$receiver_pid" ]; then kill -KILL "$receiver_pid" 2>/dev/null || true; fi
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# poll SECONDS CMD...: run CMD every 0.1 s until it succeeds or SECONDS have passed.
poll() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}

# unshare_exited: true once the unshare process is gone or a zombie waiting to be reaped.
unshare_exited() {
  local state
  state=$(cut -d' ' -f3 "/proc/$unshare_pid/stat" 2>/dev/null) || return 0
  [ "$state" = Z ]
}

show_log() {
  echo "      --- service output (last 20 lines) ---"
  tail -n 20 "$work/service.log" 2>/dev/null | sed 's/^/      /'
}

# --- prerequisites ---------------------------------------------------------------------------
missing=()
for tool in cargo readelf unshare chroot curl python3; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ "${#missing[@]}" -ne 0 ]; then
  bad "tools present (missing: ${missing[*]}; readelf is in apt package binutils)"
  finish
fi
if [ "$(id -u)" -ne 0 ]; then
  bad "running as root (unshare and chroot need it)"
  finish
fi
ok "tools present, running as root"

# --- build -----------------------------------------------------------------------------------
if [ -n "${DISTROLESS_EXE:-}" ]; then
  # A binary built elsewhere, e.g. the musl one: DISTROLESS_EXE=$(nix build --print-out-paths)/bin/myhelloworld
  exe=$DISTROLESS_EXE
  if [ -x "$exe" ]; then ok "prebuilt binary $exe"; else
    bad "prebuilt binary $exe is executable"
    finish
  fi
else
  echo "      building --release --target $triple with crt-static into $target_dir"
  if RUSTFLAGS='-C target-feature=+crt-static' cargo build --manifest-path "$root/Cargo.toml" \
    --release --locked --target "$triple" --target-dir "$target_dir" >"$work/build.log" 2>&1; then
    ok "static release build"
  else
    bad "static release build"
    tail -n 30 "$work/build.log" | sed 's/^/      /'
    finish
  fi
  exe="$target_dir/$triple/release/myhelloworld"
fi

# --- static ELF --------------------------------------------------------------------------------
if readelf -lW "$exe" | grep -q 'INTERP'; then
  bad "binary has no program interpreter ($(readelf -lW "$exe" | grep -o 'interpreter: [^]]*'))"
elif readelf -dW "$exe" | grep -q '(NEEDED)'; then
  bad "binary needs no shared library: $(readelf -dW "$exe" | grep '(NEEDED)' | tr -s ' ' | tr '\n' ';')"
else
  ok "binary is statically linked (no INTERP, no NEEDED): $(file -b "$exe" 2>/dev/null | grep -o 'static[-a-z]* linked' || true)"
fi
size=$(stat -c %s "$exe")
cp "$exe" "$work/stripped"
strip "$work/stripped" 2>/dev/null || true
echo "      size: $((size / 1024)) KiB as built, $(($(stat -c %s "$work/stripped") / 1024)) KiB stripped"

# --- the empty root ------------------------------------------------------------------------------
jail="$work/root"
mkdir -m 0755 "$jail"
install -m 0755 "$exe" "$jail/myhelloworld"
if [ "$(find "$jail" -mindepth 1 | wc -l)" -eq 1 ] && [ ! -e "$jail/etc" ] && [ ! -e "$jail/proc" ]; then
  ok "root directory holds the binary alone (no /etc, no /proc)"
else
  bad "root directory holds the binary alone"
fi

# --- UDP receiver standing in for the Jaeger agent ------------------------------------------------
# Binds 127.0.0.1:0, writes the port it got to port.txt, stores each datagram as dgram.N.
cat >"$work/receiver.py" <<'PY'
import os, socket, sys, time
out = sys.argv[1]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
with open(os.path.join(out, "port.tmp"), "w") as f:
    f.write(str(s.getsockname()[1]))
os.rename(os.path.join(out, "port.tmp"), os.path.join(out, "port.txt"))
s.settimeout(0.5)
deadline = time.monotonic() + 120
n = 0
while time.monotonic() < deadline:
    try:
        data = s.recv(65535)
    except socket.timeout:
        continue
    with open(os.path.join(out, "dgram.%d.tmp" % n), "wb") as f:
        f.write(data)
    os.rename(os.path.join(out, "dgram.%d.tmp" % n), os.path.join(out, "dgram.%d" % n))
    n += 1
PY
mkdir "$work/udp"
python3 "$work/receiver.py" "$work/udp" &
receiver_pid=$!
if ! poll 10 test -s "$work/udp/port.txt"; then
  bad "UDP receiver started"
  finish
fi
agent_port=$(cat "$work/udp/port.txt")

# A free TCP port for the service (bound and released by the kernel's choice).
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

# --- run it: new mount/IPC/UTS/PID namespaces, chroot, uid/gid 65532, bare environment ----------
# Host network namespace on purpose: curl and the receiver reach it on 127.0.0.1.
env -i \
  PORT="$port" \
  RUST_LOG=info \
  JAEGER_SERVICE_NAME=myhelloworld \
  JAEGER_AGENT_HOST=127.0.0.1 \
  JAEGER_AGENT_PORT="$agent_port" \
  JAEGER_REPORTER_FLUSH_INTERVAL=200ms \
  JAEGER_REPORTER_LOG_SPANS=true \
  JAEGER_SAMPLER_TYPE=const \
  JAEGER_SAMPLER_PARAM=1 \
  "$(command -v unshare)" --mount --ipc --uts --pid --fork --kill-child \
  "$(command -v chroot)" --userspec="$service_uid:$service_uid" "$jail" /myhelloworld \
  >"$work/service.log" 2>&1 &
unshare_pid=$!

# The service is unshare's only child (PID 1 inside); find its host PID once chroot exec'd it.
service_is_running() {
  local child
  child=$(cat "/proc/$unshare_pid/task/$unshare_pid/children" 2>/dev/null) || return 1
  child=${child%% *}
  [ -n "$child" ] && [ "$(cat "/proc/$child/comm" 2>/dev/null)" = myhelloworld ] || return 1
  service_pid=$child
}
if ! poll 10 service_is_running; then
  bad "service started in the empty root"
  show_log
  finish
fi
uids=$(awk '/^Uid:/ {print $2, $3} /^Gid:/ {print $2, $3}' "/proc/$service_pid/status" | tr '\n' ' ')
if [ "$uids" = "$service_uid $service_uid $service_uid $service_uid " ]; then
  ok "service runs as uid/gid $service_uid (PID 1 of its namespace, host PID $service_pid)"
else
  bad "service runs as uid/gid $service_uid (Uid/Gid real effective: $uids)"
fi

# --- GET /gettime --------------------------------------------------------------------------------
url="http://127.0.0.1:$port/gettime"
poll 10 curl -s -o /dev/null --max-time 1 "$url" || true
code=$(curl -s -o "$work/body" -w '%{http_code}' --max-time 5 "$url" || true)
body=$(cat "$work/body" 2>/dev/null || true)
if [ "$code" = 200 ] && [[ $body =~ ^The\ time\ is\ [A-Z][a-z]{2}\ [A-Z][a-z]{2}\ +[0-9]{1,2}\ [0-9]{2}:[0-9]{2}:[0-9]{2}\ [0-9]{4}$ ]]; then
  ok "GET /gettime -> 200 \"$body\""
else
  bad "GET /gettime -> 200 \"The time is ...\" (got HTTP ${code:-none}: \"${body:0:80}\")"
  show_log
fi

# --- a Jaeger emitBatch datagram with the span ------------------------------------------------------
span_arrived() { grep -qa 'GET /gettime' "$work"/udp/dgram.[0-9]* 2>/dev/null; }
if poll 5 span_arrived; then
  ok "Jaeger UDP datagram with span \"GET /gettime\" received on 127.0.0.1:$agent_port ($(find "$work/udp" -name 'dgram.[0-9]*' | wc -l) datagram(s))"
else
  n=$(find "$work/udp" -name 'dgram.[0-9]*' | wc -l)
  bad "Jaeger UDP datagram with span \"GET /gettime\" received on 127.0.0.1:$agent_port ($n datagram(s), none with it)"
  show_log
fi

# --- SIGTERM -> exit 0 ----------------------------------------------------------------------------
# unshare exits with the status of the service (its only child).
kill -TERM "$service_pid"
if poll 5 unshare_exited; then
  status=0
  wait "$unshare_pid" || status=$?
  unshare_pid=
  service_pid=
  if [ "$status" -eq 0 ]; then
    ok "SIGTERM -> exit 0"
  else
    bad "SIGTERM -> exit 0 (exit status $status)"
    show_log
  fi
else
  bad "SIGTERM -> exit 0 (still running 5 s after SIGTERM)"
  show_log
fi

finish
