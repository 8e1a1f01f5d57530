"""WAF benchmark (`make bench-waf`): ramparts with its WAF (ModSecurity 3.0.15 + CRS 3.3.4
at paranoia 1, blocking) against nginx with the same rules through Debian's
libnginx-mod-http-modsecurity, side by side in one run, one worker each, on a benign GET
and a benign form POST; ratios of median requests per second.

The nginx side's ModSecurity configuration is the CRS regression runner's
(tests/crs/nginx.py: ModSecurity's recommended base settings, the CRS setup, the CRS rules
with 910000 removed) switched to blocking at paranoia 1. ramparts' engine leaves the 910
IP-reputation file out (the wheel lacks GeoIP). Printed: ``ratio waf-get/nginx-modsec``,
``ratio waf-post/nginx-modsec``, and the WAF time per request (the CPU per request with
the WAF minus without it, both measured here).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.crs import nginx as crs_nginx  # the oracle's ModSecurity configuration

import proxy as pb  # bench/proxy.py: processes, wrk parsing, CPU accounting

HOST = pb.HOST
GET_PATH = "/products?page=2&sort=price&q=blue+shoes"
FORM = "user=alice&comment=Thanks+for+the+quick+delivery%2C+it%27s+great&rating=5"
HEADERS = [
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "Accept-Language: en-US,en;q=0.5",
]
ROWS = ("ramparts-plain", "ramparts-waf", "nginx-modsec")


def ramparts_conf(port: int, origin: int, waf: bool) -> str:
    waf_line = '    waf: { mode: "on", paranoia: 1 }\n' if waf else ""
    return f"""# written by bench/waf.py
workers: 1
log_level: warning
upstreams:
  origin: {{ servers: ["{HOST}:{origin}"], keepalive: 64 }}
servers:
  - listen: "{HOST}:{port}"
{waf_line}    locations:
      - location: /
        proxy: {{ upstream: origin }}
