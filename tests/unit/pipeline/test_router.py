"""Routing like nginx: location precedence on the canonical path, server_name rules."""

from __future__ import annotations

import re

import pytest

from ramparts.pipeline.router import HostRouter, LocationMatcher, parse_location


def matcher(*specs: str) -> LocationMatcher[str]:
    return LocationMatcher([(*parse_location(spec), spec) for spec in specs])


# -- parse_location ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("/", ("prefix", "/", False)),
        ("/api/", ("prefix", "/api/", False)),
        ("  /api  ", ("prefix", "/api", False)),
        ("= /exact", ("exact", "/exact", False)),
        ("^~ /static/", ("priority_prefix", "/static/", False)),
        ("~ \\.php$", ("regex", "\\.php$", False)),
        ("~* \\.(jpg|png)$", ("regex", "\\.(jpg|png)$", True)),
        ("~   ^/x  ", ("regex", "^/x", False)),
    ],
)
def test_parse_location(spec: str, parsed: tuple[str, str, bool]) -> None:
    assert parse_location(spec) == parsed


@pytest.mark.parametrize("spec", ["", "   ", "= ", "~ ", "api", "= api", "^~ api", "~ ([", "~* *x"])
def test_bad_location(spec: str) -> None:
    with pytest.raises((ValueError, re.error)):
        parse_location(spec)


# -- precedence --------------------------------------------------------------------------


def test_exact_beats_everything() -> None:
    m = matcher("/", "^~ /a", "~ ^/a$", "= /a")
    assert m.match(b"/a") == "= /a"
    assert m.match(b"/a/") == "^~ /a"
    assert m.match(b"/ab") == "^~ /a"
    m = matcher("/", "/b", "~ ^/b$", "= /b")
    assert m.match(b"/b") == "= /b"


def test_exact_does_not_match_longer_paths() -> None:
    m = matcher("= /", "/")
    assert m.match(b"/") == "= /"
    assert m.match(b"/x") == "/"


def test_priority_prefix_that_is_longest_beats_regex() -> None:
    m = matcher("/", "^~ /static/", "~ \\.css$")
    assert m.match(b"/static/a.css") == "^~ /static/"
    assert m.match(b"/other/a.css") == "~ \\.css$"


def test_priority_prefix_only_wins_when_it_is_the_longest() -> None:
    # nginx: the longest matching prefix is found first; only if *it* is ^~ are regexes
    # skipped. A shorter ^~ does not stop the regex check.
    m = matcher("^~ /static/", "/static/img/", "~ \\.png$")
    assert m.match(b"/static/img/a.png") == "~ \\.png$"
    assert m.match(b"/static/a.png") == "^~ /static/"
    assert m.match(b"/static/img/a.gif") == "/static/img/"


def test_regex_in_file_order_beats_plain_prefix() -> None:
    m = matcher("/images/", "~ /images/.*\\.gif$", "~ \\.gif$", "~ ^/images/")
    assert m.match(b"/images/a.gif") == "~ /images/.*\\.gif$"
    assert m.match(b"/x/a.gif") == "~ \\.gif$"
    assert m.match(b"/images/a.png") == "~ ^/images/"


def test_regex_order_is_file_order_not_specificity() -> None:
    m = matcher("~ \\.gif$", "~ ^/images/.*\\.gif$")
    assert m.match(b"/images/a.gif") == "~ \\.gif$"


def test_longest_prefix_otherwise() -> None:
    m = matcher("/", "/a", "/a/b", "/a/b/c/", "/ab")
    assert m.match(b"/") == "/"
    assert m.match(b"/x") == "/"
    assert m.match(b"/a") == "/a"
    assert m.match(b"/a/") == "/a"
    assert m.match(b"/a/b") == "/a/b"
    assert m.match(b"/a/b/c") == "/a/b"
    assert m.match(b"/a/b/c/d") == "/a/b/c/"
    assert m.match(b"/abc") == "/ab"


def test_declaration_order_does_not_matter_for_prefixes() -> None:
    assert matcher("/a/b", "/a", "/").match(b"/a/b/x") == "/a/b"
    assert matcher("/", "/a", "/a/b").match(b"/a/b/x") == "/a/b"


def test_regex_is_case_sensitive_unless_star() -> None:
    m = matcher("/", "~ ^/internal", "~* \\.JPG$")
    assert m.match(b"/internal/x") == "~ ^/internal"
    assert m.match(b"/INTERNAL/x") == "/"
    assert m.match(b"/a.jpg") == "~* \\.JPG$"
    assert m.match(b"/a.Jpg") == "~* \\.JPG$"


