"""Path confusion against a protected location: every spelling of ``/internal`` is either
refused (4xx) or matched to the protected location (403), and never reaches the origin as
a request for the internal path; proxied requests reach the origin with exactly the
canonical path the gateway judged.

nginx 1.22 (DESIGN.md, "Facts measured here") lets several of these through to the backend
unchanged; ramparts forwards only the path it judged."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

import pytest

from ..support import free_port
from .conftest import RecordingOrigin, gateway, marker_request, raw_outcome


@dataclass
class Setup:
    port: int  # /internal is denied (403), / is proxied
    aport: int  # allow-list: only /public/ is proxied, everything else is 403
    rec: RecordingOrigin
    xport: int = 0  # /internal proxied, but its access list denies everyone but 10/8
    iport: int = 0  # the same with a case-insensitive location: ~* ^/internal


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, recorder: RecordingOrigin) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("paths")
    port, aport, xport, iport = free_port(), free_port(), free_port(), free_port()
    cfg = f"""
upstreams:
  rec: {{ servers: ["127.0.0.1:{recorder.port}"] }}
servers:
  - listen: "127.0.0.1:{port}"
    locations:
      - location: /internal
        return: {{ status: 403, body: "internal denied" }}
      - location: /
        proxy: {{ upstream: rec }}
  - listen: "127.0.0.1:{aport}"
    locations:
      - location: /
        return: {{ status: 403, body: "not public" }}
      - location: /public/
        proxy: {{ upstream: rec }}
  - listen: "127.0.0.1:{xport}"
    locations:
      - location: /internal
        access: [{{ allow: 10.0.0.0/8 }}, {{ deny: all }}]
        proxy: {{ upstream: rec }}
      - location: /
        proxy: {{ upstream: rec }}
  - listen: "127.0.0.1:{iport}"
    locations:
      - location: "~* ^/internal"
        access: [{{ allow: 10.0.0.0/8, id: private }}, {{ deny: all, id: others }}]
        proxy: {{ upstream: rec }}
      - location: /
        proxy: {{ upstream: rec }}
