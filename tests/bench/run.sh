#!/usr/bin/env bash
# Benchmark of myhelloworld on loopback: wrk drives keep-alive (and Connection: close) load,
# a UDP sink of ours (tests/bench/udp_sink.rs, thrift_codec decoding) stands in for the Jaeger
# agent. Measured: the static musl build (what the image ships), the glibc build as a second
# row, and the Go original when BENCH_GO_BIN names its binary. Runs are interleaved
# (A B C ... A B C ...) because this machine's speed drifts; the table shows medians with
# min-max, and every run is a fresh start with wrk's 32 connections opened at once, the first
# second included. Server CPU per request comes from /proc, peak RSS from VmHWM, span counts
# from the service's shutdown line and from the sink.
#
#   tests/bench/run.sh                    # 5 repetitions of 5 s per run, 32 connections
#   BENCH_GO_BIN=/path/to/seed-go tests/bench/run.sh    # with the Go original
#   BENCH_REPS=7 BENCH_SECONDS=10 BENCH_CONNECTIONS=64 tests/bench/run.sh
#   BENCH_SOAK=60 tests/bench/run.sh      # also one 60 s run of the musl build sampling RSS
#   BENCH_RUNS="musl/b3-sampled musl/disabled" tests/bench/run.sh   # a subset
#   BENCH_PIN=0 tests/bench/run.sh        # let the scheduler place server and load
#
# Everything stays on 127.0.0.1; every wait is bounded.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

reps=${BENCH_REPS:-5}
seconds=${BENCH_SECONDS:-5}
connections=${BENCH_CONNECTIONS:-32}
soak=${BENCH_SOAK:-0}
go_bin=${BENCH_GO_BIN:-}
musl_target=x86_64-unknown-linux-musl
default_runs="musl/keepalive musl/b3-sampled musl/disabled musl/b3-deny musl/close glibc/b3-sampled glibc/disabled"
[ -n "$go_bin" ] && default_runs+=" go/b3-sampled go/close"
read -r -a runs <<<"${BENCH_RUNS:-$default_runs}"

if [ -z "$go_bin" ]; then
  echo "BENCH_GO_BIN is not set: the Go original is not measured" >&2
elif [ ! -x "$go_bin" ]; then
  echo "BENCH_GO_BIN=$go_bin is not an executable" >&2
  exit 2
fi
missing=()
command -v wrk >/dev/null || missing+=(wrk)
# mimalloc's C code is compiled for the musl target with musl-gcc (cc-rs's choice).
command -v musl-gcc >/dev/null || missing+=(musl-tools)
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
rustup target list --installed | grep -qx "$musl_target" || rustup target add "$musl_target"
cargo build --release --quiet --bin myhelloworld --target "$musl_target"
cargo build --release --quiet --bin myhelloworld --example udp-sink
musl_bin=target/$musl_target/release/myhelloworld
glibc_bin=target/release/myhelloworld
sink_bin=target/release/examples/udp-sink

# Server on core 0, wrk and the sink on core 1, when there are two cores.
if [ "$(nproc)" -ge 2 ] && [ "${BENCH_PIN:-1}" = 1 ]; then
  pin_server=(taskset -c 0)
  pin_load=(taskset -c 1)
  pinning="server on core 0, wrk and sink on core 1"
  steal_cpu=cpu0
else
  pin_server=()
  pin_load=()
  pinning="nothing pinned"
  steal_cpu=cpu
fi

work=$(mktemp -d)
cleanup() {
  # Whatever is still running from this script.
  jobs -p | xargs -r kill 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  python3 -c "import socket; s=socket.socket(socket.AF_INET, socket.$1); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"
}

# steal_ticks: what the hypervisor took from the server's core (every core when unpinned),
# in clock ticks. On a shared VM it explains the runs whose p99 stands out.
steal_ticks() {
  awk -v c="$steal_cpu" '$1 == c { print $9 }' /proc/stat
}

