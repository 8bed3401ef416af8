#!/usr/bin/env bash
# Upload/download benchmark for ferry against a ceiling, in the same run: a bare hyper server
# on local files (--blob fs, the default), or the S3 store itself (--blob s3: SeaweedFS, the
# same bytes PUT and GET straight to it by the same client).
#
# Once per run: it writes a random file of N MiB from /dev/urandom (and its SHA-256) under a
# fresh temp dir, and measures what dd gets on that file system writing (conv=fdatasync) and
# reading (iflag=direct, else after drop_caches, else from the page cache, which the report
# says) a file of the same size; that takes about two passes over N MiB.
# Then R rounds (--rounds, default 3), each with two runs in this order, each run on a free
# 127.0.0.1 port with a fresh data dir that is deleted when the run ends:
#   1. ferry: a release ferry (FERRY_LOG__LEVEL=warn, FERRY_RATE_LIMITS=off; with
#      --store postgres a fresh database ferry_bench_<pid>_<round> on
#      ${FERRY_BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}, dropped after
#      the run);
#   2. ceiling: examples/bare_hyper.rs in --files mode, a bare hyper server doing the least for
#      the same traffic: chunk bodies streamed to one file each and fdatasynced, complete = one
#      directory fsync (no hashing, no database), download = the chunk files streamed back.
#      It is given the chunk size ferry answered in round 1, so both get the same requests.
# Both runs use the same client, scripts/bench_upload.py, with the same file and parallelism:
# initiate, P parallel raw chunk senders, complete, then POST /api/file/<clipId> downloads it
# back, checking size and SHA-256 of the downloaded bytes (and the sha256 in ferry's complete
# reply; the ceiling sends none: --no-server-sha). Each run records upload MiB/s (first chunk
# sent -> complete answered), the complete time, download MiB/s and the server's peak VmRSS
# growth over its baseline (sampled from /proc/PID/status every ~50 ms during upload +
# complete + download) and VmHWM.
# The report: per-round figures, then for upload MiB/s, download MiB/s and complete seconds
# the median over rounds for ferry and for the ceiling, with the ratio ferry/ceiling of the
# medians for the speeds; ferry's peak RSS growth median and max (the ceiling's median too);
# ferry/dd ratios. MB/s in the output means MiB/s (2^20 bytes per second). The last line is
# machine-readable:
#   RESULT store=... size_mib=... parallel=... rounds=... upload_mbps=... ceiling_upload_mbps=...
#          upload_ratio=... download_mbps=... ceiling_download_mbps=... download_ratio=...
#          complete_s=... ceiling_complete_s=... rss_growth_mib=... rss_growth_max_mib=...
#          ... sha_ok=1 status=ok
#   (ferry figures are medians over rounds; rss_peak_growth_mib is the max, as rss_growth_max_mib.)
#
# --blob s3: ferry stores its bytes in an S3 bucket (FERRY_BLOB=s3, FERRY_S3__* pointing at
# --s3-endpoint/--s3-bucket, key prefix bench-upload-<pid>/ferry-<round>/), and the ceiling is
# SeaweedFS itself, driven by the same client (bench_upload.py --s3-direct, SigV4 signed by
# scripts/lib/s3lite.py, prefix bench-upload-<pid>/direct-<round>/), with the same file, chunk
# size (ferry's, from round 1) and parallelism:
#   upload   = P parallel PutObject of the chunk bodies, streamed from the file with sendfile;
#   complete = what ferry's complete does to the store, least form: CreateMultipartUpload,
#              one UploadPartCopy per chunk (${FERRY_UPLOAD__ASSEMBLY_CONCURRENCY:-4} at once,
#              as ferry), CompleteMultipartUpload, then DeleteObject of every chunk (ferry also
#              deletes them before it answers); its two halves are reported apart;
#   download = one GetObject of the assembled object, which is what ferry's download reads
#              too (GETting the chunks instead would measure a layout ferry does not serve).
# Unless FERRY_LIMITS__CHUNK_SIZE is set, ferry runs with the 8MiB chunks that README
# recommends with S3 (its default is 5MiB); the direct runs follow it. No bare hyper is built
# or run. Ferry's complete is split with its own GET /metrics: ferry_assembly_seconds (chunk
# HEADs + the same assembly) versus the rest (the database commit and the chunk
# deletes). The store is SeaweedFS at --s3-endpoint (default http://127.0.0.1:8333, which must
# already run) with bucket --s3-bucket (default ferry-test) and the credentials in
# AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (default ferry-test / ferry-test-secret); or, with
# --s3-start, a private one that scripts/seaweedfs.sh starts in the temp dir and stops at the
# end. Each run's objects are deleted (and open multipart uploads aborted) after it, untimed,
# and everything under bench-upload-<pid>/ again at exit. When its PID can be found (the
# private one's, else the process listening on the endpoint's port), SeaweedFS's RSS growth
# is sampled too, in the ferry runs and in the direct ones. SeaweedFS frees deleted bytes only
# when it vacuums (every 15 min by default), so each run may leave about 2 x N MiB of garbage
# in its volumes until then. The RESULT line then says blob=s3 ceiling=seaweedfs_direct, and
# carries ceiling_assemble_s, ceiling_chunk_delete_s, server_assembly_s and the store_rss keys.
# In both modes the report also gives the mean time of one chunk request (as the client saw it,
# and ferry's own from its /metrics: chunk_request_ms, server_chunk_request_ms) and ferry's
# store-query time summed over a run (server_store_query_s).
#
# Usage: scripts/bench-upload.sh [--size-mib N] [--parallel P] [--rounds R]
#                                [--store embedded|postgres] [--bin PATH] [--bare PATH] [--keep]
#                                [--blob fs|s3] [--s3-endpoint URL] [--s3-bucket NAME] [--s3-start]
#   defaults: N=100, P=4, R=3, embedded, --bin target/release/ferry (built with cargo build
#   --release if missing), --bare target/release/examples/bare_hyper (built with cargo build
#   --release --example bare_hyper if missing; not with --blob s3), --blob fs, for --blob s3
#   --s3-endpoint http://127.0.0.1:8333 (loopback http:// only), --s3-bucket ferry-test, no
#   --s3-start (see above). --keep keeps the temp dir (logs, per-run
#   results, the random file; the servers' data dirs are still deleted after each run). The
#   temp dir is made under ${TMPDIR:-/tmp}; that is the disk measured. Other FERRY_* variables
#   in the environment reach ferry (e.g. FERRY_LIMITS__CHUNK_SIZE=8MiB to try another chunk
#   size; the ceiling follows it).
# Exit status: 0 ok; 1 any HTTP call, check or setup step failed (the table then covers the
# rounds that finished); 2 bad arguments.
# Only 127.0.0.1 is contacted; every wait is bounded (health: 60 s; each client run:
# 600 s + 3 s per MiB; stopping a server: 15 s, then SIGKILL; each S3 purge: 600 s).

