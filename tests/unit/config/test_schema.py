"""The frozen schema: defaults, short forms, cross-field rules, and what is refused."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from ramparts.config.schema import (
    AccessLogConfig,
    Config,
    HeaderRules,
    HealthCheckConfig,
    LimitsConfig,
    LocationConfig,
    PeerConfig,
    ProxyConfig,
    ReturnConfig,
    ServerConfig,
    UpstreamConfig,
)

RETURN: dict[str, Any] = {"location": "/", "return": {"status": 204}}


def server(**kw: Any) -> dict[str, Any]:
    return {"listen": 8080, "locations": [RETURN], **kw}


def test_minimal_config_defaults() -> None:
    c = Config.model_validate({"servers": [server()]})
    assert c.workers == 1
    assert c.log_level == "info"
    assert c.shutdown_timeout == 30.0
    assert c.encoded_slash == "reject"
    assert c.access_log is None
    assert c.upstreams == {}
    limits = c.limits
    assert limits == LimitsConfig.model_validate({})
    assert limits.max_header_size == 16384
    assert limits.max_body_size == 1048576
    assert limits.max_uri_length == 8192
    assert limits.keepalive_timeout == 75.0
    s = c.servers[0]
    assert [x.address for x in s.listen] == ["8080"]
    assert s.listen[0].tls is False
    assert s.listen[0].host_port == ("0.0.0.0", 8080)
    assert s.default is False
    assert s.server_names == []


@pytest.mark.parametrize(
    ("listen", "addresses"),
    [
        (8080, [("0.0.0.0", 8080)]),
        ("127.0.0.1:81", [("127.0.0.1", 81)]),
        ([8080, "[::1]:8081"], [("0.0.0.0", 8080), ("::1", 8081)]),
        ({"address": "9000"}, [("0.0.0.0", 9000)]),
        ([{"address": 9001, "tls": False}], [("0.0.0.0", 9001)]),
    ],
)
def test_listen_short_and_long_forms(listen: Any, addresses: list[tuple[str, int]]) -> None:
    s = ServerConfig.model_validate(server(listen=listen))
    assert [x.host_port for x in s.listen] == addresses


@pytest.mark.parametrize("listen", [[], "nope", True, [{"address": True}], "1.2.3.4:0"])
def test_bad_listen(listen: Any) -> None:
    with pytest.raises(ValidationError):
        ServerConfig.model_validate(server(listen=listen))


def test_server_needs_locations() -> None:
    with pytest.raises(ValidationError):
        ServerConfig.model_validate({"listen": 80, "locations": []})


def test_config_needs_servers() -> None:
    with pytest.raises(ValidationError):
        Config.model_validate({"servers": []})


def test_tls_listen_needs_a_certificate() -> None:
    with pytest.raises(ValidationError, match="needs tls"):
        ServerConfig.model_validate(server(listen=[{"address": "443", "tls": True}]))


def test_certificate_without_a_tls_listen_is_refused() -> None:
    with pytest.raises(ValidationError, match="no listen address has tls"):
        ServerConfig.model_validate(server(tls={"certificate": "c.pem", "key": "k.pem"}))


def test_tls_protocols() -> None:
    s = ServerConfig.model_validate(
        server(
            listen=[{"address": "443", "tls": True}],
            tls={"certificate": "c.pem", "key": "k.pem"},
        )
    )
    assert s.tls is not None
    assert s.tls.protocols == ["TLSv1.2", "TLSv1.3"]
    for bad in (["TLSv1.1"], ["SSLv3"], []):
        with pytest.raises(ValidationError):
            ServerConfig.model_validate(
                server(
                    listen=[{"address": "443", "tls": True}],
                    tls={"certificate": "c.pem", "key": "k.pem", "protocols": bad},
                )
            )


def test_location_aliases() -> None:
    loc = LocationConfig.model_validate({"location": "= /x", "return": {"status": 200}})
    assert loc.match == "= /x"
    assert loc.return_ is not None
    assert loc.proxy is None
    assert loc.static is None
    assert loc.max_body_size is None


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"proxy": {"upstream": "a"}, "return": {"status": 200}},
        {"proxy": {"upstream": "a"}, "static": {"root": "/tmp"}},
    ],
)
def test_location_needs_exactly_one_handler(extra: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        LocationConfig.model_validate({"location": "/", **extra})


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_needs_location(status: int) -> None:
    with pytest.raises(ValidationError, match=f"a {status} needs a location"):
        ReturnConfig.model_validate({"status": status})
    r = ReturnConfig.model_validate({"status": status, "location": "https://$host/"})
    assert r.location == "https://$host/"


@pytest.mark.parametrize("status", [199, 600, 100])
def test_return_status_range(status: int) -> None:
    with pytest.raises(ValidationError):
        ReturnConfig.model_validate({"status": status})


def test_return_location_cannot_inject_headers() -> None:
    with pytest.raises(ValidationError, match="CR, LF or NUL"):
        ReturnConfig.model_validate({"status": 302, "location": "/x\r\nSet-Cookie: a=b"})


@pytest.mark.parametrize("key", ["hide", "remove"])
def test_header_rules_hide_and_remove_are_one_key(key: str) -> None:
    rules = HeaderRules.model_validate({key: ["Server", "X-Powered-By"]})
    assert rules.remove == ["Server", "X-Powered-By"]


@pytest.mark.parametrize(
    "rules",
    [
        {"hide": ["Bad Name"]},
        {"hide": [""]},
        {"set": {"X:Y": "1"}},
        {"add": {"X-Y": "a\nb"}},
        {"add": {"X-Y": "a\rb"}},
        {"set": {"X-Y": "a\0b"}},
        {"delete": ["X"]},
    ],
)
def test_bad_header_rules(rules: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        HeaderRules.model_validate(rules)


def test_proxy_defaults_and_timeouts() -> None:
    p = ProxyConfig.model_validate({"upstream": "app"})
    assert p.host == "$host"
    assert p.x_forwarded is True
    assert p.connect_timeout is None
    p = ProxyConfig.model_validate({"upstream": "app", "read_timeout": "250ms"})
    assert p.read_timeout == 0.25
    for bad in (0, "0s", "-1s"):
        with pytest.raises(ValidationError):
            ProxyConfig.model_validate({"upstream": "app", "read_timeout": bad})


def test_upstream_short_peer_form_and_defaults() -> None:
    up = UpstreamConfig.model_validate(
        {"servers": ["127.0.0.1:1", {"address": "127.0.0.1:2", "weight": 5}]}
    )
    assert [p.address for p in up.servers] == ["127.0.0.1:1", "127.0.0.1:2"]
    assert [p.weight for p in up.servers] == [1, 5]
    assert up.balance == "round_robin"
    assert up.keepalive == 64
    assert up.tries == 0
    assert up.health_check is None


@pytest.mark.parametrize(
    "peer",
    [
        {"address": "nohost"},
        {"address": "h:0"},
        {"address": "h:1", "weight": 0},
        {"address": "h:1", "weight": 1001},
        {"address": "h:1", "max_fails": -1},
        {"address": "h:1", "fail_timeout": 0},
    ],
)
def test_bad_peer(peer: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        PeerConfig.model_validate(peer)


def test_peer_bare_port_means_localhost() -> None:
    assert PeerConfig.model_validate({"address": "3000"}).address == "3000"


def test_bad_balance() -> None:
    with pytest.raises(ValidationError):
        UpstreamConfig.model_validate({"servers": ["h:1"], "balance": "random"})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (200, (200, 200)),
        ("200-299", (200, 299)),
        (" 200 - 204 ", (200, 204)),
        ([200, 399], (200, 399)),
    ],
)
def test_health_check_expect_status(value: Any, expected: tuple[int, int]) -> None:
    hc = HealthCheckConfig.model_validate({"expect_status": value})
    assert hc.expect_status == expected


@pytest.mark.parametrize("value", ["abc-def", "200-", "399-200", 99, 600, "100-600", [300, 200]])
def test_health_check_bad_expect_status(value: Any) -> None:
    with pytest.raises(ValidationError):
        HealthCheckConfig.model_validate({"expect_status": value})


def test_health_check_defaults() -> None:
    hc = HealthCheckConfig.model_validate({})
    assert (hc.path, hc.interval, hc.timeout, hc.fails, hc.passes) == ("/", 5.0, 2.0, 2, 1)
    assert hc.expect_status == (200, 399)


def test_access_log_config() -> None:
    a = AccessLogConfig.model_validate({"path": "/var/log/x.log", "buffer": "64k", "flush": "1m"})
    assert (a.buffer, a.flush) == (65536, 60.0)
    a = AccessLogConfig.model_validate({"path": "-"})
    assert (a.buffer, a.flush) == (32768, 5.0)
    with pytest.raises(ValidationError):
        AccessLogConfig.model_validate({"path": "-", "flush": 0})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("workers", 0),
        ("workers", 257),
        ("log_level", "trace"),
        ("encoded_slash", "decode"),
        ("shutdown_timeout", "-1s"),
    ],
)
def test_bad_top_level_values(field: str, value: Any) -> None:
    with pytest.raises(ValidationError):
        Config.model_validate({"servers": [server()], field: value})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_header_size", 100),
        ("max_headers", 0),
        ("max_uri_length", 8),
        ("max_body_size", -1),
        ("client_header_timeout", 0),
        ("keepalive_requests", 0),
    ],
)
def test_bad_limits(field: str, value: Any) -> None:
    with pytest.raises(ValidationError):
        LimitsConfig.model_validate({field: value})


def test_models_are_frozen() -> None:
    c = Config.model_validate({"servers": [server()]})
    with pytest.raises(ValidationError):
        c.servers[0].default = True