# cpu_ticks PID: utime + stime of the process, in clock ticks.
cpu_ticks() {
  awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# wait_until COMMAND...: bounded wait (10 s) for a command to succeed.
wait_until() {
  for _ in $(seq 100); do
    "$@" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "timed out waiting for: $*" >&2
  return 1
}

# metric PORT SERIES: one value from our service's /metrics.
metric() {
  local text
  exec 3<>"/dev/tcp/127.0.0.1/$1"
  printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3
  text=$(cat <&3)
  exec 3<&-
  awk -v s="$2" '$1 == s { print $2 }' <<<"$text"
}

# to_ms VALUE: wrk's latency ("523.00us", "1.20ms", "1.01s") in milliseconds.
to_ms() {
  awk -v v="$1" 'BEGIN {
    n = v + 0
    if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000
    printf "%.3f", n }'
}

b3=(-H "x-b3-traceid: 463ac35c9f6413ad48485a3953bb6124" -H "x-b3-spanid: a2fb4a1d1a96d312" -H "x-b3-sampled: 1")
deny=(-H "x-b3-traceid: 463ac35c9f6413ad48485a3953bb6124" -H "x-b3-spanid: a2fb4a1d1a96d312" -H "x-b3-sampled: 0")

# run BINARY/SCENARIO: one fresh start of the server and one wrk run against it; appends
# "NAME rps p50 p99 cpu_us_per_req hwm_kb finished received dropped datagrams bytes_per_span stranded steal_ms"
# to the results ("-" where the Go original has no such figure).
run() {
  local name=$1 binary=${1%%/*} scenario=${1#*/}
  local envs=() headers=() bin port=0 tcp_port log sink_out pid sink_pid before after steal_before steal_after
  case $scenario in
    keepalive) ;;
    b3-sampled) headers=("${b3[@]}") ;;
    disabled) headers=("${b3[@]}") envs=(JAEGER_DISABLED=true) ;;
    b3-deny) headers=("${deny[@]}") ;;
    close) headers=(-H "Connection: close") ;;
    *) echo "unknown scenario $scenario" >&2; return 1 ;;
  esac
  port=$(free_port SOCK_DGRAM)
  log="$work/run.log"
  sink_out="$work/run.sink"
  "${pin_load[@]}" "$sink_bin" "$port" >"$sink_out" &
  sink_pid=$!
  case $binary in
    musl | glibc)
      [ "$binary" = musl ] && bin=$musl_bin || bin=$glibc_bin
      env HOST=127.0.0.1 PORT=0 JAEGER_AGENT_HOST=127.0.0.1 JAEGER_AGENT_PORT="$port" RUST_LOG=info "${envs[@]}" \
        "${pin_server[@]}" "$bin" 2>"$log" &
      pid=$!
      wait_until grep -q "listening on" "$log"
      tcp_port=$(sed -n 's/.*listening on http:[^ ]*:\([0-9]*\) .*/\1/p' "$log")
      ;;
    go)
      [ "$scenario" = disabled ] || [ "$scenario" = b3-deny ] && { echo "go/$scenario: not a scenario of the Go original" >&2; return 1; }
      tcp_port=$(free_port SOCK_STREAM)
      env AGENT="127.0.0.1:$port" PORT="$tcp_port" "${pin_server[@]}" "$go_bin" 2>"$log" &
      pid=$!
      wait_until bash -c "exec 3<>/dev/tcp/127.0.0.1/$tcp_port"
      ;;
    *) echo "unknown binary $binary" >&2; return 1 ;;
  esac
  before=$(cpu_ticks "$pid")
  steal_before=$(steal_ticks)
  "${pin_load[@]}" wrk -t1 -c"$connections" -d"${seconds}s" --timeout 5s --latency "${headers[@]}" \
    "http://127.0.0.1:$tcp_port/gettime" >"$work/run.wrk"
  after=$(cpu_ticks "$pid")
  steal_after=$(steal_ticks)
  local hwm stranded=-
  hwm=$(awk '/VmHWM/ { print $2 }' "/proc/$pid/status")
  [ "$binary" = go ] || stranded=$(metric "$tcp_port" myhelloworld_http_connections_stranded_total)
  kill -TERM "$pid"
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  # The Go original dies of SIGTERM (no handler); ours exits 0.
  local status=0
  wait "$pid" || status=$?
  [ "$status" = 0 ] || [ "$binary" = go ] || { echo "$name: server exited with $status" >&2; return 1; }
  printf 'STOP' >"/dev/udp/127.0.0.1/$port"
  wait "$sink_pid"

  local requests rps p50 p99 cpu datagrams bytes received finished=- dropped=- per_span=-
  requests=$(awk '/requests in/ { print $1 }' "$work/run.wrk")
  rps=$(awk '/Requests\/sec/ { print $2 }' "$work/run.wrk")
  p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$work/run.wrk")")
  p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$work/run.wrk")")
  cpu=$(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v r="$requests" 'BEGIN { printf "%.1f", t / hz * 1e6 / r }')
  read -r datagrams bytes received <<<"$(sed -n 's/datagrams=\([0-9]*\) bytes=\([0-9]*\) spans=\([0-9]*\).*/\1 \2 \3/p' "$sink_out")"
  if [ "$binary" != go ]; then
    # Spans finished = admitted + queue_full (a sampled span refused a queue slot).
    local admitted queue_full
    admitted=$(sed -n 's/.*spans admitted=\([0-9]*\).*/\1/p' "$log")
    queue_full=$(sed -n 's/.*queue_full=\([0-9]*\).*/\1/p' "$log")
    finished=$((${admitted:-0} + ${queue_full:-0}))
    dropped=$(sed -n 's/.*dropped: queue_full=\([0-9]*\) send_error=\([0-9]*\) agent_unresolved=\([0-9]*\) too_large=\([0-9]*\).*/\1 \2 \3 \4/p' "$log" | awk '{ print $1 + $2 + $3 + $4 }')
  fi
  [ "${received:-0}" -gt 0 ] && per_span=$(awk -v b="$bytes" -v s="$received" 'BEGIN { printf "%.0f", b / s }')
  local steal_ms
  steal_ms=$(((steal_after - steal_before) * 1000 / $(getconf CLK_TCK)))
  echo "$name $rps $p50 $p99 $cpu $hwm $finished $received ${dropped:-0} $datagrams $per_span $stranded $steal_ms" >>"$work/results"
}