# shellcheck disable=SC2317 # cleanup and the functions it calls run from the EXIT trap
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)

SIZE_MIB=100
PARALLEL=4
ROUNDS=3
STORE=embedded
BIN=""
BARE=""
KEEP=0
BLOB=fs
S3_ENDPOINT=""
S3_BUCKET=""
S3_START=0

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
    --size-mib | --parallel | --rounds | --store | --bin | --bare | --blob | --s3-endpoint | --s3-bucket)
      ((nshift == 1 || $# >= 2)) || bad_arg "$opt needs a value"
      case $opt in
        --size-mib) SIZE_MIB=$val ;;
        --parallel) PARALLEL=$val ;;
        --rounds) ROUNDS=$val ;;
        --store) STORE=$val ;;
        --bin) BIN=$val ;;
        --bare) BARE=$val ;;
        --blob) BLOB=$val ;;
        --s3-endpoint) S3_ENDPOINT=$val ;;
        --s3-bucket) S3_BUCKET=$val ;;
      esac
      shift "$nshift"
      ;;
    --keep) [[ $1 == --keep ]] || bad_arg "--keep takes no value"; KEEP=1; shift ;;
    --s3-start) [[ $1 == --s3-start ]] || bad_arg "--s3-start takes no value"; S3_START=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) bad_arg "unknown argument: $1" ;;
  esac
done

[[ $SIZE_MIB =~ ^[1-9][0-9]{0,6}$ ]] || bad_arg "--size-mib must be a whole number of MiB, 1..9999999"
if ! [[ $PARALLEL =~ ^[1-9][0-9]{0,2}$ ]] || ((PARALLEL > 256)); then bad_arg "--parallel must be 1..256"; fi
if ! [[ $ROUNDS =~ ^[1-9][0-9]?$ ]] || ((ROUNDS > 50)); then bad_arg "--rounds must be 1..50"; fi
[[ $STORE == embedded || $STORE == postgres ]] || bad_arg "--store must be embedded or postgres"
[[ $BLOB == fs || $BLOB == s3 ]] || bad_arg "--blob must be fs or s3"
if [[ $BLOB == fs ]]; then
  [[ -z $S3_ENDPOINT && -z $S3_BUCKET && $S3_START == 0 ]] || bad_arg "--s3-endpoint, --s3-bucket and --s3-start need --blob s3"
