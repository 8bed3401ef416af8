#!/usr/bin/env bash
# Lookup benchmark: GET /api/clip/<id>/info at 64 connections for 10 s (wrk) against a release
# ferry — cache on and cache=none, each on the embedded store and on PostgreSQL, at log level
# warn (no line per request) — plus cache on, embedded, at the default level (info: one log line
# per request, read through a pipe the way a supervisor or log shipper reads it) — and, in the
# same run, against a bare hyper server (examples/bare_hyper.rs) answering a fixed JSON body of
# the same size, over interleaved rounds. Prints requests/s, p50, p99, the ratio to bare hyper,
# the moka hit rate and the log lines ferry dropped, as a markdown table, then the info/warn
# ratio (the cost of the default log output).
#   scripts/bench-lookup.sh [--duration 10] [--connections 64] [--rounds 3]
# Needs wrk (installed with apt-get when missing). Traffic goes to 127.0.0.1 only; every
# process it starts is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=10
CONNS=64
ROUNDS=3
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION=$2; shift 2 ;;
    --connections) CONNS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    *) echo "usage: $0 [--duration S] [--connections N] [--rounds R]" >&2; exit 2 ;;
  esac
done
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
cargo build --release --quiet --bin ferry --example bare_hyper
BIN=target/release/ferry
BARE=target/release/examples/bare_hyper
PG_SERVER=${FERRY_BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
TMP=$(mktemp -d /tmp/ferry-lookup-bench.XXXXXX)
PIDS=()
DBS=()
FPORTS=()
FPIDS=()
RSS_START=()
cleanup() {
  # `|| true`: under set -e a failing last command of an && list would end the trap early.
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && { kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; } || true; done
  for d in "${DBS[@]:-}"; do
    [ -n "$d" ] && { psql "$PG_SERVER" -qc "DROP DATABASE IF EXISTS $d WITH (FORCE)" >/dev/null 2>&1 || true; }
  done
  rm -rf "$TMP"
}
trap cleanup EXIT

rss_mib() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() { for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$1$2" >/dev/null && return 0; sleep 0.1; done; echo "no answer on $1" >&2; exit 1; }

# wrk output → "rps p50_ms p99_ms non2xx"
run_wrk() {
  local out
  out=$(wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency "$1")
  python3 - "$out" <<'PY'
import re, sys
out = sys.argv[1]
def ms(v):
    n, unit = re.match(r"([\d.]+)(us|ms|s)", v).groups()
    return float(n) * {"us": 0.001, "ms": 1, "s": 1000}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
p50 = ms(re.search(r"\s50%\s+(\S+)", out).group(1))
p99 = ms(re.search(r"\s99%\s+(\S+)", out).group(1))
bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
print(f"{rps:.0f} {p50:.2f} {p99:.2f} {bad.group(1) if bad else 0}")
PY
}

# start_ferry <name> <cache> <store> <log level> → sets PORT, URL (the info route of a fresh clip)
start_ferry() {
  local name=$1 cache=$2 store=$3 level=$4
  PORT=$(free_port)
  local env=(FERRY_DATA_DIR="$TMP/$name" FERRY_BIND="127.0.0.1:$PORT" FERRY_RATE_LIMITS=off FERRY_CACHE="$cache" FERRY_LOG__LEVEL="$level")
  if [ "$store" = postgres ]; then
    local db="ferry_lookup_bench_$$_${name//-/_}"
    psql "$PG_SERVER" -qc "CREATE DATABASE $db" >/dev/null
    DBS+=("$db")
    env+=(FERRY_DATABASE_URL="${PG_SERVER%/*}/$db")
  fi
  if [ "$level" = warn ]; then
    env -u DATABASE_URL "${env[@]}" "$BIN" >/dev/null 2>&1 &
  else
    # Its log goes to a reader, as in production; cat ends at end of file when ferry stops.
    env -u DATABASE_URL "${env[@]}" "$BIN" 2>/dev/null > >(cat >/dev/null) &
  fi
  PIDS+=($!)
  wait_up "$PORT" /health
  local link
  link=$(curl -s -T /etc/hostname "http://127.0.0.1:$PORT/api/clips/bench.txt")
  local id
  id=$(echo "$link" | cut -d/ -f5)
  URL="http://127.0.0.1:$PORT/api/clip/$id/info"
  BODY_BYTES=$(curl -s "$URL" | wc -c)
}

dropped_lines() {
  curl -s "http://127.0.0.1:$1/metrics" | awk '/^ferry_log_lines_dropped_total / {printf "%d", $2; found=1} END {if (!found) printf "?"}'
}

hit_rate() {
  curl -s "http://127.0.0.1:$1/metrics" | python3 -c '
import re, sys
t = sys.stdin.read()
def v(res):
    m = re.search(r"ferry_cache_lookups_total\{level=\"l1\",result=\"" + res + r"\"\} (\d+)", t)
    return int(m.group(1)) if m else 0
h, m = v("hit"), v("miss")
print(f"{h / (h + m):.4f}" if h + m else "n/a")'
}

# Every target runs at once (idle ones cost nothing); each round drives every target in turn,
# so the machine's drift over the run touches all of them alike. A target's figure is its
# median over the rounds; its ratio is the median of its per-round ratios to the bare server
# driven in the same round.
NAMES=()
URLS=()
# The info target runs next to its warn twin in every round, so their ratio compares like with
# like.
for spec in "memory embedded warn" "memory embedded info" "none embedded warn" "memory postgres warn" "none postgres warn"; do
  set -- $spec
  start_ferry "$1-$2-$3" "$1" "$2" "$3"
  NAMES+=("$1-$2-$3")
  URLS+=("$URL")
  FPORTS+=("$PORT")
  FPIDS+=("${PIDS[-1]}")
  RSS_START+=("$(rss_mib "${PIDS[-1]}")")
done
BPORT=$(free_port)
"$BARE" "$BPORT" "$BODY_BYTES" >/dev/null 2>&1 &
PIDS+=($!)
wait_up "$BPORT" /
NAMES+=("bare")
URLS+=("http://127.0.0.1:$BPORT/")

RESULTS="$TMP/results"
: >"$RESULTS"
for round in $(seq 1 "$ROUNDS"); do
  for i in "${!NAMES[@]}"; do
    read -r rps p50 p99 bad < <(run_wrk "${URLS[$i]}")
    echo "$round ${NAMES[$i]} $rps $p50 $p99 $bad" >>"$RESULTS"
    echo "round $round ${NAMES[$i]}: $rps req/s" >&2
  done
done
RATES="$TMP/rates"
: >"$RATES"
for i in "${!FPORTS[@]}"; do
  rate=$([[ "${NAMES[$i]}" == memory-* ]] && hit_rate "${FPORTS[$i]}" || echo "-")
  echo "${NAMES[$i]} $rate ${RSS_START[$i]} $(rss_mib "${FPIDS[$i]}") $(dropped_lines "${FPORTS[$i]}")" >>"$RATES"
done

echo
echo "Lookup: GET /api/clip/<id>/info, ${CONNS} connections, ${DURATION} s per run, wrk -t2 (same 2-core machine), body ${BODY_BYTES} B, ${ROUNDS} interleaved rounds"
echo
python3 - "$RESULTS" "$RATES" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
rates = {l.split()[0]: l.split()[1:] for l in open(sys.argv[2])}
bare = {r[0]: float(r[2]) for r in rows if r[1] == "bare"}
names = list(dict.fromkeys(r[1] for r in rows))
print("| target | requests/s (median) | p50 ms | p99 ms | non-2xx | vs bare hyper (median, min–max) | moka hit rate | RSS MiB before → after | log lines dropped |")
print("|---|---|---|---|---|---|---|---|---|")
for name in names:
    mine = [r for r in rows if r[1] == name]
    rps = statistics.median(float(r[2]) for r in mine)
    p50 = statistics.median(float(r[3]) for r in mine)
    p99 = statistics.median(float(r[4]) for r in mine)
    bad = sum(int(r[5]) for r in mine)
    ratios = [float(r[2]) / bare[r[0]] for r in mine]
    if name == "bare":
        label = "bare hyper (fixed JSON)"
    else:
        cache, store, level = name.split("-")
        label = f"ferry cache={cache} store={store} log={level}"
    spread = f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})"
    rate, before, after, dropped = rates.get(name, ["", "", "", ""])
    rss = f"{before} → {after}" if before else ""
    print(f"| {label} | {rps:.0f} | {p50:.2f} | {p99:.2f} | {bad} | {spread} | {rate.replace('-', '')} | {rss} | {dropped} |")
# The default log level's cost: info against warn, cache on, embedded, per round.
rps = {(r[0], r[1]): float(r[2]) for r in rows}
rounds = sorted({r[0] for r in rows}, key=int)
ratios = [rps[(n, "memory-embedded-info")] / rps[(n, "memory-embedded-warn")] for n in rounds]
print()
print(
    f"log=info / log=warn (cache=memory store=embedded): {statistics.median(ratios):.3f} median "
    f"({min(ratios):.3f}–{max(ratios):.3f}; per round: {', '.join(f'{x:.3f}' for x in ratios)})"
)
PY
