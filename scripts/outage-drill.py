#!/usr/bin/env python3
"""The outage drill, by hand: ferry on a PostgreSQL of its own under load, then the faults a
public server meets, in a row, and what clients saw.

  scripts/outage-drill.py [--binary target/release/ferry] [--k6] [--outage 20] [--idle 2000]

Timeline (seconds from the start of the load):
   0  load starts: a prober makes a clip every 100 ms and reads the last one back (and, with
      --k6, loadtests/mixed.js runs beside it)
   5  IDLE connections are opened and left silent
  10  PostgreSQL is stopped (fast shutdown) for OUTAGE seconds, then started again
  +10 after it is back: ferry is killed with SIGKILL and started again on the same data
  +20 the load stops

Then it checks, and prints: every answer during the outage was a 200 or a 503
database_unavailable with Retry-After (none slower than the bound); the idle connections were
closed within server.header_read_timeout (+2 s); the error window and how long ferry took to
serve again after PostgreSQL and after the restart; every clip whose creation was answered 200
downloads with its SHA-256. With --k6, k6's own statuses are counted by phase from its JSON
output. Exit code 0 when every check holds.

Nothing here touches the machine's own PostgreSQL: the cluster is made with initdb in a
temporary directory, on a free port, and removed at the end. Stdlib only.
"""

import argparse
import hashlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOUND_S = 2.5  # store.query_timeout (1 s here) plus slack for a loaded machine


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_bin(name):
    base = "/usr/lib/postgresql"
    for version in sorted(os.listdir(base), key=lambda v: [int(x) for x in v.split(".") if x.isdigit()], reverse=True):
        path = os.path.join(base, version, "bin", name)
        if os.path.exists(path):
            return path
    sys.exit(f"no {name} under {base}; install postgresql")


class Cluster:
    """A PostgreSQL of the drill's own, run as the postgres account when we are root."""

    def __init__(self, root):
        self.dir = os.path.join(root, "pg")
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        os.makedirs(self.dir)
        self.user = None
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self.user = pw
        self.run([pg_bin("initdb"), "-A", "trust", "-U", "postgres", "--no-sync", "-D", self.data])

    def run(self, argv):
        def demote():
            if self.user:
                os.setgid(self.user.pw_gid)
                os.setuid(self.user.pw_uid)

        done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=demote, cwd=self.dir)
        if done.returncode != 0:
            raise RuntimeError(f"{os.path.basename(argv[0])} failed: {done.stderr.decode(errors='replace')[-500:]}")

    def start(self):
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.run([pg_bin("pg_ctl"), "-D", self.data, "-o", opts, "-w", "-l", os.path.join(self.dir, "log"), "start"])

    def stop(self):
        self.run([pg_bin("pg_ctl"), "-D", self.data, "-m", "fast", "-w", "stop"])

    def url(self):
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"


class Ferry:
    def __init__(self, binary, root, database_url):
        self.binary, self.data = binary, os.path.join(root, "ferry")
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_") and k != "DATABASE_URL"}
        self.env.update({
            "FERRY_DATA_DIR": self.data, "FERRY_BIND": f"127.0.0.1:{self.port}", "FERRY_RATE_LIMITS": "off",
            "FERRY_DATABASE_URL": database_url, "FERRY_LOG__LEVEL": "warn",
            "FERRY_STORE__QUERY_TIMEOUT": "1s", "FERRY_STORE__ACQUIRE_TIMEOUT": "1s",
            "FERRY_STORE__CONNECT_TIMEOUT": "1s", "FERRY_SERVER__HEALTH_CHECK_TIMEOUT": "500ms",
            "FERRY_SERVER__HEADER_READ_TIMEOUT": "5s",
        })
        self.proc = None

    def start(self):
        self.log = open(os.path.join(os.path.dirname(self.data), "ferry.log"), "ab")
        self.proc = subprocess.Popen([self.binary], env=self.env, stdout=self.log, stderr=self.log)
        started = time.monotonic()
        while time.monotonic() - started < 60:
            try:
                urllib.request.urlopen(self.url("/ping"), timeout=1).read()
                return time.monotonic() - started
            except OSError:
                time.sleep(0.05)
        sys.exit("ferry did not start; see " + self.log.name)

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"


def request(method, url, body=None, accept_json=False, timeout=15):
    """(status, headers (case-insensitive), body bytes, seconds); status 0 for a transport
    error."""
    req = urllib.request.Request(url, data=body, method=method)
    if accept_json:
        req.add_header("Accept", "application/json")
    started = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            return res.status, res.headers, res.read(), time.monotonic() - started
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read(), time.monotonic() - started
    except OSError as e:
        return 0, {}, str(e).encode(), time.monotonic() - started


