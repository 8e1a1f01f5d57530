"""The kernel side of the firewall: the one module that runs ``nft``. It applies a rule set
as one nftables table in one transaction, keeps the table it replaces on disk, checks that
the kernel holds what was loaded, and puts the previous table back when loading or checking
fails; :func:`rollback` restores the kept copy on demand.

How :func:`apply` goes:

1. compile the rule set (:func:`~ramparts.firewall.formats.nftables.compile_nftables`;
   a rule nft cannot express is refused before the kernel is touched);
2. with ``dry_run``, hand the script to ``nft -c`` (the kernel checks it, nothing changes)
   and stop;
3. save the current table (``nft -j list table``, or "absent") to ``saved``;
4. load the script with ``nft -f``: ``table F T; delete table F T; table F T {...}`` is one
   transaction, so the kernel switches from the old table to the new one at once, or not
   at all;
5. list the table again and compare it with what was compiled: the chain, its hook and
   policy, the rules in order (by their comments) and every named set's element count;
6. if 4 or 5 fails, restore the saved table (one ``nft -j -f`` transaction) and raise
   :class:`ApplyError` saying whether the restore succeeded.

Only our table is ever touched: other tables (Docker's, firewalld's) stay as they are. With
``netns`` every command runs as ``ip netns exec NETNS nft ...``. No asyncio, no sockets:
``nft`` talks netlink for us.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import RampartsError
from .formats.nftables import SET_THRESHOLD, NftProgram, compile_nftables
from .model import RuleSet

__all__ = [
    "DEFAULT_SAVED",
    "ApplyError",
    "ApplyResult",
    "KernelError",
    "Nft",
    "RollbackResult",
    "apply",
    "apply_program",
    "rollback",
]

#: Where :func:`apply` keeps the table it replaced, for :func:`rollback`.
DEFAULT_SAVED = Path("/var/lib/ramparts/nft-previous.json")
_SAVED_VERSION = 1


class KernelError(RampartsError):
    """An ``nft`` command failed; ``stderr`` is what it said."""

    def __init__(self, reason: str, *, command: Sequence[str] = (), stderr: str = "") -> None:
        self.reason = reason
        self.command = tuple(command)
        self.stderr = stderr.strip()
        detail = f": {self.stderr}" if self.stderr else ""
        super().__init__(f"{reason}{detail}")


class ApplyError(KernelError):
    """Loading or checking the new table failed; ``restored`` says whether the previous
    table is back in place."""

    def __init__(self, reason: str, *, restored: bool, stderr: str = "") -> None:
        self.restored = restored
        state = (
            "the previous table was restored"
            if restored
            else "RESTORING THE PREVIOUS TABLE FAILED too"
        )
        super().__init__(f"{reason}; {state}", stderr=stderr)


@dataclass(frozen=True, slots=True)
class Nft:
    """Runs the ``nft`` command, inside network namespace ``netns`` when given."""

    netns: str | None = None
    binary: str = "nft"
    timeout: float = 120.0

    def command(self, args: Sequence[str]) -> list[str]:
        base = [self.binary, *args]
        return ["ip", "netns", "exec", self.netns, *base] if self.netns else base

    def run(self, args: Sequence[str], stdin: str | None = None) -> str:
        """stdout of ``nft ARGS``; a failure raises KernelError with nft's message."""
        cmd = self.command(args)
        try:
            done = subprocess.run(
                cmd,
                input=stdin,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
        except FileNotFoundError:
            raise KernelError(f"{cmd[0]} is not installed", command=cmd) from None
        except subprocess.TimeoutExpired:
            raise KernelError(f"nft did not finish in {self.timeout:g} s", command=cmd) from None
        if done.returncode != 0:
            raise KernelError(
                f"nft {' '.join(args)} failed (exit {done.returncode})",
                command=cmd,
                stderr=done.stderr,
            )
        return done.stdout

    def load(self, script: str) -> None:
        """``nft -f -``: the script as one transaction."""
        self.run(["-f", "-"], stdin=script)

    def check(self, script: str) -> None:
        """``nft -c -f -``: the kernel checks the script; nothing changes."""
        self.run(["-c", "-f", "-"], stdin=script)

    def load_json(self, document: dict[str, Any]) -> None:
        """``nft -j -f -``: JSON commands as one transaction."""
        self.run(["-j", "-f", "-"], stdin=json.dumps(document))

    def tables(self) -> set[tuple[str, str]]:
        listing = _parse_listing(self.run(["-j", "list", "tables"]))
        return {
            (str(t["family"]), str(t["name"]))
            for item in listing
            if isinstance(t := item.get("table"), dict)
        }

    def list_table(self, family: str, table: str) -> list[dict[str, Any]] | None:
        """The items of ``nft -j list table`` (metainfo left out), None if absent."""
        if (family, table) not in self.tables():
            return None
        items = _parse_listing(self.run(["-j", "list", "table", family, table]))
        return [item for item in items if "metainfo" not in item]


def _parse_listing(text: str) -> list[dict[str, Any]]:
    try:
        doc = json.loads(text)
        items = doc["nftables"]
    except (ValueError, KeyError, TypeError):
        raise KernelError("nft -j printed something that is not an nftables listing") from None
    return [item for item in items if isinstance(item, dict)]


# -- what a table holds ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _TableView:
    chains: dict[str, dict[str, Any]]
    comments: dict[str, list[str]]  # chain -> rule comments in order
    set_sizes: dict[str, int]

    @classmethod
    def of(cls, items: list[dict[str, Any]]) -> _TableView:
        chains: dict[str, dict[str, Any]] = {}
        comments: dict[str, list[str]] = {}
        sizes: dict[str, int] = {}
        for item in items:
            if isinstance(c := item.get("chain"), dict):
                chains[str(c.get("name"))] = c
            elif isinstance(r := item.get("rule"), dict):
                comments.setdefault(str(r.get("chain")), []).append(str(r.get("comment", "")))
            elif isinstance(s := item.get("set"), dict):
                elems = s.get("elem", [])
                sizes[str(s.get("name"))] = len(elems) if isinstance(elems, list) else 1
        return cls(chains, comments, sizes)

    def rules(self) -> int:
        return sum(len(c) for c in self.comments.values())


def _differences(program: NftProgram, items: list[dict[str, Any]] | None) -> list[str]:
    """How the listed table differs from the compiled program (empty: it is the same)."""
    if items is None:
        return [f"table {program.family} {program.table} is not there"]
    view = _TableView.of(items)
    out: list[str] = []
    chain = view.chains.get(program.chain)
    if chain is None:
        return [f"chain {program.chain} is missing"]
    for key, want in (("hook", program.hook), ("policy", program.policy), ("type", "filter")):
        if chain.get(key) != want:
            out.append(f"chain {program.chain}: {key} is {chain.get(key)!r}, not {want!r}")
    got = view.comments.get(program.chain, [])
    want_comments = [r.comment for r in program.rules]
    if len(got) != len(want_comments):
        out.append(f"chain {program.chain} holds {len(got)} rule(s), {len(want_comments)} loaded")
    elif got != want_comments:
        at = next(i for i, (a, b) in enumerate(zip(got, want_comments, strict=True)) if a != b)
        out.append(
            f"chain {program.chain}: rule {at + 1} is {got[at]!r}, {want_comments[at]!r} loaded"
        )
    for s in program.sets:
        size = view.set_sizes.get(s.name)
        if size != len(s.elements):
            out.append(f"set {s.name} holds {size} element(s), {len(s.elements)} loaded")
    extra = sorted(set(view.chains) - {program.chain})
    if extra:
        out.append(f"unexpected chains {', '.join(extra)}")
    return out


# -- apply --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What :func:`apply` did (or, with ``dry_run``, would do)."""

    family: str
    table: str
    hook: str
    netns: str | None
    dry_run: bool
    rules: int  # nft rules in our chain now
    sets: int
    elements: int
    previous: int | None  # nft rules in the table before; None: there was no table
    added: tuple[str, ...]  # rule comments that are new
    removed: tuple[str, ...]  # rule comments that are gone
    saved: Path | None  # where the previous table was kept
    notes: tuple[str, ...] = ()

    def summary(self) -> str:
        where = f" in netns {self.netns}" if self.netns else ""
        verb = "would load" if self.dry_run else "loaded"
        before = "no table before" if self.previous is None else f"{self.previous} rule(s) before"
        lines = [
            f"{verb} table {self.family} {self.table}{where}: chain {self.hook} with "
            f"{self.rules} rule(s), {self.sets} set(s) of {self.elements} element(s) "
            f"({before}; {len(self.added)} added, {len(self.removed)} removed)"
        ]
        if self.saved is not None:
            lines.append(f"previous table kept in {self.saved} (ramparts fw rollback)")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def apply(
    ruleset: RuleSet,
    *,
    table: str = "ramparts",
    hook: str = "input",
    family: str = "inet",
    netns: str | None = None,
    dry_run: bool = False,
    counters: bool = False,
    set_threshold: int = SET_THRESHOLD,
    saved: Path = DEFAULT_SAVED,
    nft: Nft | None = None,
) -> ApplyResult:
    """Load ``ruleset`` into nftables as table ``family table`` with one chain on ``hook``
    (see the module for the steps). ConfigError if the rule set cannot be written for
    nftables; KernelError if nft fails before anything changed; ApplyError if loading or
    the check after it failed (the previous table is then restored)."""
    program = compile_nftables(
        ruleset,
        table=table,
        hook=hook,
        family=family,
        counters=counters,
        set_threshold=set_threshold,
    )
    return apply_program(program, netns=netns, dry_run=dry_run, saved=saved, nft=nft)


def apply_program(
    program: NftProgram,
    *,
    netns: str | None = None,
    dry_run: bool = False,
    saved: Path = DEFAULT_SAVED,
    nft: Nft | None = None,
) -> ApplyResult:
    """:func:`apply` for an already compiled program."""
    runner = nft if nft is not None else Nft(netns)
    script = program.script()
    previous = runner.list_table(program.family, program.table)
    before = _TableView.of(previous) if previous is not None else None
    if dry_run:
        runner.check(script)
        return _result(program, runner, before, dry_run=True, saved=None)
    _save(saved, runner.netns, program.family, program.table, previous)
    try:
        runner.load(script)
    except KernelError as exc:
        restored = _restore_if_changed(runner, program.family, program.table, previous)
        raise ApplyError(
            "nft refused the new table", restored=restored, stderr=exc.stderr
        ) from None
    try:
        problems = _differences(program, runner.list_table(program.family, program.table))
    except KernelError as exc:
        problems = [f"listing the table failed: {exc}"]
    if problems:
        restored = _restore(runner, program.family, program.table, previous)
        raise ApplyError(
            "the kernel does not hold what was loaded: " + "; ".join(problems),
            restored=restored,
        )
    return _result(program, runner, before, dry_run=False, saved=saved)


def _result(
    program: NftProgram,
    runner: Nft,
    before: _TableView | None,
    *,
    dry_run: bool,
    saved: Path | None,
) -> ApplyResult:
    new = [r.comment for r in program.rules]
    old = [c for cs in before.comments.values() for c in cs] if before is not None else []
    return ApplyResult(
        family=program.family,
        table=program.table,
        hook=program.hook,
        netns=runner.netns,
        dry_run=dry_run,
        rules=len(program.rules),
        sets=len(program.sets),
        elements=program.elements,
        previous=before.rules() if before is not None else None,
        added=tuple(c for c in dict.fromkeys(new) if c not in set(old)),
        removed=tuple(c for c in dict.fromkeys(old) if c not in set(new)),
        saved=saved,
        notes=program.notes,
    )


# -- keeping and restoring the previous table ----------------------------------------------


def _save(
    path: Path,
    netns: str | None,
    family: str,
    table: str,
    previous: list[dict[str, Any]] | None,
) -> None:
    doc = {
        "ramparts": {
            "version": _SAVED_VERSION,
            "netns": netns,
            "family": family,
            "table": table,
            "saved_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        },
        "previous": None if previous is None else {"nftables": previous},
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(doc, indent=1) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        raise KernelError(
            f"cannot keep the previous table in {path}: {exc.strerror or exc}"
        ) from None


def _restore_commands(
    family: str, table: str, previous: list[dict[str, Any]] | None
) -> dict[str, Any]:
    """One transaction: our table gone, then (if there was one) rebuilt as listed."""
    ident = {"family": family, "name": table}
    cmds: list[dict[str, Any]] = [{"add": {"table": ident}}, {"delete": {"table": ident}}]
    for item in previous or []:
        if len(item) != 1:
            continue
        ((kind, body),) = item.items()
        if kind == "metainfo" or not isinstance(body, dict):
            continue
        cmds.append({"add": {kind: {k: v for k, v in body.items() if k != "handle"}}})
    return {"nftables": cmds}


def _restore(runner: Nft, family: str, table: str, previous: list[dict[str, Any]] | None) -> bool:
    """Put the previous table back (or remove ours if there was none); True if the kernel
    then holds as many rules as before."""
    try:
        runner.load_json(_restore_commands(family, table, previous))
        now = runner.list_table(family, table)
    except KernelError:
        return False
    if previous is None:
        return now is None
    return now is not None and _TableView.of(now).rules() == _TableView.of(previous).rules()


def _restore_if_changed(
    runner: Nft, family: str, table: str, previous: list[dict[str, Any]] | None
) -> bool:
    """After a failed ``nft -f`` (which changes nothing: one transaction), restore only
    if the table is not as it was."""
    try:
        now = runner.list_table(family, table)
    except KernelError:
        return _restore(runner, family, table, previous)
    if _same_table(now, previous):
        return True
    return _restore(runner, family, table, previous)


def _same_table(a: list[dict[str, Any]] | None, b: list[dict[str, Any]] | None) -> bool:
    if a is None or b is None:
        return a is b
    return _without_handles(a) == _without_handles(b)


def _without_handles(items: list[dict[str, Any]]) -> list[Any]:
    out = []
    for item in items:
        out.append(
            {
                k: {kk: vv for kk, vv in v.items() if kk != "handle"} if isinstance(v, dict) else v
                for k, v in item.items()
            }
        )
    return out


@dataclass(frozen=True, slots=True)
class RollbackResult:
    family: str
    table: str
    netns: str | None
    rules: int | None  # rules in the restored table; None: the table was removed
    saved_at: str

    def summary(self) -> str:
        where = f" in netns {self.netns}" if self.netns else ""
        if self.rules is None:
            what = "removed (there was none before)"
        else:
            what = f"restored with {self.rules} rule(s)"
        return f"table {self.family} {self.table}{where} {what}, as saved at {self.saved_at}"


def rollback(
    saved: Path = DEFAULT_SAVED, *, netns: str | None = None, nft: Nft | None = None
) -> RollbackResult:
    """Put back the table :func:`apply` kept in ``saved`` (in the namespace it was saved
    from, unless ``netns`` says otherwise)."""
    try:
        doc = json.loads(saved.read_text())
        meta = doc["ramparts"]
        family, table = str(meta["family"]), str(meta["table"])
        previous = doc["previous"]
        items = None if previous is None else list(previous["nftables"])
    except OSError as exc:
        raise KernelError(f"cannot read {saved}: {exc.strerror or exc}") from None
    except (ValueError, KeyError, TypeError):
        raise KernelError(f"{saved} is not a table kept by ramparts fw apply") from None
    runner = nft if nft is not None else Nft(netns if netns is not None else meta.get("netns"))
    if not _restore(runner, family, table, items):
        raise KernelError(f"restoring table {family} {table} from {saved} failed")
    rules = None if items is None else _TableView.of(items).rules()
    return RollbackResult(family, table, runner.netns, rules, str(meta.get("saved_at", "")))
