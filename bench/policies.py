"""Traffic-policy benchmark (`make bench-policies`): what the policies cost, side by side in
one run, as ratios of median requests per second (wrk, one worker per proxy, the proxy on
one core and wrk + the origin on the other; processes and helpers from bench/proxy.py).

Rows:
- ``plain``: ramparts as a plain reverse proxy (GET / -> 13 bytes);
- ``policies``: the same with real IP (trusted 127.0.0.1, X-Forwarded-For), an access
  list (allow 127.0.0.0/8, deny all), one rate limit in process memory and header rules
  (Server and X-Powered-By hidden, two security headers set);
- ``redis-limit``: ``policies`` with the limit's state in Redis (redis-server on the load
  core): one Redis round trip per request;
- ``api-gateway``: examples/api-gateway.yaml over TLS (ports moved, the load balancer is
  127.0.0.1) and ``nginx-api-gateway``: nginx configured the same way (ssl, realip,
  allow/deny, limit_req, proxy_hide_header, add_header, a JSON access log with a 32k
  buffer), both on GET /api/x.

Every limit's rate is raised to 1000000r/s with a burst of 100000 so that requests pass
and the work measured is the whole request path; with the example's 30r/m, both proxies
would mostly answer 429 and the comparison would be of refusals. Printed: a table and
``ratio policies/plain``, ``ratio redis-limit/plain``, ``ratio api-gateway/nginx``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import proxy as pb  # bench/proxy.py: processes, wrk parsing, CPU accounting

ROOT = pb.ROOT
HOST = pb.HOST
FAST = "rate: 1000000r/s"
ROWS = ("plain", "policies", "redis-limit", "api-gateway", "nginx-api-gateway")


def ramparts_plain(port: int, origin: int) -> str:
    return pb.ramparts_conf(port, origin, 64, 1000)


def ramparts_policies(port: int, origin: int, redis_port: int | None) -> str:
    store = (
        f'store: {{ backend: redis, url: "redis://{HOST}:{redis_port}/0" }}\n' if redis_port else ""
    )
    return f"""# written by bench/policies.py
workers: 1
log_level: warning
{store}limit_req_zones:
  per_client: {{ key: $remote_addr, {FAST} }}
upstreams:
  origin: {{ servers: ["{HOST}:{origin}"], keepalive: 64 }}
servers:
  - listen: "{HOST}:{port}"
    real_ip: {{ from: [127.0.0.1], header: X-Forwarded-For, recursive: true }}
    access: [{{ allow: 127.0.0.0/8 }}, {{ deny: all }}]
    headers:
      response:
        hide: [Server, X-Powered-By]
        set: {{ X-Content-Type-Options: nosniff, X-Frame-Options: DENY }}
    locations:
      - location: /
        limit_req: [{{ zone: per_client, burst: 100000, nodelay: true }}]
        proxy: {{ upstream: origin }}
"""


def ramparts_api_gateway(http_port: int, tls_port: int, origin: int, scratch: Path) -> str:
    text = (ROOT / "examples" / "api-gateway.yaml").read_text()
    for old, new in (
        ("127.0.0.1:8080", http_port),
        ("127.0.0.1:8443", tls_port),
        ("127.0.0.1:3000", origin),
    ):
        assert old in text, old
        text = text.replace(old, f"127.0.0.1:{new}")
    text = text.replace("from: [10.0.0.2]", "from: [127.0.0.1]")
    text = text.replace("rate: 30r/m", FAST).replace("burst: 10,", "burst: 100000,")
    text = text.replace("certs/cert.pem", str(scratch / "cert.pem"))
    text = text.replace("certs/key.pem", str(scratch / "key.pem"))
    text = text.replace('path: "-"', f'path: "{scratch}/ramparts-access.log"')
    assert FAST in text and "burst: 100000" in text
    return text


def nginx_api_gateway(tls_port: int, origin: int, scratch: Path) -> str:
    http = f"""    log_format json escape=json '{{"time":"$time_iso8601","client":"$remote_addr",'
        '"peer":"$realip_remote_addr","request":"$request","status":$status,'
        '"bytes_sent":$bytes_sent,"request_time":$request_time,'
        '"x_forwarded_for":"$http_x_forwarded_for"}}';
    access_log {scratch}/nginx-access.log json buffer=32k flush=5s;
    limit_req_zone $binary_remote_addr zone=per_client:10m rate=1000000r/s;
    upstream api {{
        server {HOST}:{origin};
        keepalive 64;
    }}
    server {{
        listen {HOST}:{tls_port} ssl;
        ssl_certificate {scratch}/cert.pem;
        ssl_certificate_key {scratch}/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        set_real_ip_from 127.0.0.1;
        real_ip_header X-Forwarded-For;
        real_ip_recursive on;
        proxy_hide_header X-Powered-By;
        proxy_hide_header Server;
        add_header Strict-Transport-Security "max-age=31536000; includeSubDomains";
        add_header X-Content-Type-Options nosniff;
        add_header X-Frame-Options DENY;
        add_header Referrer-Policy no-referrer;
        location ^~ /internal {{
            allow 10.0.0.0/8;
            deny all;
            proxy_pass http://api;
        }}
        location /api/ {{
            limit_req zone=per_client burst=100000 nodelay;
            limit_req_status 429;
            proxy_pass http://api;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_connect_timeout 5s;
            proxy_read_timeout 30s;
        }}
    }}
