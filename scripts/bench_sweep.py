#!/usr/bin/env python3
"""Sweep benchmark: how long one sweep pass takes to delete N expired clips, and whether clip
lookups stay fast while it runs.

It starts a release ferry on a temp data dir (embedded SQLite, or a fresh PostgreSQL database
with --store postgres), seeds N already-expired clips straight into the database with SQL,
creates one live clip over HTTP, then measures GET /api/clip/<live>/info latency for a few
seconds alone (baseline) and again while `ferry sweep` runs in a second process against the
same store (as another instance would). Prints a report and one RESULT line.

    scripts/bench-sweep.sh [--rows 1000000] [--store embedded|postgres] [--bin target/release/ferry]

Only 127.0.0.1 is contacted; the ferry it started is stopped by PID at the end.
"""
import argparse
import http.client
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

PG_SERVER = os.environ.get("FERRY_BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]




def seed_sqlite(db_path, rows, now_ms):
    con = sqlite3.connect(db_path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute(
        f"""WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < {rows})
        INSERT INTO clips (code, kind, blob_key, size, sha256, created_at, expires_at, delete_token_hash)
        SELECT printf('%010d', x), 'file', 'clips/00/' || printf('%016d', x), 1, printf('%064d', 0),
               {now_ms - 7_200_000}, {now_ms - 3_600_000}, 'x' FROM g"""
    )
    con.commit()
    con.close()


def pg_url(db):
    base, _, query = PG_SERVER.partition("?")
    head = base.split("://", 1)
    host_part = head[1].split("/", 1)[0]
    return f"{head[0]}://{host_part}/{db}" + (f"?{query}" if query else "")


def psql(url, sql):
    subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-qAtc", sql], check=True, stdout=subprocess.DEVNULL)


def seed_postgres(url, rows, now_ms):
    psql(
        url,
        f"""INSERT INTO clips (code, kind, blob_key, size, sha256, created_at, expires_at, delete_token_hash)
        SELECT lpad(g::text, 10, '0'), 'file', 'clips/00/' || lpad(g::text, 16, '0'), 1, repeat('0', 64),
               {now_ms - 7_200_000}, {now_ms - 3_600_000}, 'x' FROM generate_series(1, {rows}) AS g;
        ANALYZE clips;""",
    )


class Sampler(threading.Thread):
    """Back-to-back lookups on one keep-alive connection, recording latency in ms."""

    def __init__(self, port, path):
        super().__init__(daemon=True)
        self.port, self.path = port, path
        self.samples = []  # (t, latency_ms, status)
        self.stop = threading.Event()

    def run(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        while not self.stop.is_set():
            t0 = time.perf_counter()
            conn.request("GET", self.path)
            res = conn.getresponse()
            res.read()
            t1 = time.perf_counter()
            self.samples.append((t0, (t1 - t0) * 1000, res.status))


def summarize(samples, start, end):
    lat = sorted(l for t, l, s in samples if start <= t < end)
    bad = sum(1 for t, l, s in samples if start <= t < end and s != 200)
    if not lat:
        return {"n": 0, "rps": 0, "p50": 0, "p99": 0, "max": 0, "errors": bad}
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
    return {"n": len(lat), "rps": len(lat) / max(end - start, 1e-9), "p50": p(0.5), "p99": p(0.99), "max": lat[-1], "errors": bad}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--store", choices=["embedded", "postgres"], default="embedded")
    ap.add_argument("--bin", default="target/release/ferry")
    ap.add_argument("--baseline-seconds", type=float, default=3.0)
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="ferry-sweep-bench.")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_") and k not in ("DATABASE_URL", "RUST_LOG")}
    env.update(
        FERRY_DATA_DIR=os.path.join(tmp, "data"),
        FERRY_BIND=f"127.0.0.1:{port}",
        FERRY_RATE_LIMITS="off",
        FERRY_LOG__LEVEL="warn",
        # The server's own sweeper must not do the work being measured.
        FERRY_SWEEP__INTERVAL="24h",
    )
    db = None
    if args.store == "postgres":
        db = f"ferry_sweep_bench_{os.getpid()}"
        psql(PG_SERVER, f"DROP DATABASE IF EXISTS {db}")
        psql(PG_SERVER, f"CREATE DATABASE {db}")
        env["FERRY_DATABASE_URL"] = pg_url(db)
    server = None
    try:
        subprocess.run([args.bin, "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
        now_ms = int(time.time() * 1000)
        t = time.perf_counter()
        if args.store == "postgres":
            seed_postgres(env["FERRY_DATABASE_URL"], args.rows, now_ms)
        else:
            seed_sqlite(os.path.join(env["FERRY_DATA_DIR"], "ferry.db"), args.rows, now_ms)
        seed_s = time.perf_counter() - t
        print(f"seeded {args.rows} expired clips in {seed_s:.1f} s ({args.store})", flush=True)

        server = subprocess.Popen([args.bin], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(600):
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.1)
        else:
            sys.exit("ferry did not become healthy")
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("PUT", "/api/clips/live.txt", body=b"still here", headers={"Accept": "application/json"})
        live = json.loads(c.getresponse().read())["clipId"]

        sampler = Sampler(port, f"/api/clip/{live}/info")
        sampler.start()
        time.sleep(args.baseline_seconds)
        b_start, b_end = sampler.samples[0][0] if sampler.samples else time.perf_counter(), time.perf_counter()
        s_start = time.perf_counter()
        out = subprocess.run([args.bin, "sweep"], env=env, check=True, capture_output=True, text=True)
        s_end = time.perf_counter()
        sampler.stop.set()
        sampler.join()
        report = json.loads(out.stdout.strip().splitlines()[-1])
        base = summarize(sampler.samples, b_start, b_end)
        during = summarize(sampler.samples, s_start, s_end)
        print(f"sweep   : {report['expiredClips']} expired clips in {report['seconds']:.2f} s "
              f"({report['expiredClips'] / max(report['seconds'], 1e-9):,.0f} rows/s, {report['batches']} batches; "
              f"process wall {s_end - s_start:.2f} s)")
        for name, s in (("lookups before", base), ("lookups during", during)):
            print(f"{name}: {s['rps']:.0f} req/s  p50 {s['p50']:.2f} ms  p99 {s['p99']:.2f} ms  "
                  f"max {s['max']:.1f} ms  errors {s['errors']} (n={s['n']})")
        ok = report["expiredClips"] == args.rows and during["errors"] == 0 and base["errors"] == 0
        print(f"RESULT store={args.store} rows={args.rows} sweep_s={report['seconds']:.2f} "
              f"rows_per_s={report['expiredClips'] / max(report['seconds'], 1e-9):.0f} "
              f"lookup_p50_before_ms={base['p50']:.2f} lookup_p99_before_ms={base['p99']:.2f} "
              f"lookup_p50_during_ms={during['p50']:.2f} lookup_p99_during_ms={during['p99']:.2f} "
              f"lookup_rps_before={base['rps']:.0f} lookup_rps_during={during['rps']:.0f} "
              f"errors={base['errors'] + during['errors']} status={'ok' if ok else 'fail'}")
        sys.exit(0 if ok else 1)
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
        if db:
            psql(PG_SERVER, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