load() { cut -d' ' -f1-3 /proc/loadavg; }
echo "machine: $(nproc) cores, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), kernel $(uname -r)"
go_version=
[ -n "$go_bin" ] && go_version="; Go original built with $(go version "$go_bin" 2>/dev/null | awk '{ print $2 }')"
echo "date: $(date -u +%Y-%m-%dT%H:%MZ); $(rustc --version); $(wrk --version 2>&1 | head -n 1 | cut -d' ' -f1-2)$go_version"
echo "binaries: musl $(stat -c %s "$musl_bin") bytes ($(objcopy --strip-all "$musl_bin" "$work/stripped" && stat -c %s "$work/stripped") stripped), glibc $(stat -c %s "$glibc_bin") bytes"
echo "load: wrk -t1 -c$connections, ${seconds}s per run, $reps repetitions, interleaved, each a fresh start; $pinning"
echo "load average before: $(load)"
echo

for rep in $(seq "$reps"); do
  echo "repetition $rep/$reps (load average $(load))" >&2
  for r in "${runs[@]}"; do run "$r"; done
done

# Median with min-max of column $2 for run $1.
stat() {
  awk -v n="$1" -v c="$2" '$1 == n { print $c }' "$work/results" | sort -g |
    awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%s (%s-%s)", m, v[1], v[NR] }'
}
# Column $2 of run $1 summed over repetitions, or "-".
total() {
  awk -v n="$1" -v c="$2" '$1 == n { if ($c == "-") d = 1; s += $c } END { print d ? "-" : s + 0 }' "$work/results"
}

