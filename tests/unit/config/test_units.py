"""Durations, sizes and addresses as a config file writes them."""

from __future__ import annotations

import pytest

from ramparts.config.units import parse_address, parse_duration, parse_size


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (5, 5.0),
        (0, 0.0),
        (2.5, 2.5),
        ("5", 5.0),
        ("5s", 5.0),
        ("250ms", 0.25),
        ("1.5s", 1.5),
        ("1m", 60.0),
        ("2h", 7200.0),
        ("30d", 30 * 86400.0),
        (" 10 s ", 10.0),
        ("0ms", 0.0),
    ],
)
def test_parse_duration(value: object, seconds: float) -> None:
    result = parse_duration(value)
    assert result == pytest.approx(seconds)
    assert isinstance(result, float)


@pytest.mark.parametrize(
    "value", [True, False, -1, -0.5, "-1s", "5x", "s", "", "1.s", "5 sec", "1e3", None, [5]]
)
def test_bad_duration(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


def test_bad_duration_message_shows_the_value_and_an_example() -> None:
    with pytest.raises(ValueError, match=r"not a duration: '5x' \(use e\.g\. 5s"):
        parse_duration("5x")


@pytest.mark.parametrize(
    ("value", "n"),
    [
        (0, 0),
        (512, 512),
        ("512", 512),
        ("32k", 32768),
        ("32K", 32768),
        ("1m", 1048576),
        ("1M", 1048576),
        ("1g", 1024**3),
        ("1kb", 1024),
        ("2MB", 2 * 1048576),
        ("100b", 100),
        (" 8k ", 8192),
    ],
)
def test_parse_size(value: object, n: int) -> None:
    assert parse_size(value) == n


@pytest.mark.parametrize(
    "value", [True, -1, 1.5, "1.5k", "k", "", "-1k", "1t", "1 kilobyte", None, "0x10"]
)
def test_bad_size(value: object) -> None:
    with pytest.raises(ValueError):
        parse_size(value)


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ("8080", ("0.0.0.0", 8080)),
        (" 8080 ", ("0.0.0.0", 8080)),
        ("127.0.0.1:80", ("127.0.0.1", 80)),
        ("localhost:65535", ("localhost", 65535)),
        ("[::1]:8080", ("::1", 8080)),
        ("[::]:443", ("::", 443)),
        ("[2001:db8::1]:1", ("2001:db8::1", 1)),
    ],
)
def test_parse_address(value: str, address: tuple[str, int]) -> None:
    assert parse_address(value) == address


def test_parse_address_default_host() -> None:
    assert parse_address("3000", default_host="127.0.0.1") == ("127.0.0.1", 3000)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "host",
        ":80",
        "host:",
        "host:0",
        "host:65536",
        "host:http",
        "host:-1",
        "::1:80",
        "[::1]",
        "[::1]80",
        "[::1:80",
        "[not-v6]:80",
        "0",
        "99999",
    ],
)
def test_bad_address(value: str) -> None:
    with pytest.raises(ValueError):
        parse_address(value)
