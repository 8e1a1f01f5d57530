"""Does a long WAF inspection stall other clients? (`make bench-waf-stall`)

One ramparts worker with the WAF (CRS, paranoia 1, blocking) in front of the demo origin.
A prober sends small GETs to a location without the WAF, one after another, and records
each one's latency: first alone, then while another client posts large JSON bodies full of
SQL injection to a WAF location (each takes ModSecurity tens of milliseconds). If the
inspection ran off the event loop, the prober's latencies would not change; printed are
the prober's median and maximum in both phases and the longest single inspection.
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
"""


def one(port: int, raw: bytes) -> tuple[int, float]:
    t0 = time.perf_counter()
    with socket.create_connection((HOST, port), timeout=30) as s:
        s.sendall(raw)
        data = b""
        while b"\r\n\r\n" not in data:
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
        attack = (
            b"POST /api/search HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(ATTACK), ATTACK)
        )
        inspections: list[float] = []
        statuses: list[int] = []
        stop = threading.Event()

        def attacker() -> None:
            for _ in range(200):  # bounded
                if stop.is_set():
                    return
                status, took = one(port, attack)
                statuses.append(status)
                inspections.append(took)

        t = threading.Thread(target=attacker)
        t.start()
        busy = probe(port, 3.0)
        stop.set()
        t.join(60)

    def ms(x: float) -> str:
        return f"{x * 1000:.1f} ms"

    print(f"attack body: {len(ATTACK)} bytes of JSON; answered {sorted(set(statuses))}")
    print(
        f"one attack request (inspection included): median {ms(statistics.median(inspections))},"
        f" max {ms(max(inspections))}"
    )

    def p99(xs: list[float]) -> float:
        return sorted(xs)[int(len(xs) * 0.99)]

    for name, xs in (("alone", alone), ("under attack", busy)):
        print(
            f"prober {name + ':':<13} {len(xs)} requests, median {ms(statistics.median(xs))},"
            f" p99 {ms(p99(xs))}, max {ms(max(xs))}"
        )
    # A loop blocked by an inspection delays every probe that arrives meanwhile: the
    # median moves. (The inspection processes share the proxy's core here, so the tail
    # grows with CPU contention either way.)
    stalled = statistics.median(busy) > 5 * statistics.median(alone)
    print("the event loop stalls during inspection" if stalled else "no stall of the loop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
