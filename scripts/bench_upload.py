#!/usr/bin/env python3
# HTTP half of scripts/bench-upload.sh: measures how fast a running server (ferry, or the bare
# hyper ceiling) accepts a file through the three-step upload API (POST /api/upload/initiate,
# P parallel POST /api/upload/chunk/<id>/<i> with raw application/octet-stream bodies sent with sendfile
# from the file on disk, POST /api/upload/complete/<id>) and how fast it streams it back
# (POST /api/file/<clipId>, hashed in 1 MiB reads, never stored). It checks the SHA-256 and the
# byte count both ways, and, when given the server's PID, samples its VmRSS from
# /proc/PID/status every ~50 ms during upload + complete + download (peak growth over the
# baseline read just before the upload, per phase too) and reads VmHWM at the end. When the
# server has GET /metrics (ferry does), the growth of ferry_assembly_seconds_sum and of the
# chunk, complete and store-query time sums over the run is recorded too (server_* keys), to
# tell where complete's time went; a server without it just leaves those keys out.
# Speeds are MiB/s (2^20 bytes per second).
#
# --s3-direct: the ceiling for ferry on S3 (bench-upload.sh --blob s3). No ferry: the same
# traffic straight to an S3 store (SeaweedFS on loopback) with the same client, SigV4-signed by
# scripts/lib/s3lite.py (path-style, UNSIGNED-PAYLOAD, credentials from AWS_ACCESS_KEY_ID /
# AWS_SECRET_ACCESS_KEY): upload = P parallel PutObject of the same chunks (--chunk-size, i.e.
# ferry's), sent with sendfile from the file, to <prefix>chunk-NNNNN; complete = what ferry's
# complete does to the store, least form: CreateMultipartUpload of <prefix>object, one
# UploadPartCopy per chunk (--copy-concurrency at once, ferry's upload.assembly_concurrency),
# CompleteMultipartUpload, then DeleteObject of every chunk (--delete-concurrency at once, as
# ferry deletes them before it answers) (CopyObject instead when there is one chunk); download
# = one GetObject of <prefix>object, the one assembled object that ferry's download also reads,
# hashed and checked like ferry's. Every object and multipart upload it made is removed at the
# end (not timed). --pid is not used for the store itself unless given (--store-pid).
#
# Normally run by scripts/bench-upload.sh, which starts ferry and the bare hyper ceiling
# (examples/bare_hyper.rs --files, which does not hash: run with --no-server-sha, so the
# complete reply's sha256 is neither required nor checked, while the downloaded bytes still are),
# makes the file and measures dd. Standalone, against a server already listening on 127.0.0.1:
#   python3 scripts/bench_upload.py --port 8080 --file /tmp/x.bin [--parallel 4] [--pid PID]
#       [--store-pid PID] [--sha256 HEX] [--results FILE] [--no-server-sha]
#       [--expect-chunk-size BYTES]
# or straight to S3:
#   python3 scripts/bench_upload.py --s3-direct --s3-endpoint http://127.0.0.1:8333
#       --s3-bucket B --s3-prefix some/prefix/ --chunk-size 5242880 --file /tmp/x.bin [...]
# --store-pid PID samples a second process (the S3 store) the same way (store_rss_* keys).
# --results writes `key=value` lines (numbers, or "na") for the shell script to read.
# Exit codes: 0 ok, 1 an HTTP call or I/O failed, 3 a SHA-256 or size check failed,
# 2 bad arguments. Python 3 standard library only. Traffic goes only to 127.0.0.1.

import argparse
import hashlib
import http.client
import json
import math
import os
import re
import sys
import threading
import time

MIB = 1 << 20
HOST = "127.0.0.1"  # the only address this script ever talks to
S3_MIN_PART = 5 << 20  # S3's smallest multipart part (all but the last)
S3_MAX_PARTS = 10_000

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
try:
    import s3lite  # scripts/lib, found through the path set just above
except ImportError:  # only --s3-direct needs it; the server modes run without it
    s3lite = None
S3_ERRORS = (s3lite.S3Error,) if s3lite else ()


class BenchError(Exception):
    """An HTTP call or check failed; the message says which."""

    def __init__(self, message, code=1):
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------------------------------------
# RSS sampling


