"""Named request schedules for ``limit_req`` and a generic runner: the differential harness
that holds ramparts' rate limiting to nginx's (tests/integration/test_limit_req_nginx.py) and
that can be pointed at the ramparts gateway too.

A ``Schedule`` is a limit configuration (one or more limits, ``limit_req_status``, dry run)
plus requests ``(send_at_seconds, X-Key, X-Group)``; a limit's key is one of those request
headers (an absent header is an empty key: not limited). A schedule renders an nginx
``server`` block (``nginx_http``) and a plain description (``describe``), and predicts its
outcomes with the pure engine (``expect``), fed the scheduled or the measured send times.

``run_schedules`` sends schedules to ``(host, port)`` targets concurrently over raw
sockets (asyncio, one connection per request, opened shortly before its send time so a
delayed request never holds up a later one) and returns what was observed: status, latency,
and the ``X-Limit-Req-Status`` header when the server sends one (nginx's own
``$limit_req_status``). ``Observed.outcome`` classifies from status and latency alone.

The schedules are built so that scheduling jitter cannot flip an outcome: ``fragility``
replays each one with every send time moved by up to ``JITTER_MS`` and reports any change of
outcome, any delay shorter than ``MIN_DELAY_MS`` (a delay must stand out from a fast answer)
and any two requests closer than ``MIN_SPACING_MS`` (their order must be kept).
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ramparts.policies.ratelimit import Decision, LimitConn, LimitReq, Outcome
from ramparts.state.memory import MemoryStore

#: Each send time may be off by this much (ms) without changing any outcome.
JITTER_MS = 15
#: Every expected delay is at least this long (ms) ...
MIN_DELAY_MS = 150
#: ... so a response slower than this (s) is a delayed one.
DELAYED_AFTER_S = 0.075
#: Requests of one schedule are at least this far apart (ms).
MIN_SPACING_MS = 10
#: A schedule's requests are sent within this many seconds of its start.
MAX_DURATION_S = 2.6

#: Outcome classes, as a client sees them.
PASSED, DELAYED, REJECTED = "passed", "delayed", "rejected"


def outcome_class(decision: Decision) -> str:
    if decision.outcome is Outcome.REJECTED:
        return REJECTED
    if decision.outcome is Outcome.DELAYED:
        return DELAYED
    return PASSED  # NONE, PASSED and the dry-run outcomes are answered at once


@dataclass(frozen=True)
class Limit:
    """One ``limit_req`` and its zone: ``zone`` is local to the schedule."""

    zone: str
    rate: str
    burst: int = 0
    nodelay: bool = False
    delay: int = 0
    key_header: str = "X-Key"

    def describe(self) -> str:
        mode = "nodelay" if self.nodelay else f"delay={self.delay}" if self.delay else "delay=0"
        return (
            f"zone {self.zone}: rate {self.rate}, burst {self.burst}, {mode}, key {self.key_header}"
        )


@dataclass(frozen=True)
class Req:
    """One request: sent ``at`` seconds after the schedule's start; "" omits a header.
    ``hold``: how long the backend takes to answer (limit_conn schedules)."""

    at: float
    key: str = ""
    group: str = ""
    hold: float = 0.0

    def header(self, name: str) -> str:
        return {"x-key": self.key, "x-group": self.group}[name.lower()]


@dataclass(frozen=True)
class Schedule:
    name: str
    about: str
    limits: tuple[Limit, ...]
    requests: tuple[Req, ...]
    status: int | None = 429  # limit_req_status; None: nginx's default (503)
    dry_run: bool = False
    status_header = "X-Limit-Req-Status"

    def target(self, index: int) -> str:
        return f"/ok.txt?s={self.name}&i={index}"

    @property
    def reject_status(self) -> int:
        return self.status or 503

    def zone_name(self, limit: Limit) -> str:
        return f"{self.name}_{limit.zone}"

    def engine_limits(self) -> list[LimitReq]:
        return [
            LimitReq(
                self.zone_name(lim),
                lim.rate,
                lim.burst,
                delay=lim.delay,
                nodelay=lim.nodelay,
                status=self.reject_status,
                dry_run=self.dry_run,
            )
            for lim in self.limits
        ]

    def expect(self, times_ms: Sequence[int] | None = None) -> list[Decision]:
        """The pure engine's decisions, at the scheduled times or at ``times_ms`` (one per
        request, ms on any origin)."""
        if times_ms is None:
            times_ms = [round(r.at * 1000) for r in self.requests]
        store = MemoryStore()
        limits = self.engine_limits()
        out = []
        for req, now in zip(self.requests, times_ms, strict=True):
            checks = [
                (lr, req.header(lim.key_header))
                for lr, lim in zip(limits, self.limits, strict=True)
            ]
            out.append(store.limit_req_sync(checks, 1_000_000 + now))
        return out

    def nginx_http(self, port: int, root: Path) -> str:
        """``limit_req_zone`` lines and a ``server`` on 127.0.0.1:``port`` serving ``root``
        (a static file: ``return`` would answer in the rewrite phase, before limit_req)."""
        lines = []
        for lim in self.limits:
            var = "$http_" + lim.key_header.lower().replace("-", "_")
            lines.append(f"limit_req_zone {var} zone={self.zone_name(lim)}:1m rate={lim.rate};")
        lines += ["server {", f"    listen 127.0.0.1:{port};", f"    root {root};"]
        if self.status is not None:
            lines.append(f"    limit_req_status {self.status};")
        if self.dry_run:
            lines.append("    limit_req_dry_run on;")
        lines.append("    location / {")
        for lim in self.limits:
            extra = f" burst={lim.burst}" if lim.burst else ""
            extra += " nodelay" if lim.nodelay else f" delay={lim.delay}" if lim.delay else ""
            lines.append(f"        limit_req zone={self.zone_name(lim)}{extra};")
        lines.append("        add_header X-Limit-Req-Status $limit_req_status always;")
        lines += ["    }", "}"]
        return "\n".join(lines) + "\n"

    def describe(self) -> str:
        head = f"{self.name}: {self.about}"
        conf = "; ".join(lim.describe() for lim in self.limits)
        conf += f"; status {self.reject_status}" + ("; dry run" if self.dry_run else "")
        reqs = ", ".join(
            f"{r.at:.3f}s"
            + (f" key={r.key}" if r.key else "")
            + (f" group={r.group}" if r.group else "")
            for r in self.requests
        )
        return f"{head}\n  limits: {conf}\n  requests: {reqs}"


def fragility(schedule: Schedule, trials: int = 400, seed: int = 7) -> list[str]:
    """What scheduling jitter could change in ``schedule`` (empty: nothing)."""
    problems: list[str] = []
    base = [round(r.at * 1000) for r in schedule.requests]
    for a, b in itertools.pairwise(base):
        if b - a < MIN_SPACING_MS:
            problems.append(f"requests at {a} and {b} ms are too close")
    if base and base[-1] > MAX_DURATION_S * 1000:
        problems.append(f"lasts {base[-1]} ms")
    expected = schedule.expect()
    classes = [outcome_class(d) for d in expected]
    variables = [d.outcome for d in expected]
    rnd = random.Random(seed)
    for trial in range(trials + 2):
        if trial == 0:
            times = [t - JITTER_MS if i % 2 else t + JITTER_MS for i, t in enumerate(base)]
        elif trial == 1:
            times = [t + JITTER_MS if i % 2 else t - JITTER_MS for i, t in enumerate(base)]
        else:
            times = [t + rnd.randint(-JITTER_MS, JITTER_MS) for t in base]
        for i in range(1, len(times)):
            times[i] = max(times[i], times[i - 1])  # the runner keeps the order
        got = schedule.expect(times)
        if [d.outcome for d in got] != variables:
            problems.append(f"times {times}: {[d.outcome.name for d in got]}")
            break
        for i, d in enumerate(got):
            if d.outcome is Outcome.DELAYED and d.delay_ms < MIN_DELAY_MS:
                problems.append(f"request {i} delayed only {d.delay_ms} ms at {times}")
                break
    assert classes == [outcome_class(d) for d in expected]
    return problems


# -- the runner ------------------------------------------------------------------------


@dataclass(frozen=True)
class Observed:
    """One response: ``sent_at`` (s after the schedule's start, when the request was
    written), ``latency`` (s from then to the end of the response)."""

    index: int
    sent_at: float
    status: int
    latency: float
    variable: str | None  # the schedule's status header ($limit_req_status ...), if sent

    @property
    def outcome(self) -> str:
        if self.status != 200:
            return REJECTED
        return DELAYED if self.latency >= DELAYED_AFTER_S else PASSED


class Runnable(Protocol):
    """What the runner needs of a schedule."""

    @property
    def requests(self) -> Sequence[Req]: ...

    status_header: str

    def target(self, index: int) -> str: ...


def _request_bytes(schedule: Runnable, index: int) -> bytes:
    req = schedule.requests[index]
    head = f"GET {schedule.target(index)} HTTP/1.1\r\nHost: localhost\r\n"
    if req.key:
        head += f"X-Key: {req.key}\r\n"
    if req.group:
        head += f"X-Group: {req.group}\r\n"
    return (head + "Connection: close\r\n\r\n").encode()


def _parse(raw: bytes, header: str) -> tuple[int, str | None]:
    head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    status = int(head[0].split(" ")[1])
    for line in head[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == header.lower():
            return status, value.strip()
    return status, None


async def _one(
    host: str, port: int, schedule: Runnable, index: int, start: float, timeout: float
) -> Observed:
    loop = asyncio.get_running_loop()
    at = start + schedule.requests[index].at
    await asyncio.sleep(max(0.0, at - 0.05 - loop.time()))
    reader, writer = await asyncio.open_connection(host, port)
    try:
        await asyncio.sleep(max(0.0, at - loop.time()))
        writer.write(_request_bytes(schedule, index))
        sent = loop.time()
        raw = await asyncio.wait_for(reader.read(), timeout)  # until the server closes
        done = loop.time()
    finally:
        writer.close()
    status, variable = _parse(raw, schedule.status_header)
    return Observed(index, sent - start, status, done - sent, variable)


async def run_schedules_async(
    targets: Sequence[tuple[str, int, Runnable]], lead_s: float = 0.3, timeout: float = 10.0
) -> list[list[Observed]]:
    """Run every ``(host, port, schedule)`` at once, all starting ``lead_s`` from now."""
    start = asyncio.get_running_loop().time() + lead_s
    runs = [
        asyncio.gather(
            *(_one(host, port, sch, i, start, timeout) for i in range(len(sch.requests)))
        )
        for host, port, sch in targets
    ]
    return [list(r) for r in await asyncio.gather(*runs)]


def run_schedules(
    targets: Sequence[tuple[str, int, Runnable]], lead_s: float = 0.3
) -> list[list[Observed]]:
    return asyncio.run(run_schedules_async(targets, lead_s))


def run_schedule(host: str, port: int, schedule: Runnable) -> list[Observed]:
    return run_schedules([(host, port, schedule)])[0]


# -- the schedules ---------------------------------------------------------------------


def _burst(start: float, n: int, key: str = "k", step: float = 0.02, group: str = "") -> list[Req]:
    return [Req(round(start + i * step, 3), key, group) for i in range(n)]


def _every(start: float, n: int, period: float, key: str = "k", group: str = "") -> list[Req]:
    return [Req(round(start + i * period, 3), key, group) for i in range(n)]


def _sched(
    name: str,
    about: str,
    limits: Iterable[Limit],
    requests: Iterable[Req],
    status: int | None = 429,
    dry_run: bool = False,
) -> Schedule:
    reqs = tuple(sorted(requests, key=lambda r: r.at))
    return Schedule(name, about, tuple(limits), reqs, status, dry_run)


K = Limit  # short alias for the table below
SCHEDULES: tuple[Schedule, ...] = (
    _sched(
        "no_burst",
        "burst=0: one request per period passes, the rest of a burst is rejected",
        [K("a", "5r/s")],
        [*_burst(0, 4), Req(0.5, "k"), Req(0.55, "k"), Req(0.75, "k")],
    ),
    _sched(
        "below_rate",
        "evenly spaced just below the rate (4r/s every 0.3 s): all pass",
        [K("a", "4r/s")],
        _every(0, 8, 0.3),
    ),
    _sched(
        "above_rate",
        "evenly spaced above the rate (5r/s every 0.15 s), no burst: every other rejected",
        [K("a", "5r/s")],
        _every(0, 12, 0.15),
    ),
    _sched(
        "above_rate_burst",
        "3r/s burst=3 nodelay, every 0.16 s: the excess climbs until the burst is spent",
        [K("a", "3r/s", 3, nodelay=True)],
        _every(0, 14, 0.16),
    ),
    _sched(
        "burst_nodelay",
        "5r/s burst=3 nodelay: a burst of 6, then the bucket drains",
        [K("a", "5r/s", 3, nodelay=True)],
        [*_burst(0, 6), *_burst(0.6, 3), Req(1.5, "k")],
    ),
    _sched(
        "nodelay_refill",
        "2r/s burst=2 nodelay: exhausted, then partly refilled after 1 s",
        [K("a", "2r/s", 2, nodelay=True)],
        [*_burst(0, 4), *_burst(1.1, 3), Req(2.3, "k")],
    ),
    _sched(
        "default_delay",
        "4r/s burst=3 (delay threshold 0): the burst is delayed, then rejected",
        [K("a", "4r/s", 3)],
        [*_burst(0, 5), Req(1.7, "k"), Req(1.72, "k")],
    ),
    _sched(
        "default_delay_slow",
        "2r/s burst=2: delays of about 0.5 s and 1 s",
        [K("a", "2r/s", 2)],
        [*_burst(0, 4, step=0.03), Req(1.8, "k")],
    ),
    _sched(
        "delay_n",
        "4r/s burst=4 delay=2: two requests of the burst pass at once, then delays",
        [K("a", "4r/s", 4, delay=2)],
        [*_burst(0, 6, step=0.02), Req(1.9, "k")],
    ),
    _sched(
        "delay_n_spaced",
        "2r/s burst=5 delay=2 every 100 ms",
        [K("a", "2r/s", 5, delay=2)],
        _every(0, 9, 0.1),
    ),
    _sched(
        "keys_interleaved",
        "three keys round-robin every 20 ms, 2r/s burst=1 nodelay each",
        [K("a", "2r/s", 1, nodelay=True)],
        [Req(round(i * 0.02, 3), "abc"[i % 3]) for i in range(12)]
        + [Req(0.6 + i * 0.02, "abc"[i % 3]) for i in range(6)],
    ),
    _sched(
        "empty_key",
        "requests without the key header are not limited",
        [K("a", "5r/s")],
        [
            *(Req(t, "k") for t in (0.04, 0.1, 0.16, 0.3, 0.36)),
            *(Req(t) for t in (0, 0.07, 0.13, 0.2, 0.33)),
        ],
    ),
    _sched(
        "per_minute_nodelay",
        "450r/m burst=2 nodelay (7.5 r/s)",
        [K("a", "450r/m", 2, nodelay=True)],
        [*_burst(0, 5), *_every(0.6, 6, 0.1)],
    ),
    _sched(
        "per_minute_delay",
        "150r/m burst=2 (2.5 r/s): delays of 400 ms steps",
        [K("a", "150r/m", 2)],
        [*_burst(0, 4, step=0.03), Req(1.5, "k")],
    ),
    _sched(
        "two_limits_later_rejects",
        "key zone then group zone: when the later rejects, the earlier is not charged",
        [K("a", "2r/s", 1, nodelay=True), K("b", "2r/s", key_header="X-Group")],
        [Req(0, "k", "g1"), Req(0.02, "k", "g1"), Req(0.04, "k", "g2"), Req(0.06, "k", "g3")],
    ),
    _sched(
        "two_limits_earlier_rejects",
        "when the earlier limit rejects, the later one is not looked up",
        [K("a", "2r/s"), K("b", "2r/s", 1, nodelay=True, key_header="X-Group")],
        [Req(0, "k1", "g"), Req(0.02, "k1", "g"), Req(0.04, "k2", "g"), Req(0.06, "k3", "g")],
    ),
    _sched(
        "two_limits_max_delay",
        "both limits delay: the request waits for the longer delay, named by its zone",
        [K("a", "5r/s", 5), K("b", "2r/s", 5, delay=1, key_header="X-Group")],
        [
            Req(0, "k1", "g"),
            Req(0.02, "k1", "g"),
            Req(0.04, "k2", "g"),
            Req(0.06, "k1", "g"),
            Req(0.08, "k1", "g"),
            Req(0.1, "k1", "h"),
            Req(0.12, "k1", "h"),
        ],
    ),
    _sched(
        "two_limits_last_key_empty",
        "the last limit's key is empty: only the first limit applies",
        [K("a", "5r/s", 1, nodelay=True), K("b", "2r/s", key_header="X-Group")],
        [*_burst(0, 4), Req(0.1, "k", "g"), Req(0.12, "k", "g"), Req(0.5, "k")],
    ),
    _sched(
        "two_limits_first_key_empty",
        "the first limit's key is empty: only the last limit applies",
        [K("a", "5r/s"), K("b", "4r/s", 2, key_header="X-Group")],
        [*_burst(0, 4, key="", group="g"), Req(1.2, "k", "g")],
    ),
    _sched(
        "dry_run_reject",
        "dry run: nothing rejected; would-be rejections are not charged",
        [K("a", "5r/s")],
        [Req(0, "k"), Req(0.05, "k"), Req(0.1, "k"), Req(0.25, "k"), Req(0.3, "k")],
        dry_run=True,
    ),
    _sched(
        "dry_run_delay",
        "dry run with delays: nothing waits, outcomes recorded",
        [K("a", "5r/s", 2)],
        [*_burst(0, 5), Req(1.0, "k")],
        dry_run=True,
    ),
    _sched(
        "default_status_503",
        "without limit_req_status the rejection is 503",
        [K("a", "5r/s", 1, nodelay=True)],
        [*_burst(0, 4), Req(0.5, "k")],
        status=None,
    ),
    _sched(
        "refill_after_idle",
        "5r/s burst=4 nodelay: exhausted, idle 0.7 s, exhausted again",
        [K("a", "5r/s", 4, nodelay=True)],
        [*_burst(0, 7), *_burst(0.8, 7)],
    ),
    _sched(
        "two_keys_delay",
        "3r/s burst=2, two keys interleaved: delays computed per key",
        [K("a", "3r/s", 2)],
        [Req(round(i * 0.02, 3), "xy"[i % 2]) for i in range(8)],
    ),
)


# -- limit_conn --------------------------------------------------------------------------


@dataclass(frozen=True)
class ConnLimit:
    """One ``limit_conn`` and its zone (local to the schedule)."""

    zone: str
    conn: int
    key_header: str = "X-Key"


@dataclass(frozen=True)
class ConnSchedule:
    """limit_conn: each request is held ``hold`` seconds by a slow backend behind the
    server, so requests overlap; a slot is taken when a request starts and given back when
    its response ends."""

    name: str
    about: str
    limits: tuple[ConnLimit, ...]
    requests: tuple[Req, ...]
    status: int | None = 429  # limit_conn_status; None: nginx's default (503)
    dry_run: bool = False
    status_header = "X-Limit-Conn-Status"

    def target(self, index: int) -> str:
        return f"/slow?s={self.name}&i={index}&hold={self.requests[index].hold}"

    @property
    def reject_status(self) -> int:
        return self.status or 503

    def engine_limits(self) -> list[LimitConn]:
        return [
            LimitConn(
                f"{self.name}_{lim.zone}",
                lim.conn,
                status=self.reject_status,
                dry_run=self.dry_run,
            )
            for lim in self.limits
        ]

    def expect(
        self, starts_ms: Sequence[int] | None = None, ends_ms: Sequence[int] | None = None
    ) -> list[Decision]:
        """Acquire at each start and release at the end of each PASSED request, in time
        order (an end before a start at the same ms)."""
        if starts_ms is None:
            starts_ms = [round(r.at * 1000) for r in self.requests]
        if ends_ms is None:
            ends_ms = [
                s + round(r.hold * 1000) for s, r in zip(starts_ms, self.requests, strict=True)
            ]
        store = MemoryStore()
        limits = self.engine_limits()
        checks = [
            [(lc, req.header(lim.key_header)) for lc, lim in zip(limits, self.limits, strict=True)]
            for req in self.requests
        ]
        ends_ms = [max(e, s + 1) for s, e in zip(starts_ms, ends_ms, strict=True)]
        events = sorted(
            [(t, 1, i) for i, t in enumerate(starts_ms)]
            + [(t, 0, i) for i, t in enumerate(ends_ms)]
        )
        out: dict[int, Decision] = {}
        for _, is_start, i in events:
            if is_start:
                out[i] = store.conn_acquire_sync(checks[i])
            elif out[i].outcome is Outcome.PASSED:
                store.conn_release_sync(checks[i])
        return [out[i] for i in range(len(self.requests))]

    def nginx_http(self, port: int, backend_port: int) -> str:
        lines = []
        for lim in self.limits:
            var = "$http_" + lim.key_header.lower().replace("-", "_")
            lines.append(f"limit_conn_zone {var} zone={self.name}_{lim.zone}:1m;")
        lines += ["server {", f"    listen 127.0.0.1:{port};"]
        if self.status is not None:
            lines.append(f"    limit_conn_status {self.status};")
        if self.dry_run:
            lines.append("    limit_conn_dry_run on;")
        lines.append("    location / {")
        for lim in self.limits:
            lines.append(f"        limit_conn {self.name}_{lim.zone} {lim.conn};")
        lines.append(f"        proxy_pass http://127.0.0.1:{backend_port};")
        lines.append("        add_header X-Limit-Conn-Status $limit_conn_status always;")
        lines += ["    }", "}"]
        return "\n".join(lines) + "\n"

    def describe(self) -> str:
        conf = "; ".join(f"zone {c.zone}: {c.conn} per {c.key_header}" for c in self.limits)
        conf += f"; status {self.reject_status}" + ("; dry run" if self.dry_run else "")
        reqs = ", ".join(
            f"{r.at:.3f}s+{r.hold:.2f}s"
            + (f" key={r.key}" if r.key else "")
            + (f" group={r.group}" if r.group else "")
            for r in self.requests
        )
        return f"{self.name}: {self.about}\n  limits: {conf}\n  requests: {reqs}"


def conn_fragility(schedule: ConnSchedule) -> list[str]:
    """Every start is at least 2 * JITTER_MS from every other start and end: no jitter can
    reorder the events that decide."""
    starts = [round(r.at * 1000) for r in schedule.requests]
    ends = [s + round(r.hold * 1000) for s, r in zip(starts, schedule.requests, strict=True)]
    problems = []
    for i, s in enumerate(starts):
        for j, t in enumerate(starts + ends):
            if j % len(starts) != i and abs(s - t) < 2 * JITTER_MS:
                problems.append(f"request {i} starts at {s} ms, {abs(s - t)} ms from an event")
    return problems


C = ConnLimit
CONN_SCHEDULES: tuple[ConnSchedule, ...] = (
    ConnSchedule(
        "conn_basic",
        "2 per key: the third overlapping request is rejected, other keys and no key pass",
        (C("a", 2),),
        (
            Req(0, "k", hold=0.4),
            Req(0.05, "k", hold=0.4),
            Req(0.1, "k"),
            Req(0.15, "k2"),
            Req(0.21, "", hold=0.1),
            Req(0.25, "k"),
            Req(0.6, "k", hold=0.1),
            Req(0.65, "k"),
        ),
    ),
    ConnSchedule(
        "conn_release",
        "1 per key: a slot comes back when the response ends",
        (C("a", 1),),
        (Req(0, "k", hold=0.2), Req(0.1, "k"), Req(0.3, "k", hold=0.2), Req(0.4, "k")),
    ),
    ConnSchedule(
        "conn_two_limits",
        "key (2) then group (1): a request the group refuses gives its key slot back",
        (C("a", 2), C("b", 1, key_header="X-Group")),
        (
            Req(0, "k1", "g", hold=0.6),
            Req(0.05, "k1", "h", hold=0.6),
            Req(0.1, "k1", "i"),
            Req(0.15, "k2", "g"),
            Req(0.2, "k2", "h"),
            Req(0.25, "k2", "j", hold=0.5),
            Req(0.3, "k2", "l", hold=0.5),
            Req(0.35, "k2", "m"),
        ),
    ),
    ConnSchedule(
        "conn_dry_run",
        "dry run: nothing rejected, and a would-be rejection holds no slot",
        (C("a", 1),),
        (Req(0, "k", hold=0.3), Req(0.05, "k", hold=0.6), Req(0.1, "k"), Req(0.4, "k")),
        dry_run=True,
    ),
    ConnSchedule(
        "conn_default_503",
        "without limit_conn_status the rejection is 503",
        (C("a", 1),),
        (Req(0, "k", hold=0.3), Req(0.1, "k")),
        status=None,
    ),
)
