#!/usr/bin/env bash
# Upload/download benchmark for ferry. It starts its own ferry on 127.0.0.1 (a free port, a
# fresh temp data dir, FERRY_LOG__LEVEL=warn, FERRY_RATE_LIMITS=off; with --store postgres a
# fresh database ferry_bench_<pid> on ${FERRY_BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres},
# dropped at the end), writes a random file of N MiB from /dev/urandom, uploads it through the
# three-step API (initiate, P parallel raw chunk senders, complete), downloads it back with
# POST /api/file/<clipId>, and checks the SHA-256 and size both ways (scripts/bench_upload.py
# does the HTTP work). It prints upload MiB/s (first chunk sent -> complete answered; the
# complete/assembly time is shown too), download MiB/s, the server's peak VmRSS growth over its
# baseline (sampled from /proc/PID/status every ~50 ms during upload + complete + download) and
# its VmHWM, and, measured in the same run on the same file system, what dd gets writing
# (conv=fdatasync) and reading (iflag=direct, else after drop_caches, else from the page cache,
# which the report says) a file of the same size, with the ratios ferry/dd.
# MB/s in the output means MiB/s (2^20 bytes per second). The last line is machine-readable:
#   RESULT store=... size_mib=... parallel=... upload_mbps=... ... sha_ok=1 status=ok
#
# Usage: scripts/bench-upload.sh [--size-mib N] [--parallel P] [--store embedded|postgres]
#                                [--bin PATH] [--keep]
#   defaults: N=100, P=4, embedded, --bin target/release/ferry (built with cargo build --release
#   if missing). --keep keeps the temp dir (data, ferry.log, the random file). The temp dir is
#   made under ${TMPDIR:-/tmp}; that is the disk measured. Other FERRY_* variables in the
#   environment reach ferry (e.g. FERRY_LIMITS__CHUNK_SIZE=8MiB to try another chunk size).
# Exit status: 0 ok; 1 any HTTP call, check or setup step failed; 2 bad arguments.
# Only 127.0.0.1 is contacted; every wait is bounded (health: 60 s).

# shellcheck disable=SC2317 # cleanup and the functions it calls run from the EXIT trap
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)

SIZE_MIB=100
PARALLEL=4
STORE=embedded
BIN=""
KEEP=0

usage() {
  sed -n 's/^# \{0,1\}//; /^Usage:/,/^Exit status/p' "${BASH_SOURCE[0]}"
}
die() { echo "bench-upload: $*" >&2; exit 1; }
bad_arg() { echo "bench-upload: $*" >&2; usage >&2; exit 2; }

while (($# > 0)); do
  opt=$1
  if [[ $opt == --*=* ]]; then
    val=${opt#*=}
    opt=${opt%%=*}
    nshift=1
  else
    val=${2-}
    nshift=2
  fi
  case $opt in
    --size-mib | --parallel | --store | --bin)
      ((nshift == 1 || $# >= 2)) || bad_arg "$opt needs a value"
      case $opt in
        --size-mib) SIZE_MIB=$val ;;
        --parallel) PARALLEL=$val ;;
        --store) STORE=$val ;;
        --bin) BIN=$val ;;
      esac
      shift "$nshift"
      ;;
    --keep) [[ $1 == --keep ]] || bad_arg "--keep takes no value"; KEEP=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) bad_arg "unknown argument: $1" ;;
  esac
done

[[ $SIZE_MIB =~ ^[1-9][0-9]{0,6}$ ]] || bad_arg "--size-mib must be a whole number of MiB, 1..9999999"
if ! [[ $PARALLEL =~ ^[1-9][0-9]{0,2}$ ]] || ((PARALLEL > 256)); then bad_arg "--parallel must be 1..256"; fi
[[ $STORE == embedded || $STORE == postgres ]] || bad_arg "--store must be embedded or postgres"

for tool in python3 dd head sha256sum df awk; do
  command -v "$tool" >/dev/null || die "$tool is required"
done
[[ $STORE == postgres ]] && { command -v psql >/dev/null || die "psql is required for --store postgres"; }
[[ -f $SCRIPT_DIR/bench_upload.py ]] || die "missing $SCRIPT_DIR/bench_upload.py"
# bounded SECONDS CMD...: run CMD, killed after SECONDS when coreutils timeout exists (status 124).
bounded() {
  local secs=$1
  shift
  if command -v timeout >/dev/null; then
    timeout --signal=TERM --kill-after=10 "$secs" "$@"
  else
    "$@"
  fi
}

# --- the binary -------------------------------------------------------------------------------
# shellcheck source=lib/release_bin.sh
source "$SCRIPT_DIR/lib/release_bin.sh"
resolve_bin bench-upload

