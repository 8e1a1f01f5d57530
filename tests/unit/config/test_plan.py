"""Compiling a validated config into the immutable plan a worker serves from."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from textwrap import dedent

import pytest

from ramparts.config.plan import (
    Plan,
    ProxyRoute,
    ReturnRoute,
    StaticRoute,
    compile_config,
    load_plan,
    parse_config,
)
from ramparts.errors import ConfigError
from ramparts.policies.headers import HeaderEdit

FULL = """\
workers: 2
encoded_slash: keep
limits:
  max_body_size: 2m
upstreams:
  app:
    balance: least_conn
    connect_timeout: 3s
    read_timeout: 20s
    servers:
      - "127.0.0.1:3000"
      - {address: "[::1]:3001", weight: 3, max_fails: 2, fail_timeout: 30s}
      - {address: "127.0.0.1:3002", backup: true}
servers:
  - listen: [8080, "127.0.0.1:8081"]
    server_names: [example.com, "*.example.com"]
    headers:
      response:
        hide: [Server]
        add: {X-Frame-Options: DENY}
    locations:
      - location: /
        proxy: {upstream: app, read_timeout: 5s}
      - location: = /healthz
        return: {status: 200, body: "ok\\n"}
      - location: /old/
        return: {status: 301, location: "https://$host$request_uri"}
      - location: ^~ /up/
        max_body_size: 100m
        proxy: {upstream: "http://127.0.0.1:9000", host: "$upstream"}
        headers:
          request:
            set: {X-Env: test}
      - location: ~* \\.php$
        proxy: {upstream: app, host: backend.internal, x_forwarded: false}
  - listen: 8080
    server_names: [other.example]
    default: true
    locations:
      - location: /
        return: {status: 404}
