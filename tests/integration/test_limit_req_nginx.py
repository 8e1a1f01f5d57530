"""limit_req and limit_conn against nginx itself: every schedule of
tests/limitreq_schedules.py is sent to a real nginx (one server block per schedule, all at
once) and what nginx did to each request (status, delay, ``$limit_req_status`` /
``$limit_conn_status``, the zone and excess in its error log) must be what the pure engine
decides when fed the same send (and, for limit_conn, end) times.

limit_req locations serve a static file (a content-phase handler): ``return`` would answer in
the rewrite phase, before limit_req's preaccess phase ever runs. limit_conn locations proxy to
a slow backend so that requests overlap.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from ramparts.policies.ratelimit import Outcome

from ..limitreq_schedules import (
    CONN_SCHEDULES,
    SCHEDULES,
    ConnLimit,
    ConnSchedule,
    Observed,
    Runnable,
    Schedule,
    conn_fragility,
    fragility,
    outcome_class,
    run_schedules,
)
from ..peers import start_nginx
from ..support import free_port, start_gateway

# "limiting requests, dry run, excess: 0.750 by zone "z"" / "delaying request, excess:
# 0.950, by zone "z"", each followed by the request line.
_LOG = re.compile(
    r"(?P<what>limiting requests|delaying request)(?P<dry>, dry run)?, excess: "
    r"(?P<int>\d+)\.(?P<frac>\d{3}),? by zone \"(?P<zone>[^\"]+)\".*?"
    r"request: \"GET /ok\.txt\?s=(?P<sched>\w+)&i=(?P<i>\d+) "
)
_CONN_LOG = re.compile(
    r"limiting connections(?P<dry>, dry run,)? by zone \"(?P<zone>[^\"]+)\".*?"
    r"request: \"GET /slow\?s=(?P<sched>\w+)&i=(?P<i>\d+)&"
)


@dataclass(frozen=True)
class Logged:
    rejected: bool
    dry_run: bool
    excess: int
    zone: str


@dataclass
class NginxRun:
    observed: dict[str, list[Observed]]
    logged: dict[tuple[str, int], list[Logged]]
    wall_s: float
    config: str


class _Slow(BaseHTTPRequestHandler):
    """Answers after ``?hold=`` seconds."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        hold = float(parse_qs(urlsplit(self.path).query).get("hold", ["0"])[0])
        time.sleep(hold)
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(b"ok\n")

    def log_message(self, format: str, *args: object) -> None:
        pass


class _DeepQueue(ThreadingHTTPServer):
    request_queue_size = 256


@pytest.fixture(scope="module")
def slow_backend() -> Iterator[int]:
    # A listen queue deep enough for every schedule's overlapping requests at once (the
    # default of 5 drops SYNs, and a retransmitted one arrives a second late).
    server = _DeepQueue(("127.0.0.1", 0), _Slow)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def _ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        p = free_port()
        if p not in ports:
            ports.append(p)
    return ports