"""
    with gateway(tmp, cfg, [port, aport, xport, iport]):
        yield Setup(port, aport, recorder, xport, iport)


def _get(port: int, target: str) -> int | None:
    raw = f"GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
    return raw_outcome(port, raw, timeout=5.0).status


def _means_internal(target: str) -> bool:
    """Whether a target the origin received could be read as the protected path by a lax
    backend: percent-decoding (twice), backslashes as slashes, ``;`` parameters, dot
    segments and repeated slashes, case-insensitively."""
    path = target.split("?", 1)[0]
    for _ in range(2):
        path = unquote_to_bytes(path).decode("latin-1")
    path = path.replace("\\", "/").lower()
    path = re.sub(r";[^/]*", "", path)
    path = re.sub(r"\xc0\xae", ".", path)
    path = re.sub(r"\xc0\xaf", "/", path)
    out: list[str] = []
    for seg in path.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if out:
                out.pop()
            continue
        out.append(seg)
    return bool(out) and out[0].startswith("internal")


ATTACKS = [
    "/internal",
    "/internal/",
    "/internal/x",
    "/internalx",
    "/%69nternal",
    "/%69%6E%74%65%72%6E%61%6C",
    "/%69%6e%74%65%72%6e%61%6c/x",
    "//internal",
    "///internal/x",
    "/public/../internal",
    "/public/./../internal",
    "/public/%2e%2e/internal",
    "/public/%2E%2E/internal",
    "/public/.%2e/internal",
    "/public/..%2finternal",
    "/public/..%2Finternal",
    "/public/..;/internal",
    "/public/..;x=y/internal",
    "/public;/../internal",
    "/%2569nternal",
    "/%252e%252e/internal",
    "/internal%2f",
    "/internal%2Fx",
    "/\\internal",
    "/public\\..\\internal",
    "/public/..\\internal",
    "/public/%5c../internal",
    "/%5cinternal",
    "/%c0%afinternal",
    "/%c0%ae%c0%ae/internal",
    "/public/%c0%ae%c0%ae/internal",
    "/%e0%80%afinternal",
    "/./internal",
    "/internal/.",
    "/internal/x/..",
    "/internal;x",
    "/internal%00",
    "/%00/../internal",
    "/internal%20",
    "/internal%09",
    "/internal?x=1",
    "/internal#frag",
    "/../internal",
    "/public/../../internal",
    "http://localhost/internal",
    "http://localhost//internal",
    "http://localhost/%69nternal",
]


@pytest.mark.parametrize("guard", ["return", "access", "access-nocase"])
@pytest.mark.parametrize("target", ATTACKS)
def test_protected_location_cannot_be_bypassed(gw: Setup, target: str, guard: str) -> None:
    """Whether /internal is a ``return 403`` or a proxied location behind an access list
    (prefix, or a case-insensitive regex), no spelling of it reaches the origin."""
    port = {"return": gw.port, "access": gw.xport, "access-nocase": gw.iport}[guard]
    mark = gw.rec.snapshot()
    status = _get(port, target)
    assert status is not None and 400 <= status < 500, f"{target!r} answered {status}"
    marker_request(gw.port, gw.rec)
    reached = [r.target for r in gw.rec.requests_since(mark)]
    reached += gw.rec.lines_since(mark)
    assert not [t for t in reached if _means_internal(t.split(" ")[1] if " " in t else t)], (
        f"{target!r} reached the origin: {reached!r}"
    )


@pytest.mark.parametrize(
    "target",
    [
        "/internal",
        "/%69nternal",
        "//internal",
        "/public/../internal",
        "/./internal",
        "/internal/.",
        "/public/%2e%2e/internal",
        "http://localhost/internal",
    ],
)
def test_equivalent_spellings_match_the_protected_location(gw: Setup, target: str) -> None:
    """Spellings that normalise to /internal are judged by the /internal location itself."""
    out = raw_outcome(
        gw.port,
        f"GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode(),
    )
    assert out.status == 403
    assert out.response is not None and out.response.body == b"internal denied"


@pytest.mark.parametrize("target", ["/INTERNAL", "/%49NTERNAL", "/Internal/x", "//iNtErNaL"])
def test_case_insensitive_location_denies_every_case(gw: Setup, target: str) -> None:
    """Declared case-insensitive (``~*``), the access list guards every case, and the
    refusal names the rule that decided."""
    mark = gw.rec.snapshot()
    out = raw_outcome(
        gw.iport,
        f"GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode(),
    )
    assert out.status == 403
    marker_request(gw.port, gw.rec)
    assert len(gw.rec.requests_since(mark)) == 1  # the marker only


def test_case_is_significant_like_nginx(gw: Setup) -> None:
    """Prefix locations are case-sensitive (as in nginx): ``/INTERNAL`` is not the
    protected location, and it is forwarded exactly as judged (``/INTERNAL``), never
    rewritten to the protected spelling. A case-insensitive backend needs a ``~*``
    location to be protected."""
    mark = gw.rec.snapshot()
    assert _get(gw.port, "/INTERNAL") == 200
    assert [r.target for r in gw.rec.requests_since(mark)] == ["/INTERNAL"]
    mark = gw.rec.snapshot()
    assert _get(gw.port, "/%49NTERNAL") == 200
    assert [r.target for r in gw.rec.requests_since(mark)] == ["/INTERNAL"]


CANONICAL = [
    ("/a/./b//c", "/a/b/c"),
    ("/%7Euser", "/~user"),
    ("/%7euser/", "/~user/"),
    ("/a/b/../c", "/a/c"),
    ("/a/b/./../c/", "/a/c/"),
    ("//a///b", "/a/b"),
    ("/%61%62%63", "/abc"),
    ("/a%2Db%5Fc%2Ed", "/a-b_c.d"),
    ("/x%3fy", "/x%3Fy"),
    ("/x%3Fy", "/x%3Fy"),
    ("/caf%c3%a9", "/caf%C3%A9"),
    ("/sp%20ace", "/sp%20ace"),
    ("/a/b/..", "/a/"),
    ("/a/.", "/a/"),
    ("/p?a=/../b&c=%2F", "/p?a=/../b&c=%2F"),
    ("/p/./q?x=..%2F", "/p/q?x=..%2F"),
    ("/public/../other", "/other"),
    ("/internal/..", "/"),  # leaves /internal: not the protected path
]


@pytest.mark.parametrize(("sent", "expected"), CANONICAL)
def test_origin_sees_the_canonical_path_that_was_judged(
    gw: Setup, sent: str, expected: str
) -> None:
    mark = gw.rec.snapshot()
    status = _get(gw.port, sent)
    assert status == 200, f"{sent!r} answered {status}"
    got = [r.target for r in gw.rec.requests_since(mark)]
    assert got == [expected]


ALLOW_LIST_ESCAPES = [
    "/public/../secret",
    "/public/%2e%2e/secret",
    "/public/./../secret",
    "/public/..;/secret",
    "/public/..%2fsecret",
    "/public\\..\\secret",
    "/public/%2e%2e%2fsecret",
    "/public/%252e%252e/secret",
    "/public/%c0%ae%c0%ae/secret",
    "/PUBLIC/x",
    "/public",
]


@pytest.mark.parametrize("target", ALLOW_LIST_ESCAPES)
def test_allow_listed_prefix_cannot_be_escaped(gw: Setup, target: str) -> None:
    """Only /public/ is proxied: a path that merely starts with /public/ as written but
    leaves it once normalised is judged by where it really points (403), or refused."""
    mark = gw.rec.snapshot()
    status = _get(gw.aport, target)
    assert status is not None and 400 <= status < 500, f"{target!r} answered {status}"
    marker = f"/public/__marker/{mark[0]}"
    assert _get(gw.aport, marker) == 200
    assert gw.rec.wait_for(lambda: marker in gw.rec.targets())
    reached = [r.target for r in gw.rec.requests_since(mark)]
    assert reached == [marker], f"{target!r}: origin received {reached!r}"


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ("/public/./x", "/public/x"),
        ("/public//x", "/public/x"),
        ("/public/a/../b", "/public/b"),
        ("//public/x", "/public/x"),
        ("/%70ublic/x", "/public/x"),
    ],
)
def test_allow_listed_prefix_forwards_canonical_path(gw: Setup, sent: str, expected: str) -> None:
    mark = gw.rec.snapshot()
    assert _get(gw.aport, sent) == 200
    assert [r.target for r in gw.rec.requests_since(mark)] == [expected]
