"""Traffic policies through the running gateway: the real client IP from a trusted proxy
(and what the backend and the access log then see), access lists, and every kind of
authentication (required header, Basic with bcrypt, JWT, forward auth against a live
auth service), each refusal answered at the proxy and never forwarded."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest

from ..support import ROOT, free_port, running, start_origin
from .conftest import RecordingOrigin, echo_json, gateway, marker_request, raw_outcome

HTPASSWD = ROOT / "tests" / "data" / "auth" / "htpasswd"
SECRET = "s3cret-s3cret-s3cret-s3cret-s3cret!"  # 35 bytes: long enough for HS256


@dataclass
class Setup:
    port: int
    rec: RecordingOrigin
    log: Path


@pytest.fixture(scope="module")
def auth_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The demo origin as an auth service: /status/N answers N."""
    proc, port = start_origin(tmp_path_factory.mktemp("authsvc"), name="auth")
    with running(proc):
        yield port


@pytest.fixture(scope="module")
def gw(
    tmp_path_factory: pytest.TempPathFactory, recorder: RecordingOrigin, auth_service: int
) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("policies")
    (tmp / "jwt.secret").write_text(SECRET)
    port = free_port()
    dead = free_port()
    log = tmp / "access.log"
    cfg = f"""
access_log: {{ path: "{log}", buffer: 0 }}
upstreams:
  rec: {{ servers: ["127.0.0.1:{recorder.port}"] }}
servers:
  - listen: "127.0.0.1:{port}"
    real_ip: {{ from: [127.0.0.1, "::1"], header: X-Forwarded-For, recursive: true }}
    locations:
      - location: /
        proxy: {{ upstream: rec }}
      - location: /internal/
        access: [{{ allow: 10.0.0.0/8 }}, {{ allow: "2001:db8::/32" }}, {{ deny: all }}]
        proxy: {{ upstream: rec }}
      - location: /key/
        auth: {{ header: {{ name: X-Api-Key, values: [k-123, k-456] }} }}
        proxy: {{ upstream: rec }}
      - location: /basic/
        auth: {{ basic: {{ htpasswd: "{HTPASSWD}", realm: staff }} }}
        proxy: {{ upstream: rec }}
      - location: /jwt/
        auth:
          jwt:
            algorithms: [HS256]
            secret_file: jwt.secret
            issuer: https://issuer.test
            audience: api
            leeway: 5s
            claims_to_headers: {{ sub: X-User }}
        proxy: {{ upstream: rec }}
      - location: /fwd/
        auth:
          request:
            url: "http://127.0.0.1:{auth_service}/headers"
            copy_headers: [X-Powered-By]
        proxy: {{ upstream: rec }}
      - location: /fwd-deny/
        auth: {{ request: {{ url: "http://127.0.0.1:{auth_service}/status/403" }} }}
        proxy: {{ upstream: rec }}
      - location: /fwd-401/
        auth: {{ request: {{ url: "http://127.0.0.1:{auth_service}/status/401" }} }}
        proxy: {{ upstream: rec }}
      - location: /fwd-down/
        auth: {{ request: {{ url: "http://127.0.0.1:{dead}/", timeout: 2s }} }}
        proxy: {{ upstream: rec }}
"""
    with gateway(tmp, cfg, [port]):
        yield Setup(port, recorder, log)


def get(port: int, target: str, headers: str = "") -> tuple[int | None, dict[str, object] | None]:
    raw = f"GET {target} HTTP/1.1\r\nHost: localhost\r\n{headers}Connection: close\r\n\r\n"
    out = raw_outcome(port, raw.encode())
    resp = out.response
    if resp is None:
        return None, None
    body = echo_json(resp) if resp.status == 200 else None
    return resp.status, body


def upstream_header(body: dict[str, object] | None, name: str) -> list[str]:
    assert body is not None
    headers = body["headers"]
    assert isinstance(headers, list)
    return [v for n, v in headers if n.lower() == name.lower()]


def log_records(log: Path, path_prefix: str) -> list[dict[str, object]]:
    lines = log.read_text().splitlines() if log.exists() else []
    return [r for r in map(json.loads, lines) if str(r["path"]).startswith(path_prefix)]


# -- real IP ---------------------------------------------------------------------------------


def test_real_ip_from_a_trusted_peer(gw: Setup) -> None:
    status, body = get(gw.port, "/rip-1", "X-Forwarded-For: 203.0.113.7, 10.9.8.7\r\n")
    assert status == 200
    # recursive: 10.9.8.7 is not trusted, so it is the client (the rightmost untrusted)
    assert upstream_header(body, "X-Real-IP") == ["10.9.8.7"]
    assert upstream_header(body, "X-Forwarded-For") == ["203.0.113.7, 10.9.8.7, 10.9.8.7"]
    rec = log_records(gw.log, "/rip-1")
    assert rec and rec[-1]["client"] == "10.9.8.7"
    assert str(rec[-1]["peer"]).startswith("127.0.0.1:")


