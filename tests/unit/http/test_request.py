"""Judging a request head: versions, Host, framing fields, Expect, Connection, targets."""

from __future__ import annotations

import pytest

from ramparts.errors import ProtocolError
from ramparts.http.headers import Headers
from ramparts.http.request import Request, parse_head, parse_host

H: Headers = [(b"Host", b"example.com")]


def head(
    target: bytes = b"/",
    headers: Headers | None = None,
    version: str = "1.1",
    method: bytes = b"GET",
    **kw: bool,
) -> Request:
    return parse_head(method, target, version, list(H if headers is None else headers), **kw)


def refused(
    target: bytes = b"/",
    headers: Headers | None = None,
    version: str = "1.1",
    method: bytes = b"GET",
) -> int:
    with pytest.raises(ProtocolError) as info:
        head(target, headers, version, method)
    assert info.value.close is True
    return info.value.status


# -- versions ----------------------------------------------------------------------------


def test_http11_defaults() -> None:
    req = head(b"/a/./b?x=1")
    assert req.version == "1.1"
    assert req.method == b"GET"
    assert req.keep_alive is True
    assert req.path == b"/a/b"
    assert req.query == b"x=1"
    assert req.target == b"/a/./b?x=1"
    assert req.host == b"example.com"
    assert req.authority == b"example.com"
    assert req.content_length == 0
    assert req.chunked is False
    assert req.has_body is False
    assert req.expect_continue is False
    assert req.conn_tokens == frozenset()


def test_http10_without_host_is_fine_and_not_persistent() -> None:
    req = head(b"/", [], version="1.0")
    assert req.version == "1.0"
    assert req.keep_alive is False
    assert req.host is None
    assert req.authority is None


@pytest.mark.parametrize("version", ["0.9", "0.0", "1.2", "1.9"])
def test_unknown_http1_versions_are_400(version: str) -> None:
    assert refused(version=version) == 400


@pytest.mark.parametrize("version", ["2.0", "3.0", "9.9"])
def test_other_major_versions_are_505(version: str) -> None:
    assert refused(version=version) == 505


# -- Host --------------------------------------------------------------------------------


def test_missing_host_on_http11_is_400() -> None:
    assert refused(headers=[(b"Accept", b"*/*")]) == 400


@pytest.mark.parametrize(
    "headers",
    [
        [(b"Host", b"a.example"), (b"Host", b"b.example")],
        [(b"Host", b"a.example"), (b"host", b"a.example")],
        [(b"HOST", b"a.example"), (b"X", b"y"), (b"Host", b"a.example")],
    ],
)
def test_repeated_host_is_400(headers: Headers) -> None:
    assert refused(headers=headers) == 400


def test_repeated_host_is_400_on_http10_too() -> None:
    assert refused(headers=[(b"Host", b"a"), (b"Host", b"b")], version="1.0") == 400


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"exa mple.com",
        b"example.com/path",
        b"user@example.com",
        b'exa"mple',
        b"example.com\\",
        b"example.com:80a",
        b"example.com:8:0",
        b".example.com",
        b":80",
        b".",
        b"ex[ample].com",
        b"[::1",
        b"[::1]x",
        b"[::1]:8a",
        b"[fe80::1%25eth0]",
        b"[::1][::2]",
        b"ex\xc3\xa4mple.com",
        b"example.com\x00",
    ],
)
def test_invalid_host_is_400(value: bytes) -> None:
    assert refused(headers=[(b"Host", value)]) == 400


@pytest.mark.parametrize(
    ("value", "host"),
    [
        (b"example.com", b"example.com"),
        (b"Example.COM", b"example.com"),
        (b"example.com.", b"example.com"),
        (b"EXAMPLE.com.:8080", b"example.com"),
        (b"example.com:8080", b"example.com"),
        (b"example.com:", b"example.com"),
        (b"127.0.0.1", b"127.0.0.1"),
        (b"127.0.0.1:80", b"127.0.0.1"),
        (b"[::1]", b"[::1]"),
        (b"[::1]:8443", b"[::1]"),
        (b"[2001:DB8::A]:80", b"[2001:db8::a]"),
        (b"localhost", b"localhost"),
        (b"my-host_1.example", b"my-host_1.example"),
    ],
)
def test_host_parsing(value: bytes, host: bytes) -> None:
    req = head(headers=[(b"Host", value)])
    assert req.host == host
    assert req.authority == value  # forwarded as sent, port included
    assert parse_host(value) == host


