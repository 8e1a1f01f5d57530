"""Static files over real sockets: headers (type, length, validators, Expires,
Cache-Control), HEAD, conditional requests, ranges, a large file, directories and index
files, methods, and traversal attempts (``..``, encoded, backslashes, symlinks) that must
never serve anything outside the root."""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path

import pytest

from ..support import Response, exchange, free_port, read_response, running, start_gateway

SECRET = b"TOP SECRET: outside the root\n"
CSS = b"body { color: #333; }\n" * 10
LARGE = 5 * 1024 * 1024


@dataclass
class Site:
    port: int
    keep_port: int  # the same site with encoded_slash: keep
    root: Path
    large_sha: str


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("static")
    (tmp / "secret.txt").write_bytes(SECRET)
    (tmp / "outside").mkdir()
    (tmp / "outside" / "secret.txt").write_bytes(SECRET)
    root = tmp / "www"
    root.mkdir()
    (root / "index.html").write_bytes(b"<h1>home</h1>\n")
    (root / "style.css").write_bytes(CSS)
    (root / "sub").mkdir()
    (root / "sub" / "index.html").write_bytes(b"<h1>sub</h1>\n")
    (root / "noindex").mkdir()
    (root / "noindex" / "file.txt").write_bytes(b"file\n")
    (root / "empty.txt").write_bytes(b"")
    (root / "etc").mkdir()  # so that a traversal normalised into the root finds nothing
    large = bytes(range(256)) * (LARGE // 256)
    (root / "large.bin").write_bytes(large)
    # Symlinks: out of the root (file and directory), and one that stays inside.
    (root / "link-out.txt").symlink_to(tmp / "secret.txt")
    (root / "dir-out").symlink_to(tmp / "outside")
    (root / "link-in.css").symlink_to(root / "style.css")
    (root / "caf\u00e9 menu.txt").write_bytes(b"unicode\n")
    port, keep_port = free_port(), free_port()
    locations = f"""
    locations:
      - location: /
        static: {{ root: "{root}", expires: 30d, cache_control: "public, immutable" }}
      - location: /files/
        static: {{ root: "{root}", alias: true, follow_symlinks: true, expires: 1h }}
"""
    cfg = f"""
servers:
  - listen: "127.0.0.1:{port}"
{locations}"""
    # The same site with encoded slashes let through by the router: the static handler's
    # own checks must hold on their own.
    keep_cfg = f"""
encoded_slash: keep
servers:
  - listen: "127.0.0.1:{keep_port}"
{locations}"""
    with (
        running(start_gateway(tmp, cfg, [port])),
        running(start_gateway(tmp, keep_cfg, [keep_port], name="keep")),
    ):
        yield Site(port, keep_port, root, hashlib.sha256(large).hexdigest())


def get(port: int, path: str, headers: str = "", method: str = "GET") -> Response:
    raw = f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n{headers}Connection: close\r\n\r\n"
    return exchange(port, raw.encode(), head=method == "HEAD")


# -- headers and methods -------------------------------------------------------------------


def test_get_with_all_headers(site: Site) -> None:
    r = get(site.port, "/style.css")
    assert r.status == 200
    assert r.body == CSS
    assert r.header("content-type") == "text/css; charset=utf-8"
    assert r.header("content-length") == str(len(CSS))
    st = (site.root / "style.css").stat()
    assert r.header("last-modified") == formatdate(int(st.st_mtime), usegmt=True)
    etag = r.header("etag")
    assert etag is not None and etag.startswith('"') and etag.endswith('"')
    assert r.header("cache-control") == "public, immutable"
    expires = r.header("expires")
    assert expires is not None
    ahead = parsedate_to_datetime(expires).timestamp() - time.time()
    assert abs(ahead - 30 * 86400) < 120
    assert r.header("accept-ranges") == "bytes"


def test_expires_alone_sets_max_age(site: Site) -> None:
    r = get(site.port, "/files/style.css")
    assert r.status == 200 and r.body == CSS
    assert r.header("cache-control") == "max-age=3600"


def test_head_has_headers_and_no_body(site: Site) -> None:
    with socket.create_connection(("127.0.0.1", site.port), timeout=5.0) as s:
        buf = bytearray()
        s.sendall(b"HEAD /large.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        r = read_response(s, buf, head_request=True)
        assert r.status == 200
        assert r.header("content-length") == str(LARGE)
        assert r.header("content-type") == "application/octet-stream"
        assert r.header("etag") is not None
        # Any body bytes would now be read as the next response.
        s.sendall(b"GET /index.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        r = read_response(s, buf)
        assert r.status == 200 and r.body == b"<h1>home</h1>\n"


def test_post_is_405(site: Site) -> None:
    r = exchange(
        site.port,
        b"POST /style.css HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    )
    assert r.status == 405
    allow = (r.header("allow") or "").replace(" ", "").split(",")
    assert set(allow) == {"GET", "HEAD"}
    assert CSS not in r.body


def test_missing_file_404_and_empty_file(site: Site) -> None:
    assert get(site.port, "/nope.txt").status == 404
    assert get(site.port, "/style.css/x").status == 404  # a file used as a directory
    assert get(site.port, "/files/style.css/x").status == 404
    r = get(site.port, "/empty.txt")
    assert r.status == 200 and r.body == b"" and r.header("content-length") == "0"


# -- conditional requests -------------------------------------------------------------------


def test_if_none_match(site: Site) -> None:
    etag = get(site.port, "/style.css").header("etag")
    assert etag is not None
    for value in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        r = get(site.port, "/style.css", f"If-None-Match: {value}\r\n")
        assert r.status == 304, value
        assert r.body == b""
        assert r.header("etag") == etag
        assert r.header("content-length") is None
    r = get(site.port, "/style.css", 'If-None-Match: "nope"\r\n')
    assert r.status == 200 and r.body == CSS


def test_if_modified_since(site: Site) -> None:
    lm = get(site.port, "/style.css").header("last-modified")
    assert lm is not None
    r = get(site.port, "/style.css", f"If-Modified-Since: {lm}\r\n")
    assert r.status == 304 and r.body == b""
    later = formatdate(time.time() + 3600, usegmt=True)
    assert get(site.port, "/style.css", f"If-Modified-Since: {later}\r\n").status == 304
    earlier = formatdate(parsedate_to_datetime(lm).timestamp() - 10, usegmt=True)
    r = get(site.port, "/style.css", f"If-Modified-Since: {earlier}\r\n")
    assert r.status == 200 and r.body == CSS
    # If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2).
    r = get(site.port, "/style.css", f'If-None-Match: "nope"\r\nIf-Modified-Since: {lm}\r\n')
    assert r.status == 200
    # An unparsable date is ignored.
    assert get(site.port, "/style.css", "If-Modified-Since: yesterday\r\n").status == 200


# -- ranges ---------------------------------------------------------------------------------


def test_ranges(site: Site) -> None:
    size = len(CSS)
    r = get(site.port, "/style.css", "Range: bytes=0-9\r\n")
    assert r.status == 206
    assert r.body == CSS[:10]
    assert r.header("content-range") == f"bytes 0-9/{size}"
    assert r.header("content-length") == "10"
    r = get(site.port, "/style.css", "Range: bytes=-5\r\n")
    assert r.status == 206 and r.body == CSS[-5:]
    assert r.header("content-range") == f"bytes {size - 5}-{size - 1}/{size}"
    r = get(site.port, "/style.css", "Range: bytes=100-\r\n")
    assert r.status == 206 and r.body == CSS[100:]
    r = get(site.port, "/style.css", f"Range: bytes=10-{size + 1000}\r\n")
    assert r.status == 206 and r.body == CSS[10:]
    # Several ranges or another unit: ignored, the whole file.
    r = get(site.port, "/style.css", "Range: bytes=0-1,5-6\r\n")
    assert r.status == 200 and r.body == CSS
    r = get(site.port, "/style.css", "Range: items=0-1\r\n")
    assert r.status == 200 and r.body == CSS


def test_unsatisfiable_range_is_416(site: Site) -> None:
    size = len(CSS)
    r = get(site.port, "/style.css", f"Range: bytes={size}-\r\n")
    assert r.status == 416
    assert r.header("content-range") == f"bytes */{size}"
    assert CSS not in r.body


def test_if_range(site: Site) -> None:
    etag = get(site.port, "/style.css").header("etag")
    r = get(site.port, "/style.css", f"Range: bytes=0-3\r\nIf-Range: {etag}\r\n")
    assert r.status == 206 and r.body == CSS[:4]
    r = get(site.port, "/style.css", 'Range: bytes=0-3\r\nIf-Range: "changed"\r\n')
    assert r.status == 200 and r.body == CSS


def test_large_file_intact_and_ranged(site: Site) -> None:
    r = get(site.port, "/large.bin")
    assert r.status == 200
    assert len(r.body) == LARGE
    assert hashlib.sha256(r.body).hexdigest() == site.large_sha
    start, end = 3 * 1024 * 1024 + 7, 4 * 1024 * 1024 + 100
    r = get(site.port, "/large.bin", f"Range: bytes={start}-{end}\r\n")
    assert r.status == 206
    expected = (bytes(range(256)) * (LARGE // 256))[start : end + 1]
    assert r.body == expected


def test_large_file_then_keep_alive(site: Site) -> None:
    with socket.create_connection(("127.0.0.1", site.port), timeout=5.0) as s:
        buf = bytearray()
        s.sendall(
            b"GET /large.bin HTTP/1.1\r\nHost: x\r\n\r\nGET /style.css HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        r = read_response(s, buf)
        assert r.status == 200 and len(r.body) == LARGE
        r = read_response(s, buf)
        assert r.status == 200 and r.body == CSS


def test_slow_reader_gets_the_large_file_intact(site: Site) -> None:
    with socket.create_connection(("127.0.0.1", site.port), timeout=5.0) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        s.sendall(b"GET /large.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        time.sleep(0.3)  # the gateway's send buffer fills: it must wait, not drop
        r = read_response(s, bytearray())
    assert hashlib.sha256(r.body).hexdigest() == site.large_sha


def test_client_closing_during_large_file_does_not_hurt(site: Site) -> None:
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", site.port), timeout=5.0) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(b"GET /large.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            s.recv(1000)
    assert get(site.port, "/style.css").body == CSS


# -- directories ----------------------------------------------------------------------------


def test_directory_without_slash_redirects(site: Site) -> None:
    r = get(site.port, "/sub")
    assert r.status == 301
    assert r.header("location") == "/sub/"
    r = get(site.port, "/sub?a=1")
    assert r.status == 301
    assert r.header("location") == "/sub/?a=1"


def test_index_files(site: Site) -> None:
    r = get(site.port, "/")
    assert r.status == 200 and r.body == b"<h1>home</h1>\n"
    assert r.header("content-type") == "text/html; charset=utf-8"
    r = get(site.port, "/sub/")
    assert r.status == 200 and r.body == b"<h1>sub</h1>\n"
    r = get(site.port, "/noindex/")  # no index and no listing
    assert r.status in (403, 404)
    assert b"file.txt" not in r.body


def test_alias_strips_the_prefix(site: Site) -> None:
    assert get(site.port, "/files/sub/").body == b"<h1>sub</h1>\n"
    r = get(site.port, "/files/sub")
    assert r.status == 301 and r.header("location") == "/files/sub/"


# -- never out of the root ------------------------------------------------------------------

TRAVERSALS = [
    "/../etc/passwd",
    "/%2e%2e/etc/passwd",
    "/..%2fetc/passwd",
    "/%2e%2e%2fetc%2fpasswd",
    "/../secret.txt",
    "/../../../../../../etc/passwd",
    "/%2e%2e/secret.txt",
    "/%2E%2E/secret.txt",
    "/.%2e/secret.txt",
    "/..%2fsecret.txt",
    "/sub/..%2f..%2fsecret.txt",
    "/sub/../../secret.txt",
    "/%252e%252e/secret.txt",
    "/%252e%252e%252fsecret.txt",
    "/..%5csecret.txt",
    "/..\\secret.txt",
    "/sub\\..\\..\\secret.txt",
    "/..%c0%afsecret.txt",
    "/%c0%ae%c0%ae/secret.txt",
    "/..%00/secret.txt",
    "/secret.txt%00.css",
    "/files/../secret.txt",
    "/files/..%2fsecret.txt",
    "/files/%2e%2e/secret.txt",
    "http://localhost/../secret.txt",
]


@pytest.mark.parametrize("keep", [False, True], ids=["reject-slash", "keep-slash"])
@pytest.mark.parametrize("path", TRAVERSALS)
def test_traversal_never_leaves_the_root(site: Site, path: str, keep: bool) -> None:
    r = exchange(
        site.keep_port if keep else site.port,
        f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode("latin-1"),
    )
    assert r.status in (400, 403, 404), (r.status, r.body[:100])
    assert SECRET not in r.body
    assert b"root:" not in r.body


@pytest.mark.parametrize(
    "path",
    ["/link-out.txt", "/dir-out/secret.txt", "/files/link-out.txt", "/files/dir-out/secret.txt"],
)
def test_symlinks_out_of_the_root_are_refused(site: Site, path: str) -> None:
    r = get(site.port, path)
    assert r.status in (403, 404)
    assert SECRET not in r.body


def test_encoded_names_and_query(site: Site) -> None:
    r = get(site.port, "/caf%C3%A9%20menu.txt")
    assert r.status == 200 and r.body == b"unicode\n"
    r = get(site.port, "/style.css?v=123")
    assert r.status == 200 and r.body == CSS
    r = get(site.keep_port, "/sub%2Findex.html")  # kept escaped by the router
    assert r.status in (200, 400, 404)
    if r.status == 200:
        assert r.body == b"<h1>sub</h1>\n"


def test_symlinks_inside_the_root(site: Site) -> None:
    # Refused by default (nginx disable_symlinks on), served when follow_symlinks is set.
    r = get(site.port, "/link-in.css")
    assert r.status == 403 and CSS not in r.body
    r = get(site.port, "/files/link-in.css")
    assert r.status == 200 and r.body == CSS


def test_dot_segments_inside_the_root_are_resolved(site: Site) -> None:
    r = get(site.port, "/sub/../style.css")
    assert r.status == 200 and r.body == CSS


def test_a_symlink_swapped_in_later_is_refused(site: Site, tmp_path: Path) -> None:
    # The check is made per request, not cached from a first look.
    target = site.root / "swap.txt"
    target.write_bytes(b"fine\n")
    try:
        assert get(site.port, "/swap.txt").body == b"fine\n"
        target.unlink()
        os.symlink(site.root.parent / "secret.txt", target)
        r = get(site.port, "/swap.txt")
        assert r.status in (403, 404) and SECRET not in r.body
    finally:
        target.unlink(missing_ok=True)