"""
    return pb.nginx_main(
        scratch,
        http,
        "written by bench/policies.py: examples/api-gateway.yaml as nginx would say it",
    )


def wait_url(proc: pb.Proc, url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited early:\n{proc.tail()}")
        p = subprocess.run(
            ["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", url],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if p.stdout.strip() == "200":
            return
        time.sleep(0.1)
    raise RuntimeError(f"{proc.name} not ready at {url}:\n{proc.tail()}")


def main() -> int:
    args = pb.run_options(argparse.ArgumentParser(description=__doc__.splitlines()[0]), 50)
    pb.ensure_tools()
    for tool in ("curl", "redis-server"):
        if shutil.which(tool) is None:
            raise SystemExit(f"missing {tool}: make sysdeps installs it")
    scratch = Path(tempfile.mkdtemp(prefix="ramparts-bench-pol-"))
    pb.prepare_nginx_dirs(scratch)
    subprocess.run(
        [pb.PYTHON, "-m", "ramparts.cli", "cert", "--out", str(scratch)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    origin_port, redis_port, *ports = pb.free_ports(2 + 6)
    procs: list[pb.Proc] = []
    runner = pb.Runner()
    results: dict[str, list[pb.Wrk]] = {r: [] for r in ROWS}
    urls: dict[str, str] = {}
    with pb.started(procs, runner):
        origin = pb.spawn(
            "origin",
            [pb.PYTHON, "-m", "ramparts.cli", "origin", "--listen", f"{HOST}:{origin_port}"],
            pb.LOAD_CORE,
            scratch,
        )
        procs.append(origin)
        pb.wait_ready(origin, origin_port)
        redis = pb.spawn(
            "redis",
            ["redis-server", "--port", str(redis_port), "--bind", HOST, "--save", ""],
            pb.LOAD_CORE,
            scratch,
        )
        procs.append(redis)
        texts = {
            "plain": ramparts_plain(ports[0], origin_port),
            "policies": ramparts_policies(ports[1], origin_port, None),
            "redis-limit": ramparts_policies(ports[2], origin_port, redis_port),
            "api-gateway": ramparts_api_gateway(ports[5], ports[3], origin_port, scratch),
            "nginx-api-gateway": nginx_api_gateway(ports[4], origin_port, scratch),
        }
        urls = {
            "plain": f"http://{HOST}:{ports[0]}/",
            "policies": f"http://{HOST}:{ports[1]}/",
            "redis-limit": f"http://{HOST}:{ports[2]}/",
            "api-gateway": f"https://{HOST}:{ports[3]}/api/x",
            "nginx-api-gateway": f"https://{HOST}:{ports[4]}/api/x",
        }
        proxies: dict[str, pb.Proc] = {}
        for row in ROWS:
            if row.startswith("nginx"):
                conf = scratch / "nginx.conf"
                conf.write_text(texts[row])
                subprocess.run(
                    [pb.NGINX, "-t", "-q", "-p", str(scratch), "-c", str(conf)],
                    check=True,
                    timeout=30,
                )
                cmd = [pb.NGINX, "-p", str(scratch), "-c", str(conf)]
            else:
                conf = scratch / f"{row}.yaml"
                conf.write_text(texts[row])
                cmd = [pb.PYTHON, "-m", "ramparts.cli", "serve", str(conf)]
            proc = pb.spawn(row, cmd, pb.PROXY_CORE, scratch)
            procs.append(proc)
            proxies[row] = proc
            wait_url(proc, urls[row])
            proc.pause()
        print(
            f"policy benchmark: wrk -t1 -c{args.connections} -d{args.duration:g}s, "
            f"{args.reps} reps interleaved; scratch {scratch}",
            flush=True,
        )
        for rep in range(args.reps):
            order = list(ROWS[rep % len(ROWS) :] + ROWS[: rep % len(ROWS)])
            for row in order:
                proc = proxies[row]
                proc.resume()
                try:
                    pb.wait_quiet(0.25, 15)
                    pb.wrk_url(urls[row], args.warmup, args.connections)
                    w = pb.wrk_url(urls[row], args.duration, args.connections)
                finally:
                    proc.pause()
                results[row].append(w)
                flags = "; ".join(w.problems()) or "ok"
                print(
                    f"rep {rep + 1} {row:<18} {w.rps:>9,.0f} req/s  p99 "
                    f"{pb._fmt_us(w.p99_us):>8}  [{flags}]",
                    flush=True,
                )

    def med(row: str) -> float:
        good = [w.rps for w in results[row] if not w.problems()]
        return statistics.median(good) if good else float("nan")

    print(f"\n{'row':<18} {'req/s (median)':>15}")
    for row in ROWS:
        print(f"{row:<18} {med(row):>15,.0f}")
    ratios = {
        "policies/plain": med("policies") / med("plain"),
        "redis-limit/plain": med("redis-limit") / med("plain"),
        "api-gateway/nginx": med("api-gateway") / med("nginx-api-gateway"),
    }
    print()
    for name, value in ratios.items():
        print(pb._ratio_line(name, value if value == value else None))
    pb.RESULTS.mkdir(parents=True, exist_ok=True)
    out = pb.RESULTS / f"policies-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(
        json.dumps(
            pb._json_safe(
                {
                    "ratios": ratios,
                    "medians": {r: med(r) for r in ROWS},
                    "runs": {r: [w.rps for w in results[r]] for r in ROWS},
                    "configs": texts,
                    "versions": pb.tool_versions(),
                }
            ),
            indent=2,
        )
    )
    print(f"results: {out}")
    shutil.rmtree(scratch, ignore_errors=True)
    ok = all(not w.problems() for ws in results.values() for w in ws)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
