#!/usr/bin/env python3
"""A small S3 client for the benchmarks: AWS Signature Version 4 (header-signed,
`x-amz-content-sha256: UNSIGNED-PAYLOAD`) over path-style URLs (endpoint/bucket/key), written on
the Python standard library (hmac, hashlib, http.client). It knows the few requests the upload
benchmark needs to talk to SeaweedFS directly: PutObject (body streamed with sendfile from a
file), GetObject (streamed), CopyObject, the multipart trio with UploadPartCopy, DeleteObject,
ListObjectsV2 and ListMultipartUploads. It is not a general S3 client: no retries, no TLS
(plain http:// on loopback only: it refuses any other host), no virtual-hosted style.

As a script, for bench-upload.sh (credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY,
region from AWS_REGION, default us-east-1; never taken from the command line):
    python3 scripts/lib/s3lite.py selftest                   check the signer against AWS's
                                                             published example
    python3 scripts/lib/s3lite.py check ENDPOINT BUCKET      a signed listing of the bucket
    python3 scripts/lib/s3lite.py purge ENDPOINT BUCKET PREFIX
                                                             abort the open multipart uploads
                                                             and delete every object under
                                                             PREFIX (which must be non-empty)
    python3 scripts/lib/s3lite.py listener-pid ENDPOINT      the PID listening on the
                                                             endpoint's port, if /proc tells
Exit codes: 0 ok, 1 a request failed, 2 bad arguments.
"""

import datetime
import hashlib
import hmac
import http.client
import os
import sys
import urllib.parse
import xml.etree.ElementTree as ET

UNSIGNED = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
LOOPBACK = ("127.0.0.1", "localhost", "::1")
MIB = 1 << 20


class S3Error(Exception):
    """A request failed: transport error, unexpected status, or an S3 error document."""

    def __init__(self, message, status=None, code=None):
        super().__init__(message)
        self.status = status
        self.code = code


# ---------------------------------------------------------------------------------------------
# Signature Version 4 (https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html)


def uri_encode(text, keep_slash=False):
    """RFC 3986 percent-encoding as SigV4 wants it: everything but A-Z a-z 0-9 - _ . ~ (and '/'
    in an object key's path) is encoded, bytes as UTF-8, hex upper-case."""
    return urllib.parse.quote(text, safe="/" if keep_slash else "")


def canonical_query(query):
    """key=value pairs, both encoded, sorted by key then value; a key with no value keeps '='."""
    pairs = sorted((uri_encode(str(k)), uri_encode(str(v))) for k, v in (query or {}).items())
    return "&".join(f"{k}={v}" for k, v in pairs)


def _hmac(key, text):
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def signing_key(secret, day, region, service="s3"):
    k = _hmac(("AWS4" + secret).encode("utf-8"), day)
    k = _hmac(k, region)
    k = _hmac(k, service)
    return _hmac(k, "aws4_request")


def sign(method, path, query, headers, access_key, secret, region, amz_date=None,
         payload_hash=UNSIGNED, service="s3"):
    """The headers to send for one request: `headers` (which must include Host; all of them are
    signed) plus x-amz-date, x-amz-content-sha256 and Authorization. `path` is the canonical
    (already encoded) URI path, exactly as it goes on the request line."""
    if amz_date is None:
        amz_date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    out = dict(headers)
    out["x-amz-date"] = amz_date
    out["x-amz-content-sha256"] = payload_hash
    canon = {k.lower(): " ".join(str(v).split()) for k, v in out.items()}
    if "host" not in canon:
        raise ValueError("the Host header must be signed")
    names = sorted(canon)
    signed_headers = ";".join(names)
    creq = "\n".join([
        method,
        path,
        canonical_query(query),
        "".join(f"{n}:{canon[n]}\n" for n in names),
        signed_headers,
        payload_hash,
    ])
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join([
        "AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(creq.encode("utf-8")).hexdigest(),
    ])
    signature = hmac.new(signing_key(secret, day, region, service), to_sign.encode("utf-8"),
                         hashlib.sha256).hexdigest()
    out["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
                            f"SignedHeaders={signed_headers}, Signature={signature}")
    return out