"""


def nginx_conf(scratch: Path, port: int, origin: int) -> tuple[str, Path]:
    rules = crs_nginx.modsecurity_config(scratch, paranoia=1)
    rules = rules.replace("SecRuleEngine DetectionOnly", "SecRuleEngine On")
    assert "SecRuleEngine On" in rules
    rules_file = scratch / "modsecurity.conf"
    rules_file.write_text(rules)
    http = f"""
    access_log off;
    error_log {scratch}/nginx-error.log warn;
    upstream origin {{ server {HOST}:{origin}; keepalive 64; }}
    server {{
        listen {HOST}:{port};
        modsecurity on;
        modsecurity_rules_file {rules_file};
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
"""
    return http, rules_file


def wrk(url: str, seconds: float, connections: int, script: Path | None) -> pb.Wrk:
    extra = [a for h in HEADERS for a in ("-H", h)]
    if script is not None:
        extra += ["-s", str(script)]
    return pb.wrk_url(url, seconds, connections, extra)


def main() -> int:
    args = pb.run_options(argparse.ArgumentParser(description=__doc__.splitlines()[0]), 20)
    pb.ensure_tools()
    reason = crs_nginx.missing()
    if reason:
        raise SystemExit(f"cannot run: {reason} (make sysdeps installs it)")
    scratch = Path(tempfile.mkdtemp(prefix="ramparts-bench-waf-"))
    post = scratch / "post.lua"
    post.write_text(
        'wrk.method = "POST"\n'
        f'wrk.body = "{FORM}"\n'
        'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n'
    )
    origin_port, *ports = pb.free_ports(1 + len(ROWS))
    port_of = dict(zip(ROWS, ports, strict=True))
    procs: list[pb.Proc] = []
    runner = pb.Runner()
    results: dict[tuple[str, str], list[pb.Wrk]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    with pb.started(procs, runner):
        origin = pb.spawn(
            "origin",
            [pb.PYTHON, "-m", "ramparts.cli", "origin", "--listen", f"{HOST}:{origin_port}"],
            pb.LOAD_CORE,
            scratch,
        )
        procs.append(origin)
        pb.wait_ready(origin, origin_port)
        proxies: dict[str, pb.Proc] = {}
        for row in ROWS:
            port = port_of[row]
            if row == "nginx-modsec":
                http, _ = nginx_conf(scratch, port, origin_port)
                module = crs_nginx._module()
                conf = scratch / "nginx.conf"
                conf.write_text(
                    pb.nginx_main(
                        scratch, http, "written by bench/waf.py", f"load_module {module};\n"
                    )
                )
                subprocess.run(
                    [pb.NGINX, "-t", "-q", "-p", str(scratch), "-c", str(conf)],
                    check=True,
                    timeout=60,
                )
                cmd = [pb.NGINX, "-p", str(scratch), "-c", str(conf)]
            else:
                conf = scratch / f"{row}.yaml"
                conf.write_text(ramparts_conf(port, origin_port, row == "ramparts-waf"))
                cmd = [pb.PYTHON, "-m", "ramparts.cli", "serve", str(conf)]
            proc = pb.spawn(row, cmd, pb.PROXY_CORE, scratch)
            procs.append(proc)
            proxies[row] = proc
            pb.wait_ready(proc, port, timeout=30)
            proc.pause()
        print(
            f"WAF benchmark: wrk -t1 -c{args.connections} -d{args.duration:g}s, "
            f"{args.reps} reps interleaved; GET {GET_PATH}; POST {len(FORM)}-byte form",
            flush=True,
        )
        for rep in range(args.reps):
            order = list(ROWS[rep % len(ROWS) :] + ROWS[: rep % len(ROWS)])
            for kind, script in (("get", None), ("post", post)):
                for row in order:
                    proc = proxies[row]
                    url = f"http://{HOST}:{port_of[row]}{GET_PATH if kind == 'get' else '/form'}"
                    proc.resume()
                    try:
                        pb.wait_quiet(0.25, 15)
                        wrk(url, args.warmup, args.connections, script)
                        c0 = pb.tree_cpu_seconds(proc.pid)
                        w = wrk(url, args.duration, args.connections, script)
                        c1 = pb.tree_cpu_seconds(proc.pid)
                    finally:
                        proc.pause()
                    results.setdefault((row, kind), []).append(w)
                    if w.requests:
                        cpu.setdefault((row, kind), []).append((c1 - c0) / w.requests * 1e6)
                    flags = "; ".join(w.problems()) or "ok"
                    print(
                        f"rep {rep + 1} {kind:<4} {row:<15} {w.rps:>9,.0f} req/s  p99 "
                        f"{pb._fmt_us(w.p99_us):>8}  [{flags}]",
                        flush=True,
                    )

    def med(row: str, kind: str) -> float:
        good = [w.rps for w in results.get((row, kind), []) if not w.problems()]
        return statistics.median(good) if good else float("nan")

    def cpu_us(row: str, kind: str) -> float:
        xs = cpu.get((row, kind), [])
        return statistics.median(xs) if xs else float("nan")

    print(f"\n{'row':<15} {'kind':<5} {'req/s':>9} {'CPU us/req':>11}")
    for row in ROWS:
        for kind in ("get", "post"):
            print(f"{row:<15} {kind:<5} {med(row, kind):>9,.0f} {cpu_us(row, kind):>11.0f}")
    ratios = {
        "waf-get/nginx-modsec": med("ramparts-waf", "get") / med("nginx-modsec", "get"),
        "waf-post/nginx-modsec": med("ramparts-waf", "post") / med("nginx-modsec", "post"),
    }
    waf_us = {k: cpu_us("ramparts-waf", k) - cpu_us("ramparts-plain", k) for k in ("get", "post")}
    print()
    for name, value in ratios.items():
        print(pb._ratio_line(name, value if value == value else None))
    for k, us in waf_us.items():
        print(f"waf time per request ({k}): {us:.0f} us of CPU")
    pb.RESULTS.mkdir(parents=True, exist_ok=True)
    out = pb.RESULTS / f"waf-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(
        json.dumps(
            pb._json_safe(
                {
                    "ratios": ratios,
                    "waf_cpu_us": waf_us,
                    "rps": {f"{r}/{k}": med(r, k) for r in ROWS for k in ("get", "post")},
                    "versions": pb.tool_versions(),
                }
            ),
            indent=2,
        )
    )
    print(f"results: {out}")
    ok = all(not w.problems() for ws in results.values() for w in ws)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
