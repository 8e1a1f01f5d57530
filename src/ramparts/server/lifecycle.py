"""Process lifecycle: run one worker in-process, or a master that forks N workers sharing
the ports with SO_REUSEPORT. Signals: SIGTERM/SIGINT stop gracefully (stop accepting,
finish in-flight requests up to the shutdown timeout), SIGHUP reloads (the new config is
validated first; a bad one is refused with a logged reason and the old plan keeps serving),
SIGUSR1 reopens the access log."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
import time
from pathlib import Path

from ..config.plan import Plan, load_plan
from ..errors import ConfigError
from .worker import Worker

__all__ = ["run", "run_worker"]

log = logging.getLogger("ramparts")


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def run(path: str | Path, plan: Plan) -> int:
    """Serve ``plan`` (loaded from ``path``) until told to stop; returns the exit code."""
    cfg = plan.config
    if (
        cfg.workers > 1
        and cfg.store.backend == "memory"
        and (cfg.limit_req_zones or cfg.limit_conn_zones or cfg.bans)
    ):
        log.warning(
            "limits and automatic bans are counted per worker with the memory store (%d "
            "workers: each allows the full rate); use store: {backend: redis} to share them",
            cfg.workers,
        )
    if plan.config.workers <= 1:
        return run_worker(path, plan)
    return _Master(path, plan).run()


def run_worker(path: str | Path, plan: Plan, ready_fd: int | None = None) -> int:
    _install_uvloop()
    return asyncio.run(_worker_main(Path(path), plan, ready_fd))


async def _worker_main(path: Path, plan: Plan, ready_fd: int | None) -> int:
    loop = asyncio.get_running_loop()
    # Requests allocate many short-lived objects and almost no cycles: collect the young
    # generation rarely, and keep start-up objects out of every collection.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    worker = Worker(plan, loop)
    stop = asyncio.Event()
    started = asyncio.Event()

    async def reload() -> None:
        await started.wait()  # never two listener syncs at once
        try:
            new = load_plan(path)
        except ConfigError as exc:
            log.error("reload refused, the running configuration stays: %s", exc)
            return
        try:
            await worker.reload(new)
        except RuntimeError as exc:
            log.error("reload refused, the running configuration stays: %s", exc)
            return
        log.info("reloaded %s", path)

    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(reload()))
    loop.add_signal_handler(signal.SIGUSR1, worker.reopen_logs)
    # The handlers are in place before the first client can connect: a signal sent as soon
    # as the port answers (a SIGHUP's default action is to terminate) is handled, not fatal.
    try:
        await worker.start()
    except OSError as exc:
        log.error("cannot listen: %s", exc)
        return 2
    started.set()
    log.info("worker %d ready", os.getpid())
    if ready_fd is not None:
        os.write(ready_fd, b"r")
        os.close(ready_fd)
    await stop.wait()
    log.info("worker %d shutting down", os.getpid())
    await worker.shutdown(worker.plan.config.shutdown_timeout)
    return 0


class _Master:
    """Forks and supervises workers; relays signals; validates reloads first."""

    def __init__(self, path: str | Path, plan: Plan) -> None:
        self.path = Path(path)
        self.plan = plan
        self.children: dict[int, int] = {}  # pid -> slot
        self.stopping = False
        self.pending: list[int] = []

    def _spawn(self, slot: int) -> None:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker
            os.close(r)
            for sig in (
                signal.SIGTERM,
                signal.SIGINT,
                signal.SIGHUP,
                signal.SIGUSR1,
                signal.SIGCHLD,
            ):
                signal.signal(sig, signal.SIG_DFL)
            code = 1
            try:
                code = run_worker(self.path, self.plan, ready_fd=w)
            except BaseException:
                log.exception("worker crashed")
            finally:
                logging.shutdown()
                os._exit(code)
        os.close(w)
        os.read(r, 1)  # wait until it listens (or dies)
        os.close(r)
        self.children[pid] = slot

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGCHLD):
            signal.signal(sig, self._on_signal)
        for slot in range(self.plan.config.workers):
            self._spawn(slot)
        log.info("master %d running %d workers", os.getpid(), len(self.children))
        while self.children or not self.stopping:
            while self.pending:
                self._handle(self.pending.pop(0))
            self._reap()
            if self.stopping and not self.children:
                break
            time.sleep(0.1)
        return 0

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.pending.append(signum)

    def _handle(self, signum: int) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            self.stopping = True
            self._tell(signal.SIGTERM)
        elif signum == signal.SIGHUP:
            try:
                plan = load_plan(self.path)
            except ConfigError as exc:
                log.error("reload refused, the running configuration stays: %s", exc)
                return
            self.plan = plan
            self._tell(signal.SIGHUP)
            want = plan.config.workers
            while len(self.children) < want:
                used = set(self.children.values())
                self._spawn(next(i for i in range(want) if i not in used))
            for pid, slot in list(self.children.items()):
                if slot >= want:
                    os.kill(pid, signal.SIGTERM)
        elif signum == signal.SIGUSR1:
            self._tell(signal.SIGUSR1)

    def _tell(self, signum: int) -> None:
        for pid in list(self.children):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            slot = self.children.pop(pid, None)
            if slot is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            if not self.stopping and slot < self.plan.config.workers:
                log.error("worker %d exited (%d); starting another", pid, code)
                if code == 2:
                    log.error("the worker could not listen; giving up")
                    self.stopping = True
                    self._tell(signal.SIGTERM)
                    continue
                time.sleep(0.5)
                self._spawn(slot)


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
