"""Side-by-side reverse-proxy benchmark (`make bench-proxy`): owns starting a fixed origin,
nginx, ramparts and the bare pass-through baseline on 127.0.0.1, driving each in turn with
wrk on a 13-byte and a 100 KB response, and printing a median table plus the
``ratio NAME: X.XX`` lines (ramparts over nginx). Raw results go to
bench/results/proxy-<timestamp>.json. Method and how to read the output: bench/README.md.

It stops only the processes it started, by their ids, also on Ctrl-C or an error."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import json
import os
import platform
import pwd
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
VENV_PY = ROOT / ".venv" / "bin" / "python"
PYTHON = str(VENV_PY) if VENV_PY.exists() else sys.executable
NGINX = "/usr/sbin/nginx"
HOST = "127.0.0.1"  # all traffic stays on the loopback interface

PROXY_CORE = "0"  # the proxy under test
LOAD_CORE = "1"  # wrk and the origin

# Body sizes: name -> (path on the origin, expected body length).
SIZES: dict[str, tuple[str, int]] = {"small": ("/", 13), "100k": ("/bytes/102400", 102400)}
CONFIGS = ("ramparts", "nginx", "baseline")  # baseline: reference row, not in the bar
CLK_TCK = os.sysconf("SC_CLK_TCK")
NOISY_OTHER_CORES = 0.25  # CPU taken by processes we did not start, in cores, above which
# a run is marked noisy (retried, and left out of the medians while clean runs exist)


# --------------------------------------------------------------------------- processes


@dataclass
class Proc:
    """A process this script started in its own session (so pid == process group id)."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    paused: bool = False

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def _signal_group(self, sig: int) -> None:
        # The group is the session this script created for the process: it holds only
        # the process we started and its own children (e.g. the nginx worker).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)

    def pause(self) -> None:
        if self.alive() and not self.paused:
            self._signal_group(signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        if self.alive() and self.paused:
            self._signal_group(signal.SIGCONT)
            self.paused = False

    def stop(self, timeout: float = 5.0) -> None:
        if self.alive():
            self._signal_group(signal.SIGCONT)  # a stopped process cannot act on SIGTERM
            self.paused = False
            self._signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.popen.wait(timeout)
        else:
            self._signal_group(signal.SIGKILL)  # leftover children of a dead leader, if any

    def tail(self, n: int = 20) -> str:
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])