@pytest.fixture(scope="module")
def nginx_run(tmp_path_factory: pytest.TempPathFactory, slow_backend: int) -> NginxRun:
    """Every schedule, limit_req and limit_conn, at once against one nginx."""
    scratch = tmp_path_factory.mktemp("limit-req-nginx")
    root = scratch / "www"
    root.mkdir()
    (root / "ok.txt").write_text("ok\n")
    ports = _ports(len(SCHEDULES) + len(CONN_SCHEDULES))
    http = f"access_log {scratch}/access.log;\n"
    http += "".join(s.nginx_http(p, root) for s, p in zip(SCHEDULES, ports, strict=False))
    http += "".join(
        s.nginx_http(p, slow_backend)
        for s, p in zip(CONN_SCHEDULES, ports[len(SCHEDULES) :], strict=True)
    )
    every: list[Runnable] = [*SCHEDULES, *CONN_SCHEDULES]
    proc = start_nginx(scratch, http, ports)
    try:
        started = time.monotonic()
        runs = run_schedules([("127.0.0.1", p, s) for s, p in zip(every, ports, strict=True)])
        wall = time.monotonic() - started
    finally:
        proc.stop()
    logged: dict[tuple[str, int], list[Logged]] = {}
    for line in (scratch / "nginx-error.log").read_text().splitlines():
        m = _LOG.search(line)
        if m:
            entry = Logged(
                m["what"] == "limiting requests",
                bool(m["dry"]),
                int(m["int"]) * 1000 + int(m["frac"]),
                m["zone"],
            )
            logged.setdefault((m["sched"], int(m["i"])), []).append(entry)
        m = _CONN_LOG.search(line)
        if m:
            entry = Logged(True, bool(m["dry"]), 0, m["zone"])
            logged.setdefault((m["sched"], int(m["i"])), []).append(entry)
    names = [s.name for s in SCHEDULES] + [s.name for s in CONN_SCHEDULES]
    observed = dict(zip(names, runs, strict=True))
    return NginxRun(observed, logged, wall, http)


def _table(
    schedule: Schedule | ConnSchedule, observed: list[Observed], expected: list[object]
) -> str:
    rows = [schedule.describe(), "  i   at     sent   key/group   nginx                engine"]
    for o, d, r in zip(observed, expected, schedule.requests, strict=True):
        got = f"{o.status} {o.latency * 1000:6.1f}ms {o.variable or '-'}"
        rows.append(
            f"  {o.index:<3} {r.at:.3f} {o.sent_at:.4f} {r.key or '-'}/{r.group or '-':<8}"
            f" {got:<30} {d!r}"
        )
    return "\n".join(rows)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=[s.name for s in SCHEDULES])
def test_schedule_is_far_from_decision_boundaries(schedule: Schedule) -> None:
    """Moving any send time by up to JITTER_MS changes no outcome, and every delay is long
    enough to tell from a fast answer: the comparison below cannot be flipped by timing."""
    assert fragility(schedule) == []


def test_there_are_enough_schedules() -> None:
    assert len({s.name for s in SCHEDULES}) == len(SCHEDULES) >= 20
    kinds = {
        "nodelay": any(lim.nodelay for s in SCHEDULES for lim in s.limits),
        "delay=N": any(lim.delay for s in SCHEDULES for lim in s.limits),
        "default delay": any(
            not lim.nodelay and not lim.delay and lim.burst for s in SCHEDULES for lim in s.limits
        ),
        "r/m": any(lim.rate.endswith("r/m") for s in SCHEDULES for lim in s.limits),
        "two limits": any(len(s.limits) > 1 for s in SCHEDULES),
        "dry run": any(s.dry_run for s in SCHEDULES),
        "503": any(s.status is None for s in SCHEDULES),
        "empty key": any(not r.key for s in SCHEDULES for r in s.requests),
    }
    assert all(kinds.values()), kinds


@pytest.mark.parametrize("schedule", SCHEDULES, ids=[s.name for s in SCHEDULES])
def test_nginx_and_engine_agree(nginx_run: NginxRun, schedule: Schedule) -> None:
    observed = nginx_run.observed[schedule.name]
    expected = schedule.expect([round(o.sent_at * 1000) for o in observed])
    table = _table(schedule, observed, list(expected))
    limits = {lr.zone: lr for lr in schedule.engine_limits()}
    for o, d in zip(observed, expected, strict=True):
        where = f"request {o.index}\n{table}"
        # what a client sees: status and latency
        assert o.outcome == outcome_class(d), where
        if d.outcome is Outcome.REJECTED:
            assert o.status == schedule.reject_status, where
        if d.outcome is Outcome.DELAYED:
            assert d.delay_ms - 10 <= o.latency * 1000 <= d.delay_ms + 60, where
        # what nginx says it did: $limit_req_status ...
        assert (o.variable or "") == d.outcome.variable, where
        # ... and its error log: which zone decided, with which excess
        logged = nginx_run.logged.get((schedule.name, o.index), [])
        if d.outcome in (Outcome.NONE, Outcome.PASSED):
            assert logged == [], where
            continue
        assert d.limit is not None
        assert len(logged) == 1, where
        entry = logged[0]
        rejected = d.outcome in (Outcome.REJECTED, Outcome.REJECTED_DRY_RUN)
        assert (entry.rejected, entry.dry_run, entry.zone) == (
            rejected,
            schedule.dry_run,
            d.limit.zone,
        ), where
        # 10 ms of drain: the runner's clock and nginx's may differ by a ms or two
        tolerance = limits[d.limit.zone].rate * 10 // 1000
        assert abs(entry.excess - d.excess) <= tolerance, where


