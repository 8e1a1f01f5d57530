"""Per-request Python cost of the proxy path, without sockets: a client connection and a
pooled upstream connection on fake transports, driven in a loop. Prints microseconds per
request; with --profile, the cProfile top functions. For profiling, not for ratios."""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from pathlib import Path
from typing import Any

from ramparts.config.plan import load_plan
from ramparts.server.http1 import ClientConnection
from ramparts.server.upstream import UpstreamConnection
from ramparts.server.worker import Worker

CONFIG = """
limits: { keepalive_requests: 1000000000 }
upstreams:
  app: { servers: ["127.0.0.1:3000"], keepalive: 64, keepalive_requests: 1000000000 }
servers:
  - listen: "127.0.0.1:8082"
    locations:
      - location: /
        proxy: { upstream: app }
"""

# The same with the bench's policies (bench/policies.py): real IP, access, a rate limit in
# memory, response header rules.
POLICIES = """
limits: { keepalive_requests: 1000000000 }
limit_req_zones:
  per_client: { key: $remote_addr, rate: 1000000r/s }
upstreams:
  app: { servers: ["127.0.0.1:3000"], keepalive: 64, keepalive_requests: 1000000000 }
servers:
  - listen: "127.0.0.1:8082"
    real_ip: { from: [127.0.0.1], header: X-Forwarded-For, recursive: true }
    access: [{ allow: 127.0.0.0/8 }, { deny: all }]
    headers:
      response:
        hide: [Server, X-Powered-By]
        set: { X-Content-Type-Options: nosniff, X-Frame-Options: DENY }
    locations:
      - location: /
        limit_req: [{ zone: per_client, burst: 100000, nodelay: true }]
        proxy: { upstream: app }
"""

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8082\r\n\r\n"
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, world\n"
)


class FakeTransport:
    def __init__(self, peer: tuple[str, int]) -> None:
        self.peer = peer
        self.out: list[bytes] = []

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.peer if name == "peername" else default

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=200_000)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--gc", choices=["default", "tuned", "off"], default="tuned")
    ap.add_argument("--policies", action="store_true", help="with the policy phases on")
    args = ap.parse_args()
    tmp = Path("/tmp/ramparts-micro.yaml")
    tmp.write_text(POLICIES if args.policies else CONFIG)
    import uvloop

    loop = uvloop.new_event_loop()
    plan = load_plan(tmp)
    worker = Worker(plan, loop)
    client = ClientConnection(worker, ("127.0.0.1", 8082), False)
    ct = FakeTransport(("127.0.0.1", 40000))
    client.connection_made(ct)  # type: ignore[arg-type]
    group = worker.groups["app"]
    peer = group.peers[0]
    up = UpstreamConnection(group, peer)
    ut = FakeTransport(("127.0.0.1", 3000))
    up.connection_made(ut)  # type: ignore[arg-type]
    group.put_idle(up)

    def run(n: int) -> None:
        for _ in range(n):
            client.data_received(REQUEST)
            up.data_received(RESPONSE)
            ct.out.clear()
            ut.out.clear()

    run(1000)
    import gc

    if args.gc == "tuned":  # what the worker does
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
    elif args.gc == "off":
        gc.disable()
    assert not client.closing
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        run(args.n // 4)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        return
    t0 = time.perf_counter()
    run(args.n)
    dt = time.perf_counter() - t0
    print(f"{dt / args.n * 1e6:.2f} us per proxied request (Python only, fake transports)")


if __name__ == "__main__":
    main()
