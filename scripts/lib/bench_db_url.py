#!/usr/bin/env python3
"""Print the URL of database NAME on the PostgreSQL server ADMIN_URL, refusing any server that
is not on loopback (or a local socket directory): benchmarks only ever touch this machine.

    python3 scripts/lib/bench_db_url.py ADMIN_URL NAME
"""
import sys
import urllib.parse as up

url, name = sys.argv[1], sys.argv[2]
p = up.urlsplit(url)
host = p.hostname or ""
q = dict(up.parse_qsl(p.query))
local = host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.") or (
    host == "" and q.get("host", "/").startswith("/")
)
if p.scheme not in ("postgres", "postgresql") or not local:
    sys.exit("FERRY_BENCH_DATABASE_URL must be a postgres:// URL on 127.0.0.1/localhost")
print(up.urlunsplit(p._replace(path="/" + name)))
