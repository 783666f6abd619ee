#!/usr/bin/env bash
# Benchmark of myhelloworld on loopback: wrk drives keep-alive (and Connection: close) load,
# a UDP sink of ours (tests/bench/udp_sink.rs, thrift_codec decoding) stands in for the Jaeger
# agent. Scenarios run interleaved (A B C ... A B C ...) because this machine's speed drifts;
# the table shows medians with min-max. Server CPU per request comes from /proc, peak RSS from
# VmHWM, span counts from the service's own shutdown line and from the sink.
#
#   tests/bench/run.sh                    # 5 repetitions of 5 s per scenario, 32 connections
#   BENCH_REPS=7 BENCH_SECONDS=10 BENCH_CONNECTIONS=64 tests/bench/run.sh
#   BENCH_SOAK=60 tests/bench/run.sh      # also one 60 s run sampling RSS every 5 s
#   BENCH_SCENARIOS="b3-sampled disabled" tests/bench/run.sh   # a subset
#   BENCH_PIN=0 tests/bench/run.sh        # let the scheduler place server and load
#
# Everything stays on 127.0.0.1; every wait is bounded.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

reps=${BENCH_REPS:-5}
seconds=${BENCH_SECONDS:-5}
connections=${BENCH_CONNECTIONS:-32}
soak=${BENCH_SOAK:-0}
read -r -a scenarios <<<"${BENCH_SCENARIOS:-keepalive b3-sampled disabled b3-deny close}"

if ! command -v wrk >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null
fi
cargo build --release --quiet --bin myhelloworld --example udp-sink
server_bin=target/release/myhelloworld
sink_bin=target/release/examples/udp-sink

# Server on core 0, wrk and the sink on core 1, when there are two cores.
if [ "$(nproc)" -ge 2 ] && [ "${BENCH_PIN:-1}" = 1 ]; then
  pin_server=(taskset -c 0)
  pin_load=(taskset -c 1)
  pinning="server on core 0, wrk and sink on core 1"
else
  pin_server=()
  pin_load=()
  pinning="nothing pinned"
fi

work=$(mktemp -d)
cleanup() {
  # Whatever is still running from this script.
  jobs -p | xargs -r kill 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_udp_port() {
  python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# cpu_ticks PID: utime + stime of the process, in clock ticks.
cpu_ticks() {
  awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# wait_for FILE PATTERN: bounded wait for a line in a log.
wait_for() {
  for _ in $(seq 100); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "timed out waiting for '$2' in $1" >&2
  return 1
}

# to_ms VALUE: wrk's latency ("523.00us", "1.20ms", "1.01s") in milliseconds.
to_ms() {
  awk -v v="$1" 'BEGIN {
    n = v + 0
    if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000
    printf "%.3f", n }'
}

# run NAME ENV_ASSIGNMENTS -- WRK_HEADER_ARGS...: one measured run; appends a result line
# "NAME rps p50 p99 cpu_us_per_req hwm_kb finished received dropped datagrams bytes_per_span"
run() {
  local name=$1 envs=$2
  shift 3
  local port log sink_out pid sink_pid before after requests ticks_per_s
  port=$(free_udp_port)
  log="$work/$name.log"
  sink_out="$work/$name.sink"
  "${pin_load[@]}" "$sink_bin" "$port" >"$sink_out" &
  sink_pid=$!
  # shellcheck disable=SC2086 # ENV_ASSIGNMENTS is a list of words on purpose
  env HOST=127.0.0.1 PORT=0 JAEGER_AGENT_HOST=127.0.0.1 JAEGER_AGENT_PORT="$port" RUST_LOG=info $envs \
    "${pin_server[@]}" "$server_bin" 2>"$log" &
  pid=$!
  wait_for "$log" "listening on"
  local addr
  addr=$(sed -n 's/.*listening on \(http:[^ ]*\) .*/\1/p' "$log")
  before=$(cpu_ticks "$pid")
  "${pin_load[@]}" wrk -t1 -c"$connections" -d"${seconds}s" --timeout 5s --latency "$@" "$addr/gettime" >"$work/$name.wrk"
  after=$(cpu_ticks "$pid")
  local hwm
  hwm=$(awk '/VmHWM/ { print $2 }' "/proc/$pid/status")
  kill -TERM "$pid"
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  wait "$pid" || { echo "$name: server exited with $?" >&2; return 1; }
  printf 'STOP' >"/dev/udp/127.0.0.1/$port"
  wait "$sink_pid"

  requests=$(awk '/requests in/ { print $1 }' "$work/$name.wrk")
  ticks_per_s=$(getconf CLK_TCK)
  local rps p50 p99 cpu admitted dropped datagrams bytes received
  rps=$(awk '/Requests\/sec/ { print $2 }' "$work/$name.wrk")
  p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$work/$name.wrk")")
  p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$work/$name.wrk")")
  cpu=$(awk -v t=$((after - before)) -v hz="$ticks_per_s" -v r="$requests" 'BEGIN { printf "%.1f", t / hz * 1e6 / r }')
  admitted=$(sed -n 's/.*spans admitted=\([0-9]*\).*/\1/p' "$log")
  dropped=$(sed -n 's/.*dropped: queue_full=\([0-9]*\) send_error=\([0-9]*\) agent_unresolved=\([0-9]*\) too_large=\([0-9]*\).*/\1 \2 \3 \4/p' "$log" | awk '{ print $1 + $2 + $3 + $4 }')
  read -r datagrams bytes received <<<"$(sed -n 's/datagrams=\([0-9]*\) bytes=\([0-9]*\) spans=\([0-9]*\).*/\1 \2 \3/p' "$sink_out")"
  # Spans finished = admitted + queue_full (a sampled span refused a queue slot).
  local finished queue_full
  queue_full=$(sed -n 's/.*queue_full=\([0-9]*\).*/\1/p' "$log")
  finished=$(( ${admitted:-0} + ${queue_full:-0} ))
  local per_span="-"
  [ "${received:-0}" -gt 0 ] && per_span=$(awk -v b="$bytes" -v s="$received" 'BEGIN { printf "%.0f", b / s }')
  echo "$name $rps $p50 $p99 $cpu $hwm $finished $received ${dropped:-0} $datagrams $per_span" >>"$work/results"
}