def spawn(name: str, argv: Sequence[str], core: str, scratch: Path) -> Proc:
    log = scratch / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(
            ["taskset", "-c", core, *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=scratch,
            start_new_session=True,
        )
    return Proc(name, popen, log)


def free_ports(n: int) -> list[int]:
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((HOST, 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": f"{HOST}:{port}"})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def wait_ready(proc: Proc, port: int, timeout: float = 15.0) -> None:
    """Wait (bounded) until ``proc`` answers GET / with 200 on ``port``."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited early:\n{proc.tail()}")
        try:
            status, _, _ = http_get(port, "/", timeout=1.0)
            if status == 200:
                return
            last = RuntimeError(f"status {status}")
        except OSError as exc:
            last = exc
        time.sleep(0.05)
    raise RuntimeError(f"{proc.name} not ready on port {port} ({last}):\n{proc.tail()}")


def check_body(port: int, name: str) -> None:
    """Each body size must come back whole with a 200 through ``port``."""
    for size, (path, length) in SIZES.items():
        status, _, body = http_get(port, path)
        if status != 200 or len(body) != length:
            raise RuntimeError(f"{name} {size}: status {status}, {len(body)} bytes (want {length})")


def upstream_view(port: int) -> list[str]:
    """The request-header names the origin saw through ``port`` (via its /echo route)."""
    status, _, body = http_get(port, "/echo")
    if status != 200:
        return [f"<status {status}>"]
    doc = json.loads(body)
    return sorted({str(n).lower() for n, _ in doc.get("headers", [])})


# --------------------------------------------------------------------------- configs


def nginx_conf(
    scratch: Path, port: int, origin_port: int, keepalive: int, requests: int, buffers: int = 0
) -> str:
    # Upstream headers made equal to ramparts' defaults (Host passed through, X-Real-IP and
    # the X-Forwarded-* family added) so both proxies send the origin the same request.
    # ``buffers`` (bytes; 0 = nginx's defaults of one memory page) sizes the response
    # buffers, which decide nginx's CPU cost for large bodies.
    tuned = ""
    if buffers:
        tuned = (
            f"proxy_buffer_size {buffers};\n            proxy_buffers 8 {buffers};\n"
            f"            proxy_busy_buffers_size {2 * buffers};\n            "
        )
    return f"""# written by bench/proxy.py
worker_processes 1;
daemon off;
master_process on;
pid {scratch}/nginx.pid;
error_log {scratch}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {scratch}/nginx-tmp/client_body;
    proxy_temp_path {scratch}/nginx-tmp/proxy;
    fastcgi_temp_path {scratch}/nginx-tmp/fastcgi;
    uwsgi_temp_path {scratch}/nginx-tmp/uwsgi;
    scgi_temp_path {scratch}/nginx-tmp/scgi;
    keepalive_requests {requests};
    upstream origin {{
        server {HOST}:{origin_port};
        keepalive {keepalive};
        keepalive_requests {requests};
    }}
    server {{
        listen {HOST}:{port};
        location / {{
            proxy_pass http://origin;
            {tuned}proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Real-IP $remote_addr;
        }}
    }}
}}
"""


def ramparts_conf(port: int, origin_port: int, keepalive: int, requests: int) -> str:
    # A plain proxy: one worker, no access log, defaults otherwise (keepalive_requests
    # written out because nginx's are written out too; 1000 is both programs' default).
    return f"""# written by bench/proxy.py
workers: 1
log_level: warning
limits:
  keepalive_requests: {requests}
upstreams:
  origin:
    servers: ["{HOST}:{origin_port}"]
    keepalive: {keepalive}
    keepalive_requests: {requests}
servers:
  - listen: "{HOST}:{port}"
    locations:
      - location: /
        proxy: {{ upstream: origin }}
"""


def prepare_nginx_dirs(scratch: Path) -> None:
    tmp = scratch / "nginx-tmp"
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp / sub).mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        # nginx run as root drops its worker to 'nobody': let it reach its temp dirs.
        os.chmod(scratch, 0o755)
        try:
            nobody = pwd.getpwnam("nobody")
        except KeyError:
            return
        for path in [tmp, *tmp.iterdir()]:
            os.chown(path, nobody.pw_uid, nobody.pw_gid)


# --------------------------------------------------------------------------- measuring


def children_of() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                rest = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        kids.setdefault(int(rest[1]), []).append(int(entry))
    return kids


def tree_cpu_seconds(pid: int) -> float:
    """utime + stime (and reaped children's) of ``pid`` and its live descendants."""
    kids = children_of()
    todo, ticks = [pid], 0
    seen: set[int] = set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open(f"/proc/{p}/stat") as f:
                rest = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        # Fields 14-17 of /proc/PID/stat (utime, stime, cutime, cstime); rest[0] is field 3.
        ticks += sum(int(x) for x in rest[11:15])
        todo.extend(kids.get(p, []))
    return ticks / CLK_TCK


def cpu_times() -> dict[str, list[int]]:
    """Per-CPU jiffies from /proc/stat: user nice system idle iowait irq softirq steal."""
    out: dict[str, list[int]] = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu"):
                name, *vals = line.split()
                out[name] = [int(v) for v in vals[:8]]
    return out


@dataclass
class Machine:
    """How the machine spent a run: per-core busy share, steal, softirq, all in cores."""

    busy: dict[str, float]
    idle: dict[str, float]
    softirq_cores: float
    steal_cores: float
    busy_cores: float


def machine_delta(a: dict[str, list[int]], b: dict[str, list[int]], wall: float) -> Machine:
    busy: dict[str, float] = {}
    idle: dict[str, float] = {}
    soft = steal = total_busy = 0.0
    for name, before in a.items():
        if name == "cpu" or name not in b:
            continue
        d = [y - x for x, y in zip(before, b[name], strict=True)]
        user, nice, system, idl, iowait, irq, softirq, st = d
        b_ticks = user + nice + system + irq + softirq
        busy[name] = round(b_ticks / CLK_TCK / wall, 3)
        idle[name] = round((idl + iowait) / CLK_TCK / wall, 3)
        soft += softirq / CLK_TCK / wall
        steal += st / CLK_TCK / wall
        total_busy += b_ticks / CLK_TCK / wall
    return Machine(busy, idle, round(soft, 3), round(steal, 3), round(total_busy, 3))


def wait_quiet(limit_cores: float, max_wait: float) -> tuple[float, float]:
    """Wait (at most ``max_wait`` s) for a 0.5 s window in which the machine, with our
    processes idle or paused, is busier than ``limit_cores`` by no more than half of it.
    Returns (seconds waited, busy cores in the last window)."""
    t0 = time.monotonic()
    busy = float("nan")
    while True:
        a, start = cpu_times(), time.monotonic()
        time.sleep(0.5)
        busy = machine_delta(a, cpu_times(), time.monotonic() - start).busy_cores
        waited = time.monotonic() - t0
        if busy <= limit_cores / 2 or waited >= max_wait:
            return round(waited, 1), busy


_TIME = re.compile(r"([\d.]+)(us|ms|s|m|h)\b")
_UNIT = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}


def _usec(text: str) -> float:
    m = _TIME.fullmatch(text.strip())
    if not m:
        raise ValueError(f"cannot read wrk time {text!r}")
    return float(m.group(1)) * _UNIT[m.group(2)]


@dataclass
class Wrk:
    requests: int
    seconds: float
    rps: float
    p50_us: float
    p99_us: float
    socket_errors: dict[str, int]
    non_2xx: int
    returncode: int
    cpu_seconds: float
    output: str

    def problems(self) -> list[str]:
        out = []
        if self.returncode != 0:
            out.append(f"wrk exit code {self.returncode}")
        if self.non_2xx:
            out.append(f"{self.non_2xx} non-2xx/3xx responses")
        errs = {k: v for k, v in self.socket_errors.items() if v}
        if errs:
            out.append("socket errors " + ", ".join(f"{k} {v}" for k, v in errs.items()))
        if self.requests == 0:
            out.append("no requests completed")
        return out


def parse_wrk(text: str, returncode: int, cpu: float) -> Wrk:
    def find(pattern: str) -> re.Match[str] | None:
        return re.search(pattern, text, re.MULTILINE)

    m = find(r"^\s*(\d+) requests in ([\d.]+\w+),")
    requests, seconds = (int(m.group(1)), _usec(m.group(2)) / 1e6) if m else (0, 0.0)
    m = find(r"^Requests/sec:\s+([\d.]+)")
    rps = float(m.group(1)) if m else 0.0
    pct: dict[str, float] = {}
    for p, val in re.findall(r"^\s+(\d+)%\s+(\S+)\s*$", text, re.MULTILINE):
        pct[p] = _usec(val)
    errors = {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    m = find(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
    if m:
        errors = dict(zip(errors, (int(g) for g in m.groups()), strict=True))
    m = find(r"Non-2xx or 3xx responses: (\d+)")
    non_2xx = int(m.group(1)) if m else 0
    return Wrk(
        requests=requests,
        seconds=seconds,
        rps=rps,
        p50_us=pct.get("50", float("nan")),
        p99_us=pct.get("99", float("nan")),
        socket_errors=errors,
        non_2xx=non_2xx,
        returncode=returncode,
        cpu_seconds=round(cpu, 3),
        output=text,
    )


class Runner:
    """Owns wrk: at most one at a time, always bounded by a timeout, killed on exit."""

    def __init__(self) -> None:
        self.current: subprocess.Popen[bytes] | None = None

    def wrk(self, port: int, path: str, seconds: float, connections: int) -> Wrk:
        argv = ["taskset", "-c", LOAD_CORE, "wrk", "-t1", f"-c{connections}"]
        argv += [f"-d{seconds:g}s", "--latency", f"http://{HOST}:{port}{path}"]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.current = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            out, _ = self.current.communicate(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"wrk did not finish within {seconds + 30:g} s") from None
        code = self.current.returncode
        self.current = None
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        # Only wrk is reaped between the two readings, so the difference is wrk's CPU.
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        return parse_wrk(out.decode(errors="replace"), code, cpu)

    def kill(self) -> None:
        p, self.current = self.current, None
        if p is not None and p.poll() is None:
            p.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(5)


@dataclass
class Run:
    config: str
    size: str
    rep: int
    attempt: int
    started: str
    wall_seconds: float
    requests: int
    rps: float
    p50_us: float
    p99_us: float
    proxy_cpu_seconds: float
    cpu_us_per_request: float
    proxy_cores: float
    origin_cores: float
    wrk_cores: float
    other_cores: float
    machine: dict[str, Any]
    problems: list[str]
    noisy: bool
    quiet_wait_seconds: float
    busy_cores_before: float
    wrk_output: str = field(repr=False)

    @property
    def ok(self) -> bool:
        return not self.problems


def measure(
    runner: Runner,
    proxy: Proc,
    origin: Proc,
    port: int,
    size: str,
    args: argparse.Namespace,
    rep: int,
    attempt: int,
) -> Run:
    path, _ = SIZES[size]
    waited, idle_busy = wait_quiet(args.max_other, args.quiet_wait)
    runner.wrk(port, path, args.warmup, args.connections)  # warm-up, discarded
    started = dt.datetime.now().isoformat(timespec="seconds")
    p0, o0, m0 = tree_cpu_seconds(proxy.pid), tree_cpu_seconds(origin.pid), cpu_times()
    t0 = time.monotonic()
    w = runner.wrk(port, path, args.duration, args.connections)
    wall = time.monotonic() - t0
    p1, o1, m1 = tree_cpu_seconds(proxy.pid), tree_cpu_seconds(origin.pid), cpu_times()
    machine = machine_delta(m0, m1, wall)
    proxy_cpu, origin_cpu = p1 - p0, o1 - o0
    ours = (proxy_cpu + origin_cpu + w.cpu_seconds) / wall
    other = max(0.0, machine.busy_cores - ours)
    problems = w.problems()
    if not proxy.alive():
        problems.append(f"{proxy.name} exited")
    return Run(
        config=proxy.name,
        size=size,
        rep=rep,
        attempt=attempt,
        started=started,
        wall_seconds=round(wall, 3),
        requests=w.requests,
        rps=w.rps,
        p50_us=w.p50_us,
        p99_us=w.p99_us,
        proxy_cpu_seconds=round(proxy_cpu, 3),
        cpu_us_per_request=round(proxy_cpu / w.requests * 1e6, 2) if w.requests else float("nan"),
        proxy_cores=round(proxy_cpu / wall, 3),
        origin_cores=round(origin_cpu / wall, 3),
        wrk_cores=round(w.cpu_seconds / wall, 3),
        other_cores=round(other, 3),
        machine=asdict(machine),
        problems=problems,
        noisy=other > args.max_other,
        quiet_wait_seconds=waited,
        busy_cores_before=idle_busy,
        wrk_output=w.output,
    )


# --------------------------------------------------------------------------- reporting


@dataclass
class Summary:
    config: str
    size: str
    runs: int
    used: int
    rps: float
    rps_min: float
    rps_max: float
    p50_us: float
    p99_us: float
    cpu_us: float
    proxy_cores: float
    other_cores: float
    note: str


def _median(xs: list[float]) -> float:
    xs = [x for x in xs if x == x]  # drop NaN
    return statistics.median(xs) if xs else float("nan")


def summarize(runs: list[Run], config: str, size: str) -> Summary:
    mine = [r for r in runs if r.config == config and r.size == size]
    ok = [r for r in mine if r.ok]
    clean = [r for r in ok if not r.noisy]
    use, note = clean, ""
    if not clean and ok:
        use, note = ok, "noisy runs only"
    if not ok:
        note = "no successful run"
    nan = float("nan")
    return Summary(
        config=config,
        size=size,
        runs=len(mine),
        used=len(use),
        rps=_median([r.rps for r in use]),
        rps_min=min((r.rps for r in use), default=nan),
        rps_max=max((r.rps for r in use), default=nan),
        p50_us=_median([r.p50_us for r in use]),
        p99_us=_median([r.p99_us for r in use]),
        cpu_us=_median([r.cpu_us_per_request for r in use]),
        proxy_cores=_median([r.proxy_cores for r in use]),
        other_cores=_median([r.other_cores for r in use]),
        note=note,
    )


def _fmt_us(us: float) -> str:
    if us != us:
        return "n/a"
    return f"{us / 1000:.2f}ms" if us >= 1000 else f"{us:.0f}us"


def print_table(summaries: list[Summary]) -> None:
    head = (
        f"{'config':<9} {'size':<5} {'runs':>5} {'req/s':>9} {'min-max':>15} "
        f"{'p50':>8} {'p99':>8} {'CPU us/req':>10} {'proxy cores':>11} {'other cores':>11}"
    )
    for size in SIZES:
        print(f"\n== {size} body ({SIZES[size][1]} bytes, GET {SIZES[size][0]}) ==")
        print(head)
        for s in (x for x in summaries if x.size == size):
            spread = f"{s.rps_min:,.0f}-{s.rps_max:,.0f}" if s.used else "n/a"
            cpu = f"{s.cpu_us:.1f}" if s.cpu_us == s.cpu_us else "n/a"
            print(
                f"{s.config:<9} {s.size:<5} {f'{s.used}/{s.runs}':>5} {s.rps:>9,.0f} "
                f"{spread:>15} {_fmt_us(s.p50_us):>8} {_fmt_us(s.p99_us):>8} {cpu:>10} "
                f"{s.proxy_cores:>11.2f} {s.other_cores:>11.2f}"
                + (f"  ({s.note})" if s.note else "")
            )


def ratios(summaries: list[Summary]) -> tuple[dict[str, float | None], dict[str, float | None]]:
    by = {(s.config, s.size): s for s in summaries}

    def ratio(cfg: str, size: str, attr: str) -> float | None:
        a, b = by.get((cfg, size)), by.get(("nginx", size))
        if a is None or b is None or not a.used or not b.used:
            return None
        x, y = getattr(a, attr), getattr(b, attr)
        return x / y if y and x == x and y == y else None

    info: dict[str, float | None] = {}
    for size in SIZES:
        info[f"baseline-{size}/nginx"] = ratio("baseline", size, "rps")
        info[f"p99-baseline-{size}/nginx"] = ratio("baseline", size, "p99_us")
        info[f"cpu-{size}/nginx"] = ratio("ramparts", size, "cpu_us")
        info[f"cpu-baseline-{size}/nginx"] = ratio("baseline", size, "cpu_us")
    bar: dict[str, float | None] = {}
    for size in SIZES:
        bar[f"proxy-{size}/nginx"] = ratio("ramparts", size, "rps")
    for size in SIZES:
        bar[f"p99-{size}/nginx"] = ratio("ramparts", size, "p99_us")
    return info, bar


def nginx_main(scratch: Path, http_block: str, comment: str, modules: str = "") -> str:
    """A whole nginx.conf for another benchmark: one worker in the foreground, every path
    in ``scratch`` (its temp directories prepared), ``http_block`` inside ``http {}``."""
    prepare_nginx_dirs(scratch)
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"""# {comment}
{modules}{user}worker_processes 1;
daemon off;
pid {scratch}/nginx.pid;
error_log {scratch}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    client_body_temp_path {scratch}/nginx-tmp/client_body;
    proxy_temp_path {scratch}/nginx-tmp/proxy;
    fastcgi_temp_path {scratch}/nginx-tmp/fastcgi;
    uwsgi_temp_path {scratch}/nginx-tmp/uwsgi;
    scgi_temp_path {scratch}/nginx-tmp/scgi;
{http_block}
}}
"""


def wrk_url(url: str, seconds: float, connections: int, extra: Sequence[str] = ()) -> Wrk:
    """One bounded wrk run against ``url`` on the load core (other benchmarks' helper)."""
    argv = ["taskset", "-c", LOAD_CORE, "wrk", "-t1", f"-c{connections}"]
    argv += [f"-d{seconds:g}s", "--latency", *extra, url]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    return parse_wrk(p.stdout + p.stderr, p.returncode, 0.0)


def run_options(ap: argparse.ArgumentParser, connections: int) -> argparse.Namespace:
    """The options every side-by-side benchmark takes, parsed (``--quick``: 3 s, 1 rep)."""
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--connections", type=int, default=connections)
    ap.add_argument("--quick", action="store_true", help="--duration 3 --reps 1")
    args = ap.parse_args()
    if args.quick:
        args.duration, args.reps = 3.0, 1
    return args


def _json_safe(value: Any) -> Any:
    """NaN (no data) as null, so the file is strict JSON."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def _ratio_line(name: str, value: float | None) -> str:
    return f"ratio {name}: {value:.2f}" if value is not None else f"ratio {name}: n/a"


# --------------------------------------------------------------------------- setup


def ensure_tools() -> None:
    missing = []
    if not os.path.exists(NGINX):
        missing.append("nginx")
    if shutil.which("wrk") is None:
        missing.append("wrk")
    if shutil.which("taskset") is None:
        missing.append("util-linux")
    if not missing:
        return
    if os.geteuid() != 0:
        raise SystemExit(f"missing {', '.join(missing)}: install them (apt-get install ...)")
    print(f"installing {' '.join(missing)} with apt-get", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env, timeout=900)


def tool_versions() -> dict[str, str]:
    def run(argv: list[str]) -> str:
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"<{exc}>"
        return (p.stdout + p.stderr).strip().splitlines()[0] if (p.stdout + p.stderr) else ""

    return {
        "nginx": run([NGINX, "-v"]),
        "wrk": run(["wrk", "--version"]),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "ramparts_git": run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"]),
        "cpus": str(os.cpu_count()),
    }


def _size(text: str) -> int:
    m = re.fullmatch(r"(\d+)([kKmM]?)", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 64k)")
    return int(m.group(1)) * {"": 1, "k": 1024, "m": 1024 * 1024}[m.group(2).lower()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up before each")
    p.add_argument("--reps", type=int, default=3, help="interleaved repetitions")
    p.add_argument("--connections", type=int, default=50, help="wrk connections (-c)")
    p.add_argument("--quick", action="store_true", help="a fast check: 3 s runs, 2 reps")
    p.add_argument("--only", default=",".join(CONFIGS), help=f"comma list of {', '.join(CONFIGS)}")
    p.add_argument(
        "--max-other",
        type=float,
        default=NOISY_OTHER_CORES,
        help="CPU (cores) taken by other processes above which a run is noisy",
    )
    p.add_argument("--retries", type=int, default=2, help="re-runs of a noisy or failed run")
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=30.0,
        help="before each run, wait up to this many seconds for other load to fall away",
    )
    p.add_argument(
        "--sizes",
        default=",".join(SIZES),
        help=f"comma list of body sizes to measure ({', '.join(SIZES)})",
    )
    p.add_argument(
        "--keepalive-requests",
        type=int,
        default=1000,
        help="requests per client and upstream connection, for both proxies (default: "
        "1000, the default of both)",
    )
    p.add_argument(
        "--nginx-buffers",
        type=_size,
        default=65536,
        metavar="SIZE",
        help="nginx proxy_buffer_size / proxy_buffers 8 SIZE; default 64k, which makes "
        "nginx about twice as fast on 100 KB bodies as its own 4k (0 keeps nginx's own): "
        "the bar is measured against the stronger peer",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.reps = 3.0, 2
    args.only = [c.strip() for c in args.only.split(",") if c.strip()]
    wanted = {s.strip() for s in args.sizes.split(",") if s.strip()}
    if not wanted or wanted - set(SIZES):
        p.error(f"--sizes: choose from {', '.join(SIZES)}")
    for name in list(SIZES):  # one run of a script: narrowing the table is harmless
        if name not in wanted:
            del SIZES[name]
    unknown = set(args.only) - set(CONFIGS)
    if unknown or not args.only:
        p.error(f"--only takes {', '.join(CONFIGS)}; got {', '.join(sorted(unknown)) or 'none'}")
    if min(args.reps, args.connections, args.keepalive_requests) < 1 or args.duration <= 0:
        p.error("--reps, --duration, --connections and --keepalive-requests must be positive")
    if args.retries < 0 or args.quiet_wait < 0 or args.warmup < 0:
        p.error("--retries, --quiet-wait and --warmup cannot be negative")
    return args


def _raise_interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def started(procs: list[Proc], runner: Runner) -> Iterator[None]:
    """Whatever happens inside, stop wrk and every process in ``procs`` (by id) after."""
    old = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        runner.kill()
        for proc in reversed(procs):
            proc.stop()
        signal.signal(signal.SIGTERM, old)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if (os.cpu_count() or 1) < 2:
        print("warning: fewer than 2 CPUs; pinning proxy and load apart is impossible")
    ensure_tools()
    configs = [c for c in CONFIGS if c in args.only]
    keepalive = max(args.connections, 32)
    scratch = Path(tempfile.mkdtemp(prefix="ramparts-bench-"))
    origin_port, *ports = free_ports(1 + len(configs))
    port_of = dict(zip(configs, ports, strict=True))
    procs: list[Proc] = []
    runner = Runner()
    runs: list[Run] = []
    texts: dict[str, str] = {}
    upstream_headers: dict[str, list[str]] = {}
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    interrupted = False
    error: str | None = None
    print(
        f"proxy benchmark: {', '.join(configs)}; wrk -t1 -c{args.connections} "
        f"-d{args.duration:g}s --latency; {args.reps} reps, {args.warmup:g} s warm-up; "
        f"proxy on core {PROXY_CORE}, wrk + origin on core {LOAD_CORE}; keepalive_requests "
        f"{args.keepalive_requests}; nginx buffers {args.nginx_buffers or 'default'}; "
        f"scratch {scratch}",
        flush=True,
    )
    with started(procs, runner):
        try:
            origin = spawn(
                "origin",
                [PYTHON, "-m", "ramparts.cli", "origin", "--listen", f"{HOST}:{origin_port}"],
                LOAD_CORE,
                scratch,
            )
            procs.append(origin)
            wait_ready(origin, origin_port)
            check_body(origin_port, "origin")
            proxies: dict[str, Proc] = {}
            for cfg in configs:
                port = port_of[cfg]
                if cfg == "nginx":
                    prepare_nginx_dirs(scratch)
                    texts["nginx"] = nginx_conf(
                        scratch,
                        port,
                        origin_port,
                        keepalive,
                        args.keepalive_requests,
                        args.nginx_buffers,
                    )
                    conf = scratch / "nginx.conf"
                    conf.write_text(texts["nginx"])
                    subprocess.run(
                        [NGINX, "-t", "-q", "-p", str(scratch), "-c", str(conf)],
                        check=True,
                        timeout=30,
                    )
                    argv = [NGINX, "-p", str(scratch), "-c", str(conf)]
                elif cfg == "ramparts":
                    texts["ramparts"] = ramparts_conf(
                        port, origin_port, keepalive, args.keepalive_requests
                    )
                    conf = scratch / "ramparts.yaml"
                    conf.write_text(texts["ramparts"])
                    argv = [PYTHON, "-m", "ramparts.cli", "serve", str(conf)]
                else:
                    script = BENCH / "baseline_passthrough.py"
                    argv = [PYTHON, str(script), str(port), HOST, str(origin_port)]
                proc = spawn(cfg, argv, PROXY_CORE, scratch)
                procs.append(proc)
                proxies[cfg] = proc
                wait_ready(proc, port)
                check_body(port, cfg)
                upstream_headers[cfg] = upstream_view(port)
                proc.pause()
            if {"nginx", "ramparts"} <= upstream_headers.keys() and (
                upstream_headers["nginx"] != upstream_headers["ramparts"]
            ):
                print(
                    "note: nginx and ramparts send different upstream headers: "
                    f"nginx {upstream_headers['nginx']}, ramparts {upstream_headers['ramparts']}"
                )

            total = len(SIZES) * len(configs) * args.reps
            n = 0
            for rep in range(args.reps):
                order = configs[rep % len(configs) :] + configs[: rep % len(configs)]
                sizes = list(SIZES) if rep % 2 == 0 else list(reversed(SIZES))
                for size in sizes:
                    for cfg in order:
                        n += 1
                        proc = proxies[cfg]
                        for attempt in range(args.retries + 1):
                            proc.resume()
                            try:
                                run = measure(
                                    runner, proc, origin, port_of[cfg], size, args, rep, attempt
                                )
                            finally:
                                proc.pause()
                            runs.append(run)
                            flags = "; ".join(run.problems) or ("noisy" if run.noisy else "ok")
                            print(
                                f"[{n}/{total}] rep {rep + 1} {size:<5} {cfg:<9} "
                                f"{run.rps:>9,.0f} req/s  p50 {_fmt_us(run.p50_us):>8}  "
                                f"p99 {_fmt_us(run.p99_us):>8}  {run.cpu_us_per_request:6.1f} "
                                f"us CPU/req  other {run.other_cores:.2f} cores  [{flags}]",
                                flush=True,
                            )
                            if run.ok and not run.noisy:
                                break
                            if not run.ok and attempt >= 1:
                                break  # a failure that repeats is a finding, not noise
                            if not proc.alive():
                                raise RuntimeError(f"{cfg} exited:\n{proc.tail()}")
        except KeyboardInterrupt:
            interrupted = True
            print("\ninterrupted: stopping what this script started", flush=True)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        finally:
            logs = {p.name: p.tail(40) for p in procs}
            nginx_errors = scratch / "nginx-error.log"
            if nginx_errors.exists():
                logs["nginx-error.log"] = "\n".join(
                    nginx_errors.read_text(errors="replace").splitlines()[-40:]
                )

    summaries = [summarize(runs, c, s) for s in SIZES for c in configs]
    info, bar = ratios(summaries)
    failed = [r for r in runs if not r.ok]
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"proxy-{stamp}.json"
    doc = {
        "started": stamp,
        "interrupted": interrupted,
        "error": error,
        "params": {
            "duration": args.duration,
            "warmup": args.warmup,
            "reps": args.reps,
            "connections": args.connections,
            "threads": 1,
            "configs": configs,
            "max_other_cores": args.max_other,
            "retries": args.retries,
            "upstream_keepalive": keepalive,
            "keepalive_requests": args.keepalive_requests,
            "nginx_buffers": args.nginx_buffers or "default",
            "quiet_wait": args.quiet_wait,
            "proxy_core": PROXY_CORE,
            "load_core": LOAD_CORE,
        },
        "versions": tool_versions(),
        "configs": texts,
        "upstream_headers": upstream_headers,
        "runs": [asdict(r) for r in runs],
        "summary": [asdict(s) for s in summaries],
        "ratios": {**info, **bar},
        "logs": logs,
    }
    out.write_text(json.dumps(_json_safe(doc), indent=2) + "\n")
    shutil.rmtree(scratch, ignore_errors=True)

    print_table(summaries)
    print(f"\nraw results: {out.relative_to(ROOT)}")
    if failed:
        print(f"\nFAILED RUNS ({len(failed)}), left out of the medians:")
        for r in failed:
            print(f"  rep {r.rep + 1} {r.size} {r.config} attempt {r.attempt}: {r.problems}")
    noisy = [r for r in runs if r.noisy and r.ok]
    if noisy:
        print(f"\n{len(noisy)} noisy run(s) (other processes took > {args.max_other} cores)")
    print("\nreference (info, not part of the bar):")
    for name, value in info.items():
        print("  " + _ratio_line(name, value))
    print()
    shaky = [f"{s.config} {s.size}" for s in summaries if s.note and s.config != "baseline"]
    if shaky:
        print(f"warning: medians from noisy or no runs for {', '.join(shaky)}: see above")
    for name, value in bar.items():
        print(_ratio_line(name, value))
    for name, text in logs.items():
        if name == "nginx-error.log" and text.strip():
            print(f"\nnginx error log (last lines; see the JSON):\n{text[-1500:]}")
    if error:
        print(f"\nERROR: {error}")
    if interrupted:
        return 130
    return 1 if error or failed or any(v is None for v in bar.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