def test_real_ip_opens_the_access_list(gw: Setup) -> None:
    status, _ = get(gw.port, "/internal/a")
    assert status == 403  # from 127.0.0.1 itself
    status, _ = get(gw.port, "/internal/a", "X-Forwarded-For: 10.1.2.3\r\n")
    assert status == 200
    status, _ = get(gw.port, "/internal/a", "X-Forwarded-For: 2001:db8::5\r\n")
    assert status == 200
    status, _ = get(gw.port, "/internal/a", "X-Forwarded-For: 192.0.2.1\r\n")
    assert status == 403
    rec = log_records(gw.log, "/internal/a")
    assert rec[-1]["decided_by"] == "access:rule-3"
    assert rec[-1]["client"] == "192.0.2.1"


def test_access_refusal_never_reaches_the_backend(gw: Setup) -> None:
    mark = gw.rec.snapshot()
    assert get(gw.port, "/internal/secret")[0] == 403
    marker_request(gw.port, gw.rec)
    assert len(gw.rec.requests_since(mark)) == 1  # the marker only


# -- authentication -------------------------------------------------------------------------


def test_required_header(gw: Setup) -> None:
    mark = gw.rec.snapshot()
    out = raw_outcome(gw.port, b"GET /key/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert out.status == 401 and out.response is not None
    assert out.response.header("WWW-Authenticate")
    assert get(gw.port, "/key/x", "X-Api-Key: wrong\r\n")[0] == 401
    marker_request(gw.port, gw.rec)
    assert len(gw.rec.requests_since(mark)) == 1
    assert get(gw.port, "/key/x", "X-Api-Key: k-456\r\n")[0] == 200


def _basic(user: str, password: str) -> str:
    return "Authorization: Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_basic_auth(gw: Setup) -> None:
    out = raw_outcome(gw.port, b"GET /basic/ HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert out.status == 401 and out.response is not None
    assert out.response.header("WWW-Authenticate") == 'Basic realm="staff", charset="UTF-8"'
    assert get(gw.port, "/basic/", _basic("alice", "wrong") + "\r\n")[0] == 401
    assert get(gw.port, "/basic/", _basic("nobody", "x") + "\r\n")[0] == 401
    assert get(gw.port, "/basic/", "Authorization: Basic !!!\r\n")[0] == 401
    status, _ = get(gw.port, "/basic/ok", _basic("alice", "correct horse") + "\r\n")
    assert status == 200
    rec = log_records(gw.log, "/basic/ok")
    assert rec[-1]["user"] == "user:alice"


def _token(**claims: object) -> str:
    now = int(time.time())
    body: dict[str, object] = {"iss": "https://issuer.test", "aud": "api", "sub": "u-42"}
    body.update({"exp": now + 300, "nbf": now - 10})
    body.update(claims)
    return jwt.encode({k: v for k, v in body.items() if v is not None}, SECRET, "HS256")


def test_jwt(gw: Setup) -> None:
    def status(token: str) -> int | None:
        return get(gw.port, "/jwt/", f"Authorization: Bearer {token}\r\n")[0]

    now = int(time.time())
    assert get(gw.port, "/jwt/")[0] == 401
    assert status("not.a.token") == 401
    assert status(_token(exp=now - 60)) == 401  # expired beyond the 5 s leeway
    assert status(_token(nbf=now + 60)) == 401  # not yet valid
    assert status(_token(iss="https://evil.test")) == 401
    assert status(_token(aud="other")) == 401
    unsigned = jwt.encode({"sub": "x", "exp": now + 60}, None, "none")  # type: ignore[arg-type]
    assert status(unsigned) == 401
    good = jwt.decode(_token(), SECRET, ["HS256"], audience="api")
    forged = jwt.encode(good, "another-secret-another-secret-!!", "HS256")  # right claims
    assert status(forged) == 401
    code, body = get(gw.port, "/jwt/ok", f"Authorization: Bearer {_token()}\r\n")
    assert code == 200
    assert upstream_header(body, "X-User") == ["u-42"]
    # a client cannot send its own X-User
    code, body = get(gw.port, "/jwt/ok", f"Authorization: Bearer {_token()}\r\nX-User: admin\r\n")
    assert upstream_header(body, "X-User") == ["u-42"]


def test_forward_auth(gw: Setup) -> None:
    code, body = get(gw.port, "/fwd/a")
    assert code == 200
    # copied from the auth service's 200 answer to the upstream request
    assert upstream_header(body, "X-Powered-By") == ["Express"]
    assert get(gw.port, "/fwd-deny/a")[0] == 403
    assert get(gw.port, "/fwd-401/a")[0] == 401
    mark = gw.rec.snapshot()
    assert get(gw.port, "/fwd-down/a")[0] == 500  # no answer: 500, as nginx
    marker_request(gw.port, gw.rec)
    assert len(gw.rec.requests_since(mark)) == 1


def test_refusals_are_logged_with_the_layer(gw: Setup, tmp_path: Path) -> None:
    get(gw.port, "/key/logged")
    rec = log_records(gw.log, "/key/logged")
    assert rec[-1]["status"] == 401 and rec[-1]["decided_by"] == "auth:header"