@pytest.mark.parametrize("schedule", CONN_SCHEDULES, ids=[s.name for s in CONN_SCHEDULES])
def test_conn_schedule_is_far_from_decision_boundaries(schedule: ConnSchedule) -> None:
    assert conn_fragility(schedule) == []


@pytest.mark.parametrize("schedule", CONN_SCHEDULES, ids=[s.name for s in CONN_SCHEDULES])
def test_nginx_and_engine_agree_on_limit_conn(nginx_run: NginxRun, schedule: ConnSchedule) -> None:
    observed = nginx_run.observed[schedule.name]
    starts = [round(o.sent_at * 1000) for o in observed]
    ends = [round((o.sent_at + o.latency) * 1000) for o in observed]
    expected = schedule.expect(starts, ends)
    table = _table(schedule, observed, list(expected))
    for o, d in zip(observed, expected, strict=True):
        where = f"request {o.index}\n{table}"
        rejected = d.outcome is Outcome.REJECTED
        assert o.status == (schedule.reject_status if rejected else 200), where
        assert (o.variable or "") == d.outcome.variable, where
        logged = nginx_run.logged.get((schedule.name, o.index), [])
        if d.outcome in (Outcome.REJECTED, Outcome.REJECTED_DRY_RUN):
            assert d.limit is not None
            assert [(e.dry_run, e.zone) for e in logged] == [(schedule.dry_run, d.limit.zone)]
        else:
            assert logged == [], where


def test_the_differential_run(nginx_run: NginxRun) -> None:
    """Every schedule ran, at once, against one nginx (the wall time is printed)."""
    total = len(SCHEDULES) + len(CONN_SCHEDULES)
    print(f"\n{total} schedules against nginx in {nginx_run.wall_s:.2f}s")
    assert len(nginx_run.observed) == total
    for sch in (*SCHEDULES, *CONN_SCHEDULES):
        assert len(nginx_run.observed[sch.name]) == len(sch.requests)


# -- ramparts itself, side by side with nginx -------------------------------------------------


def _ramparts_limits(schedule: Schedule | ConnSchedule) -> tuple[list[str], list[str]]:
    """(zone lines, location lines) of ``schedule`` in ramparts' configuration."""
    zones, limits = [], []
    for lim in schedule.limits:
        key = "$http_" + lim.key_header.lower().replace("-", "_")
        if isinstance(lim, ConnLimit):
            zone = f"{schedule.name}_{lim.zone}"
            zones.append(f"  {zone}: {{ key: {key} }}")
            limits.append(f"{{ zone: {zone}, max: {lim.conn} }}")
        else:
            assert isinstance(schedule, Schedule)
            zone = schedule.zone_name(lim)
            zones.append(f"  {zone}: {{ key: {key}, rate: {lim.rate} }}")
            mode = ", nodelay: true" if lim.nodelay else f", delay: {lim.delay}"
            limits.append(f"{{ zone: {zone}, burst: {lim.burst}{mode} }}")
    return zones, limits


