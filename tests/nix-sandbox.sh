#!/usr/bin/env bash
# Runs a command with the network and /etc that the Nix build sandbox gives a package's
# checkPhase (`nix build` runs `cargo test` there):
# - a new network namespace in which only loopback exists, brought up;
# - /etc without resolv.conf, and with the hosts file Nix writes for a sandboxed build
#   (localhost only). A libc resolver then asks 127.0.0.1:53, where nothing answers: musl,
#   which the static build uses, waits out its full timeout (5 s) before it gives up.
# The rest of /etc stays (a copy), so that the dynamically linked cargo and rustc still run.
#
#   bash tests/nix-sandbox.sh COMMAND [ARGS...]
#
# Needs root, unshare (util-linux) and ip (iproute2). The mounts are private to the new mount
# namespace (unshare's default propagation) and vanish with it.
set -euo pipefail

if [ "${1:-}" != --inside ]; then
  [ "$#" -gt 0 ] || {
    echo "usage: $0 COMMAND [ARGS...]" >&2
    exit 2
  }
  exec unshare --net --mount -- "$BASH" "${BASH_SOURCE[0]}" --inside "$@"
fi
shift

ip link set lo up

etc=$(mktemp -d)
mount -t tmpfs -o mode=0755 nix-sandbox-etc "$etc"
cp -a /etc/. "$etc/"
rm -f "$etc/resolv.conf"
printf '127.0.0.1 localhost\n::1 localhost\n' >"$etc/hosts"
mount --bind "$etc" /etc

exec "$@"