def test_prefix_and_exact_are_case_sensitive() -> None:
    m = matcher("/", "/admin", "= /login")
    assert m.match(b"/ADMIN") == "/"
    assert m.match(b"/Login") == "/"


def test_regex_searches_anywhere() -> None:
    assert matcher("~ secret").match(b"/a/secret/b") == "~ secret"


def test_no_match() -> None:
    m = matcher("/api/", "= /x", "~ \\.php$")
    assert m.match(b"/") is None
    assert m.match(b"/ap") is None
    # cached misses stay misses
    assert m.match(b"/") is None


def test_repeated_matches_are_stable() -> None:
    m = matcher("/", "~ \\.php$")
    for _ in range(3):
        assert m.match(b"/a.php") == "~ \\.php$"
        assert m.match(b"/a.html") == "/"


def test_duplicate_prefix_refused() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        matcher("/a", "^~ /a")


def test_non_ascii_prefix_matches_the_canonical_path() -> None:
    # config paths are written decoded; the canonical path keeps UTF-8 escaped
    m = matcher("/", "/café/")
    assert m.match(b"/caf%C3%A9/menu") == "/café/"
    assert m.match(b"/cafe/menu") == "/"


def test_exact_non_ascii() -> None:
    assert matcher("= /ü").match(b"/%C3%BC") == "= /ü"


def test_non_ascii_regex_matches_the_canonical_path() -> None:
    # nginx matches regexes on the decoded URI: a regex written with 'ü' must match the
    # canonical path '/%C3%BCber' just like a prefix written with 'ü' does.
    m = matcher("/", "~ ^/über")
    assert m.match(b"/%C3%BCber") == "~ ^/über"


# -- server names ------------------------------------------------------------------------


def router() -> HostRouter[str]:
    return HostRouter(
        [
            (["example.com", "www.example.com"], "exact"),
            (["*.example.com"], "star"),
            (["*.api.example.com"], "star-api"),
            ([".example.org"], "dot"),
            (["www.*"], "www"),
            (["mail.*", "mail.example.*"], "mail"),
            (["~^app\\d+\\.test$"], "regex1"),
            (["~\\.test$"], "regex2"),
            (["Upper.Example.NET."], "upper"),
        ],
        "default",
    )


@pytest.mark.parametrize(
    ("host", "server"),
    [
        (b"example.com", "exact"),
        (b"www.example.com", "exact"),  # exact beats *.example.com and www.*
        (b"a.example.com", "star"),
        (b"a.b.example.com", "star"),
        (b"x.api.example.com", "star-api"),  # longest leading wildcard
        (b"api.example.com", "star"),
        (b"example.org", "dot"),
        (b"a.example.org", "dot"),
        (b"a.b.example.org", "dot"),
        (b"www.other.net", "www"),
        (b"mail.example.net", "mail"),
        (b"app12.test", "regex1"),  # first regex in order
        (b"app.test", "regex2"),
        (b"upper.example.net", "upper"),
        (b"unknown.net", "default"),
        (b"xexample.com", "default"),
        (b"example.org.evil", "default"),
        (b"com", "default"),
        (None, "default"),
    ],
)
def test_server_name_matching(host: bytes | None, server: str) -> None:
    r = router()
    assert r.select(host) == server
    assert r.select(host) == server  # cached answer is the same


def test_leading_wildcard_beats_trailing_wildcard_and_regex() -> None:
    r = HostRouter([(["~^www\\."], "regex"), (["www.*"], "trailing"), (["*.com"], "lead")], "d")
    assert r.select(b"www.example.com") == "lead"
    assert r.select(b"www.example.org") == "trailing"
    assert r.select(b"www2.example.org") == "d"


def test_trailing_wildcard_beats_regex() -> None:
    r = HostRouter([(["~example"], "regex"), (["www.example.*"], "trailing")], "d")
    assert r.select(b"www.example.io") == "trailing"
    assert r.select(b"api.example.io") == "regex"


def test_longest_trailing_wildcard_wins() -> None:
    r = HostRouter([(["www.*"], "short"), (["www.example.*"], "long")], "d")
    assert r.select(b"www.example.io") == "long"
    assert r.select(b"www.other.io") == "short"


def test_regex_is_case_insensitive() -> None:
    r = HostRouter([(["~^API\\."], "api")], "d")
    assert r.select(b"api.example.com") == "api"


def test_first_server_with_an_exact_name_wins() -> None:
    r = HostRouter([(["dup.test"], "first"), (["dup.test"], "second")], "d")
    assert r.select(b"dup.test") == "first"


def test_no_names_only_default() -> None:
    r: HostRouter[str] = HostRouter([([], "a")], "a")
    assert r.select(b"anything") == "a"