def read_status_kib(pid, key):
    """The value of `key` (e.g. "VmRSS") in /proc/PID/status, in KiB, or None if unavailable."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(key.encode() + b":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


class RssSampler:
    """Samples VmRSS of one PID every `interval` seconds in a daemon thread until stop() or
    `max_seconds` (a hard bound). Tracks the overall peak and a peak per named phase."""

    def __init__(self, pid, interval=0.05, max_seconds=3600.0):
        self.pid = pid
        self.interval = interval
        self.max_samples = max(1, int(max_seconds / interval))
        self.samples = 0
        self.peak_kib = None
        self.phase = None
        self.phase_peaks = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def set_phase(self, name):
        with self._lock:
            self.phase = name
        self.sample()  # every phase gets at least one sample, however short it is

    def sample(self):
        kib = read_status_kib(self.pid, "VmRSS")
        if kib is None:
            return
        with self._lock:
            self.samples += 1
            if self.peak_kib is None or kib > self.peak_kib:
                self.peak_kib = kib
            if self.phase is not None:
                prev = self.phase_peaks.get(self.phase)
                if prev is None or kib > prev:
                    self.phase_peaks[self.phase] = kib

    def _run(self):
        for _ in range(self.max_samples):
            self.sample()
            if self._stop.wait(self.interval):
                break

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=5)
        self.sample()


# ---------------------------------------------------------------------------------------------
# HTTP helpers


def new_conn(port, timeout):
    # blocksize only matters for bodies http.client sends itself (the small JSON ones).
    return http.client.HTTPConnection(HOST, port, timeout=timeout, blocksize=MIB)


def describe_body(data, limit=500):
    text = data[:limit].decode("utf-8", "replace")
    return text + ("…" if len(data) > limit else "")


def post_json(conn, path, payload):
    """POST a JSON body, require 200 and a JSON object in reply; returns the object."""
    body = json.dumps(payload).encode()
    try:
        conn.request("POST", path, body=body,
                     headers={"Content-Type": "application/json", "Accept": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
    except (OSError, http.client.HTTPException) as e:
        conn.close()
        raise BenchError(f"POST {path}: {type(e).__name__}: {e}") from e
    if resp.status != 200:
        raise BenchError(f"POST {path}: HTTP {resp.status}: {describe_body(data)}")
    try:
        obj = json.loads(data)
    except ValueError as e:
        raise BenchError(f"POST {path}: reply is not JSON: {describe_body(data)}") from e
    if not isinstance(obj, dict):
        raise BenchError(f"POST {path}: reply is not a JSON object: {describe_body(data)}")
    return obj


def require(obj, key, kind, where):
    value = obj.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise BenchError(f"{where}: reply lacks a valid `{key}`: {json.dumps(obj)[:500]}")
    return obj[key]


def send_chunk(conn, path, fobj, offset, length):
    """POST bytes [offset, offset+length) of fobj as a raw body, streamed with sendfile."""
    try:
        conn.putrequest("POST", path, skip_accept_encoding=True)
        conn.putheader("Content-Type", "application/octet-stream")
        conn.putheader("Content-Length", str(length))
        conn.putheader("Accept", "application/json")
        conn.endheaders()  # sends the headers; conn.sock is open from here on
        sent = conn.sock.sendfile(fobj, offset, length)
        if sent != length:
            raise BenchError(f"POST {path}: sent {sent} of {length} bytes")
        resp = conn.getresponse()
        data = resp.read()
    except (OSError, http.client.HTTPException) as e:
        conn.close()
        # The server may have answered (e.g. 413) and closed before taking the whole body.
        raise BenchError(f"POST {path}: {type(e).__name__}: {e}") from e
    if resp.status != 200:
        raise BenchError(f"POST {path}: HTTP {resp.status}: {describe_body(data)}")
    try:
        obj = json.loads(data)
    except ValueError:
        obj = None
    if not isinstance(obj, dict) or obj.get("success") is not True:
        raise BenchError(f"POST {path}: unexpected reply: {describe_body(data)}")


# ---------------------------------------------------------------------------------------------
# The benchmark


def run_parallel(count, workers, make_conn, task, path=None):
    """Run task(conn, fobj, i) for i in 0..count with `workers` threads, each on its own
    keep-alive connection from make_conn() (and its own handle on the file `path`, or None).
    The first failure stops the others. Returns (seconds from the first task's start to the
    last one's end, the first start as perf_counter, [task results in index order], the sum
    of the tasks' own durations)."""
    next_index = [0]
    lock = threading.Lock()
    errors = []
    stop = threading.Event()
    first_start = [None]
    out = [None] * count
    busy = [0.0] * count

    def worker():
        conn = make_conn()
        try:
            with open(path, "rb") if path else _nothing() as f:
                for _ in range(count):  # bound: never more iterations than tasks
                    if stop.is_set():
                        return
                    with lock:
                        i = next_index[0]
                        if i >= count:
                            return
                        next_index[0] += 1
                        if first_start[0] is None:
                            first_start[0] = time.perf_counter()
                    t = time.perf_counter()
                    out[i] = task(conn, f, i)
                    busy[i] = time.perf_counter() - t
        except (BenchError, *S3_ERRORS) as e:
            errors.append(str(e))
            stop.set()
        except Exception as e:  # noqa: BLE001 - any failure ends the run, with its reason
            errors.append(f"worker: {type(e).__name__}: {e}")
            stop.set()
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, name=f"worker-{n}", daemon=True)
               for n in range(max(1, min(workers, count)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    end = time.perf_counter()
    if errors:
        raise BenchError(errors[0] + (f" (and {len(errors) - 1} more worker errors)" if len(errors) > 1 else ""))
    if first_start[0] is None:
        raise BenchError("no work was done")
    return end - first_start[0], first_start[0], out, sum(busy)


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def chunk_span(i, chunk_size, size):
    offset = i * chunk_size
    return offset, min(chunk_size, size - offset)


def upload_chunks(args, upload_id, chunk_size, total_chunks, size):
    """Send every chunk with `args.parallel` workers, each on its own keep-alive connection.
    Returns (seconds from the first chunk's start to the last chunk's reply, first start, sum
    of the chunk requests' durations)."""

    def task(conn, f, i):
        offset, length = chunk_span(i, chunk_size, size)
        send_chunk(conn, f"/api/upload/chunk/{upload_id}/{i}", f, offset, length)
        return length

    secs, first, lengths, busy = run_parallel(total_chunks, args.parallel,
                                              lambda: new_conn(args.port, args.timeout), task, args.file)
    if sum(lengths) != size:
        raise BenchError(f"sent {sum(lengths)} bytes in chunks, expected {size}")
    return secs, first, busy


def hash_body(resp, size, what):
    """Read a response body in 1 MiB blocks, hashing it. Returns (sha256 hex, bytes)."""
    h = hashlib.sha256()
    n = 0
    # Bound: a body can't need more reads than its expected size in MiB (+ slack for short
    # reads); a longer body is a failure, not a reason to keep reading.
    max_reads = 16 * (size // MIB + 2)
    for _ in range(max_reads):
        block = resp.read(MIB)
        if not block:
            break
        h.update(block)
        n += len(block)
        if n > size:
            raise BenchError(f"{what}: body is longer than the {size} bytes uploaded")
    else:
        raise BenchError(f"{what}: body not finished after {max_reads} reads")
    return h.hexdigest(), n


def download(args, clip_id, size):
    """POST /api/file/<clipId>, hash the body in 1 MiB reads. Returns (seconds, sha256, bytes,
    headers dict)."""
    path = f"/api/file/{clip_id}"
    conn = new_conn(args.port, args.timeout)
    try:
        t0 = time.perf_counter()
        conn.request("POST", path, body=b"{}", headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            raise BenchError(f"POST {path}: HTTP {resp.status}: {describe_body(resp.read(4096))}")
        sha, n = hash_body(resp, size, f"POST {path}")
        t1 = time.perf_counter()
        headers = {k.lower(): v for k, v in resp.getheaders()}
    except (OSError, http.client.HTTPException) as e:
        raise BenchError(f"POST {path}: {type(e).__name__}: {e}") from e
    finally:
        conn.close()
    return t1 - t0, sha, n, headers


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for _ in range(os.path.getsize(path) // MIB + 2):
            block = f.read(MIB)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def mib(kib):
    return None if kib is None else kib / 1024.0


# ---------------------------------------------------------------------------------------------
# The server's own time sums, from GET /metrics (Prometheus text), when it has one

# Label values may hold braces (route templates do: /api/upload/chunk/{upload_id}/{chunk}).
METRIC_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+([-+0-9.eE]+|NaN|[+-]Inf)(\s+-?[0-9]+)?\s*$')
# (results key, series name, a substring its labels must contain or None)
SERVER_SUMS = (
    ("server_assembly_s", "ferry_assembly_seconds_sum", None),
    ("server_assembly_hashed_mib", "ferry_assembly_hashed_bytes_total", None),
    ("server_chunk_requests_s", "ferry_http_request_duration_seconds_sum", "/api/upload/chunk/"),
    ("server_chunk_requests_n", "ferry_http_request_duration_seconds_count", "/api/upload/chunk/"),
    ("server_complete_request_s", "ferry_http_request_duration_seconds_sum", "/api/upload/complete/"),
    ("server_store_query_s", "ferry_store_query_seconds_sum", None),
)


def scrape_sums(port, timeout):
    """{results key: value} of SERVER_SUMS (summed over matching series), or {} without a
    usable GET /metrics."""
    conn = new_conn(port, min(timeout, 10.0))
    try:
        conn.request("GET", "/metrics")
        resp = conn.getresponse()
        data = resp.read(16 * MIB)
        if resp.status != 200:
            return {}
    except (OSError, http.client.HTTPException):
        return {}
    finally:
        conn.close()
    out = {}
    for line in data.decode("utf-8", "replace").splitlines():
        m = METRIC_LINE.match(line)
        if not m:
            continue
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        for key, series, needle in SERVER_SUMS:
            if name == series and (needle is None or needle in labels):
                try:
                    out[key] = out.get(key, 0.0) + float(value)
                except ValueError:
                    pass
    return out


def record_server_sums(results, before, after):
    for key, _, _ in SERVER_SUMS:
        if key in after:
            delta = after[key] - before.get(key, 0.0)
            results[key] = delta / MIB if key.endswith("_mib") else delta


# ---------------------------------------------------------------------------------------------
# Sampling one or two processes


class Samplers:
    """The RSS samplers of the server (`--pid`, rss_* keys) and of the S3 store (`--store-pid`,
    store_rss_* keys), either or both absent."""

    def __init__(self, args, results):
        self.items = []  # (prefix, pid, sampler, baseline KiB)
        for prefix, pid in (("rss", args.pid), ("store_rss", args.store_pid)):
            if not pid:
                continue
            base = read_status_kib(pid, "VmRSS")
            if base is None:
                raise BenchError(f"cannot read VmRSS of PID {pid} (is it running?)")
            results[f"{prefix}_baseline_mib"] = mib(base)
            sampler = RssSampler(pid, interval=args.rss_interval, max_seconds=args.max_seconds).start()
            self.items.append((prefix, pid, sampler, base))

    def set_phase(self, name):
        for _, _, sampler, _ in self.items:
            sampler.set_phase(name)

    def finish(self, results):
        for prefix, pid, sampler, base in self.items:
            sampler.stop()
            results[f"{prefix}_samples"] = sampler.samples
            peak = mib(sampler.peak_kib)
            if peak is not None:
                results[f"{prefix}_peak_mib"] = peak
                results[f"{prefix}_peak_growth_mib"] = peak - mib(base)
                for phase, kib in sampler.phase_peaks.items():
                    results[f"{prefix}_{phase}_growth_mib"] = mib(kib) - mib(base)
            hwm_key = "hwm_mib" if prefix == "rss" else f"{prefix}_hwm_mib"
            results[hwm_key] = mib(read_status_kib(pid, "VmHWM"))


def run(args, results):
    size = os.path.getsize(args.file)
    if size <= 0:
        raise BenchError(f"{args.file} is empty", code=2)
    local_sha = (args.sha256 or sha256_file(args.file)).lower()
    results.update(size_bytes=size, sha_ok=0, server_sha_checked=0 if args.no_server_sha else 1)

    samplers = Samplers(args, results)
    try:
        ctl = new_conn(args.port, args.timeout)
        init = post_json(ctl, "/api/upload/initiate", {
            "filename": "bench.bin",
            "filesize": size,
            "contentType": "file",
            "expiration": "1hr",
        })
        upload_id = require(init, "uploadId", str, "initiate")
        chunk_size = require(init, "chunkSize", int, "initiate")
        total_chunks = require(init, "totalChunks", int, "initiate")
        if chunk_size <= 0 or total_chunks != math.ceil(size / chunk_size):
            raise BenchError(f"initiate: chunkSize={chunk_size} totalChunks={total_chunks} do not "
                             f"cover {size} bytes (expected ceil(size/chunkSize) chunks)")
        if args.expect_chunk_size is not None and chunk_size != args.expect_chunk_size:
            raise BenchError(f"initiate: chunkSize={chunk_size}, expected {args.expect_chunk_size}")
        results.update(chunk_size=chunk_size, chunks=total_chunks)
        print(f"  initiate: uploadId={upload_id} chunkSize={chunk_size} totalChunks={total_chunks}",
              flush=True)
        sums_before = scrape_sums(args.port, args.timeout)

        samplers.set_phase("upload")
        chunks_s, first_start, busy = upload_chunks(args, upload_id, chunk_size, total_chunks, size)
        results.update(chunks_s=chunks_s, chunk_request_mean_s=busy / total_chunks)

        samplers.set_phase("complete")
        t0 = time.perf_counter()
        done = post_json(ctl, f"/api/upload/complete/{upload_id}", {})
        t1 = time.perf_counter()
        ctl.close()
        upload_s = t1 - first_start
        results.update(complete_s=t1 - t0, upload_s=upload_s,
                       upload_mbps=size / MIB / upload_s,
                       chunks_mbps=size / MIB / chunks_s if chunks_s > 0 else None)
        if sums_before:
            record_server_sums(results, sums_before, scrape_sums(args.port, args.timeout))
        clip_id = require(done, "clipId", str, "complete")
        server_size = require(done, "size", int, "complete")
        if args.no_server_sha:
            server_sha = "(not asked: --no-server-sha)"
        else:
            server_sha = require(done, "sha256", str, "complete").lower()
        print(f"  complete: clipId={clip_id} size={server_size} sha256={server_sha}", flush=True)
        if server_size != size:
            raise BenchError(f"complete: size {server_size} != local {size}", code=3)
        if not args.no_server_sha and server_sha != local_sha:
            raise BenchError(f"complete: sha256 {server_sha} != local {local_sha}", code=3)

        samplers.set_phase("download")
        down_s, down_sha, down_n, headers = download(args, clip_id, size)
        results.update(download_s=down_s, download_mbps=size / MIB / down_s)
        if down_n != size:
            raise BenchError(f"download: got {down_n} bytes, expected {size}", code=3)
        if down_sha != local_sha:
            raise BenchError(f"download: sha256 {down_sha} != local {local_sha}", code=3)
        cl = headers.get("content-length")
        if cl is not None and cl != str(size):
            print(f"  warning: download Content-Length {cl} != {size}", file=sys.stderr)
        etag = headers.get("etag")
        if etag is not None and etag.strip('W/"').lower() != local_sha:
            print(f"  warning: download ETag {etag} is not the SHA-256 {local_sha}", file=sys.stderr)
        results["sha_ok"] = 1
    finally:
        samplers.finish(results)


# ---------------------------------------------------------------------------------------------
# --s3-direct: the same traffic straight to the S3 store


def run_s3_direct(args, results):
    size = os.path.getsize(args.file)
    if size <= 0:
        raise BenchError(f"{args.file} is empty", code=2)
    local_sha = (args.sha256 or sha256_file(args.file)).lower()
    chunk_size = args.chunk_size
    total_chunks = math.ceil(size / chunk_size)
    if total_chunks > 1 and chunk_size < S3_MIN_PART:
        raise BenchError(f"--chunk-size {chunk_size} is under S3's 5 MiB part minimum: "
                         "UploadPartCopy cannot assemble such chunks", code=2)
    if total_chunks > S3_MAX_PARTS:
        raise BenchError(f"{total_chunks} chunks: more than S3's {S3_MAX_PARTS} parts", code=2)
    if s3lite is None:
        raise BenchError("--s3-direct needs scripts/lib/s3lite.py", code=2)
    try:
        s3 = s3lite.from_env(args.s3_endpoint, args.s3_bucket, args.timeout)
    except ValueError as e:
        raise BenchError(str(e), code=2) from e
    prefix = args.s3_prefix
    chunk_keys = [f"{prefix}chunk-{i:05d}" for i in range(total_chunks)]
    dest = f"{prefix}object"
    results.update(size_bytes=size, sha_ok=0, server_sha_checked=0, chunk_size=chunk_size,
                   chunks=total_chunks, cleanup_ok=0)
    print(f"  s3 direct: {args.s3_endpoint}/{args.s3_bucket}/{prefix} chunkSize={chunk_size} "
          f"totalChunks={total_chunks}", flush=True)
    open_upload = [None]  # the multipart upload id while one is open

    samplers = Samplers(args, results)
    try:
        samplers.set_phase("upload")

        def put(conn, f, i):
            offset, length = chunk_span(i, chunk_size, size)
            s3.put_file(conn, chunk_keys[i], f, offset, length)
            return length

        chunks_s, first_start, lengths, busy = run_parallel(total_chunks, args.parallel, s3.connect, put,
                                                            args.file)
        if sum(lengths) != size:
            raise BenchError(f"sent {sum(lengths)} bytes in chunks, expected {size}")
        results.update(chunks_s=chunks_s, chunk_request_mean_s=busy / total_chunks)

        samplers.set_phase("complete")
        ctl = s3.connect()
        t0 = time.perf_counter()
        try:
            if total_chunks == 1:
                s3.copy_object(ctl, dest, chunk_keys[0])
            else:
                open_upload[0] = s3.create_multipart(ctl, dest)
                uid = open_upload[0]
                _, _, etags, _ = run_parallel(
                    total_chunks, args.copy_concurrency, s3.connect,
                    lambda conn, _f, i: s3.upload_part_copy(conn, dest, uid, i + 1, chunk_keys[i]))
                s3.complete_multipart(ctl, dest, uid, [(i + 1, e) for i, e in enumerate(etags)])
                open_upload[0] = None
            t_assembled = time.perf_counter()
            run_parallel(total_chunks, args.delete_concurrency, s3.connect,
                         lambda conn, _f, i: s3.delete(conn, chunk_keys[i]))
            t1 = time.perf_counter()
        except s3lite.S3Error as e:
            raise BenchError(f"complete: {e}") from e
        finally:
            ctl.close()
        upload_s = t1 - first_start
        results.update(complete_s=t1 - t0, upload_s=upload_s, upload_mbps=size / MIB / upload_s,
                       chunks_mbps=size / MIB / chunks_s if chunks_s > 0 else None,
                       assemble_s=t_assembled - t0, chunk_delete_s=t1 - t_assembled)
        print(f"  complete: {dest} assembled in {t_assembled - t0:.3f} s, chunks deleted in "
              f"{t1 - t_assembled:.3f} s", flush=True)

        samplers.set_phase("download")
        conn = s3.connect()
        try:
            t0 = time.perf_counter()
            resp = s3.open_get(conn, dest)
            down_sha, down_n = hash_body(resp, size, f"GET {dest}")
            t1 = time.perf_counter()
        except (s3lite.S3Error, OSError, http.client.HTTPException) as e:
            raise BenchError(f"download: {type(e).__name__}: {e}") from e
        finally:
            conn.close()
        results.update(download_s=t1 - t0, download_mbps=size / MIB / (t1 - t0))
        if down_n != size:
            raise BenchError(f"download: got {down_n} bytes, expected {size}", code=3)
        if down_sha != local_sha:
            raise BenchError(f"download: sha256 {down_sha} != local {local_sha}", code=3)
        results["sha_ok"] = 1
    finally:
        samplers.finish(results)
        # Not timed: leave nothing behind, whatever happened above.
        conn = s3.connect()
        try:
            if open_upload[0]:
                s3.abort_multipart(conn, dest, open_upload[0])
            aborted, deleted = s3.purge(conn, prefix)
            results["cleanup_ok"] = 1
            print(f"  cleanup: {deleted} objects deleted, {aborted} multipart uploads aborted", flush=True)
        except (s3lite.S3Error, OSError, http.client.HTTPException) as e:
            print(f"bench_upload: warning: cleanup of {prefix} failed: {e}", file=sys.stderr)
        finally:
            conn.close()


def write_results(path, results):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        for k, v in results.items():
            if v is None:
                v = "na"
            elif isinstance(v, float):
                v = f"{v:.4f}"
            f.write(f"{k}={v}\n")
    os.replace(tmp, path)


def main():
    p = argparse.ArgumentParser(description="ferry upload/download benchmark client (see the top "
                                            "of scripts/bench_upload.py)")
    p.add_argument("--port", type=int, help="the server's port on 127.0.0.1 (not with --s3-direct)")
    p.add_argument("--file", required=True, help="file to upload")
    p.add_argument("--sha256", help="its SHA-256 (computed if omitted)")
    p.add_argument("--parallel", type=int, default=4, help="concurrent chunk senders (default 4)")
    p.add_argument("--pid", type=int, help="the server's PID, to sample its VmRSS")
    p.add_argument("--store-pid", type=int, help="the S3 store's PID, to sample its VmRSS too")
    p.add_argument("--rss-interval", type=float, default=0.05, help="seconds between RSS samples")
    p.add_argument("--timeout", type=float, default=300.0, help="socket timeout per call, seconds")
    p.add_argument("--max-seconds", type=float, default=3600.0, help="hard bound on RSS sampling")
    p.add_argument("--results", help="write key=value results here")
    p.add_argument("--no-server-sha", action="store_true",
                   help="complete's reply need not carry a sha256 and it is not checked (for a "
                        "server that does not hash, e.g. the bare hyper ceiling); the downloaded "
                        "bytes are still hashed and checked here")
    p.add_argument("--expect-chunk-size", type=int,
                   help="fail unless initiate answers this chunkSize (to keep two servers' runs "
                        "comparable)")
    s3 = p.add_argument_group("--s3-direct (no server: straight to an S3 store on 127.0.0.1)")
    s3.add_argument("--s3-direct", action="store_true", help="measure the S3 store itself")
    s3.add_argument("--s3-endpoint", help="e.g. http://127.0.0.1:8333")
    s3.add_argument("--s3-bucket", help="an existing bucket")
    s3.add_argument("--s3-prefix", help="key prefix for this run's objects, ending in '/'; "
                                        "everything under it is deleted at the end")
    s3.add_argument("--chunk-size", type=int, help="bytes per chunk object (ferry's chunkSize)")
    s3.add_argument("--copy-concurrency", type=int, default=4,
                    help="UploadPartCopy requests at once (default 4, ferry's "
                         "upload.assembly_concurrency)")
    s3.add_argument("--delete-concurrency", type=int, default=8,
                    help="chunk DeleteObject requests at once (default 8, as ferry)")
    args = p.parse_args()
    if not 1 <= args.parallel <= 256:
        p.error("--parallel must be between 1 and 256")
    if args.s3_direct:
        if not (args.s3_endpoint and args.s3_bucket and args.s3_prefix and args.chunk_size):
            p.error("--s3-direct needs --s3-endpoint, --s3-bucket, --s3-prefix and --chunk-size")
        if not args.s3_prefix.endswith("/") or args.s3_prefix.startswith("/"):
            p.error("--s3-prefix must end in '/' and not start with one")
        if args.chunk_size <= 0:
            p.error("--chunk-size must be positive")
        if not (1 <= args.copy_concurrency <= 64 and 1 <= args.delete_concurrency <= 64):
            p.error("--copy-concurrency and --delete-concurrency must be 1..64")
        if args.port is not None or args.no_server_sha or args.expect_chunk_size is not None:
            p.error("--port, --no-server-sha and --expect-chunk-size are for a server, not --s3-direct")
    elif args.port is None or not 1 <= args.port <= 65535:
        p.error("--port must be between 1 and 65535")

    results = {}
    code = 0
    try:
        (run_s3_direct if args.s3_direct else run)(args, results)
    except BenchError as e:
        print(f"bench_upload: FAIL: {e}", file=sys.stderr)
        code = e.code
    except OSError as e:
        print(f"bench_upload: FAIL: {type(e).__name__}: {e}", file=sys.stderr)
        code = 1
    finally:
        if args.results:
            write_results(args.results, results)
    if not args.results:
        for k, v in results.items():
            print(f"{k}={v}")
    return code


if __name__ == "__main__":
    sys.exit(main())
