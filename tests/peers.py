"""Real peers started by the tests themselves on 127.0.0.1: nginx (the oracle for the
semantics ramparts copies from it) and redis-server (the fleet's shared store). Each
starter returns a running ``Proc``; the caller stops it (``running(...)`` does)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .support import Proc, free_port, wait_port

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"


def nginx_config(scratch: Path, http_block: str) -> str:
    """A whole nginx.conf around ``http_block`` (the inside of ``http { }``): one worker,
    in the foreground, every path inside ``scratch``."""
    tmp = scratch / "nginx-tmp"
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp / sub).mkdir(parents=True, exist_ok=True)
    # As root, nginx drops its worker to 'nobody', who cannot enter pytest's private tmp.
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"""{user}worker_processes 1;
daemon off;
master_process on;
pid {scratch}/nginx.pid;
error_log {scratch}/nginx-error.log info;
events {{ worker_connections 1024; }}
http {{
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
{http_block}
}}
"""


def start_nginx(scratch: Path, http_block: str, ports: list[int]) -> Proc:
    """nginx with ``http_block``, checked with ``nginx -t`` first; waits for ``ports``."""
    scratch.mkdir(parents=True, exist_ok=True)
    conf = scratch / "nginx.conf"
    conf.write_text(nginx_config(scratch, http_block))
    check = subprocess.run(
        [NGINX, "-t", "-q", "-c", str(conf), "-p", str(scratch)],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, f"nginx refused its config:\n{check.stderr}"
    log = scratch / "nginx.out"
    popen = subprocess.Popen(
        [NGINX, "-c", str(conf), "-p", str(scratch)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    proc = Proc(popen, log, {"error_log": scratch / "nginx-error.log"})
    try:
        for p in ports:
            wait_port(p)
    except TimeoutError:
        proc.stop()
        raise AssertionError(f"nginx did not start:\n{proc.output()}") from None
    return proc


def start_redis(scratch: Path, port: int | None = None) -> tuple[Proc, int]:
    """redis-server on 127.0.0.1, no persistence, its files inside ``scratch``."""
    scratch.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log = scratch / f"redis-{port}.log"
    popen = subprocess.Popen(
        [
            REDIS,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(scratch),
            "--protected-mode",
            "yes",
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    proc = Proc(popen, log)
    try:
        wait_port(port)
    except TimeoutError:
        proc.stop()
        raise AssertionError(f"redis-server did not start:\n{proc.output()}") from None
    return proc, port