def prober(ferry, stop, seen, acked):
    i = 0
    while not stop.is_set():
        i += 1
        body = f"drill clip {i} {time.time_ns()}".encode()
        at = time.monotonic()
        status, headers, out, took = request("PUT", ferry.url(f"/api/clips/drill-{i}.txt"), body, accept_json=True)
        seen.append((at, "create", status, headers.get("Retry-After"), took, out[:400]))
        if status == 200:
            code = json.loads(out)["clipId"]
            acked.append((code, hashlib.sha256(body).hexdigest()))
        if acked:
            at = time.monotonic()
            status, headers, out, took = request("GET", ferry.url(f"/api/clip/{acked[-1][0]}/info"))
            seen.append((at, "info", status, headers.get("Retry-After"), took, out[:400]))
        time.sleep(0.1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/release/ferry"))
    ap.add_argument("--outage", type=float, default=20)
    ap.add_argument("--idle", type=int, default=2000)
    ap.add_argument("--k6", action="store_true", help="run loadtests/mixed.js beside the prober")
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="ferry-drill-")
    os.chmod(root, 0o755)  # the postgres account must reach its cluster's directory
    cluster = Cluster(root)
    cluster.start()
    ferry = Ferry(args.binary, root, cluster.url())
    ferry.start()
    ok = True
    k6 = None
    try:
        t0 = time.monotonic()
        total = 10 + args.outage + 10 + 20
        if args.k6:
            k6_out = os.path.join(root, "k6.json")
            k6 = subprocess.Popen(
                ["k6", "run", "-q", "--out", f"json={k6_out}", "-e", f"FERRY_URL={ferry.url('')}",
                 "-e", f"MIXED_DURATION={int(total)}s", "-e", "MIXED_RATE=20", os.path.join(ROOT, "loadtests/mixed.js")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stop, seen, acked = threading.Event(), [], []
        thread = threading.Thread(target=prober, args=(ferry, stop, seen, acked))
        thread.start()

        time.sleep(5)
        idle = []
        for _ in range(args.idle):
            idle.append(socket.create_connection(("127.0.0.1", ferry.port)))
        idle_opened = time.monotonic()

        time.sleep(max(0, t0 + 10 - time.monotonic()))
        down_at = time.monotonic()
        cluster.stop()
        # Idle sockets: the server closes them within the header timeout (5 s here).
        time.sleep(max(0, idle_opened + 7 - time.monotonic()))
        open_idle = 0
        for s in idle:
            s.setblocking(False)
            try:
                if s.recv(1) != b"":
                    open_idle += 1
            except BlockingIOError:
                open_idle += 1
            except OSError:
                pass
            s.close()
        idle_checked = time.monotonic() - idle_opened
        time.sleep(max(0, down_at + args.outage - time.monotonic()))
        up_at = time.monotonic()
        cluster.start()
        pg_back = time.monotonic()

        time.sleep(10)
        killed_at = time.monotonic()
        ferry.kill9()
        restart_took = ferry.start()
        back_at = time.monotonic()
        time.sleep(max(0, t0 + total - time.monotonic()))
        stop.set()
        thread.join()
        if k6:
            k6.wait(timeout=120)

        # What clients saw.
        in_outage = [s for s in seen if down_at <= s[0] < pg_back]
        errors = [s for s in in_outage if s[2] != 200]
        bad = [s for s in errors if s[2] != 503 or b"database_unavailable" not in s[5] or not s[3] or s[4] > BOUND_S]
        after_pg = [s for s in seen if s[0] >= pg_back and s[0] < killed_at]
        first_ok = next((s[0] + s[4] for s in after_pg if s[2] == 200), None)
        after_restart = [s for s in seen if s[0] >= back_at]
        late_errors = [s for s in after_restart if s[2] != 200]
        window = (max(s[0] + s[4] for s in errors) - min(s[0] for s in errors)) if errors else 0.0
        print(f"requests by the prober: {len(seen)}; clips acknowledged: {len(acked)}")
        print(f"PostgreSQL down for {pg_back - down_at:.1f} s: {len(errors)} errors among {len(in_outage)} answers, "
              f"error window {window:.2f} s, slowest answer {max((s[4] for s in in_outage), default=0):.2f} s; "
              f"not a 503 database_unavailable with Retry-After within {BOUND_S} s: {len(bad)}")
        for s in bad[:5]:
            print("   ", s[1], s[2], s[3], f"{s[4]:.2f}s", s[5][:120])
        print(f"served again {((first_ok or up_at) - pg_back) * 1000:.0f} ms after PostgreSQL accepted connections "
              f"({(pg_back - up_at):.1f} s to start it)")
        print(f"kill -9: ferry answered again {restart_took:.2f} s after it was started; errors after: {len(late_errors)}")
        print(f"idle connections: {open_idle} of {len(idle)} still open {idle_checked:.1f} s after they were opened "
              f"(header timeout 5 s)")
        ok = not bad and open_idle == 0 and first_ok is not None and not late_errors

        missing = 0
        for code, sha in acked:
            status, _, out, _ = request("GET", ferry.url(f"/raw/{code}"))
            if status != 200 or hashlib.sha256(out).hexdigest() != sha:
                missing += 1
        print(f"acknowledged clips intact after the restart: {len(acked) - missing} of {len(acked)}")
        ok = ok and missing == 0

        if k6:
            counts = {}
            with open(k6_out) as f:
                for line in f:
                    point = json.loads(line)
                    if point.get("type") != "Point" or point.get("metric") != "http_reqs":
                        continue
                    status = point["data"]["tags"].get("status", "?")
                    counts[status] = counts.get(status, 0) + 1
            print(f"k6 mixed.js statuses (whole run, kill included): {dict(sorted(counts.items()))}")
    finally:
        if ferry.proc and ferry.proc.poll() is None:
            ferry.proc.terminate()
            ferry.proc.wait()
        if k6 and k6.poll() is None:
            k6.kill()
        try:
            cluster.stop()
        except RuntimeError:
            pass
        shutil.rmtree(root, ignore_errors=True)
    print("drill:", "PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
