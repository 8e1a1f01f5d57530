"""Loading a config file: YAML with lines kept, validation into the frozen schema, and
every failure as one ConfigError naming file, line, column and field."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest
from pydantic import ValidationError

from ramparts.config.loader import LineMap, load_yaml, read_file, validate
from ramparts.config.plan import parse_config
from ramparts.config.schema import Config
from ramparts.errors import ConfigError

OK = dedent(
    """\
    upstreams:
      app:
        servers: ["127.0.0.1:3000"]
    servers:
      - listen: 8080
        locations:
          - location: /
            proxy: {upstream: app}
    """
)


def error(text: str, file: str = "gw.yaml") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(dedent(text), file)
    err = info.value
    assert err.file == file
    return err


# -- load_yaml and the line map ----------------------------------------------------------


def test_line_map_records_keys_and_items() -> None:
    data, lines = load_yaml(OK, "gw.yaml")
    assert data["servers"][0]["listen"] == 8080
    assert lines.file == "gw.yaml"
    assert lines.where(("upstreams",)) == (1, 1)
    assert lines.where(("upstreams", "app", "servers")) == (3, 5)
    assert lines.where(("upstreams", "app", "servers", 0)) == (3, 15)
    assert lines.where(("servers", 0)) == (5, 5)
    assert lines.where(("servers", 0, "listen")) == (5, 5)
    assert lines.where(("servers", 0, "locations", 0, "proxy", "upstream")) == (8, 17)


def test_line_map_falls_back_to_the_nearest_known_parent() -> None:
    _, lines = load_yaml(OK, "gw.yaml")
    assert lines.where(("servers", 0, "locations", 0, "nonexistent", 3)) == (7, 9)
    assert lines.where(("nothing", "here")) == (1, 1)  # the document itself


def test_line_map_error_builds_a_located_config_error() -> None:
    _, lines = load_yaml(OK, "gw.yaml")
    err = lines.error(("servers", 0, "listen"), "bad")
    assert (err.file, err.line, err.column, err.field) == ("gw.yaml", 5, 5, "servers.0.listen")
    assert err.reason == "bad"
    assert str(err) == "gw.yaml:5:5: servers.0.listen: bad"


def test_empty_line_map() -> None:
    lines = LineMap("x.yaml")
    assert lines.where(("a",)) == (None, None)
    assert lines.error((), "r").describe() == "x.yaml: r"


def test_duplicate_key_is_an_error_at_the_second_key() -> None:
    with pytest.raises(ConfigError) as info:
        load_yaml("workers: 1\nlog_level: info\nworkers: 2\n", "gw.yaml")
    err = info.value
    assert err.line == 3
    assert err.column == 1
    assert "duplicate key 'workers'" in err.reason


def test_nested_duplicate_key() -> None:
    text = dedent(
        """\
        upstreams:
          app:
            servers: [a]
            keepalive: 1
            keepalive: 2
        """
    )
    with pytest.raises(ConfigError) as info:
        load_yaml(text, "gw.yaml")
    assert info.value.line == 5
    assert info.value.column == 5


def test_syntax_error_line() -> None:
    text = "workers: 1\nlog_level: info: warning\nservers: []\n"
    with pytest.raises(ConfigError) as info:
        load_yaml(text, "gw.yaml")
    err = info.value
    assert err.file == "gw.yaml"
    assert err.line == 2
    assert err.column is not None
    assert "mapping values are not allowed" in err.reason


def test_bad_indentation_is_located() -> None:
    text = "servers:\n  - listen: 80\n   locations: []\n"
    with pytest.raises(ConfigError) as info:
        load_yaml(text, "gw.yaml")
    assert info.value.line == 3


def test_unsafe_tags_are_refused() -> None:
    with pytest.raises(ConfigError):
        load_yaml("x: !!python/object/apply:os.system ['true']\n", "gw.yaml")


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n"])
def test_empty_document(text: str) -> None:
    data, _ = load_yaml(text, "gw.yaml")
    assert data is None
    err = error(text)
    assert err.line == 1
    assert "empty" in err.reason


# -- validation errors -------------------------------------------------------------------


def test_valid_file_validates() -> None:
    config, _ = parse_config(OK, "gw.yaml")
    assert isinstance(config, Config)
    assert config.upstreams["app"].servers[0].address == "127.0.0.1:3000"
    assert config.servers[0].listen[0].address == "8080"
    assert config.servers[0].locations[0].match == "/"


def test_unknown_top_level_field() -> None:
    err = error("workerz: 2\n" + OK)
    assert (err.line, err.column, err.field) == (1, 1, "workerz")
    assert "Extra inputs are not permitted" in err.reason


def test_unknown_field_deep_in_the_tree() -> None:
    err = error(
        """\
        servers:
          - listen: 8080
            locations:
              - location: /
                proxy:
                  upstream: app
                  upstreamz: x
        """
    )
    assert err.line == 7
    assert err.column == 11
    assert err.field == "servers.0.locations.0.proxy.upstreamz"
    assert str(err).startswith("gw.yaml:7:11: servers.0.locations.0.proxy.upstreamz:")


def test_unknown_field_two_levels_deep() -> None:
    err = error(
        """\
        workers: 1
        limits:
          max_connections: 10
          max_header_sise: 8k
        servers: []
        """
    )
    assert (err.line, err.field) == (4, "limits.max_header_sise")


def test_bad_duration_is_located() -> None:
    err = error(
        """\
        upstreams:
          app:
            servers: ["127.0.0.1:3000"]
            read_timeout: 5x
        servers:
          - listen: 8080
            locations:
              - location: /
                proxy: {upstream: app}
        """
    )
    assert (err.line, err.column) == (4, 5)
    assert err.field == "upstreams.app.read_timeout"
    assert "not a duration: '5x'" in err.reason
    assert not err.reason.startswith("Value error")


def test_bad_size_is_located() -> None:
    err = error(
        """\
        limits:
          max_body_size: 1.5m
        servers: []
        """
    )
    assert (err.line, err.field) == (2, "limits.max_body_size")
    assert "not a size" in err.reason


def test_bad_listen_address_is_located() -> None:
    err = error(
        """\
        servers:
          - listen: "host:99999"
            locations:
              - location: /
                return: {status: 204}
        """
    )
    assert err.line == 2
    assert err.field is not None and err.field.startswith("servers.0.listen.0")
    assert "invalid port" in err.reason


def test_more_errors_are_counted() -> None:
    err = error("workers: 0\nlog_level: loud\nservers: []\n")
    assert err.line == 1
    assert err.field == "workers"
    assert "more)" in err.reason


def test_redirect_without_location() -> None:
    err = error(
        """\
        servers:
          - listen: 8080
            locations:
              - location: /
                return: {status: 301}
        """
    )
    assert (err.line, err.field) == (5, "servers.0.locations.0.return")
    assert "a 301 needs a location" in err.reason


def test_location_needs_exactly_one_handler() -> None:
    err = error(
        """\
        servers:
          - listen: 8080
            locations:
              - location: /
                return: {status: 200}
                proxy: {upstream: app}
        """
    )
    assert err.line == 4
    assert err.field == "servers.0.locations.0"
    assert "exactly one of proxy, return, static" in err.reason


def test_tls_listen_without_certificate_is_refused() -> None:
    err = error(
        """\
        servers:
          - listen:
              - {address: "8443", tls: true}
            locations:
              - location: /
                return: {status: 200}
        """
    )
    assert err.line == 2  # the server
    assert err.field == "servers.0"
    assert "needs tls" in err.reason


def test_listen_address_may_be_a_port_number_in_the_long_form() -> None:
    # `listen: 8443` is accepted; the long form must accept the same port number.
    config, _ = parse_config(
        dedent(
            """\
            servers:
              - listen:
                  - {address: 8443}
                locations:
                  - location: /
                    return: {status: 200}
            """
        ),
        "gw.yaml",
    )
    assert config.servers[0].listen[0].host_port == ("0.0.0.0", 8443)


def test_top_level_must_be_a_mapping() -> None:
    err = error("- a\n- b\n")
    assert err.line == 1
    assert err.field is None


def test_header_rules_refuse_bad_names_and_values() -> None:
    err = error(
        """\
        servers:
          - listen: 8080
            headers:
              response:
                add: {"Bad Name": x}
            locations:
              - location: /
                return: {status: 200}
        """
    )
    assert err.line == 5
    assert "not a valid header name" in err.reason
    err = error(
        """\
        servers:
          - listen: 8080
            headers:
              request:
                set: {X-Ok: "a\\r\\nInjected: 1"}
            locations:
              - location: /
                return: {status: 200}
        """
    )
    assert err.line == 5
    assert "CR, LF or NUL" in err.reason


# -- validate / read_file directly -------------------------------------------------------


def test_validate_none_is_empty() -> None:
    with pytest.raises(ConfigError, match="empty"):
        validate(Config, None, LineMap("x.yaml"))


def test_validate_returns_frozen_objects() -> None:
    data, lines = load_yaml(OK, "gw.yaml")
    config = validate(Config, data, lines)
    with pytest.raises(ValidationError):
        config.workers = 3


def test_read_file(tmp_path: Path) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text(OK)
    seen: list[tuple[str, str]] = []

    def parse(text: str, file: str) -> Config:
        seen.append((text, file))
        return parse_config(text, file)[0]

    config = read_file(path, parse)
    assert isinstance(config, Config)
    assert seen == [(OK, str(path))]


def test_read_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError) as info:
        read_file(missing, lambda text, file: parse_config(text, file)[0])
    assert info.value.file == str(missing)
    assert "cannot read" in info.value.reason


def test_read_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin.yaml"
    path.write_bytes(b"workers: \xff\n")
    with pytest.raises(ConfigError, match="cannot read"):
        read_file(path, lambda text, file: parse_config(text, file)[0])


def test_config_error_describe() -> None:
    assert ConfigError("r").describe() == "<config>: r"
    assert ConfigError("r", file="f", line=3).describe() == "f:3: r"
    assert ConfigError("r", file="f", line=3, column=7, field="a.b").describe() == "f:3:7: a.b: r"