def test_host_whitespace_is_trimmed() -> None:
    req = head(headers=[(b"Host", b"  example.com:81 \t")])
    assert req.host == b"example.com"
    assert req.authority == b"example.com:81"


def test_authority_keeps_the_port() -> None:
    req = head(headers=[(b"Host", b"Example.com:8080")])
    assert req.host == b"example.com"
    assert req.authority == b"Example.com:8080"


def test_invalid_host_is_refused_again_after_a_valid_one() -> None:
    # memoisation must not turn a refusal into a pass
    head(headers=[(b"Host", b"memo.example")])
    for _ in range(2):
        assert refused(headers=[(b"Host", b"memo example")]) == 400


# -- framing fields ----------------------------------------------------------------------


@pytest.mark.parametrize(("value", "n"), [(b"0", 0), (b"5", 5), (b" 12 ", 12), (b"007", 7)])
def test_content_length(value: bytes, n: int) -> None:
    req = head(headers=[*H, (b"Content-Length", value)], method=b"POST")
    assert req.content_length == n
    assert req.chunked is False
    assert req.has_body is (n > 0)


@pytest.mark.parametrize(
    "value", [b"", b"abc", b"-1", b"+5", b"1.0", b"5, 5", b"0x10", b"\xd9\xa3"]
)
def test_invalid_content_length_is_400(value: bytes) -> None:
    assert refused(headers=[*H, (b"Content-Length", value)], method=b"POST") == 400


@pytest.mark.parametrize("second", [b"5", b"6"])
def test_repeated_content_length_is_400(second: bytes) -> None:
    headers = [*H, (b"Content-Length", b"5"), (b"content-length", second)]
    assert refused(headers=headers, method=b"POST") == 400


@pytest.mark.parametrize("value", [b"chunked", b"Chunked", b"CHUNKED", b" chunked "])
def test_chunked(value: bytes) -> None:
    req = head(headers=[*H, (b"Transfer-Encoding", value)], method=b"POST")
    assert req.chunked is True
    assert req.has_body is True
    assert req.content_length == 0


@pytest.mark.parametrize(
    "headers",
    [
        [(b"Content-Length", b"5"), (b"Transfer-Encoding", b"chunked")],
        [(b"Transfer-Encoding", b"chunked"), (b"Content-Length", b"0")],
    ],
)
def test_content_length_with_transfer_encoding_is_400(headers: Headers) -> None:
    assert refused(headers=[*H, *headers], method=b"POST") == 400


@pytest.mark.parametrize(
    "te",
    [
        [b"gzip"],
        [b"gzip, chunked"],
        [b"chunked, chunked"],
        [b"chunked, gzip"],
        [b"identity"],
        [b""],
        [b"chunked", b"chunked"],
        [b"gzip", b"chunked"],
        [b"xchunked"],
    ],
)
def test_transfer_encoding_other_than_one_chunked_is_400(te: list[bytes]) -> None:
    headers = [*H, *((b"Transfer-Encoding", v) for v in te)]
    assert refused(headers=headers, method=b"POST") == 400


def test_transfer_encoding_on_http10_is_400() -> None:
    headers = [*H, (b"Transfer-Encoding", b"chunked")]
    assert refused(headers=headers, version="1.0", method=b"POST") == 400


# -- Expect ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [b"100-continue", b"100-Continue", b" 100-CONTINUE "])
def test_expect_100_continue(value: bytes) -> None:
    headers = [*H, (b"Content-Length", b"10"), (b"Expect", value)]
    assert head(headers=headers, method=b"POST").expect_continue is True


@pytest.mark.parametrize("value", [b"foo", b"100-continue-x", b"200-ok", b""])
def test_other_expectations_are_417(value: bytes) -> None:
    headers = [*H, (b"Content-Length", b"10"), (b"Expect", value)]
    assert refused(headers=headers, method=b"POST") == 417


def test_expect_100_continue_is_ignored_on_http10() -> None:
    # RFC 9110 10.1.1: a server that receives a 100-continue expectation in an HTTP/1.0
    # request MUST ignore it (a 1.0 client does not understand a 100 response).
    headers = [(b"Content-Length", b"10"), (b"Expect", b"100-continue")]
    assert head(headers=headers, version="1.0", method=b"POST").expect_continue is False


