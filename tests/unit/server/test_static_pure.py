"""Static files, pure parts: the path mapped under a root it can never leave, conditional
requests, single byte ranges, Expires / Cache-Control."""

from __future__ import annotations

import os
import stat
from email.utils import formatdate
from pathlib import Path

import pytest

from ramparts.config.plan import StaticRoute
from ramparts.http.headers import Headers
from ramparts.http.request import Request, parse_head
from ramparts.pipeline.phases import Respond
from ramparts.server.static import FilePlan, _parse_range, plan_static, resolve_path


def route(
    root: Path,
    *,
    strip: bytes = b"",
    index: tuple[str, ...] = ("index.html",),
    expires: float | None = None,
    cache_control: bytes | None = None,
    follow: bool = False,
) -> StaticRoute:
    return StaticRoute(root.resolve(), strip, index, expires, cache_control, follow)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """root/ with files, a subdirectory, an index, and an outside secret next to it."""
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "noindex").mkdir()
    (root / "a.txt").write_text("hello")
    (root / "index.html").write_text("<h1>home</h1>")
    (root / "sub" / "index.html").write_text("sub home")
    (root / "sub" / "page.html").write_text("page")
    (root / "caf\u00e9.txt").write_text("unicode name")
    (root / "a b.txt").write_text("space")
    (root / "100%.txt").write_text("percent")
    (tmp_path / "secret.txt").write_text("outside")
    (tmp_path / "outside-dir").mkdir()
    (tmp_path / "outside-dir" / "x.txt").write_text("outside too")
    return root


def status(result: Path | Respond) -> int:
    assert isinstance(result, Respond), f"expected a refusal, got {result}"
    return result.status


# -- resolve_path ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "rel"),
    [
        (b"/a.txt", "a.txt"),
        (b"/sub/page.html", "sub/page.html"),
        (b"/", "index.html"),
        (b"/sub/", "sub/index.html"),
        (b"/caf%C3%A9.txt", "caf\u00e9.txt"),
        (b"/a%20b.txt", "a b.txt"),
        (b"/100%25.txt", "100%.txt"),
        (b"/sub", "sub"),  # a directory without the slash: the shell redirects
    ],
)
def test_resolves_inside_the_root(site: Path, path: bytes, rel: str) -> None:
    found = resolve_path(route(site), path)
    assert found == (site / rel).resolve()


def test_missing_is_404(site: Path) -> None:
    assert status(resolve_path(route(site), b"/nope.txt")) == 404
    assert status(resolve_path(route(site), b"/nope/deeper.txt")) == 404
    assert status(resolve_path(route(site), b"/a.txt/")) == 404  # a file is not a directory


def test_file_used_as_a_directory_is_404(site: Path) -> None:
    # ENOTDIR is "not found", as nginx answers it (not a 403: nothing is forbidden here)
    assert status(resolve_path(route(site), b"/a.txt/x")) == 404


def test_directory_without_index_is_403(site: Path) -> None:
    assert status(resolve_path(route(site), b"/noindex/")) == 403


def test_index_files_in_order(site: Path) -> None:
    (site / "sub" / "default.htm").write_text("d")
    r = route(site, index=("missing.html", "default.htm", "index.html"))
    assert resolve_path(r, b"/sub/") == (site / "sub" / "default.htm").resolve()


def test_index_directory_is_not_an_index_file(site: Path) -> None:
    (site / "noindex" / "index.html").mkdir()
    assert status(resolve_path(route(site), b"/noindex/")) == 403


@pytest.mark.parametrize(
    "path",
    [
        b"/../secret.txt",
        b"/sub/../../secret.txt",
        b"/%2e%2e/secret.txt",
        b"/%2E%2E/secret.txt",
        b"/sub/%2e%2e/%2e%2e/secret.txt",
        b"/..%2fsecret.txt",
        b"/..%2Fsecret.txt",
        b"/sub%2F..%2F..%2Fsecret.txt",
        b"/./a.txt",
        b"/..",
    ],
)
def test_traversal_refused(site: Path, path: bytes) -> None:
    assert status(resolve_path(route(site), path)) == 400


@pytest.mark.parametrize("path", [b"/a.txt%00.png", b"/%00", b"/..%5csecret.txt", b"/a%5Cb"])
def test_nul_and_backslash_refused(site: Path, path: bytes) -> None:
    assert status(resolve_path(route(site), path)) == 400