"""


def compile_text(text: str, file: str = "gw.yaml") -> Plan:
    config, lines = parse_config(dedent(text), file)
    return compile_config(config, lines)


def error(text: str, file: str = "gw.yaml") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        compile_text(text, file)
    assert info.value.file == file
    return info.value


@pytest.fixture
def plan() -> Plan:
    return compile_text(FULL)


def test_listeners(plan: Plan) -> None:
    assert set(plan.listeners) == {("0.0.0.0", 8080), ("127.0.0.1", 8081)}
    for (host, port), listener in plan.listeners.items():
        assert (listener.host, listener.port) == (host, port)
        assert listener.tls is False
        assert listener.ssl_context is None
    assert plan.config.workers == 2
    assert plan.keep_encoded_slash is True
    assert plan.limits.max_body_size == 2 * 1048576
    assert plan.access_log is None
    assert plan.source == "gw.yaml"
    assert [s.index for s in plan.servers] == [0, 1]


def test_servers_by_host_and_default(plan: Plan) -> None:
    shared = plan.listeners[("0.0.0.0", 8080)]
    assert shared.resolve(b"example.com", b"/")[0].index == 0
    assert shared.resolve(b"www.example.com", b"/")[0].index == 0
    assert shared.resolve(b"other.example", b"/")[0].index == 1
    assert shared.resolve(b"unknown.test", b"/")[0].index == 1  # the marked default
    assert shared.resolve(None, b"/")[0].index == 1
    only = plan.listeners[("127.0.0.1", 8081)]
    assert only.resolve(b"unknown.test", b"/")[0].index == 0  # the only server
    assert plan.servers[0].primary_name == b"example.com"
    assert plan.servers[0].names == ("example.com", "*.example.com")


def test_first_server_is_default_without_a_mark() -> None:
    plan = compile_text(
        """\
        servers:
          - listen: 8080
            server_names: [a.test]
            locations: [{location: /, return: {status: 200}}]
          - listen: 8080
            server_names: [b.test]
            locations: [{location: /, return: {status: 201}}]
        """
    )
    listener = plan.listeners[("0.0.0.0", 8080)]
    assert listener.resolve(b"b.test", b"/")[0].index == 1
    assert listener.resolve(b"zzz", b"/")[0].index == 0


def test_locations_and_routes(plan: Plan) -> None:
    listener = plan.listeners[("0.0.0.0", 8080)]

    def loc(path: bytes) -> str:
        found = listener.resolve(b"example.com", path)[1]
        assert found is not None
        return found.spec

    assert loc(b"/") == "/"
    assert loc(b"/healthz") == "= /healthz"
    assert loc(b"/healthz/") == "/"
    assert loc(b"/old/page") == "/old/"
    assert loc(b"/up/x.php") == "^~ /up/"
    assert loc(b"/a/INDEX.PHP") == "~* \\.php$"
    # the other server has only its own location
    other = listener.resolve(b"other.example", b"/healthz")[1]
    assert other is not None
    assert isinstance(other.route, ReturnRoute)
    assert other.route.status == 404


def test_upstream_plan(plan: Plan) -> None:
    up = plan.upstreams["app"]
    assert up.name == "app"
    assert up.balance == "least_conn"
    assert up.connect_timeout == 3.0
    assert up.read_timeout == 20.0
    assert up.send_timeout == 60.0
    assert up.keepalive == 64
    assert [(p.host, p.port, p.weight, p.backup) for p in up.peers] == [
        ("127.0.0.1", 3000, 1, False),
        ("::1", 3001, 3, False),
        ("127.0.0.1", 3002, 1, True),
    ]
    assert up.peers[1].max_fails == 2
    assert up.peers[1].fail_timeout == 30.0
    assert up.peers[0].max_fails == 1
    assert up.peers[0].fail_timeout == 10.0
    assert [p.label for p in up.peers] == ["127.0.0.1:3000", "[::1]:3001", "127.0.0.1:3002"]


def test_proxy_routes(plan: Plan) -> None:
    listener = plan.listeners[("0.0.0.0", 8080)]
    root = listener.resolve(b"example.com", b"/")[1]
    assert root is not None
    assert isinstance(root.route, ProxyRoute)
    assert root.route.upstream is plan.upstreams["app"]
    assert root.route.host is None  # '$host': pass the client's
    assert root.route.x_forwarded is True
    assert root.route.read_timeout == 5.0  # the location's own
    assert root.route.connect_timeout == 3.0  # the upstream's
    assert root.route.send_timeout == 60.0
    assert root.max_body_size == 2 * 1048576  # from limits

    up = listener.resolve(b"example.com", b"/up/")[1]
    assert up is not None
    assert isinstance(up.route, ProxyRoute)
    assert up.route.host == b""  # '$upstream': the peer address
    assert [(p.host, p.port) for p in up.route.upstream.peers] == [("127.0.0.1", 9000)]
    assert up.max_body_size == 100 * 1048576

    php = listener.resolve(b"example.com", b"/x.php")[1]
    assert php is not None
    assert isinstance(php.route, ProxyRoute)
    assert php.route.host == b"backend.internal"
    assert php.route.x_forwarded is False


def test_return_routes(plan: Plan) -> None:
    listener = plan.listeners[("0.0.0.0", 8080)]
    health = listener.resolve(b"example.com", b"/healthz")[1]
    assert health is not None
    assert isinstance(health.route, ReturnRoute)
    assert health.route.status == 200
    assert health.route.body == b"ok\n"
    assert health.route.location is None
    assert health.route.content_type == b"text/plain; charset=utf-8"
    old = listener.resolve(b"example.com", b"/old/x")[1]
    assert old is not None
    assert isinstance(old.route, ReturnRoute)
    assert old.route.status == 301
    assert old.route.location is not None
    assert old.route.location.source == "https://$host$request_uri"
    assert old.route.body == b""


def test_header_edits_are_merged_server_then_location(plan: Plan) -> None:
    listener = plan.listeners[("0.0.0.0", 8080)]
    up = listener.resolve(b"example.com", b"/up/")[1]
    assert up is not None
    headers = [(b"Server", b"x"), (b"X-Env", b"prod")]
    up.request_headers.apply(headers)
    assert headers == [(b"Server", b"x"), (b"X-Env", b"test")]
    # the server's response edits run as the location's response phase
    assert len(up.chain.response) == 1
    edit = up.chain.response[0]
    assert isinstance(edit, HeaderEdit)
    resp = [(b"Server", b"nginx"), (b"Content-Type", b"text/plain")]
    edit.apply(resp)
    assert resp == [(b"Content-Type", b"text/plain"), (b"X-Frame-Options", b"DENY")]
    assert up.chain.request == ()


def test_no_response_phase_without_edits() -> None:
    plan = compile_text(
        """\
        servers:
          - listen: 8080
            locations: [{location: /, return: {status: 204}}]
        """
    )
    loc = plan.listeners[("0.0.0.0", 8080)].resolve(None, b"/")[1]
    assert loc is not None
    assert loc.chain.response == ()
    assert loc.request_headers.empty
    assert plan.keep_encoded_slash is False


def test_plan_is_immutable(plan: Plan) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.source = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.upstreams["app"].tries = 5  # type: ignore[misc]


def test_resolve_without_a_matching_location() -> None:
    plan = compile_text(
        """\
        servers:
          - listen: 8080
            locations: [{location: /only/, return: {status: 204}}]
        """
    )
    server, loc = plan.listeners[("0.0.0.0", 8080)].resolve(b"h", b"/other")
    assert server.index == 0
    assert loc is None


# -- static routes -----------------------------------------------------------------------


def test_static_route_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(
        dedent(
            """\
            servers:
              - listen: 8080
                locations:
                  - location: /static/
                    static:
                      root: site
                      alias: true
                      index: [index.htm, index.html]
                      expires: 1h
                      cache_control: public
                  - location: /
                    static: {root: site}
            """
        )
    )
    plan = load_plan(cfg)
    listener = plan.listeners[("0.0.0.0", 8080)]
    loc = listener.resolve(None, b"/static/a.css")[1]
    assert loc is not None
    route = loc.route
    assert isinstance(route, StaticRoute)
    assert route.root == (tmp_path / "site").resolve()
    assert route.strip_prefix == b"/static"
    assert route.index == ("index.htm", "index.html")
    assert route.expires == 3600.0
    assert route.cache_control == b"public"
    assert route.follow_symlinks is False
    root = listener.resolve(None, b"/x")[1]
    assert root is not None
    assert isinstance(root.route, StaticRoute)
    assert root.route.strip_prefix == b""
    assert root.route.expires is None
    assert root.route.cache_control is None
    assert plan.source == str(cfg)


def test_static_root_must_be_a_directory(tmp_path: Path) -> None:
    err = error(
        f"""\
        servers:
          - listen: 8080
            locations:
              - location: /
                static:
                  root: {tmp_path / "nope"}
        """
    )
    assert (err.line, err.field) == (6, "servers.0.locations.0.static.root")
    assert "not a directory" in err.reason


def test_alias_needs_a_prefix_location(tmp_path: Path) -> None:
    err = error(
        f"""\
        servers:
          - listen: 8080
            locations:
              - location: ~ ^/img/
                static:
                  root: {tmp_path}
                  alias: true
        """
    )
    assert (err.line, err.field) == (7, "servers.0.locations.0.static.alias")


def test_load_plan_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_plan(tmp_path / "missing.yaml")


# -- compile errors ----------------------------------------------------------------------


def test_unknown_upstream_is_reported_at_its_location() -> None:
    err = error(
        """\
        upstreams:
          app:
            servers: ["127.0.0.1:3000"]
        servers:
          - listen: 8080
            locations:
              - location: /
                proxy: {upstream: app}
              - location: /x
                proxy:
                  upstream: nope
        """
    )
    assert (err.line, err.column) == (11, 11)
    assert err.field == "servers.0.locations.1.proxy.upstream"
    assert "unknown upstream 'nope'" in err.reason
    assert "known: app" in err.reason


def test_bad_inline_upstream_url() -> None:
    err = error(
        """\
        servers:
          - listen: 8080
            locations:
              - location: /
                proxy: {upstream: "http://127.0.0.1:99999"}
        """
    )
    assert err.line == 5
    assert err.field == "servers.0.locations.0.proxy.upstream"


def test_two_default_servers_refused() -> None:
    err = error(
        """\
        servers:
          - listen: 8080
            default: true
            locations: [{location: /, return: {status: 200}}]
          - listen: 8080
            default: true
            locations: [{location: /, return: {status: 200}}]
        """
    )
    assert (err.line, err.field) == (6, "servers.1.default")
    assert "two default servers for 0.0.0.0:8080" in err.reason


def test_default_servers_on_different_addresses_are_fine() -> None:
    plan = compile_text(
        """\
        servers:
          - listen: 8080
            default: true
            locations: [{location: /, return: {status: 200}}]
          - listen: 8081
            default: true
            locations: [{location: /, return: {status: 200}}]
        """
    )
    assert set(plan.listeners) == {("0.0.0.0", 8080), ("0.0.0.0", 8081)}


def test_address_tls_for_one_server_and_not_another(tmp_path: Path) -> None:
    err = error(
        f"""\
        servers:
          - listen: 8443
            locations: [{{location: /, return: {{status: 200}}}}]
          - listen: [{{address: "8443", tls: true}}]
            tls: {{certificate: {tmp_path}/c.pem, key: {tmp_path}/k.pem}}
            locations: [{{location: /, return: {{status: 200}}}}]
        """
    )
    assert err.line == 4
    assert err.field == "servers.1.listen.0"
    assert "TLS for one server" in err.reason


def test_upstream_with_only_backups_refused() -> None:
    err = error(
        """\
        upstreams:
          app:
            servers:
              - {address: "127.0.0.1:1", backup: true}
        servers:
          - listen: 8080
            locations: [{location: /, proxy: {upstream: app}}]
        """
    )
    assert (err.line, err.field) == (3, "upstreams.app.servers")
    assert "non-backup" in err.reason


def test_ip_hash_with_backup_refused() -> None:
    err = error(
        """\
        upstreams:
          app:
            balance: ip_hash
            servers:
              - "127.0.0.1:1"
              - {address: "127.0.0.1:2", backup: true}
        servers:
          - listen: 8080
            locations: [{location: /, proxy: {upstream: app}}]
        """
    )
    assert (err.line, err.field) == (4, "upstreams.app.servers")


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("~ ([", "bad location"),
        ("nopath", "must start with '/'"),
        ("= ", "bad location"),
    ],
)
def test_bad_location_spec(spec: str, reason: str) -> None:
    err = error(
        f"""\
        servers:
          - listen: 8080
            locations:
              - location: "/"
                return: {{status: 200}}
              - location: "{spec}"
                return: {{status: 200}}
        """
    )
    assert err.line == 6
    assert err.field == "servers.0.locations.1.location"
    assert reason in err.reason


def test_duplicate_prefix_location_refused() -> None:
    err = error(
        """\
        servers:
          - listen: 8080
            locations:
              - location: /a/
                return: {status: 200}
              - location: ^~ /a/
                return: {status: 201}
        """
    )
    assert err.field == "servers.0.locations"
    assert err.line == 3
    assert "duplicate location" in err.reason


def test_unknown_template_variable_refused() -> None:
    err = error(
        """\
        servers:
          - listen: 8080
            locations:
              - location: /
                return: {status: 302, location: "https://$hots/"}
        """
    )
    assert err.line == 5
    assert err.field == "servers.0.locations.0.return.location"
    assert "unknown variable $hots" in err.reason


# -- TLS ---------------------------------------------------------------------------------


def test_tls_listener_gets_a_context(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("secure.test")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "both.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    plan = compile_text(
        f"""\
        servers:
          - listen: [{{address: "127.0.0.1:8443", tls: true}}]
            server_names: [secure.test]
            tls: {{certificate: {tmp_path}/cert.pem, key: {tmp_path}/key.pem}}
            locations: [{{location: /, return: {{status: 200}}}}]
        """
    )
    listener = plan.listeners[("127.0.0.1", 8443)]
    assert listener.tls is True
    assert listener.ssl_context is not None


def test_tls_with_unreadable_certificate_is_located(tmp_path: Path) -> None:
    err = error(
        f"""\
        servers:
          - listen: [{{address: "127.0.0.1:8443", tls: true}}]
            tls:
              certificate: {tmp_path}/missing.pem
              key: {tmp_path}/missing-key.pem
            locations: [{{location: /, return: {{status: 200}}}}]
        """
    )
    assert (err.line, err.field) == (3, "servers.0.tls")
    assert "cannot load certificate" in err.reason