printf '%-17s %-28s %-22s %-24s %-19s %-21s %-11s %s\n' run "requests/s" "p50 ms" "p99 ms" "CPU us/request" "peak RSS KiB" "stranded" "spans finished/received/dropped, datagrams, bytes/span (totals)"
for r in "${runs[@]}"; do
  printf '%-17s %-28s %-22s %-24s %-19s %-21s %-11s %s/%s/%s, %s, %s\n' "$r" "$(stat "$r" 2)" "$(stat "$r" 3)" "$(stat "$r" 4)" "$(stat "$r" 5)" "$(stat "$r" 6)" \
    "$(total "$r" 12)" "$(total "$r" 7)" "$(total "$r" 8)" "$(total "$r" 9)" "$(total "$r" 10)" "$(awk -v n="$r" '$1 == n { print $11; exit }' "$work/results")"
done
echo
echo "load average after: $(load)"

# ratio A B: per repetition, CPU per request of run A over run B (runs of one repetition are
# adjacent in time), median and min-max.
ratio() {
  grep -q "^$1 " "$work/results" && grep -q "^$2 " "$work/results" || return 0
  paste <(awk -v n="$1" '$1 == n { print $5 }' "$work/results") <(awk -v n="$2" '$1 == n { print $5 }' "$work/results") |
    awk '{ printf "%.3f\n", $1 / $2 }' | sort -g |
    awk -v a="$1" -v b="$2" '{ r[NR] = $1 } END {
      m = (NR % 2) ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2
      printf "CPU per request, %s / %s: median %.3fx over %d pairs (%.3f-%.3f)\n", a, b, m, NR, r[1], r[NR] }'
}
echo
ratio musl/b3-sampled musl/disabled
ratio musl/b3-sampled go/b3-sampled
ratio glibc/b3-sampled go/b3-sampled
ratio musl/b3-sampled glibc/b3-sampled
ratio musl/close go/close
# Every run is a fresh start with 32 connections opened at once: the p99 of each, and the
# most the hypervisor took from the server's core in a run over 10 ms and in the others.
for binary in musl glibc go; do
  awk -v b="$binary" 'index($1, b "/") == 1 { n++; if ($4 > max) max = $4
      if ($4 > 10) { slow++; if ($13 > steal_slow) steal_slow = $13 } else if ($13 > steal) steal = $13 }
    END { if (n) printf "%s: %d of %d fresh starts with p99 over 10 ms (highest %.3f ms); most stolen from the server'"'"'s core in one run: %d ms in those, %d ms in the others\n", b, slow, n, max, steal_slow, steal }' "$work/results"
done

if [ "$soak" -gt 0 ]; then
  echo
  echo "soak: ${soak}s keep-alive with B3 headers, musl build, RSS every 5 s (KiB):"
  port=$(free_port SOCK_DGRAM)
  "${pin_load[@]}" "$sink_bin" "$port" >"$work/soak.sink" &
  sink_pid=$!
  HOST=127.0.0.1 PORT=0 JAEGER_AGENT_HOST=127.0.0.1 JAEGER_AGENT_PORT="$port" "${pin_server[@]}" "$musl_bin" 2>"$work/soak.log" &
  pid=$!
  wait_until grep -q "listening on" "$work/soak.log"
  addr=$(sed -n 's/.*listening on \(http:[^ ]*\) .*/\1/p' "$work/soak.log")
  "${pin_load[@]}" wrk -t1 -c"$connections" -d"${soak}s" "${b3[@]}" "$addr/gettime" >/dev/null &
  wrk_pid=$!
  samples=()
  for _ in $(seq $((soak / 5))); do
    sleep 5
    samples+=("$(awk '/VmRSS/ { print $2 }' "/proc/$pid/status")")
  done
  wait "$wrk_pid"
  echo "  ${samples[*]}"
  kill -TERM "$pid"
  wait "$pid"
  printf 'STOP' >"/dev/udp/127.0.0.1/$port"
  wait "$sink_pid"
  echo "  $(grep -o 'spans admitted=.*' "$work/soak.log")"
  echo "  sink: $(cat "$work/soak.sink")"
fi
