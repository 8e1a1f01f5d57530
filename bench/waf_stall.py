"""Does a long WAF inspection stall other clients? (`make bench-waf-stall`)

One ramparts worker with the WAF (CRS, paranoia 1, blocking) in front of the demo origin.
A prober sends small GETs to a location without the WAF, one after another, and records
each one's latency: first alone, then while another client keeps the WAF busy with long
inspections, of two kinds: large JSON request bodies full of SQL injection, and large
HTML pages whose response bodies the WAF reads (each takes ModSecurity tens of
milliseconds). If the inspections ran off the event loop, the prober's latencies would
not change; printed are the prober's median, p99 and maximum in each phase and the time
of one inspected request.
"""

from __future__ import annotations

import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import proxy as pb  # bench/proxy.py: processes and helpers

HOST = pb.HOST
PAGE = 512 * 1024  # an HTML page at the WAF's default response-body limit
ATTACK = json.dumps(
    {
        "items": [
            {"id": i, "q": f"1' UNION SELECT password, email FROM users WHERE id={i} OR 1=1--"}
            for i in range(400)
        ]
    }
).encode()


def conf(port: int, origin: int) -> str:
    return f"""workers: 1
log_level: warning
limits: {{ max_body_size: 2m }}
upstreams:
  origin: {{ servers: ["{HOST}:{origin}"] }}
servers:
  - listen: "{HOST}:{port}"
    locations:
      - location: /
        proxy: {{ upstream: origin }}
      - location: /api/
        waf: {{ mode: "on", paranoia: 1, body_limit: 1m }}
        proxy: {{ upstream: origin }}
      - location: /html/
        waf: {{ mode: "on", paranoia: 1, response_body: true }}
        proxy: {{ upstream: origin }}
"""


def one(port: int, raw: bytes) -> tuple[int, float]:
    """Send ``raw`` (with Connection: close), read the whole answer: status and time."""
    t0 = time.perf_counter()
    with socket.create_connection((HOST, port), timeout=30) as s:
        s.sendall(raw)
        data = b""
        for _ in range(100_000):  # bounded
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return int(data.split(b" ", 2)[1] or 0), time.perf_counter() - t0


def probe(port: int, seconds: float) -> list[float]:
    raw = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    out: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end and len(out) < 100_000:
        out.append(one(port, raw)[1])
    return out


def main() -> int:
    scratch = Path(tempfile.mkdtemp(prefix="ramparts-waf-stall-"))
    origin_port, port = pb.free_ports(2)
    procs: list[pb.Proc] = []
    with pb.started(procs, pb.Runner()):
        origin = pb.spawn(
            "origin",
            [pb.PYTHON, "-m", "ramparts.cli", "origin", "--listen", f"{HOST}:{origin_port}"],
            pb.LOAD_CORE,
            scratch,
        )
        procs.append(origin)
        pb.wait_ready(origin, origin_port)
        (scratch / "gw.yaml").write_text(conf(port, origin_port))
        gw = pb.spawn(
            "ramparts",
            [pb.PYTHON, "-m", "ramparts.cli", "serve", str(scratch / "gw.yaml")],
            pb.PROXY_CORE,
            scratch,
        )
        procs.append(gw)
        pb.wait_ready(gw, port, timeout=30)
        alone = probe(port, 3.0)
        attacks = {
            "request bodies": (
                b"POST /api/search HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
                b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(ATTACK), ATTACK)
            ),
            "response bodies": (
                b"GET /html/%d HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" % PAGE
            ),
        }
        runs = {name: busy(port, raw) for name, raw in attacks.items()}

    def ms(x: float) -> str:
        return f"{x * 1000:.1f} ms"

    def p99(xs: list[float]) -> float:
        return sorted(xs)[int(len(xs) * 0.99)]

    def line(name: str, xs: list[float]) -> str:
        return (
            f"prober {name + ':':<22} {len(xs)} requests, median {ms(statistics.median(xs))},"
            f" p99 {ms(p99(xs))}, max {ms(max(xs))}"
        )

    print(line("alone", alone))
    stalls = []
    for name, (probes, statuses, took) in runs.items():
        what = f"{len(ATTACK)} bytes of JSON" if name == "request bodies" else f"{PAGE} B pages"
        print(
            f"{name} ({what}, answered {sorted(set(statuses))}): one request takes median"
            f" {ms(statistics.median(took))}, max {ms(max(took))}"
        )
        print(line(f"busy with {name}", probes))
        # A loop blocked by an inspection delays every probe that arrives meanwhile: the
        # median moves. (The inspection processes share the proxy's core here, so the
        # tail grows with CPU contention either way.)
        if statistics.median(probes) > 5 * statistics.median(alone):
            stalls.append(name)
    print(f"the event loop stalls on {', '.join(stalls)}" if stalls else "no stall of the loop")
    return 0


def busy(port: int, raw: bytes) -> tuple[list[float], list[int], list[float]]:
    """Probe for 3 s while another client sends ``raw`` over and over: the probes'
    latencies, and the statuses and times of the busy client's requests."""
    took: list[float] = []
    statuses: list[int] = []
    stop = threading.Event()

    def attacker() -> None:
        for _ in range(200):  # bounded
            if stop.is_set():
                return
            status, t = one(port, raw)
            statuses.append(status)
            took.append(t)

    t = threading.Thread(target=attacker)
    t.start()
    probes = probe(port, 3.0)
    stop.set()
    t.join(60)
    return probes, statuses, took


if __name__ == "__main__":
    sys.exit(main())