# --- temp dir and cleanup ---------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ferry-bench.XXXXXX")
LOG=$WORK/ferry.log
FERRY_PID=""
DB_NAME=""
DB_CREATED=0
ADMIN_URL=${FERRY_BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
export PGCONNECT_TIMEOUT=10

# Is PID still running (present and not a zombie)?
alive() {
  local st
  [[ -r /proc/$1/stat ]] || return 1
  read -r _ _ st _ </proc/"$1"/stat 2>/dev/null || return 1
  [[ $st != Z && $st != X ]]
}

# Stop the ferry this script started (and only it): SIGTERM, up to 15 s, then SIGKILL.
stop_ferry() {
  [[ -n $FERRY_PID ]] || return 0
  local pid=$FERRY_PID i
  FERRY_PID=""
  if alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then
      echo "bench-upload: ferry (PID $pid) ignored SIGTERM for 15 s; SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true
}

psql_admin() {
  bounded 60 psql "$ADMIN_URL" -v ON_ERROR_STOP=1 -Atq "$@"
}

drop_db() {
  ((DB_CREATED)) || return 0
  DB_CREATED=0
  psql_admin -c "DROP DATABASE IF EXISTS \"$DB_NAME\" WITH (FORCE)" >/dev/null 2>&1 ||
    psql_admin -c "DROP DATABASE IF EXISTS \"$DB_NAME\"" >/dev/null ||
    echo "bench-upload: could not drop database $DB_NAME; drop it by hand" >&2
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_ferry
  drop_db
  if ((KEEP)); then
    echo "bench-upload: kept $WORK" >&2
  else
    rm -rf -- "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

show_log() {
  if [[ -s $LOG ]]; then
    echo "--- last lines of ferry.log ---" >&2
    tail -n 30 "$LOG" >&2
    echo "---" >&2
  fi
}

# --- disk -------------------------------------------------------------------------------------
SIZE_BYTES=$((SIZE_MIB * 1048576))
avail_kib=$(df -Pk "$WORK" | awk 'NR == 2 { print $4 }')
need_kib=$(((3 * SIZE_MIB + 64) * 1024)) # the file, its chunks, the assembled blob
((avail_kib >= need_kib)) ||
  die "$WORK has $((avail_kib / 1024)) MiB free; this run needs about $((need_kib / 1024)) MiB"
FS_TYPE=$(df -PT "$WORK" 2>/dev/null | awk 'NR == 2 { print $2 }')
FS_TYPE=${FS_TYPE:-unknown}

# --- dd baseline on the same file system ------------------------------------------------------
# Seconds dd reported ("... copied, 0.123 s, ..."), from its stderr in $1.
dd_seconds() {
  awk '{ for (i = 1; i < NF; i++) if ($i == "copied,") s = $(i + 1) } END { if (s == "") exit 1; print s }' "$1"
}
# MiB/s for $SIZE_MIB MiB in $1 seconds; "na" when unusable.
mibps() {
  awk -v n="$SIZE_MIB" -v s="$1" 'BEGIN { if (s == "na" || s + 0 <= 0) print "na"; else printf "%.2f", n / s }'
}
ratio() {
  awk -v a="$1" -v b="$2" 'BEGIN { if (a == "na" || b == "na" || b + 0 == 0) print "na"; else printf "%.3f", a / b }'
}

DD_FILE=$WORK/dd.bin
echo "dd: writing and reading $SIZE_MIB MiB in $WORK ($FS_TYPE) ..."
DD_WRITE_METHOD=fdatasync
if ! LC_ALL=C dd if=/dev/zero of="$DD_FILE" bs=1M count="$SIZE_MIB" conv=fdatasync 2>"$WORK/dd-write.err"; then
  DD_WRITE_METHOD=buffered
  LC_ALL=C dd if=/dev/zero of="$DD_FILE" bs=1M count="$SIZE_MIB" 2>"$WORK/dd-write.err" ||
    die "dd write failed: $(tail -n 1 "$WORK/dd-write.err")"
fi
DD_WRITE_S=$(dd_seconds "$WORK/dd-write.err") || DD_WRITE_S=na
DD_READ_METHOD=direct
if ! LC_ALL=C dd if="$DD_FILE" of=/dev/null bs=1M iflag=direct 2>"$WORK/dd-read.err"; then
  if sync && { echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
    DD_READ_METHOD=drop_caches
  else
    DD_READ_METHOD=cached # page cache, not the disk: the report says so
  fi
  LC_ALL=C dd if="$DD_FILE" of=/dev/null bs=1M 2>"$WORK/dd-read.err" ||
    die "dd read failed: $(tail -n 1 "$WORK/dd-read.err")"
fi
DD_READ_S=$(dd_seconds "$WORK/dd-read.err") || DD_READ_S=na
rm -f -- "$DD_FILE"
DD_WRITE_MBPS=$(mibps "$DD_WRITE_S")
DD_READ_MBPS=$(mibps "$DD_READ_S")

# --- the random file --------------------------------------------------------------------------
FILE=$WORK/bench.bin
echo "file: $SIZE_MIB MiB from /dev/urandom ..."
head -c "$SIZE_BYTES" /dev/urandom >"$FILE"
[[ $(stat -c %s "$FILE") == "$SIZE_BYTES" ]] || die "could not write $SIZE_BYTES bytes to $FILE"
SHA=$(sha256sum "$FILE" | awk '{ print $1 }')

# --- PostgreSQL -------------------------------------------------------------------------------
DB_URL=""
if [[ $STORE == postgres ]]; then
  DB_NAME=ferry_bench_$$
  DB_URL=$(python3 "$SCRIPT_DIR/lib/bench_db_url.py" "$ADMIN_URL" "$DB_NAME") || die "bad FERRY_BENCH_DATABASE_URL"
  psql_admin -c "CREATE DATABASE \"$DB_NAME\"" || die "could not create database $DB_NAME on $ADMIN_URL"
  DB_CREATED=1
fi

# --- start ferry ------------------------------------------------------------------------------
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
mkdir -p "$WORK/data"

FERRY_ENV=(
  "FERRY_BIND=127.0.0.1:$PORT"
  "FERRY_DATA_DIR=$WORK/data"
  "FERRY_LOG__LEVEL=warn"
  "FERRY_SERVER__SHUTDOWN_GRACE=5s"
)
[[ -n $DB_URL ]] && FERRY_ENV+=("FERRY_DATABASE_URL=$DB_URL")
# The default maximum upload is 1 GiB; raise it for larger runs.
((SIZE_MIB > 1024)) && FERRY_ENV+=("FERRY_LIMITS__MAX_UPLOAD_SIZE=${SIZE_MIB}MiB")

start_ferry() { # $1 = 1 to pass FERRY_RATE_LIMITS=off
  local extra=()
  (($1)) && extra=("FERRY_RATE_LIMITS=off")
  # env execs ferry, so $! is ferry's own PID. RUST_LOG would override the log level, and an
  # inherited database URL would replace the embedded store.
  env -u DATABASE_URL -u FERRY_DATABASE_URL -u RUST_LOG "${FERRY_ENV[@]}" "${extra[@]}" \
    "$BIN" serve >>"$LOG" 2>&1 </dev/null &
  FERRY_PID=$!
}

probe_health() {
  python3 - "$PORT" 2>/dev/null <<'PY'
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=2)
try:
    c.request("GET", "/health")
    r = c.getresponse()
    r.read()
    sys.exit(0 if r.status == 200 else 1)
except Exception:
    sys.exit(1)
PY
}

# 0 healthy; 1 not healthy within 60 s; 2 ferry exited (its status in FERRY_RC).
FERRY_RC=""
wait_health() {
  local deadline=$((SECONDS + 60)) i pid
  for ((i = 0; i < 400; i++)); do
    if ! alive "$FERRY_PID"; then
      pid=$FERRY_PID
      FERRY_PID=""
      wait "$pid" && FERRY_RC=0 || FERRY_RC=$?
      return 2
    fi
    probe_health && return 0
    ((SECONDS < deadline)) || return 1
    sleep 0.15
  done
  return 1
}

echo "ferry: $BIN on 127.0.0.1:$PORT, store=$STORE, data in $WORK/data ..."
start_ferry 1
health=0
wait_health || health=$?
if ((health == 2)) && [[ $FERRY_RC == 2 ]] && grep -qi 'rate_limits' "$LOG"; then
  # This build has no rate_limits setting (ferry rejects unknown keys): run without it.
  echo "bench-upload: warning: this ferry does not accept FERRY_RATE_LIMITS=off; running without it" >&2
  RATE_LIMITS_OFF=0
  start_ferry 0
  health=0
  wait_health || health=$?
else
  RATE_LIMITS_OFF=1
fi
case $health in
  0) ;;
  1) show_log; die "ferry did not answer GET /health with 200 within 60 s" ;;
  *) show_log; die "ferry exited with status $FERRY_RC before it was healthy" ;;
