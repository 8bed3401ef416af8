#!/usr/bin/env python3
# HTTP half of scripts/bench-upload.sh: measures how fast a running server (ferry, or the bare
# hyper ceiling) accepts a file through the three-step upload API (POST /api/upload/initiate,
# P parallel POST /api/upload/chunk/<id>/<i> with raw application/octet-stream bodies sent with sendfile
# from the file on disk, POST /api/upload/complete/<id>) and how fast it streams it back
# (POST /api/file/<clipId>, hashed in 1 MiB reads, never stored). It checks the SHA-256 and the
# byte count both ways, and, when given the server's PID, samples its VmRSS from
# /proc/PID/status every ~50 ms during upload + complete + download (peak growth over the
# baseline read just before the upload, per phase too) and reads VmHWM at the end.
# Speeds are MiB/s (2^20 bytes per second).
#
# Normally run by scripts/bench-upload.sh, which starts ferry and the bare hyper ceiling
# (examples/bare_hyper.rs --files, which does not hash: run with --no-server-sha, so the
# complete reply's sha256 is neither required nor checked, while the downloaded bytes still are),
# makes the file and measures dd. Standalone, against a server already listening on 127.0.0.1:
#   python3 scripts/bench_upload.py --port 8080 --file /tmp/x.bin [--parallel 4] [--pid PID]
#       [--sha256 HEX] [--results FILE] [--no-server-sha] [--expect-chunk-size BYTES]
# --results writes `key=value` lines (numbers, or "na") for the shell script to read.
# Exit codes: 0 ok, 1 an HTTP call or I/O failed, 3 a SHA-256 or size check failed,
# 2 bad arguments. Python 3 standard library only. Traffic goes only to 127.0.0.1.

import argparse
import hashlib
import http.client
import json
import math
import os
import sys
import threading
import time

MIB = 1 << 20
HOST = "127.0.0.1"  # the only address this script ever talks to


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


def upload_chunks(args, upload_id, chunk_size, total_chunks, size):
    """Send every chunk with `args.parallel` workers, each on its own keep-alive connection.
    Returns (seconds from the first chunk's start to the last chunk's reply, first start)."""
    next_index = [0]
    lock = threading.Lock()
    errors = []
    stop = threading.Event()
    first_start = [None]
    sent_bytes = [0]

    def worker():
        conn = new_conn(args.port, args.timeout)
        try:
            with open(args.file, "rb") as f:
                for _ in range(total_chunks):  # bound: never more iterations than chunks
                    if stop.is_set():
                        return
                    with lock:
                        i = next_index[0]
                        if i >= total_chunks:
                            return
                        next_index[0] += 1
                        if first_start[0] is None:
                            first_start[0] = time.perf_counter()
                    offset = i * chunk_size
                    length = min(chunk_size, size - offset)
                    send_chunk(conn, f"/api/upload/chunk/{upload_id}/{i}", f, offset, length)
                    with lock:
                        sent_bytes[0] += length
        except BenchError as e:
            errors.append(str(e))
            stop.set()
        except Exception as e:  # noqa: BLE001 - any failure ends the run, with its reason
            errors.append(f"chunk worker: {type(e).__name__}: {e}")
            stop.set()
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, name=f"chunk-{n}", daemon=True)
               for n in range(min(args.parallel, total_chunks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    end = time.perf_counter()
    if errors:
        raise BenchError(errors[0] + (f" (and {len(errors) - 1} more worker errors)" if len(errors) > 1 else ""))
    if sent_bytes[0] != size:
        raise BenchError(f"sent {sent_bytes[0]} bytes in chunks, expected {size}")
    return end - first_start[0], first_start[0]


def download(args, clip_id, size):
    """POST /api/file/<clipId>, hash the body in 1 MiB reads. Returns (seconds, sha256, bytes,
    headers dict)."""
    path = f"/api/file/{clip_id}"
    conn = new_conn(args.port, args.timeout)
    h = hashlib.sha256()
    n = 0
    try:
        t0 = time.perf_counter()
        conn.request("POST", path, body=b"{}", headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            raise BenchError(f"POST {path}: HTTP {resp.status}: {describe_body(resp.read(4096))}")
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
                raise BenchError(f"POST {path}: body is longer than the {size} bytes uploaded")
        else:
            raise BenchError(f"POST {path}: body not finished after {max_reads} reads")
        t1 = time.perf_counter()
        headers = {k.lower(): v for k, v in resp.getheaders()}
    except (OSError, http.client.HTTPException) as e:
        raise BenchError(f"POST {path}: {type(e).__name__}: {e}") from e
    finally:
        conn.close()
    return t1 - t0, h.hexdigest(), n, headers


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


def run(args, results):
    size = os.path.getsize(args.file)
    if size <= 0:
        raise BenchError(f"{args.file} is empty", code=2)
    local_sha = (args.sha256 or sha256_file(args.file)).lower()
    results.update(size_bytes=size, sha_ok=0, server_sha_checked=0 if args.no_server_sha else 1)

    sampler = None
    if args.pid:
        base = read_status_kib(args.pid, "VmRSS")
        if base is None:
            raise BenchError(f"cannot read VmRSS of PID {args.pid} (is it running?)")
        results["rss_baseline_mib"] = mib(base)
        sampler = RssSampler(args.pid, interval=args.rss_interval, max_seconds=args.max_seconds).start()

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

        if sampler:
            sampler.set_phase("upload")
        chunks_s, first_start = upload_chunks(args, upload_id, chunk_size, total_chunks, size)
        results["chunks_s"] = chunks_s

        if sampler:
            sampler.set_phase("complete")
        t0 = time.perf_counter()
        done = post_json(ctl, f"/api/upload/complete/{upload_id}", {})
        t1 = time.perf_counter()
        ctl.close()
        upload_s = t1 - first_start
        results.update(complete_s=t1 - t0, upload_s=upload_s,
                       upload_mbps=size / MIB / upload_s,
                       chunks_mbps=size / MIB / chunks_s if chunks_s > 0 else None)
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

        if sampler:
            sampler.set_phase("download")
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
        if sampler:
            sampler.stop()
            base = results.get("rss_baseline_mib")
            peak = mib(sampler.peak_kib)
            results["rss_samples"] = sampler.samples
            if peak is not None and base is not None:
                results["rss_peak_mib"] = peak
                results["rss_peak_growth_mib"] = peak - base
                for phase, kib in sampler.phase_peaks.items():
                    results[f"rss_{phase}_growth_mib"] = mib(kib) - base
            results["hwm_mib"] = mib(read_status_kib(args.pid, "VmHWM"))


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
    p = argparse.ArgumentParser(description=__doc__ or "ferry upload/download benchmark client")
    p.add_argument("--port", type=int, required=True, help="the server's port on 127.0.0.1")
    p.add_argument("--file", required=True, help="file to upload")
    p.add_argument("--sha256", help="its SHA-256 (computed if omitted)")
    p.add_argument("--parallel", type=int, default=4, help="concurrent chunk senders (default 4)")
    p.add_argument("--pid", type=int, help="the server's PID, to sample its VmRSS")
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
    args = p.parse_args()
    if not 1 <= args.parallel <= 256:
        p.error("--parallel must be between 1 and 256")
    if not 1 <= args.port <= 65535:
        p.error("--port must be between 1 and 65535")

    results = {}
    code = 0
    try:
        run(args, results)
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