def selftest():
    """AWS's own example for a header-signed GET (the S3 SigV4 documentation's "GET Object"
    example: examplebucket, /test.txt, Range bytes=0-9, 24 May 2013)."""
    got = sign("GET", "/test.txt", {}, {"Host": "examplebucket.s3.amazonaws.com", "Range": "bytes=0-9"},
               "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "us-east-1",
               amz_date="20130524T000000Z", payload_hash=EMPTY_SHA256)["Authorization"]
    want = ("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
            "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
            "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
    if got != want:
        raise S3Error(f"signer self-test failed:\n got  {got}\n want {want}")


# ---------------------------------------------------------------------------------------------
# XML answers


def _local(tag):
    return tag.rsplit("}", 1)[-1]


def xml_find_all(data, name):
    """Every element called `name` (namespace ignored) in the XML document `data`."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError:
        return []
    return [e for e in root.iter() if _local(e.tag) == name]


def xml_text(elem_or_data, name):
    """Text of the first `name` element (namespace ignored) under an element or in a document."""
    elems = (xml_find_all(elem_or_data, name) if isinstance(elem_or_data, (bytes, str))
             else [e for e in elem_or_data.iter() if _local(e.tag) == name])
    return (elems[0].text or "") if elems else ""


def xml_error(data):
    """(Code, Message) when `data` is an S3 <Error> document, else None."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError:
        return None
    if _local(root.tag) != "Error":
        return None
    return xml_text(root, "Code"), xml_text(root, "Message")


def xml_escape(text):
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


# ---------------------------------------------------------------------------------------------
# The client


class S3:
    """One bucket on one loopback endpoint. Connections are the caller's (one per thread):
    `connect()` makes one; every request method takes it first and leaves it reusable."""

    def __init__(self, endpoint, bucket, access_key, secret_key, region="us-east-1", timeout=300.0):
        u = urllib.parse.urlsplit(endpoint)
        if u.scheme != "http" or (u.hostname or "") not in LOOPBACK or u.path not in ("", "/"):
            raise ValueError(f"endpoint must be http://127.0.0.1:PORT (loopback only), not {endpoint!r}")
        if not bucket or "/" in bucket:
            raise ValueError(f"bad bucket name {bucket!r}")
        if not access_key or not secret_key:
            raise ValueError("S3 credentials are missing")
        self.host = u.hostname
        self.port = u.port or 80
        self.host_header = u.netloc  # exactly as the signature sees it
        self.bucket = bucket
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self.timeout = timeout

    def connect(self):
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout, blocksize=MIB)

    def path(self, key=""):
        p = "/" + uri_encode(self.bucket)
        return p + "/" + uri_encode(key, keep_slash=True) if key else p

    def _start(self, conn, method, key, query, headers, length):
        """Send the request line and signed headers (not the body)."""
        path = self.path(key)
        target = path + ("?" + canonical_query(query) if query else "")
        signed = sign(method, path, query, {"Host": self.host_header, **(headers or {})},
                      self.access_key, self.secret_key, self.region)
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        for k, v in signed.items():
            conn.putheader(k, v)
        if length is not None:
            conn.putheader("Content-Length", str(length))
        conn.endheaders()

    def request(self, conn, method, key="", query=None, headers=None, body=b"", ok=(200,)):
        """A request with a small in-memory body; returns (status, headers, data) and raises
        S3Error unless the status is in `ok`. The body is read whole: only for small answers."""
        what = f"{method} {self.path(key)}" + (f"?{canonical_query(query)}" if query else "")
        try:
            self._start(conn, method, key, query, headers,
                        len(body) if body or method in ("PUT", "POST") else None)
            if body:
                conn.send(body)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise S3Error(f"{what}: {type(e).__name__}: {e}") from e
        if resp.status not in ok:
            err = xml_error(data)
            code = err[0] if err else None
            detail = f"{err[0]}: {err[1]}" if err else data[:300].decode("utf-8", "replace")
            raise S3Error(f"{what}: HTTP {resp.status}: {detail}", resp.status, code)
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data

    def put_file(self, conn, key, fobj, offset, length):
        """PutObject with bytes [offset, offset+length) of `fobj` as the body, sent with
        sendfile, payload unsigned. Returns the ETag."""
        what = f"PUT {self.path(key)}"
        try:
            self._start(conn, "PUT", key, None, {"Content-Type": "application/octet-stream"}, length)
            sent = conn.sock.sendfile(fobj, offset, length)
            if sent != length:
                raise S3Error(f"{what}: sent {sent} of {length} bytes")
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise S3Error(f"{what}: {type(e).__name__}: {e}") from e
        if resp.status != 200:
            err = xml_error(data)
            raise S3Error(f"{what}: HTTP {resp.status}: {err or data[:300]!r}", resp.status)
        return resp.getheader("ETag", "")

    def open_get(self, conn, key):
        """GetObject: the response, positioned at the body, for the caller to stream and close."""
        what = f"GET {self.path(key)}"
        try:
            self._start(conn, "GET", key, None, None, None)
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise S3Error(f"{what}: {type(e).__name__}: {e}") from e
        if resp.status != 200:
            data = resp.read(4096)
            conn.close()
            raise S3Error(f"{what}: HTTP {resp.status}: {xml_error(data) or data[:300]!r}", resp.status)
        return resp

    def _copy_source(self, source_key):
        return "/" + uri_encode(self.bucket) + "/" + uri_encode(source_key, keep_slash=True)

    def copy_object(self, conn, dest_key, source_key):
        _, _, data = self.request(conn, "PUT", dest_key,
                                  headers={"x-amz-copy-source": self._copy_source(source_key)})
        if xml_error(data) or not xml_text(data, "ETag"):  # S3 may answer 200 with an error
            raise S3Error(f"CopyObject {dest_key}: {data[:300]!r}")

    def create_multipart(self, conn, key):
        _, _, data = self.request(conn, "POST", key, query={"uploads": ""})
        upload_id = xml_text(data, "UploadId")
        if not upload_id:
            raise S3Error(f"CreateMultipartUpload {key}: no UploadId in {data[:300]!r}")
        return upload_id

    def upload_part_copy(self, conn, key, upload_id, number, source_key):
        """UploadPartCopy of the whole of `source_key` as part `number`; returns its ETag."""
        _, _, data = self.request(conn, "PUT", key,
                                  query={"partNumber": str(number), "uploadId": upload_id},
                                  headers={"x-amz-copy-source": self._copy_source(source_key)})
        etag = xml_text(data, "ETag")
        if xml_error(data) or not etag:
            raise S3Error(f"UploadPartCopy {key} part {number}: {data[:300]!r}")
        return etag

    def complete_multipart(self, conn, key, upload_id, parts):
        """CompleteMultipartUpload with `parts` = [(number, etag), ...] in order."""
        body = "<CompleteMultipartUpload>" + "".join(
            f"<Part><PartNumber>{n}</PartNumber><ETag>{xml_escape(etag)}</ETag></Part>"
            for n, etag in parts) + "</CompleteMultipartUpload>"
        _, _, data = self.request(conn, "POST", key, query={"uploadId": upload_id},
                                  headers={"Content-Type": "application/xml"}, body=body.encode())
        if xml_error(data):
            raise S3Error(f"CompleteMultipartUpload {key}: {xml_error(data)}")

    def abort_multipart(self, conn, key, upload_id):
        self.request(conn, "DELETE", key, query={"uploadId": upload_id}, ok=(200, 204, 404))

    def delete(self, conn, key):
        self.request(conn, "DELETE", key, ok=(200, 204, 404))

    def list_keys(self, conn, prefix, max_pages=10000):
        """Every object key under `prefix` (ListObjectsV2, all pages)."""
        keys, token = [], None
        for _ in range(max_pages):
            q = {"list-type": "2", "prefix": prefix, "max-keys": "1000"}
            if token:
                q["continuation-token"] = token
            _, _, data = self.request(conn, "GET", "", query=q)
            keys += [xml_text(c, "Key") for c in xml_find_all(data, "Contents")]
            token = xml_text(data, "NextContinuationToken")
            if xml_text(data, "IsTruncated") != "true" or not token:
                return keys
        raise S3Error(f"listing {prefix} did not end after {max_pages} pages")

    def list_uploads(self, conn, prefix, max_pages=1000):
        """Every open multipart upload under `prefix`: [(key, upload_id), ...]."""
        out, key_marker, id_marker = [], "", ""
        for _ in range(max_pages):
            q = {"uploads": "", "prefix": prefix}
            if key_marker:
                q.update({"key-marker": key_marker, "upload-id-marker": id_marker})
            _, _, data = self.request(conn, "GET", "", query=q)
            out += [(xml_text(u, "Key"), xml_text(u, "UploadId")) for u in xml_find_all(data, "Upload")]
            key_marker, id_marker = xml_text(data, "NextKeyMarker"), xml_text(data, "NextUploadIdMarker")
            if xml_text(data, "IsTruncated") != "true" or not key_marker:
                return out
        raise S3Error(f"listing uploads under {prefix} did not end after {max_pages} pages")

    def purge(self, conn, prefix):
        """Abort every open multipart upload and delete every object under `prefix` (which
        must be non-empty: never the whole bucket). Returns (uploads aborted, objects deleted)."""
        if not prefix or not prefix.endswith("/"):
            raise ValueError(f"refusing to purge prefix {prefix!r}: it must be non-empty and end in '/'")
        uploads = [(k, u) for k, u in self.list_uploads(conn, prefix) if k.startswith(prefix)]
        for key, upload_id in uploads:
            self.abort_multipart(conn, key, upload_id)
        keys = [k for k in self.list_keys(conn, prefix) if k.startswith(prefix)]
        for key in keys:
            self.delete(conn, key)
        return len(uploads), len(keys)