esac

# --- upload, complete, download (with RSS sampling) -------------------------------------------
RESULTS=$WORK/results.txt
echo "bench: upload with $PARALLEL parallel chunk senders, complete, download ..."
PY_TIMEOUT=$((600 + SIZE_MIB * 3)) # hard bound on the whole HTTP phase
py_rc=0
bounded "$PY_TIMEOUT" python3 "$SCRIPT_DIR/bench_upload.py" \
  --port "$PORT" --file "$FILE" --sha256 "$SHA" --parallel "$PARALLEL" \
  --pid "$FERRY_PID" --max-seconds "$PY_TIMEOUT" --results "$RESULTS" || py_rc=$?
if ((py_rc == 124)); then
  echo "bench-upload: the HTTP phase took longer than $PY_TIMEOUT s" >&2
fi
if ! alive "$FERRY_PID"; then
  echo "bench-upload: ferry is no longer running" >&2
  ((py_rc != 0)) || py_rc=1
fi
((py_rc == 0)) || show_log

# --- report -----------------------------------------------------------------------------------
declare -A R=()
if [[ -f $RESULTS ]]; then
  while IFS='=' read -r k v; do
    [[ $k =~ ^[a-z0-9_]+$ && $v =~ ^[A-Za-z0-9_.+-]*$ ]] && R[$k]=$v
  done <"$RESULTS"
