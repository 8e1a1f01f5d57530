"""Request-target normalisation: one canonical path, or a 400 for anything that could be
read two ways (the path-confusion list of issue 2)."""

from __future__ import annotations

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from ramparts.errors import ProtocolError
from ramparts.http.path import normalize_path, split_target


def refused(path: bytes, *, keep_encoded_slash: bool = False) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        normalize_path(path, keep_encoded_slash=keep_encoded_slash)
    assert info.value.status == 400
    return info.value


# -- the canonical form ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        (b"/", b"/"),
        (b"/index.html", b"/index.html"),
        (b"/a/b/c", b"/a/b/c"),
        # unreserved escapes are decoded, whatever their hex case
        (b"/%69nternal", b"/internal"),
        (b"/%49nternal", b"/Internal"),
        (b"/%7E/user", b"/~/user"),
        (b"/%7euser", b"/~user"),
        (b"/a%2Db%5Fc%2Ed", b"/a-b_c.d"),
        (b"/%41%5a%30%39", b"/AZ09"),
        # other escapes are kept, with upper-case hex
        (b"/a%20b", b"/a%20b"),
        (b"/a%3fb", b"/a%3Fb"),
        (b"/a%3Bb", b"/a%3Bb"),
        (b"/a%23b", b"/a%23b"),
        (b"/100%25", b"/100%25"),
        (b"/%25zz", b"/%25zz"),
        # valid UTF-8 escapes stay escaped (upper-case hex)
        (b"/caf%c3%a9", b"/caf%C3%A9"),
        (b"/caf%C3%A9", b"/caf%C3%A9"),
        (b"/%E2%82%AC", b"/%E2%82%AC"),
        (b"/%F0%9F%98%80", b"/%F0%9F%98%80"),
        # dot segments
        (b"/a/./b", b"/a/b"),
        (b"/a/../b", b"/b"),
        (b"/public/../internal", b"/internal"),
        (b"/a/b/../../c", b"/c"),
        (b"/a/b/..", b"/a/"),
        (b"/a/b/.", b"/a/b/"),
        (b"/a/..", b"/"),
        (b"/.", b"/"),
        (b"/./", b"/"),
        (b"/a/%2e%2e/b", b"/b"),
        (b"/a/%2E/b", b"/a/b"),
        (b"/a/.%2e/b", b"/b"),
        # segments that only look like dots are data
        (b"/a/.../b", b"/a/.../b"),
        (b"/a/.b/c", b"/a/.b/c"),
        (b"/a/b./c", b"/a/b./c"),
        (b"/a/..b", b"/a/..b"),
        (b"/.well-known/x", b"/.well-known/x"),
        # merged slashes
        (b"//internal", b"/internal"),
        (b"/a//b", b"/a/b"),
        (b"/a///b//", b"/a/b/"),
        (b"////", b"/"),
        # trailing slash kept
        (b"/dir/", b"/dir/"),
        (b"/dir/sub/", b"/dir/sub/"),
        # parameters that are not dot segments are data
        (b"/a;b/c", b"/a;b/c"),
        (b"/a/b;../c", b"/a/b;../c"),
    ],
)
def test_canonical_form(raw: bytes, canonical: bytes) -> None:
    assert normalize_path(raw) == canonical


def test_canonical_path_is_returned_unchanged() -> None:
    # The fast path must return the very same value for an already canonical path.
    assert normalize_path(b"/static/app.js") == b"/static/app.js"


# -- refusals ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        b"/..",
        b"/../",
        b"/../etc/passwd",
        b"/a/../..",
        b"/a/../../b",
        b"/%2e%2e/x",
        b"/%2E%2E/x",
        b"/.%2e/x",
        b"//../x",
        b"/a/./../../x",
    ],
)
def test_above_root_refused(path: bytes) -> None:
    refused(path)


@pytest.mark.parametrize(
    "path",
    [
        b"/public/..;/internal",
        b"/public/..;x/internal",
        b"/public/.;/internal",
        b"/a/%2e%2e;/b",
        b"/a/..;",
    ],
)
def test_dot_segment_with_parameters_refused(path: bytes) -> None:
    refused(path)


@pytest.mark.parametrize(
    "path", [b"/public/..%2finternal", b"/a%2Fb", b"/a%2fb", b"/%2F", b"/%2f%2e%2e%2f"]
)
def test_encoded_slash_refused(path: bytes) -> None:
    refused(path)


@pytest.mark.parametrize(
    ("raw", "kept"),
    [
        (b"/a%2fb", b"/a%2Fb"),
        (b"/a%2Fb", b"/a%2Fb"),
        (b"/public/..%2finternal", b"/public/..%2Finternal"),
        (b"/x/%2F/y", b"/x/%2F/y"),
    ],
)
def test_encoded_slash_kept_escaped_when_asked(raw: bytes, kept: bytes) -> None:
    assert normalize_path(raw, keep_encoded_slash=True) == kept
    # and kept-escaped output is already canonical
    assert normalize_path(kept, keep_encoded_slash=True) == kept


def test_keep_encoded_slash_is_part_of_the_memo_key() -> None:
    assert normalize_path(b"/memo%2fkey", keep_encoded_slash=True) == b"/memo%2Fkey"
    refused(b"/memo%2fkey")


@pytest.mark.parametrize(
    "path", [b"/a\\b", b"/public\\..\\internal", b"\\", b"/a%5Cb", b"/a%5cb", b"/..%5cinternal"]
)
def test_backslash_refused(path: bytes) -> None:
    refused(path)