else
  ((S3_START == 0)) || [[ -z $S3_ENDPOINT && -z $S3_BUCKET ]] || bad_arg "--s3-start makes its own endpoint and bucket"
  S3_ENDPOINT=${S3_ENDPOINT:-http://127.0.0.1:8333}
  S3_ENDPOINT=${S3_ENDPOINT%/}
  S3_BUCKET=${S3_BUCKET:-ferry-test}
  [[ $S3_ENDPOINT =~ ^http://(127\.0\.0\.1|localhost)(:[0-9]{1,5})?$ ]] ||
    bad_arg "--s3-endpoint must be http://127.0.0.1:PORT (this benchmark only talks to loopback)"
  [[ $S3_BUCKET =~ ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$ ]] || bad_arg "--s3-bucket must be an S3 bucket name"
  export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-ferry-test}
  export AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-ferry-test-secret}
  # The chunk size README and config/default.toml recommend with S3 (every chunk, the
  # browser's too, stays over S3's 5 MiB part minimum, so complete copies server-side).
  export FERRY_LIMITS__CHUNK_SIZE=${FERRY_LIMITS__CHUNK_SIZE:-8MiB}
fi

for tool in python3 dd head sha256sum df awk; do
  command -v "$tool" >/dev/null || die "$tool is required"
done
[[ $STORE == postgres ]] && { command -v psql >/dev/null || die "psql is required for --store postgres"; }
[[ -f $SCRIPT_DIR/bench_upload.py ]] || die "missing $SCRIPT_DIR/bench_upload.py"
[[ $BLOB == fs || -f $SCRIPT_DIR/lib/s3lite.py ]] || die "missing $SCRIPT_DIR/lib/s3lite.py"
((S3_START == 0)) || [[ -f $SCRIPT_DIR/seaweedfs.sh ]] || die "--s3-start needs $SCRIPT_DIR/seaweedfs.sh"
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

# --- the binaries -----------------------------------------------------------------------------
# shellcheck source=lib/release_bin.sh
source "$SCRIPT_DIR/lib/release_bin.sh"
resolve_bin bench-upload
if [[ $BLOB == s3 ]]; then
  : # the ceiling is the S3 store itself: no bare hyper
elif [[ -z $BARE ]]; then
  BARE=$ROOT/target/release/examples/bare_hyper
  if [[ ! -x $BARE ]]; then
    echo "bench-upload: $BARE missing; running cargo build --release --example bare_hyper" >&2
    (cd "$ROOT" && cargo build --release --example bare_hyper) || die "cargo build --release --example bare_hyper failed"
  fi
fi
if [[ $BLOB == fs ]]; then
  [[ -x $BARE && -f $BARE ]] || die "not an executable file: $BARE"
  BARE=$(cd "$(dirname "$BARE")" && pwd)/$(basename "$BARE")
fi

# --- temp dir and cleanup ---------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ferry-bench.XXXXXX")
FERRY_LOG=$WORK/ferry.log
BARE_LOG=$WORK/bare.log
SERVER_PID="" # the one server (ferry or the ceiling) running now, if any
DB_NAME=""
DB_CREATED=0
ADMIN_URL=${FERRY_BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
export PGCONNECT_TIMEOUT=10
S3_ROOT=bench-upload-$$/ # every object of this run lives under it (--blob s3)
S3_DIR=""                # the private SeaweedFS's dir (--s3-start), once started
STORE_PID=""             # SeaweedFS's PID, when known (to sample its RSS)
S3_READY=0               # the bucket answered: there may be objects to purge at exit

# Is PID still running (present and not a zombie)?
alive() {
  local st
  [[ -r /proc/$1/stat ]] || return 1
  read -r _ _ st _ </proc/"$1"/stat 2>/dev/null || return 1
  [[ $st != Z && $st != X ]]
}

# Stop the server this script started (and only it): SIGTERM, up to 15 s, then SIGKILL.
stop_server() {
  [[ -n $SERVER_PID ]] || return 0
  local pid=$SERVER_PID i
  SERVER_PID=""
  if alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then
      echo "bench-upload: server (PID $pid) ignored SIGTERM for 15 s; SIGKILL" >&2
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

# s3_purge PREFIX: delete every object and open multipart upload under PREFIX (untimed).
s3_purge() {
  bounded 600 python3 "$SCRIPT_DIR/lib/s3lite.py" purge "$S3_ENDPOINT" "$S3_BUCKET" "$1"
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_server
  if ((S3_READY)); then
    s3_purge "$S3_ROOT" >/dev/null || echo "bench-upload: could not purge $S3_ROOT in bucket $S3_BUCKET; delete it by hand" >&2
  fi
  if [[ -n $S3_DIR ]]; then
    bash "$SCRIPT_DIR/seaweedfs.sh" stop "$S3_DIR" || echo "bench-upload: could not stop the SeaweedFS in $S3_DIR" >&2
  fi
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

show_log() { # $1 = log file
  if [[ -s $1 ]]; then
    echo "--- last lines of $(basename "$1") ---" >&2
    tail -n 30 "$1" >&2
    echo "---" >&2
  fi
}

# --- the S3 store (--blob s3) -----------------------------------------------------------------
if [[ $BLOB == s3 ]]; then
  if ((S3_START)); then
    echo "s3: starting a private SeaweedFS with scripts/seaweedfs.sh in $WORK/seaweedfs ..."
    S3_DIR=$WORK/seaweedfs
    exports=$(bounded 180 bash "$SCRIPT_DIR/seaweedfs.sh" start "$S3_DIR") || die "scripts/seaweedfs.sh start failed"
    while IFS= read -r line; do
      # Only its four export lines, as it documents them.
      [[ $line =~ ^export\ FERRY_TEST_S3_(ENDPOINT|BUCKET|ACCESS_KEY_ID|SECRET_ACCESS_KEY)= ]] && eval "$line"
    done <<<"$exports"
    S3_ENDPOINT=${FERRY_TEST_S3_ENDPOINT:-}
    S3_BUCKET=${FERRY_TEST_S3_BUCKET:-}
    export AWS_ACCESS_KEY_ID=${FERRY_TEST_S3_ACCESS_KEY_ID:-$AWS_ACCESS_KEY_ID}
    export AWS_SECRET_ACCESS_KEY=${FERRY_TEST_S3_SECRET_ACCESS_KEY:-$AWS_SECRET_ACCESS_KEY}
    [[ $S3_ENDPOINT =~ ^http://127\.0\.0\.1:[0-9]+$ && -n $S3_BUCKET ]] ||
      die "scripts/seaweedfs.sh start printed no usable FERRY_TEST_S3_ENDPOINT/FERRY_TEST_S3_BUCKET"
    STORE_PID=$(cat "$S3_DIR/weed.pid" 2>/dev/null) || STORE_PID=""
  fi
  bounded 30 python3 "$SCRIPT_DIR/lib/s3lite.py" check "$S3_ENDPOINT" "$S3_BUCKET" ||
    die "no signed answer from bucket $S3_BUCKET at $S3_ENDPOINT with AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID" \
      "(is SeaweedFS running there, and the bucket made? --s3-start starts a private one)"
  S3_READY=1
  [[ -n $STORE_PID ]] || STORE_PID=$(python3 "$SCRIPT_DIR/lib/s3lite.py" listener-pid "$S3_ENDPOINT" 2>/dev/null) || STORE_PID=""
  [[ $STORE_PID =~ ^[1-9][0-9]*$ ]] && alive "$STORE_PID" || STORE_PID=""
  echo "s3: bucket $S3_BUCKET at $S3_ENDPOINT answers; SeaweedFS PID ${STORE_PID:-unknown (its RSS is not sampled)}; objects under $S3_ROOT"
fi

# --- disk -------------------------------------------------------------------------------------
SIZE_BYTES=$((SIZE_MIB * 1048576))
avail_kib=$(df -Pk "$WORK" | awk 'NR == 2 { print $4 }')
if [[ $BLOB == fs ]]; then
  need_kib=$(((3 * SIZE_MIB + 64) * 1024)) # the file, one server's chunks, room for an assembled copy
else
  need_kib=$(((SIZE_MIB + 64) * 1024)) # the file and ferry's database; the bytes go to SeaweedFS
  # A private SeaweedFS keeps its volumes here: each run's chunks and assembled copy stay as
  # garbage until it vacuums.
  ((S3_START)) && need_kib=$((need_kib + 4 * ROUNDS * SIZE_MIB * 1024))
fi
((avail_kib >= need_kib)) ||
  die "$WORK has $((avail_kib / 1024)) MiB free; this run needs about $((need_kib / 1024)) MiB"
FS_TYPE=$(df -PT "$WORK" 2>/dev/null | awk 'NR == 2 { print $2 }')
FS_TYPE=${FS_TYPE:-unknown}

# --- number helpers ---------------------------------------------------------------------------
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
fmt() { awk -v v="$1" -v d="${2:-2}" 'BEGIN { if (v == "na" || v == "") print "na"; else printf "%.*f", d, v }'; }
# median V...: the median of the values that are not "na" ("na" if none).
median() {
  printf '%s\n' "$@" | awk '$1 != "na" && $1 != "" { a[n++] = $1 + 0 }
    END {
      if (n == 0) { print "na"; exit }
      for (i = 1; i < n; i++) { v = a[i]; for (j = i - 1; j >= 0 && a[j] > v; j--) a[j + 1] = a[j]; a[j + 1] = v }
      print (n % 2) ? a[(n - 1) / 2] : (a[n / 2 - 1] + a[n / 2]) / 2
    }'
}
# maximum V...: the largest value that is not "na" ("na" if none).
maximum() {
  printf '%s\n' "$@" | awk '$1 != "na" && $1 != "" { v = $1 + 0; if (n++ == 0 || v > m) m = v }
    END { if (n == 0) print "na"; else print m }'
}
# rget FILE KEY: KEY's value in a bench_upload.py results file, "na" when absent or malformed.
rget() {
  [[ -f $1 ]] || { echo na; return 0; }
  awk -F= -v k="$2" '$1 == k && $2 ~ /^[A-Za-z0-9_.+-]+$/ { v = $2 } END { print (v == "") ? "na" : v }' "$1"
}

# --- dd baseline on the same file system ------------------------------------------------------
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

# --- servers ----------------------------------------------------------------------------------
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# start_ferry DATA_DIR RATE_LIMITS_OFF(0|1) [DB_URL]: sets PORT and SERVER_PID. With --blob s3
# its objects go under FERRY_PREFIX.
FERRY_PREFIX=""
start_ferry() {
  local env=("FERRY_BIND=127.0.0.1:$PORT" "FERRY_DATA_DIR=$1" "FERRY_LOG__LEVEL=warn" "FERRY_SERVER__SHUTDOWN_GRACE=5s")
  local unset=(-u FERRY_BLOB) # fs: what ferry does by default, whatever the environment says
  (($2)) && env+=("FERRY_RATE_LIMITS=off")
  [[ -n ${3-} ]] && env+=("FERRY_DATABASE_URL=$3")
  if [[ $BLOB == s3 ]]; then
    unset=()
    env+=("FERRY_BLOB=s3" "FERRY_S3__ENDPOINT=$S3_ENDPOINT" "FERRY_S3__BUCKET=$S3_BUCKET"
      "FERRY_S3__ALLOW_HTTP=true" "FERRY_S3__PREFIX=$FERRY_PREFIX"
      "FERRY_S3__ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID" "FERRY_S3__SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY")
  fi
  # The default maximum upload is 1 GiB; raise it for larger runs.
  ((SIZE_MIB > 1024)) && env+=("FERRY_LIMITS__MAX_UPLOAD_SIZE=${SIZE_MIB}MiB")
  # env execs ferry, so $! is ferry's own PID. RUST_LOG would override the log level, and an
  # inherited database URL would replace the embedded store.
  env -u DATABASE_URL -u FERRY_DATABASE_URL -u RUST_LOG "${unset[@]}" "${env[@]}" \
    "$BIN" serve >>"$FERRY_LOG" 2>&1 </dev/null &
  SERVER_PID=$!
}

# start_bare DATA_DIR CHUNK_BYTES: sets SERVER_PID (PORT chosen by the caller).
start_bare() {
  "$BARE" "$PORT" --files "$1" --chunk-size "$2" >>"$BARE_LOG" 2>&1 </dev/null &
  SERVER_PID=$!
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

# 0 healthy; 1 not healthy within 60 s; 2 the server exited (its status in SERVER_RC).
SERVER_RC=""
wait_health() {
  local deadline=$((SECONDS + 60)) i pid
  for ((i = 0; i < 400; i++)); do
    if ! alive "$SERVER_PID"; then
      pid=$SERVER_PID
      SERVER_PID=""
      wait "$pid" && SERVER_RC=0 || SERVER_RC=$?
      return 2
    fi
    probe_health && return 0
    ((SECONDS < deadline)) || return 1
    sleep 0.15
  done
  return 1
}

PY_TIMEOUT=$((600 + SIZE_MIB * 3)) # hard bound on one run's HTTP phase
# SeaweedFS's RSS is sampled alongside when its PID is known (--blob s3).
store_pid_args() {
  if [[ -n $STORE_PID ]] && alive "$STORE_PID"; then echo "--store-pid $STORE_PID"; fi
}
# client RESULTS_FILE LOG [bench_upload.py options...]: one upload/complete/download against the
# server on PORT (PID SERVER_PID). 0 ok, else it says why (with the server log's tail).
client() {
  local results=$1 log=$2 rc=0
  shift 2
  bounded "$PY_TIMEOUT" python3 "$SCRIPT_DIR/bench_upload.py" \
    --port "$PORT" --file "$FILE" --sha256 "$SHA" --parallel "$PARALLEL" \
    --pid "$SERVER_PID" --max-seconds "$PY_TIMEOUT" --results "$results" $(store_pid_args) "$@" || rc=$?
  if ((rc == 124)); then
    echo "bench-upload: the HTTP phase took longer than $PY_TIMEOUT s" >&2
  fi
  if ! alive "$SERVER_PID"; then
    echo "bench-upload: the server is no longer running" >&2
    ((rc != 0)) || rc=1
  fi
  ((rc == 0)) || show_log "$log"
  return "$rc"
}

# --- rounds -----------------------------------------------------------------------------------
DB_URL=""
RATE_LIMITS_OFF=1
CHUNK="" # ferry's chunk size in bytes, from its first initiate answer
FAILED="" # which run failed, if one did
DONE=0   # rounds with both runs ok

# ferry_run ROUND: 0 ok.
ferry_run() {
  local r=$1 data=$WORK/ferry-data-$1 health=0 rc=0 expect=()
  DB_URL=""
  if [[ $STORE == postgres ]]; then
    DB_NAME=ferry_bench_$$_$r
    DB_URL=$(python3 "$SCRIPT_DIR/lib/bench_db_url.py" "$ADMIN_URL" "$DB_NAME") || die "bad FERRY_BENCH_DATABASE_URL"
    psql_admin -c "CREATE DATABASE \"$DB_NAME\"" || die "could not create database $DB_NAME on $ADMIN_URL"
    DB_CREATED=1
  fi
  mkdir -p "$data"
  PORT=$(free_port)
  FERRY_PREFIX=${S3_ROOT}ferry-$r/
  echo "round $r/$ROUNDS ferry: $BIN on 127.0.0.1:$PORT, store=$STORE, data in $data$([[ $BLOB == s3 ]] && echo ", blobs in $S3_ENDPOINT/$S3_BUCKET/$FERRY_PREFIX") ..."
  echo "=== round $r: ferry on 127.0.0.1:$PORT" >>"$FERRY_LOG"
  start_ferry "$data" "$RATE_LIMITS_OFF" "$DB_URL"
  wait_health || health=$?
  if ((health == 2 && r == 1)) && [[ $SERVER_RC == 2 ]] && grep -qi 'rate_limits' "$FERRY_LOG"; then
    # This build has no rate_limits setting (ferry rejects unknown keys): run without it.
    echo "bench-upload: warning: this ferry does not accept FERRY_RATE_LIMITS=off; running without it" >&2
    RATE_LIMITS_OFF=0
    start_ferry "$data" 0 "$DB_URL"
    health=0
    wait_health || health=$?
  fi
  case $health in
    0) ;;
    1) show_log "$FERRY_LOG"; echo "bench-upload: ferry did not answer GET /health with 200 within 60 s" >&2; rc=1 ;;
    *) show_log "$FERRY_LOG"; echo "bench-upload: ferry exited with status $SERVER_RC before it was healthy" >&2; rc=1 ;;
  esac
  if ((rc == 0)); then
    [[ -n $CHUNK ]] && expect=(--expect-chunk-size "$CHUNK")
    client "$WORK/ferry-$r.txt" "$FERRY_LOG" "${expect[@]}" || rc=$?
  fi
  stop_server
  drop_db
  rm -rf -- "$data"
  if [[ $BLOB == s3 ]]; then
    # What ferry left in the bucket (the clip's object, once its chunks are deleted), untimed.
    s3_purge "$FERRY_PREFIX" | sed 's/^/  /' || { echo "bench-upload: could not purge $FERRY_PREFIX" >&2; ((rc != 0)) || rc=1; }
  fi
  return "$rc"
}

# bare_run ROUND: 0 ok.
bare_run() {
  local r=$1 data=$WORK/bare-data-$1 health=0 rc=0
  mkdir -p "$data"
  PORT=$(free_port)
  echo "round $r/$ROUNDS ceiling: $BARE on 127.0.0.1:$PORT, chunk size $CHUNK, data in $data ..."
  start_bare "$data" "$CHUNK"
  wait_health || health=$?
  case $health in
    0) ;;
    1) show_log "$BARE_LOG"; echo "bench-upload: the ceiling did not answer GET /health with 200 within 60 s" >&2; rc=1 ;;
    *) show_log "$BARE_LOG"; echo "bench-upload: the ceiling exited with status $SERVER_RC before it was healthy" >&2; rc=1 ;;
  esac
  if ((rc == 0)); then
    client "$WORK/bare-$r.txt" "$BARE_LOG" --no-server-sha --expect-chunk-size "$CHUNK" || rc=$?
  fi
  stop_server
  rm -rf -- "$data"
  return "$rc"
}

# s3_run ROUND: the ceiling for --blob s3, the same traffic straight to SeaweedFS. 0 ok.
COPY_CONCURRENCY=${FERRY_UPLOAD__ASSEMBLY_CONCURRENCY:-4}
s3_run() {
  local r=$1 rc=0 prefix=${S3_ROOT}direct-$1/
  echo "round $r/$ROUNDS ceiling: SeaweedFS direct, $S3_ENDPOINT/$S3_BUCKET/$prefix, chunk size $CHUNK ..."
  # shellcheck disable=SC2046 # store_pid_args is empty or two words
  bounded "$PY_TIMEOUT" python3 "$SCRIPT_DIR/bench_upload.py" --s3-direct \
    --s3-endpoint "$S3_ENDPOINT" --s3-bucket "$S3_BUCKET" --s3-prefix "$prefix" \
    --file "$FILE" --sha256 "$SHA" --parallel "$PARALLEL" --chunk-size "$CHUNK" \
    --copy-concurrency "$COPY_CONCURRENCY" --max-seconds "$PY_TIMEOUT" \
    --results "$WORK/$CEIL_TAG-$r.txt" $(store_pid_args) || rc=$?
  ((rc != 124)) || echo "bench-upload: the direct run took longer than $PY_TIMEOUT s" >&2
  [[ $(rget "$WORK/$CEIL_TAG-$r.txt" cleanup_ok) == 1 ]] || { ((rc != 0)) || rc=1; }
  return "$rc"
}

if [[ $BLOB == s3 ]]; then
  CEIL_TAG=s3direct CEIL_NAME="SeaweedFS direct"
else
  CEIL_TAG=bare CEIL_NAME="bare hyper"
fi
echo "bench: $ROUNDS rounds of ferry then the ceiling ($CEIL_NAME); upload with $PARALLEL parallel chunk senders, complete, download ..."
for ((r = 1; r <= ROUNDS; r++)); do
  if ! ferry_run "$r"; then FAILED="ferry, round $r"; break; fi
  if [[ -z $CHUNK ]]; then
    CHUNK=$(rget "$WORK/ferry-1.txt" chunk_size)
    [[ $CHUNK =~ ^[1-9][0-9]*$ ]] || { FAILED="ferry, round 1 (no chunk size in its initiate answer)"; break; }
  fi
  if [[ $BLOB == s3 ]]; then
    if ! s3_run "$r"; then FAILED="ceiling ($CEIL_NAME), round $r"; break; fi
  else
    if ! bare_run "$r"; then FAILED="ceiling, round $r"; break; fi
  fi
  DONE=$r
done

# --- report -----------------------------------------------------------------------------------
# Per-round values, from rounds where both runs finished.
declare -a F_UP=() F_DOWN=() F_COMP=() F_CHUNKS=() F_RSS=() F_HWM=() F_BASE=() F_ASM=() F_SRSS=() F_CREQ=() F_CSRV=() F_SQL=() F_SPEAK=()
declare -a B_UP=() B_DOWN=() B_COMP=() B_CHUNKS=() B_RSS=() B_ASM=() B_DEL=() B_CREQ=() B_SPEAK=()
SHA_OK=1
ROUND_LINES=""
for ((r = 1; r <= DONE; r++)); do
  f=$WORK/ferry-$r.txt b=$WORK/$CEIL_TAG-$r.txt
  F_UP+=("$(rget "$f" upload_mbps)") F_DOWN+=("$(rget "$f" download_mbps)") F_COMP+=("$(rget "$f" complete_s)")
  F_CHUNKS+=("$(rget "$f" chunks_s)") F_RSS+=("$(rget "$f" rss_peak_growth_mib)") F_HWM+=("$(rget "$f" hwm_mib)")
  F_BASE+=("$(rget "$f" rss_baseline_mib)") F_ASM+=("$(rget "$f" server_assembly_s)")
  F_SRSS+=("$(rget "$f" store_rss_peak_growth_mib)") F_CREQ+=("$(rget "$f" chunk_request_mean_s)")
  F_SQL+=("$(rget "$f" server_store_query_s)") F_SPEAK+=("$(rget "$f" store_rss_peak_mib)")
  B_SPEAK+=("$(rget "$b" store_rss_peak_mib)")
  F_CSRV+=("$(awk -v s="$(rget "$f" server_chunk_requests_s)" -v n="$(rget "$f" server_chunk_requests_n)" \
    'BEGIN { if (s == "na" || n == "na" || n + 0 <= 0) print "na"; else print s / n }')")
  B_CREQ+=("$(rget "$b" chunk_request_mean_s)")
  B_UP+=("$(rget "$b" upload_mbps)") B_DOWN+=("$(rget "$b" download_mbps)") B_COMP+=("$(rget "$b" complete_s)")
  B_CHUNKS+=("$(rget "$b" chunks_s)")
  if [[ $BLOB == s3 ]]; then
    # The ceiling's server is SeaweedFS: its RSS column is SeaweedFS's growth in the direct run.
    B_RSS+=("$(rget "$b" store_rss_peak_growth_mib)")
    B_ASM+=("$(rget "$b" assemble_s)") B_DEL+=("$(rget "$b" chunk_delete_s)")
  else
    B_RSS+=("$(rget "$b" rss_peak_growth_mib)")
  fi
  [[ $(rget "$f" sha_ok) == 1 && $(rget "$b" sha_ok) == 1 ]] || SHA_OK=0
  i=$((r - 1))
  ROUND_LINES+=$(printf '  %-6s %9s %9s %9s %8s  | %9s %9s %9s %8s  | %6s %6s %8s' "$r" \
    "$(fmt "${F_UP[i]}")" "$(fmt "${F_DOWN[i]}")" "$(fmt "${F_COMP[i]}" 3)" "$(fmt "${F_RSS[i]}" 1)" \
    "$(fmt "${B_UP[i]}")" "$(fmt "${B_DOWN[i]}")" "$(fmt "${B_COMP[i]}" 3)" "$(fmt "${B_RSS[i]}" 1)" \
    "$(ratio "${F_UP[i]}" "${B_UP[i]}")" "$(ratio "${F_DOWN[i]}" "${B_DOWN[i]}")" \
    "$(ratio "${F_COMP[i]}" "${B_COMP[i]}")")$'\n'
done
((DONE > 0)) || SHA_OK=0

UP=$(fmt "$(median "${F_UP[@]}")")
DOWN=$(fmt "$(median "${F_DOWN[@]}")")
COMPLETE_S=$(fmt "$(median "${F_COMP[@]}")" 3)
CHUNKS_S=$(fmt "$(median "${F_CHUNKS[@]}")" 3)
RSS_GROWTH=$(fmt "$(median "${F_RSS[@]}")" 1)
RSS_GROWTH_MAX=$(fmt "$(maximum "${F_RSS[@]}")" 1)
RSS_BASE=$(fmt "$(median "${F_BASE[@]}")" 1)
HWM=$(fmt "$(maximum "${F_HWM[@]}")" 1)
C_UP=$(fmt "$(median "${B_UP[@]}")")
C_DOWN=$(fmt "$(median "${B_DOWN[@]}")")
C_COMPLETE_S=$(fmt "$(median "${B_COMP[@]}")" 3)
C_CHUNKS_S=$(fmt "$(median "${B_CHUNKS[@]}")" 3)
C_RSS_GROWTH=$(fmt "$(median "${B_RSS[@]}")" 1)
UP_RATIO=$(ratio "$UP" "$C_UP")
DOWN_RATIO=$(ratio "$DOWN" "$C_DOWN")
# Times can be a few ms (fs): their ratios come from the unrounded medians.
COMPLETE_RATIO=$(ratio "$(median "${F_COMP[@]}")" "$(median "${B_COMP[@]}")")
CHUNKS_RATIO=$(ratio "$(median "${F_CHUNKS[@]}")" "$(median "${B_CHUNKS[@]}")")
UP_VS_DD=$(ratio "$UP" "$DD_WRITE_MBPS")
DOWN_VS_DD=$(ratio "$DOWN" "$DD_READ_MBPS")
C_UP_VS_DD=$(ratio "$C_UP" "$DD_WRITE_MBPS")
C_DOWN_VS_DD=$(ratio "$C_DOWN" "$DD_READ_MBPS")
SERVER_ASM_S=$(fmt "$(median "${F_ASM[@]}")" 3)
STORE_RSS_FERRY=$(fmt "$(median "${F_SRSS[@]}")" 1)
SERVER_SQL_S=$(fmt "$(median "${F_SQL[@]}")" 3)
STORE_PEAK_FERRY=$(fmt "$(median "${F_SPEAK[@]}")" 1)
STORE_PEAK_DIRECT=$(fmt "$(median "${B_SPEAK[@]}")" 1)
# Mean time of one chunk request in ms: as the client saw it, and (ferry) inside ferry.
CREQ_MS=$(fmt "$(awk -v v="$(median "${F_CREQ[@]}")" 'BEGIN { print (v == "na") ? "na" : v * 1000 }')" 1)
CSRV_MS=$(fmt "$(awk -v v="$(median "${F_CSRV[@]}")" 'BEGIN { print (v == "na") ? "na" : v * 1000 }')" 1)
C_CREQ_MS=$(fmt "$(awk -v v="$(median "${B_CREQ[@]}")" 'BEGIN { print (v == "na") ? "na" : v * 1000 }')" 1)
C_ASM_S=na C_DEL_S=na
if [[ $BLOB == s3 ]]; then
  C_ASM_S=$(fmt "$(median "${B_ASM[@]}")" 3)
  C_DEL_S=$(fmt "$(median "${B_DEL[@]}")" 3)
fi
CHUNKS=$(rget "$WORK/ferry-1.txt" chunks)
CHUNK_MIB=$(awk -v c="${CHUNK:-na}" 'BEGIN { if (c == "na" || c == "") print "na"; else printf "%g", c / 1048576 }')
STATUS=ok
[[ -z $FAILED && $SHA_OK == 1 && $DONE == "$ROUNDS" ]] || STATUS=fail

row() { printf '  %-24s %10s %10s %14s\n' "$@"; }
echo
if [[ $BLOB == s3 ]]; then
  CEIL_COL="SeaweedFS direct"
  echo "ferry upload benchmark, blob=s3, vs the same bytes straight to SeaweedFS  (MiB/s = 2^20 bytes per second)"
  echo "  run       : store=$STORE blob=s3 ($S3_ENDPOINT bucket $S3_BUCKET) size=$SIZE_MIB MiB parallel=$PARALLEL" \
    "chunk=$CHUNK_MIB MiB x $CHUNKS chunks; rounds $DONE of $ROUNDS (ferry, then SeaweedFS direct); local disk: $WORK ($FS_TYPE)"
else
  CEIL_COL="ceiling"
  echo "ferry upload benchmark vs a bare hyper ceiling  (MiB/s = 2^20 bytes per second)"
  echo "  run       : store=$STORE size=$SIZE_MIB MiB parallel=$PARALLEL chunk=$CHUNK_MIB MiB x $CHUNKS chunks;" \
    "rounds $DONE of $ROUNDS (ferry, then the ceiling); disk: $WORK ($FS_TYPE)"
fi
[[ -n $FAILED ]] && echo "  FAILED    : $FAILED (the figures cover the $DONE rounds before it)"
echo
echo "  per round (up, down: MiB/s; complete: s; RSS+: peak RSS growth, MiB$([[ $BLOB == s3 ]] && echo "; SeaweedFS's in its column"))"
printf '  %-6s %-38s  | %-38s  | %s\n' "" "ferry" "$CEIL_COL" "ferry/$CEIL_COL"
printf '  %-6s %9s %9s %9s %8s  | %9s %9s %9s %8s  | %6s %6s %8s\n' round up down complete RSS+ up down complete RSS+ up down complete
printf '%s' "$ROUND_LINES"
echo
echo "  medians over $DONE rounds:"
row "metric" "ferry" "$CEIL_COL" "ferry/$CEIL_COL"
row "upload MiB/s" "$UP" "$C_UP" "$UP_RATIO"
row "download MiB/s" "$DOWN" "$C_DOWN" "$DOWN_RATIO"
row "complete s" "$COMPLETE_S" "$C_COMPLETE_S" "$COMPLETE_RATIO"
row "chunks phase s" "$CHUNKS_S" "$C_CHUNKS_S" "$CHUNKS_RATIO"
row "peak RSS growth MiB" "$RSS_GROWTH" "$C_RSS_GROWTH" "-"
echo "  (ratios of speeds: below 1 = ferry slower; ratios of times (complete, chunks phase): above 1 = ferry slower)"
echo "  chunks    : one chunk request takes $CREQ_MS ms for the client (ferry's own timer: $CSRV_MS ms), $C_CREQ_MS ms with $CEIL_COL ($PARALLEL in flight; medians of the per-run means)"
echo "  database  : ferry's $STORE store queries took $SERVER_SQL_S s in all per run (summed over concurrent queries, from its /metrics)"
echo "  ferry RSS : peak growth median $RSS_GROWTH MiB, max $RSS_GROWTH_MAX MiB over a baseline of $RSS_BASE MiB; VmHWM max $HWM MiB"
if [[ $BLOB == s3 ]]; then
  echo "  complete  : SeaweedFS direct $C_COMPLETE_S s = assemble $C_ASM_S s (CreateMultipartUpload, $CHUNKS x UploadPartCopy" \
    "$COPY_CONCURRENCY at once, CompleteMultipartUpload) + delete $CHUNKS chunks $C_DEL_S s;" \
    "ferry $COMPLETE_S s, of which its assembly timer $SERVER_ASM_S s (chunk checks + the same assembly; the rest: database, chunk deletes)"
  echo "  SeaweedFS : PID ${STORE_PID:-unknown}; RSS peak growth median $STORE_RSS_FERRY MiB during the ferry runs, $C_RSS_GROWTH MiB during the direct runs" \
    "(peak $STORE_PEAK_FERRY, $STORE_PEAK_DIRECT MiB; a Go heap: growth depends on when it last collected)"
fi
echo "  dd        : write $DD_WRITE_MBPS MiB/s ($DD_WRITE_METHOD), read $DD_READ_MBPS MiB/s ($DD_READ_METHOD$([[ $DD_READ_METHOD == cached ]] && echo ": O_DIRECT and drop_caches unavailable, this is the page cache, not the disk"))$([[ $BLOB == s3 ]] && echo "; on $WORK, not necessarily where SeaweedFS keeps its volumes")"
echo "  vs dd     : ferry upload/dd-write $UP_VS_DD, download/dd-read $DOWN_VS_DD; $CEIL_COL $C_UP_VS_DD, $C_DOWN_VS_DD"
if [[ $BLOB == s3 ]]; then
  echo "  SHA-256   : $([[ $SHA_OK == 1 ]] && echo "ok: every download (ferry's and SeaweedFS's) matched the local file, and so did ferry's complete sha256" || echo "NOT verified in every run")"
else
  echo "  SHA-256   : $([[ $SHA_OK == 1 ]] && echo "ok: every download matched the local file, and so did ferry's complete sha256 (the ceiling hashes nothing)" || echo "NOT verified in every run")"
fi
echo "  notes     : upload = first chunk sent -> complete answered; client and servers share this machine's CPUs;" \
  "rate limits $([[ $RATE_LIMITS_OFF == 1 ]] && echo "off" || echo "setting not accepted by this build")"
S3_KEYS=""
[[ $BLOB == s3 ]] && S3_KEYS="ceiling_assemble_s=$C_ASM_S ceiling_chunk_delete_s=$C_DEL_S server_assembly_s=$SERVER_ASM_S store_rss_growth_mib=$STORE_RSS_FERRY ceiling_store_rss_growth_mib=$C_RSS_GROWTH "
echo "RESULT store=$STORE blob=$BLOB ceiling=$([[ $BLOB == s3 ]] && echo seaweedfs_direct || echo bare_hyper)" \
  "size_mib=$SIZE_MIB parallel=$PARALLEL chunk_mib=$CHUNK_MIB rounds=$DONE units=MiB/s" \
  "upload_mbps=$UP ceiling_upload_mbps=$C_UP upload_ratio=$UP_RATIO" \
  "download_mbps=$DOWN ceiling_download_mbps=$C_DOWN download_ratio=$DOWN_RATIO" \
  "complete_s=$COMPLETE_S ceiling_complete_s=$C_COMPLETE_S complete_ratio=$COMPLETE_RATIO" \
  "chunks_s=$CHUNKS_S ceiling_chunks_s=$C_CHUNKS_S chunk_request_ms=$CREQ_MS ceiling_chunk_request_ms=$C_CREQ_MS server_chunk_request_ms=$CSRV_MS server_store_query_s=$SERVER_SQL_S" \
  "rss_growth_mib=$RSS_GROWTH rss_growth_max_mib=$RSS_GROWTH_MAX ceiling_rss_growth_mib=$C_RSS_GROWTH" \
  "rss_baseline_mib=$RSS_BASE rss_peak_growth_mib=$RSS_GROWTH_MAX hwm_mib=$HWM" \
  "${S3_KEYS}dd_write_mbps=$DD_WRITE_MBPS dd_read_mbps=$DD_READ_MBPS dd_read_method=$DD_READ_METHOD" \
  "upload_vs_dd=$UP_VS_DD download_vs_dd=$DOWN_VS_DD sha_ok=$SHA_OK status=$STATUS"

[[ $STATUS == ok ]] || exit 1
exit 0