b3=(-H "x-b3-traceid: 463ac35c9f6413ad48485a3953bb6124" -H "x-b3-spanid: a2fb4a1d1a96d312" -H "x-b3-sampled: 1")
deny=(-H "x-b3-traceid: 463ac35c9f6413ad48485a3953bb6124" -H "x-b3-spanid: a2fb4a1d1a96d312" -H "x-b3-sampled: 0")

echo "machine: $(nproc) cores, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), kernel $(uname -r)"
echo "date: $(date -u +%Y-%m-%dT%H:%MZ); $(rustc --version); $(wrk --version 2>&1 | head -n 1 | cut -d' ' -f1-2)"
echo "load: wrk -t1 -c$connections, ${seconds}s per run, $reps repetitions, interleaved; $pinning"
echo

# scenario NAME: one run of it.
scenario() {
  case $1 in
    keepalive) run keepalive "" -- ;;
    b3-sampled) run b3-sampled "" -- "${b3[@]}" ;;
    disabled) run disabled "JAEGER_DISABLED=true" -- "${b3[@]}" ;;
    b3-deny) run b3-deny "" -- "${deny[@]}" ;;
    close) run close "" -- -H "Connection: close" ;;
    *) echo "unknown scenario $1" >&2; return 1 ;;
  esac
}

for rep in $(seq "$reps"); do
  echo "repetition $rep/$reps" >&2
  for s in "${scenarios[@]}"; do scenario "$s"; done
done

# Median with min-max of column $2 for scenario $1.
stat() {
  awk -v n="$1" -v c="$2" '$1 == n { print $c }' "$work/results" | sort -g |
    awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%s (%s-%s)", m, v[1], v[NR] }'
}
total() {
  awk -v n="$1" -v c="$2" '$1 == n { s += $c } END { print s + 0 }' "$work/results"
}

printf '%-11s %-26s %-22s %-22s %-22s %-24s %s\n' scenario "requests/s" "p50 ms" "p99 ms" "CPU us/request" "peak RSS KiB" "spans finished/received/dropped, datagrams, bytes/span (totals)"
for s in "${scenarios[@]}"; do
  printf '%-11s %-26s %-22s %-22s %-22s %-24s %s/%s/%s, %s, %s\n' "$s" "$(stat "$s" 2)" "$(stat "$s" 3)" "$(stat "$s" 4)" "$(stat "$s" 5)" "$(stat "$s" 6)" \
    "$(total "$s" 7)" "$(total "$s" 8)" "$(total "$s" 9)" "$(total "$s" 10)" "$(awk -v n="$s" '$1 == n { print $11; exit }' "$work/results")"
done

# Tracing overhead: per repetition, CPU per request of b3-sampled over disabled (adjacent runs).
echo
grep -q '^disabled ' "$work/results" && grep -q '^b3-sampled ' "$work/results" &&
paste <(awk '$1 == "b3-sampled" { print $5 }' "$work/results") <(awk '$1 == "disabled" { print $5 }' "$work/results") |
  awk '{ printf "%.3f\n", $1 / $2 }' | sort -g |
  awk '{ r[NR] = $1 } END {
    m = (NR % 2) ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2
    printf "tracing overhead (CPU per request, b3-sampled / disabled): median %.3fx over %d pairs (%.3f-%.3f)\n", m, NR, r[1], r[NR] }'

if [ "$soak" -gt 0 ]; then
  echo
  echo "soak: ${soak}s keep-alive with B3 headers, RSS every 5 s (KiB):"
  port=$(free_udp_port)
  "${pin_load[@]}" "$sink_bin" "$port" >"$work/soak.sink" &
  sink_pid=$!
  HOST=127.0.0.1 PORT=0 JAEGER_AGENT_HOST=127.0.0.1 JAEGER_AGENT_PORT="$port" "${pin_server[@]}" "$server_bin" 2>"$work/soak.log" &
  pid=$!
  wait_for "$work/soak.log" "listening on"
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