@pytest.mark.parametrize(
    "path",
    [b"/a%00b", b"/a%00", b"/%01", b"/%0a", b"/%0D%0AX-Injected:%201", b"/%1f", b"/%7F", b"/%09"],
)
def test_encoded_controls_refused(path: bytes) -> None:
    refused(path)


@pytest.mark.parametrize(
    "path", [b"/%2569nternal", b"/%252e%252e/x", b"/%252F", b"/a%2500", b"/%2541%2541"]
)
def test_double_encoding_refused(path: bytes) -> None:
    refused(path)


def test_double_encoding_spelled_with_escaped_hex_digits_refused() -> None:
    # '%25' followed by escapes of hex digits decodes to '%2569nternal': a backend that
    # decodes once more sees '/%69nternal', twice '/internal'.
    refused(b"/%25%36%39nternal")


@pytest.mark.parametrize(
    "path",
    [
        b"/%C0%AE%C0%AE/internal",  # overlong '.'
        b"/%c0%af",  # overlong '/'
        b"/%C1%9C",  # overlong '\'
        b"/%E0%80%AE",  # 3-byte overlong '.'
        b"/%FF",
        b"/%80",
        b"/caf%C3",  # truncated sequence
        b"/%C3%28",
        b"/%ED%A0%80",  # UTF-16 surrogate
        b"/%F4%90%80%80",  # above U+10FFFF
    ],
)
def test_invalid_utf8_refused(path: bytes) -> None:
    refused(path)


@pytest.mark.parametrize("path", [b"/a%", b"/a%2", b"/a%zz", b"/a%2g", b"/%%41", b"/a%-1"])
def test_malformed_escape_refused(path: bytes) -> None:
    refused(path)


@pytest.mark.parametrize("path", [b"", b"a/b", b"*", b"http://x/"])
def test_path_must_start_with_slash(path: bytes) -> None:
    refused(path)


def test_refusal_is_not_memoised() -> None:
    for _ in range(2):
        refused(b"/again/%2569")


def test_protocol_error_closes_the_connection() -> None:
    assert refused(b"/%00").close is True


# -- split_target ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "path", "query"),
    [
        (b"/a", b"/a", None),
        (b"/a?", b"/a", b""),
        (b"/a?x=1&y=2", b"/a", b"x=1&y=2"),
        (b"/a?x=?y", b"/a", b"x=?y"),
        (b"/?q", b"/", b"q"),
    ],
)
def test_split_target(target: bytes, path: bytes, query: bytes | None) -> None:
    assert split_target(target) == (path, query)


@pytest.mark.parametrize("target", [b"/a#frag", b"/a?b#c", b"/#"])
def test_fragment_refused(target: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        split_target(target)
    assert info.value.status == 400


# -- properties --------------------------------------------------------------------------

# Mostly tokens that normalise (refusals are covered above): plain characters, dot
# segments, escapes of unreserved characters including hex digits (the material of double
# encoding), escapes that are kept, and a few that are refused.
_TOKENS = [
    "x",
    "Y",
    "z9",
    "-",
    "_",
    "~",
    ".",
    "..",
    ";",
    "=",
    "%2e",
    "%2E",
    "%30",
    "%36",
    "%39",
    "%41",
    "%46",
    "%61",
    "%66",
    "%7e",
    "%20",
    "%3B",
    "%25",
    "%2F",
    "%c3%a9",
    "%E2%82%AC",
    "%00",
    "%5C",
    "%C0%AE",
]
_segment = st.lists(st.sampled_from(_TOKENS), max_size=6).map("".join)
_paths = st.lists(_segment, min_size=1, max_size=8).map(lambda segs: "/" + "/".join(segs))


def _segments_ok(out: bytes) -> None:
    assert out.startswith(b"/")
    assert b"//" not in out
    assert b"/./" not in out
    assert b"/../" not in out
    assert not out.endswith((b"/.", b"/.."))
    inner = out.split(b"/")[1:]
    if inner and inner[-1] == b"":
        inner = inner[:-1]  # the kept trailing slash
    for seg in inner:
        assert seg not in (b"", b".", b"..")


@settings(max_examples=500)
@given(_paths, st.booleans())
@example("/%25%36%39nternal", False)
@example("/a/%2e%2e/%2e/b//", False)
def test_normalize_is_idempotent_and_canonical(path: str, keep: bool) -> None:
    raw = path.encode()
    try:
        once = normalize_path(raw, keep_encoded_slash=keep)
    except ProtocolError as exc:
        assert exc.status == 400
        assume(False)
        return
    _segments_ok(once)
    assert normalize_path(once, keep_encoded_slash=keep) == once


@given(st.lists(st.sampled_from(["a", "b", ".", "..", ""]), max_size=10))
def test_dot_segments_match_a_reference(segments: list[str]) -> None:
    """Compared with a simple reference: a stack of segments, refusing to pop the root."""
    raw = ("/" + "/".join(segments)).encode()
    stack: list[str] = []
    above = False
    for seg in segments:
        if seg in ("", "."):
            continue
        if seg == "..":
            if not stack:
                above = True
                break
            stack.pop()
        else:
            stack.append(seg)
    if above:
        refused(raw)
        return
    trailing = bool(segments) and segments[-1] in ("", ".", "..") and bool(stack)
    expected = "/" + "/".join(stack) + ("/" if trailing else "")
    assert normalize_path(raw) == expected.encode()