def ramparts_config(placed: list[tuple[Schedule | ConnSchedule, int]], backend: int) -> str:
    req_zones: list[str] = []
    conn_zones: list[str] = []
    servers: list[str] = []
    for schedule, port in placed:
        zones, limits = _ramparts_limits(schedule)
        conn = isinstance(schedule, ConnSchedule)
        (conn_zones if conn else req_zones).extend(zones)
        word = "limit_conn" if conn else "limit_req"
        extra = f"        {word}_status: {schedule.status}\n" if schedule.status else ""
        extra += f"        {word}_dry_run: true\n" if schedule.dry_run else ""
        handler = (
            f"proxy: {{ upstream: 'http://127.0.0.1:{backend}' }}"
            if conn
            else 'return: { status: 200, body: "ok\\n" }'
        )
        servers.append(
            f"""  - listen: "127.0.0.1:{port}"
    locations:
      - location: /
        {word}: [{", ".join(limits)}]
{extra}        {handler}
"""
        )
    return (
        "workers: 1\nlog_level: warning\n"
        + "limit_req_zones:\n"
        + "\n".join(req_zones)
        + "\nlimit_conn_zones:\n"
        + "\n".join(conn_zones)
        + "\nservers:\n"
        + "".join(servers)
    )


@dataclass
class SideBySide:
    nginx: dict[str, list[Observed]]
    ramparts: dict[str, list[Observed]]


@pytest.fixture(scope="module")
def side_by_side(tmp_path_factory: pytest.TempPathFactory, slow_backend: int) -> SideBySide:
    """Every schedule sent at the same moments to nginx and to ramparts, configured alike."""
    scratch = tmp_path_factory.mktemp("limit-req-both")
    root = scratch / "www"
    root.mkdir()
    (root / "ok.txt").write_text("ok\n")
    every: list[Schedule | ConnSchedule] = [*SCHEDULES, *CONN_SCHEDULES]
    ports = _ports(2 * len(every))
    nports, rports = ports[: len(every)], ports[len(every) :]
    http = "access_log off;\n" + "".join(
        s.nginx_http(p, slow_backend) if isinstance(s, ConnSchedule) else s.nginx_http(p, root)
        for s, p in zip(every, nports, strict=True)
    )
    cfg = ramparts_config(list(zip(every, rports, strict=True)), slow_backend)
    nginx = start_nginx(scratch / "nginx", http, nports)
    gw = start_gateway(scratch, cfg, rports, name="ramparts")
    try:
        targets = [("127.0.0.1", p, s) for s, p in zip(every, nports, strict=True)]
        targets += [("127.0.0.1", p, s) for s, p in zip(every, rports, strict=True)]
        runs = run_schedules(targets)
    finally:
        gw.stop()
        nginx.stop()
    names = [s.name for s in every]
    return SideBySide(
        dict(zip(names, runs[: len(every)], strict=True)),
        dict(zip(names, runs[len(every) :], strict=True)),
    )


@pytest.mark.parametrize(
    "schedule", [*SCHEDULES, *CONN_SCHEDULES], ids=[s.name for s in (*SCHEDULES, *CONN_SCHEDULES)]
)
def test_ramparts_does_what_nginx_does(
    side_by_side: SideBySide, schedule: Schedule | ConnSchedule
) -> None:
    """The same schedule, sent at the same moments to nginx and to ramparts configured the
    same way: the same requests are passed, delayed and rejected, with the same status."""
    ngx = side_by_side.nginx[schedule.name]
    ours = side_by_side.ramparts[schedule.name]
    table = "\n".join(
        f"  {n.index:<3} nginx {n.status} {n.latency * 1000:6.1f}ms {n.outcome:<9}"
        f" ramparts {r.status} {r.latency * 1000:6.1f}ms {r.outcome}"
        for n, r in zip(ngx, ours, strict=True)
    )
    where = f"{schedule.describe()}\n{table}"
    assert [(o.outcome, o.status) for o in ours] == [(o.outcome, o.status) for o in ngx], where