@pytest.mark.parametrize("path", [b"/%FF", b"/%C0%AE%C0%AE/secret.txt", b"/caf%C3"])
def test_invalid_utf8_refused(site: Path, path: bytes) -> None:
    assert status(resolve_path(route(site), path)) == 400


def test_symlink_out_of_root_refused(site: Path, tmp_path: Path) -> None:
    (site / "leak.txt").symlink_to(tmp_path / "secret.txt")
    (site / "leakdir").symlink_to(tmp_path / "outside-dir")
    for follow in (False, True):
        r = route(site, follow=follow)
        assert status(resolve_path(r, b"/leak.txt")) == 403
        assert status(resolve_path(r, b"/leakdir/x.txt")) == 403
        assert status(resolve_path(r, b"/leakdir/")) == 403


def test_symlink_inside_root_needs_follow_symlinks(site: Path) -> None:
    (site / "alias.txt").symlink_to(site / "a.txt")
    (site / "subalias").symlink_to(site / "sub")
    assert status(resolve_path(route(site), b"/alias.txt")) == 403
    assert status(resolve_path(route(site), b"/subalias/page.html")) == 403
    r = route(site, follow=True)
    assert resolve_path(r, b"/alias.txt") == (site / "a.txt").resolve()
    assert resolve_path(r, b"/subalias/page.html") == (site / "sub" / "page.html").resolve()


def test_symlinked_index_out_of_root_is_not_served(site: Path, tmp_path: Path) -> None:
    (site / "noindex" / "index.html").symlink_to(tmp_path / "secret.txt")
    for follow in (False, True):
        assert status(resolve_path(route(site, follow=follow), b"/noindex/")) == 403


def test_symlinked_index_inside_root(site: Path) -> None:
    (site / "noindex" / "index.html").symlink_to(site / "a.txt")
    assert status(resolve_path(route(site), b"/noindex/")) == 403
    assert resolve_path(route(site, follow=True), b"/noindex/") == (site / "a.txt").resolve()


def test_root_that_is_itself_reached_through_a_symlink(tmp_path: Path, site: Path) -> None:
    link = tmp_path / "link-root"
    link.symlink_to(site)
    # the plan resolves the root once; files under it are then served normally
    assert resolve_path(route(link), b"/a.txt") == (site / "a.txt").resolve()


def test_strip_prefix(site: Path) -> None:
    r = route(site, strip=b"/static")
    assert resolve_path(r, b"/static/a.txt") == (site / "a.txt").resolve()
    assert resolve_path(r, b"/static/") == (site / "index.html").resolve()
    assert resolve_path(r, b"/static") == (site / "index.html").resolve()
    assert status(resolve_path(r, b"/other/a.txt")) == 404
    assert status(resolve_path(r, b"/static/../secret.txt")) == 400


# -- plan_static -------------------------------------------------------------------------

SIZE = 100
MTIME = 1_700_000_000
NOW = 1_700_100_000.0
ETAG = b'"%x-%x"' % (MTIME, SIZE)
LAST_MODIFIED = formatdate(MTIME, usegmt=True).encode()


def st(size: int = SIZE, mtime: int = MTIME) -> os.stat_result:
    return os.stat_result((stat.S_IFREG | 0o644, 1, 1, 1, 0, 0, size, mtime, mtime, mtime))


def req(headers: Headers | None = None, method: bytes = b"GET") -> Request:
    return parse_head(method, b"/f.txt", "1.1", [(b"Host", b"h"), *(headers or [])])


def plan(
    headers: Headers | None = None,
    *,
    method: bytes = b"GET",
    size: int = SIZE,
    r: StaticRoute | None = None,
) -> FilePlan:
    r = r or StaticRoute(Path("/srv"), b"", ("index.html",), None, None, False)
    return plan_static(r, req(headers, method), st(size), b"text/plain; charset=utf-8", NOW)


def hdr(fp: FilePlan, name: bytes) -> bytes | None:
    values = [v for n, v in fp.headers if n.lower() == name.lower()]
    assert len(values) <= 1, f"{name!r} repeated"
    return values[0] if values else None


def test_plain_200() -> None:
    fp = plan()
    assert (fp.status, fp.start, fp.length) == (200, 0, SIZE)
    assert hdr(fp, b"Content-Type") == b"text/plain; charset=utf-8"
    assert hdr(fp, b"Last-Modified") == LAST_MODIFIED
    assert hdr(fp, b"ETag") == ETAG
    assert hdr(fp, b"Accept-Ranges") == b"bytes"
    assert hdr(fp, b"Expires") is None
    assert hdr(fp, b"Cache-Control") is None
    assert hdr(fp, b"Content-Range") is None


