#!/usr/bin/env bash
# Job queue benchmark: a release ferry drains N no-op jobs (default 100 000) with 2 and with 8
# workers, on the embedded store and on PostgreSQL, while a fixed-rate client looks up one clip
# (GET /api/clip/<id>/info, 1000 req/s). Per configuration it prints jobs/s (N over first
# start to last finish, read from the store), the p99 of one claim statement (ferry's
# ferry_job_claim_seconds), and the lookups' p50/p99 idle before, during the drain, and idle
# after (the two idle runs show the noise).
#   scripts/bench-jobs.sh [--jobs N] [--rate R] [--stores "embedded postgres"] [--workers "2 8"]
# The jobs are enqueued due in a day by examples/bench_jobs.rs, then made due at once, so the
# drain is measured from its first claim whatever the enqueueing took. PostgreSQL is
# FERRY_BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres; a database of
# its own is made and dropped). Traffic goes to 127.0.0.1 only; every process it starts is
# stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
JOBS=100000
RATE=1000
STORES="embedded postgres"
WORKERS="2 8"
PROBE_SECONDS=8
while [ $# -gt 0 ]; do
  case "$1" in
    --jobs) JOBS=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --stores) STORES=$2; shift 2 ;;
    --workers) WORKERS=$2; shift 2 ;;
    *) echo "usage: $0 [--jobs N] [--rate R] [--stores LIST] [--workers LIST]" >&2; exit 2 ;;
  esac
done
cargo build --release --quiet --bin ferry --example bench_jobs
BIN=$ROOT/target/release/ferry
TOOL=$ROOT/target/release/examples/bench_jobs
PG_SERVER=${FERRY_BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
TMP=$(mktemp -d /tmp/ferry-jobs-bench.XXXXXX)
PID=
DB=
cleanup() {
  if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  if [ -n "$DB" ]; then psql "$PG_SERVER" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
json() { python3 -c "import json,sys; print(json.loads(sys.argv[1])$2)" "$1"; }

echo "| store | workers | jobs/s | drain | claim p99 | lookup p50/p99 idle before | during drain | idle after | lookup errors | RSS before → after |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for store in $STORES; do
  for workers in $WORKERS; do
    dir=$TMP/$store-$workers
    mkdir -p "$dir"
    env=(FERRY_DATA_DIR="$dir" FERRY_RATE_LIMITS=off FERRY_JOBS__CONCURRENCY="$workers" FERRY_JOBS__POLL_INTERVAL=1s)
    if [ "$store" = postgres ]; then
      DB=ferry_jobs_bench_$$
      psql "$PG_SERVER" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
      psql "$PG_SERVER" -qc "CREATE DATABASE $DB" >/dev/null
      env+=(FERRY_DATABASE_URL="$(python3 scripts/lib/bench_db_url.py "$PG_SERVER" "$DB")")
    fi
    port=$(free_port)
    env "${env[@]}" FERRY_BIND="127.0.0.1:$port" "$BIN" >"$dir/ferry.log" 2>&1 &
    PID=$!
    for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
    clip=$(curl -sf -H 'accept: application/json' -T README.md "http://127.0.0.1:$port/api/clips/readme.md" |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["clipId"])')
    url="http://127.0.0.1:$port/api/clip/$clip/info"
    rss() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$PID/status"; }
    rss_before=$(rss)
    before=$("$TOOL" probe "$url" "$RATE" "$PROBE_SECONDS")
    env "${env[@]}" "$TOOL" enqueue "$JOBS" 2>>"$dir/tool.log"
    env "${env[@]}" "$TOOL" release 2>>"$dir/tool.log"
    during=$("$TOOL" probe "$url" "$RATE" "$PROBE_SECONDS")
    while :; do
      span=$(env "${env[@]}" "$TOOL" span)
      [ "$(json "$span" "['done']")" -ge "$JOBS" ] && break
      sleep 1
    done
    after=$("$TOOL" probe "$url" "$RATE" "$PROBE_SECONDS")
    rss_after=$(rss)
    claim_p99=$(curl -sf "http://127.0.0.1:$port/metrics" | awk '/^ferry_job_claim_seconds\{quantile="0.99"\}/ {printf "%.2f ms", $2*1000}')
    read -r rate drain < <(python3 -c "
import json,sys
s=json.loads(sys.argv[1]); n=int(sys.argv[2])
secs=(s['lastFinish']-s['firstStart'])/1000
print(f'{n/secs:.0f} {secs:.1f}s')" "$span" "$JOBS")
    cell() { python3 -c "import json,sys; v=json.loads(sys.argv[1]); print(f\"{v['p50Ms']:.2f} / {v['p99Ms']:.2f} ms\")" "$1"; }
    errors=$(python3 -c "import json,sys; print(sum(json.loads(a)['errors'] for a in sys.argv[1:]))" "$before" "$during" "$after")
    echo "| $store | $workers | $rate | $drain | $claim_p99 | $(cell "$before") | $(cell "$during") | $(cell "$after") | $errors | $rss_before → $rss_after MiB |"
    kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
    if [ -n "$DB" ]; then psql "$PG_SERVER" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null; DB=; fi
  done
done
