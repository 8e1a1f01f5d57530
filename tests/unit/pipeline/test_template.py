"""nginx-style templates: variables compiled once, rendered per request."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from ramparts.http.headers import Headers
from ramparts.http.request import parse_head
from ramparts.pipeline.context import Context
from ramparts.pipeline.template import VARIABLES, Template


def ctx(
    target: bytes = b"/a/./b?x=1",
    headers: Headers | None = None,
    method: bytes = b"GET",
    scheme: str = "http",
    version: str = "1.1",
) -> Context:
    req = parse_head(
        method, target, version, [(b"Host", b"Example.com:8080")] if headers is None else headers
    )
    return Context(req, "192.0.2.7", 51234, scheme, 0.0)


@dataclass
class FakeServer:
    primary_name: bytes


@pytest.mark.parametrize(
    ("source", "rendered"),
    [
        ("$scheme", b"http"),
        ("$host", b"example.com"),
        ("$request_uri", b"/a/./b?x=1"),  # as the client sent it, like nginx
        ("$uri", b"/a/b"),  # the canonical path
        ("$args", b"x=1"),
        ("$remote_addr", b"192.0.2.7"),
        ("$request_method", b"GET"),
        ("${scheme}://${host}", b"http://example.com"),
        ("https://$host$request_uri", b"https://example.com/a/./b?x=1"),
        ("https://$host/new$uri?$args", b"https://example.com/new/a/b?x=1"),
        ("plain text", b"plain text"),
        ("", b""),
        ("$hostname-ish", None),
        ("cost: $", b"cost: $"),
        ("a$ b", b"a$ b"),
    ],
)
def test_render(source: str, rendered: bytes | None) -> None:
    if rendered is None:
        with pytest.raises(ValueError, match=r"unknown variable \$hostname"):
            Template(source)
        return
    t = Template(source)
    assert t.source == source
    assert t.render(ctx()) == rendered


def test_args_empty_without_query() -> None:
    assert Template("[$args]").render(ctx(b"/p")) == b"[]"
    assert Template("[$args]").render(ctx(b"/p?")) == b"[]"


def test_scheme_https() -> None:
    assert Template("$scheme").render(ctx(scheme="https")) == b"https"


def test_remote_addr_follows_the_real_client_ip() -> None:
    c = ctx()
    c.client_ip = "203.0.113.9"
    assert Template("$remote_addr").render(c) == b"203.0.113.9"


def test_request_uri_in_absolute_form_is_the_canonical_uri() -> None:
    c = ctx(b"http://origin.test/x/../y?q")
    assert Template("$request_uri").render(c) == b"/y?q"
    assert Template("$host").render(c) == b"origin.test"


def test_host_falls_back_to_the_server_name() -> None:
    c = ctx(b"/", headers=[], version="1.0")
    assert Template("[$host]").render(c) == b"[]"
    c.server = FakeServer(b"primary.test")
    assert Template("$host").render(c) == b"primary.test"


def test_unknown_variable_lists_the_known_ones() -> None:
    with pytest.raises(ValueError) as info:
        Template("${nope}")
    for name in ("scheme", "host", "request_uri"):
        assert name in str(info.value)


def test_template_is_reusable_across_requests() -> None:
    t = Template("$uri")
    assert t.render(ctx(b"/one")) == b"/one"
    assert t.render(ctx(b"/two")) == b"/two"


def test_variables_table_names() -> None:
    assert {"scheme", "host", "request_uri", "uri", "args", "remote_addr"} <= set(VARIABLES)


def test_header_variables_and_the_original_peer() -> None:
    req = parse_head(
        b"GET", b"/a?b=1", "1.1", [(b"Host", b"h"), (b"X-Api-Key", b"k1"), (b"x-api-key", b"k2")]
    )
    c = Context(req, "10.0.0.1", 5000, "http", 0.0)
    c.client_ip = "203.0.113.9"
    assert Template("$http_x_api_key").render(c) == b"k1"  # the first field, any case
    assert Template("$http_X_API_KEY").render(c) == b"k1"
    assert Template("$http_authorization").render(c) == b""
    assert Template("$remote_addr|$realip_remote_addr").render(c) == b"203.0.113.9|10.0.0.1"
    assert Template("$binary_remote_addr").render(c) == b"203.0.113.9"
    with pytest.raises(ValueError, match=r"unknown variable \$http_"):
        Template("$http_")