# -- Connection --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "values", "keep_alive"),
    [
        ("1.1", [], True),
        ("1.1", [b"close"], False),
        ("1.1", [b"Close"], False),
        ("1.1", [b"keep-alive"], True),
        ("1.1", [b"X-Foo, close"], False),
        ("1.1", [b"x-foo", b"close"], False),
        ("1.0", [], False),
        ("1.0", [b"keep-alive"], True),
        ("1.0", [b"Keep-Alive"], True),
        ("1.0", [b"keep-alive, close"], False),
        ("1.0", [b"x-foo"], False),
    ],
)
def test_connection_persistence(version: str, values: list[bytes], keep_alive: bool) -> None:
    headers = [*H, *((b"Connection", v) for v in values)]
    assert head(headers=headers, version=version).keep_alive is keep_alive


def test_connection_tokens_are_lowered_and_exclude_hop_by_hop() -> None:
    headers = [
        *H,
        (b"Connection", b"X-Forwarded-For, Keep-Alive,, Upgrade"),
        (b"Connection", b"X-B"),
    ]
    tokens = head(headers=headers).conn_tokens
    assert b"x-forwarded-for" in tokens
    assert b"x-b" in tokens
    assert b"keep-alive" not in tokens
    assert b"upgrade" not in tokens
    assert b"" not in tokens


# -- targets -----------------------------------------------------------------------------


def test_origin_form_path_is_normalised() -> None:
    req = head(b"/public/../%69nternal?a=b")
    assert req.path == b"/internal"
    assert req.query == b"a=b"
    assert req.uri == b"/internal?a=b"


@pytest.mark.parametrize(
    "target", [b"/%2569nternal", b"/public/..;/internal", b"/a\\b", b"/%00", b"/.."]
)
def test_bad_path_is_400(target: bytes) -> None:
    assert refused(target) == 400


def test_keep_encoded_slash_is_passed_to_normalisation() -> None:
    assert refused(b"/a%2Fb") == 400
    assert head(b"/a%2fb", keep_encoded_slash=True).path == b"/a%2Fb"
    assert head(b"http://h/a%2fb", keep_encoded_slash=True).path == b"/a%2Fb"


@pytest.mark.parametrize("target", [b"/a#b", b"/a?x#b", b"http://h/a#b"])
def test_fragment_is_400(target: bytes) -> None:
    assert refused(target) == 400


@pytest.mark.parametrize(
    ("target", "host", "path", "query", "authority"),
    [
        (b"http://Example.com:8080/a/../b?q=1", b"example.com", b"/b", b"q=1", b"Example.com:8080"),
        (b"http://example.com", b"example.com", b"/", None, b"example.com"),
        (b"http://example.com?x", b"example.com", b"/", b"x", b"example.com"),
        (b"HTTPS://example.com./x", b"example.com", b"/x", None, b"example.com."),
        (b"http://[::1]:81/x", b"[::1]", b"/x", None, b"[::1]:81"),
        (b"http://h//%69", b"h", b"/i", None, b"h"),
    ],
)
def test_absolute_form_takes_host_from_the_uri(
    target: bytes, host: bytes, path: bytes, query: bytes | None, authority: bytes
) -> None:
    req = head(target, headers=[(b"Host", b"other.example")])
    assert req.host == host
    assert req.path == path
    assert req.query == query
    assert req.authority == authority
    assert req.uri == path + (b"" if query is None else b"?" + query)


@pytest.mark.parametrize(
    "target",
    [
        b"http://user@example.com/",
        b"http://user:pw@example.com/",
        b"http://example.com@evil.com/",
        b"ftp://example.com/",
        b"example.com:443",
        b"*",
        b"http:///x",
        b"http://exa mple/",
        b"http://h/../x",
    ],
)
def test_bad_absolute_or_other_form_is_400(target: bytes) -> None:
    assert refused(target) == 400


def test_absolute_form_still_needs_a_well_formed_host_header() -> None:
    assert refused(b"http://example.com/", headers=[(b"Host", b"bad host")]) == 400


def test_absolute_form_still_needs_host_on_http11() -> None:
    assert refused(b"http://example.com/", headers=[]) == 400


# -- Request helpers ---------------------------------------------------------------------


def test_header_lookup_is_case_insensitive_first_value_trimmed() -> None:
    req = head(headers=[*H, (b"X-Thing", b"  one "), (b"x-thing", b"two")])
    assert req.header(b"x-thing") == b"one"
    assert req.header(b"x-missing") is None


def test_headers_are_kept_as_received() -> None:
    headers = [(b"hOsT", b"example.com"), (b"X-Case", b"V")]
    req = head(headers=headers)
    assert req.headers == headers


def test_repr_names_method_uri_and_version() -> None:
    assert repr(head(b"/x?y")) == "<Request GET b'/x?y' HTTP/1.1>"