def from_env(endpoint, bucket, timeout=300.0):
    """An S3 for `endpoint`/`bucket` with the AWS_* credentials of the environment."""
    return S3(endpoint, bucket, os.environ.get("AWS_ACCESS_KEY_ID", ""),
              os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
              os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
              timeout)


# ---------------------------------------------------------------------------------------------
# Who listens on a port (to sample the store's RSS when nobody told us its PID)


def listener_pid(port):
    """The PID of the process with a listening TCP socket on `port` (any local address), found
    through /proc/net/tcp{,6} and /proc/*/fd; None when it cannot be told."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f, None)
                for line in f:
                    cols = line.split()
                    if len(cols) > 9 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(cols[9])
        except OSError:
            continue
    if not inodes:
        return None
    wanted = {f"socket:[{i}]" for i in inodes}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") in wanted:
                    return int(pid)
        except OSError:
            continue
    return None


def main(argv):
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, rest = argv[0], argv[1:]
    try:
        if cmd == "selftest" and not rest:
            selftest()
            print("s3lite: SigV4 self-test ok")
        elif cmd == "check" and len(rest) == 2:
            s3 = from_env(rest[0], rest[1], timeout=10)
            conn = s3.connect()
            s3.request(conn, "GET", "", query={"list-type": "2", "max-keys": "1"})
            conn.close()
        elif cmd == "purge" and len(rest) == 3:
            s3 = from_env(rest[0], rest[1], timeout=60)
            conn = s3.connect()
            aborted, deleted = s3.purge(conn, rest[2])
            conn.close()
            print(f"s3lite: purged {rest[2]}: {deleted} objects deleted, {aborted} multipart uploads aborted")
        elif cmd == "listener-pid" and len(rest) == 1:
            u = urllib.parse.urlsplit(rest[0])
            pid = listener_pid(u.port or 80)
            if pid is None:
                return 1
            print(pid)
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except ValueError as e:
        print(f"s3lite: {e}", file=sys.stderr)
        return 2
    except S3Error as e:
        print(f"s3lite: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