fi
get() { local v=${R[$1]:-na}; echo "${v:-na}"; }
fmt() { awk -v v="$1" -v d="${2:-2}" 'BEGIN { if (v == "na") print "na"; else printf "%.*f", d, v }'; }

UP=$(fmt "$(get upload_mbps)")
DOWN=$(fmt "$(get download_mbps)")
COMPLETE_S=$(fmt "$(get complete_s)" 3)
CHUNKS_S=$(fmt "$(get chunks_s)" 3)
UPLOAD_S=$(fmt "$(get upload_s)" 3)
DOWNLOAD_S=$(fmt "$(get download_s)" 3)
RSS_BASE=$(fmt "$(get rss_baseline_mib)" 1)
RSS_GROWTH=$(fmt "$(get rss_peak_growth_mib)" 1)
RSS_UP=$(fmt "$(get rss_upload_growth_mib)" 1)
RSS_COMPLETE=$(fmt "$(get rss_complete_growth_mib)" 1)
RSS_DOWN=$(fmt "$(get rss_download_growth_mib)" 1)
HWM=$(fmt "$(get hwm_mib)" 1)
SHA_OK=$(get sha_ok)
[[ $SHA_OK == 1 ]] || SHA_OK=0
UP_VS_DD=$(ratio "$UP" "$DD_WRITE_MBPS")
DOWN_VS_DD=$(ratio "$DOWN" "$DD_READ_MBPS")
CHUNK=$(get chunk_size)
CHUNK_MIB=$(awk -v c="$CHUNK" 'BEGIN { if (c == "na") print "na"; else printf "%g", c / 1048576 }')
STATUS=ok
((py_rc == 0 && SHA_OK == 1)) || STATUS=fail

cat <<EOF

ferry upload benchmark  (all speeds in MiB/s = 2^20 bytes per second)
  run       : store=$STORE size=$SIZE_MIB MiB parallel=$PARALLEL chunk=$CHUNK_MIB MiB x $(get chunks) chunks; disk: $WORK ($FS_TYPE)
  upload    : $UP MiB/s   ($UPLOAD_S s from first chunk to complete: chunks $CHUNKS_S s + complete/assembly $COMPLETE_S s)
  download  : $DOWN MiB/s   ($DOWNLOAD_S s, POST /api/file, hashed in 1 MiB reads)
  dd write  : $DD_WRITE_MBPS MiB/s   ($DD_WRITE_METHOD)
  dd read   : $DD_READ_MBPS MiB/s   ($DD_READ_METHOD$([[ $DD_READ_METHOD == cached ]] && echo ": O_DIRECT and drop_caches unavailable, this is the page cache, not the disk"))
  ferry/dd  : upload/dd-write $UP_VS_DD, download/dd-read $DOWN_VS_DD
  ferry RSS : baseline $RSS_BASE MiB; peak growth $RSS_GROWTH MiB (upload $RSS_UP, complete $RSS_COMPLETE, download $RSS_DOWN); VmHWM $HWM MiB; $(get rss_samples) samples
  SHA-256   : $([[ $SHA_OK == 1 ]] && echo "ok (complete and download match the local file)" || echo "NOT verified")
  notes     : client and server share this machine's CPUs; rate limits $([[ $RATE_LIMITS_OFF == 1 ]] && echo "off" || echo "setting not accepted by this build")
EOF
echo "RESULT store=$STORE size_mib=$SIZE_MIB parallel=$PARALLEL chunk_mib=$CHUNK_MIB units=MiB/s" \
  "upload_mbps=$UP chunks_s=$CHUNKS_S complete_s=$COMPLETE_S download_mbps=$DOWN" \
  "dd_write_mbps=$DD_WRITE_MBPS dd_read_mbps=$DD_READ_MBPS dd_read_method=$DD_READ_METHOD" \
  "upload_vs_dd=$UP_VS_DD download_vs_dd=$DOWN_VS_DD rss_baseline_mib=$RSS_BASE" \
  "rss_peak_growth_mib=$RSS_GROWTH hwm_mib=$HWM sha_ok=$SHA_OK status=$STATUS"

[[ $STATUS == ok ]] || exit 1
exit 0