def test_etag_depends_on_size_and_mtime() -> None:
    r = StaticRoute(Path("/srv"), b"", (), None, None, False)
    a = plan_static(r, req(), st(10, MTIME), b"t", NOW)
    b = plan_static(r, req(), st(11, MTIME), b"t", NOW)
    c = plan_static(r, req(), st(10, MTIME + 1), b"t", NOW)
    assert len({hdr(a, b"ETag"), hdr(b, b"ETag"), hdr(c, b"ETag")}) == 3
    etag = hdr(a, b"ETag")
    assert etag is not None and etag.startswith(b'"') and etag.endswith(b'"')


@pytest.mark.parametrize(
    "inm",
    [ETAG, b"W/" + ETAG, b"*", b'"other", ' + ETAG, b'"a",W/' + ETAG + b' ,"b"', b" * "],
)
def test_if_none_match_hit_is_304(inm: bytes) -> None:
    fp = plan([(b"If-None-Match", inm)])
    assert (fp.status, fp.length) == (304, 0)
    assert hdr(fp, b"Content-Type") is None
    assert hdr(fp, b"ETag") == ETAG
    assert hdr(fp, b"Last-Modified") == LAST_MODIFIED


@pytest.mark.parametrize("inm", [b'"other"', b'W/"other"', ETAG[:-2] + b'"', b""])
def test_if_none_match_miss_is_200(inm: bytes) -> None:
    assert plan([(b"If-None-Match", inm)]).status == 200


def test_if_none_match_takes_precedence_over_if_modified_since() -> None:
    headers = [(b"If-None-Match", b'"other"'), (b"If-Modified-Since", LAST_MODIFIED)]
    assert plan(headers).status == 200


@pytest.mark.parametrize(
    ("ims", "code"),
    [
        (LAST_MODIFIED, 304),
        (formatdate(MTIME + 3600, usegmt=True).encode(), 304),
        (formatdate(MTIME - 1, usegmt=True).encode(), 200),
        (b"Sun, 06 Nov 1994 08:49:37 GMT", 200),
        (b"not a date", 200),
        (b"", 200),
    ],
)
def test_if_modified_since(ims: bytes, code: int) -> None:
    fp = plan([(b"If-Modified-Since", ims)])
    assert fp.status == code
    if code == 304:
        assert fp.length == 0
        assert hdr(fp, b"Content-Type") is None


@pytest.mark.parametrize(
    ("rng", "start", "end"),
    [
        (b"bytes=0-9", 0, 9),
        (b"bytes=-5", 95, 99),
        (b"bytes=5-", 5, 99),
        (b"bytes=0-0", 0, 0),
        (b"bytes=99-99", 99, 99),
        (b"bytes=90-1000", 90, 99),
        (b"bytes=-1000", 0, 99),
        (b"bytes= 10-19 ", 10, 19),
    ],
)
def test_single_range_is_206(rng: bytes, start: int, end: int) -> None:
    fp = plan([(b"Range", rng)])
    assert fp.status == 206
    assert (fp.start, fp.length) == (start, end - start + 1)
    assert hdr(fp, b"Content-Range") == b"bytes %d-%d/%d" % (start, end, SIZE)
    assert hdr(fp, b"ETag") == ETAG
    assert hdr(fp, b"Content-Type") == b"text/plain; charset=utf-8"


def test_range_on_head_too() -> None:
    assert plan([(b"Range", b"bytes=0-9")], method=b"HEAD").status == 206


def test_range_ignored_for_other_methods() -> None:
    assert plan([(b"Range", b"bytes=0-9")], method=b"POST").status == 200


@pytest.mark.parametrize("rng", [b"bytes=100-", b"bytes=100-200", b"bytes=-0", b"bytes=1000-1001"])
def test_unsatisfiable_range_is_416(rng: bytes) -> None:
    fp = plan([(b"Range", rng)])
    assert fp.status == 416
    assert hdr(fp, b"Content-Range") == b"bytes */%d" % SIZE
    assert fp.length == 0


def test_any_range_of_an_empty_file_is_416() -> None:
    for rng in (b"bytes=0-", b"bytes=-5", b"bytes=0-0"):
        fp = plan([(b"Range", rng)], size=0)
        assert fp.status == 416
        assert hdr(fp, b"Content-Range") == b"bytes */0"


@pytest.mark.parametrize(
    "rng",
    [
        b"bytes=0-1,5-6",
        b"bytes=0-9, 20-29",
        b"items=0-9",
        b"bytes=9-5",
        b"bytes=a-b",
        b"bytes=5",
        b"bytes=-",
        b"bytes=--5",
        b"bytes=0x1-2",
        b"bytes=",
        b"0-9",
    ],
)
def test_ignored_range_is_200(rng: bytes) -> None:
    fp = plan([(b"Range", rng)])
    assert (fp.status, fp.start, fp.length) == (200, 0, SIZE)
    assert hdr(fp, b"Content-Range") is None


def test_if_range_matching_etag_applies_the_range() -> None:
    fp = plan([(b"Range", b"bytes=0-9"), (b"If-Range", ETAG)])
    assert fp.status == 206


def test_if_range_matching_date_applies_the_range() -> None:
    fp = plan([(b"Range", b"bytes=0-9"), (b"If-Range", LAST_MODIFIED)])
    assert fp.status == 206


@pytest.mark.parametrize(
    "if_range",
    [
        b'"stale"',
        b"W/" + ETAG,  # If-Range needs a strong comparison
        formatdate(MTIME - 10, usegmt=True).encode(),
    ],
)
def test_if_range_mismatch_ignores_the_range(if_range: bytes) -> None:
    fp = plan([(b"Range", b"bytes=0-9"), (b"If-Range", if_range)])
    assert (fp.status, fp.start, fp.length) == (200, 0, SIZE)


def test_if_range_mismatch_also_ignores_an_unsatisfiable_range() -> None:
    assert plan([(b"Range", b"bytes=500-"), (b"If-Range", b'"stale"')]).status == 200


def test_not_modified_wins_over_range() -> None:
    fp = plan([(b"Range", b"bytes=0-9"), (b"If-None-Match", ETAG)])
    assert fp.status == 304


def test_expires_sets_cache_control_max_age() -> None:
    r = StaticRoute(Path("/srv"), b"", (), 3600.0, None, False)
    fp = plan(r=r)
    assert hdr(fp, b"Expires") == formatdate(NOW + 3600, usegmt=True).encode()
    assert hdr(fp, b"Cache-Control") == b"max-age=3600"


def test_cache_control_as_written_wins_over_max_age() -> None:
    r = StaticRoute(Path("/srv"), b"", (), 60.0, b"public, immutable", False)
    fp = plan(r=r)
    assert hdr(fp, b"Expires") == formatdate(NOW + 60, usegmt=True).encode()
    assert hdr(fp, b"Cache-Control") == b"public, immutable"


def test_cache_control_alone() -> None:
    r = StaticRoute(Path("/srv"), b"", (), None, b"no-cache", False)
    fp = plan(r=r)
    assert hdr(fp, b"Cache-Control") == b"no-cache"
    assert hdr(fp, b"Expires") is None


def test_cache_headers_on_304_and_206() -> None:
    r = StaticRoute(Path("/srv"), b"", (), 120.0, None, False)
    for headers in ([(b"If-None-Match", ETAG)], [(b"Range", b"bytes=0-1")]):
        fp = plan(headers, r=r)
        assert fp.status in (304, 206)
        assert hdr(fp, b"Cache-Control") == b"max-age=120"
        assert hdr(fp, b"Expires") is not None


# -- _parse_range directly ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "size", "result"),
    [
        (b"bytes=0-9", 100, (0, 9)),
        (b"bytes=-5", 100, (95, 99)),
        (b"bytes=5-", 100, (5, 99)),
        (b"bytes=5-5", 100, (5, 5)),
        (b"bytes=0-", 1, (0, 0)),
        (b"bytes=-5", 3, (0, 2)),
        (b"bytes=0-200", 100, (0, 99)),
        (b"bytes=100-", 100, "unsatisfiable"),
        (b"bytes=-0", 100, "unsatisfiable"),
        (b"bytes=0-", 0, "unsatisfiable"),
        (b"bytes=-1", 0, "unsatisfiable"),
        (b"bytes=0-1,2-3", 100, None),
        (b"bytes=3-2", 100, None),
        (b"bits=0-1", 100, None),
        (b"bytes=1", 100, None),
        (b"bytes=x-", 100, None),
        (b"bytes=1-x", 100, None),
    ],
)
def test_parse_range(value: bytes, size: int, result: object) -> None:
    assert _parse_range(value, size) == result
