"""The ``ramparts`` command: parses arguments and calls the library; nothing else."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .errors import ConfigError, RampartsError

if TYPE_CHECKING:
    from .config.schema import StoreConfig
    from .firewall.model import RuleSet

__all__ = ["main"]


def _cmd_check(args: argparse.Namespace) -> int:
    from .config.plan import load_plan

    try:
        plan = load_plan(args.file)
    except ConfigError as exc:
        print(f"ramparts: {exc}", file=sys.stderr)
        return 1
    servers = len(plan.servers)
    listeners = ", ".join(f"{h}:{p}" for h, p in plan.listeners)
    print(
        f"{args.file}: ok ({servers} server(s) on {listeners}; {len(plan.upstreams)} upstream(s))"
    )
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from .config.plan import load_plan
    from .server.lifecycle import configure_logging, run

    try:
        plan = load_plan(args.file)
    except ConfigError as exc:
        print(f"ramparts: {exc}", file=sys.stderr)
        return 1
    if args.workers:
        from dataclasses import replace

        plan = replace(plan, config=plan.config.model_copy(update={"workers": args.workers}))
    configure_logging(plan.config.log_level)
    return run(args.file, plan)


def _cmd_cert(args: argparse.Namespace) -> int:
    from .server.tls import make_self_signed

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cert, key = out / "cert.pem", out / "key.pem"
    make_self_signed(args.name, cert, key, days=args.days)
    print(f"wrote {cert} and {key} for {', '.join(args.name)} (self-signed, {args.days} days)")
    return 0


def _cmd_origin(args: argparse.Namespace) -> int:
    from .config.units import parse_address
    from .origin import run_origin

    host, port = parse_address(args.listen, default_host="127.0.0.1")
    print(f"origin listening on http://{host}:{port}/", flush=True)
    run_origin(host, port, args.name)
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    from .config.docs import render_json_schema

    sys.stdout.write(render_json_schema())
    return 0


def _cmd_docs(args: argparse.Namespace) -> int:
    from .config.docs import write_docs

    for path in write_docs(args.dir):
        print(f"wrote {path}")
    return 0


# -- ramparts ban / unban / bans ----------------------------------------------------------


def _store_of(args: argparse.Namespace) -> tuple[StoreConfig, Path]:
    from .config.loader import read_file
    from .config.plan import parse_config

    path = Path(args.config)
    config = read_file(path, lambda text, file: parse_config(text, file)[0])
    return config.store, path.parent


def _cmd_ban(args: argparse.Namespace) -> int:
    from .config.units import parse_duration
    from .state.admin import add_ban

    try:
        store, base = _store_of(args)
        seconds = parse_duration(args.duration)
        addr = add_ban(store, base, args.address, seconds, args.reason)
    except (RampartsError, ValueError) as exc:
        print(f"ramparts: {exc}", file=sys.stderr)
        return 1
    print(f"banned {addr} for {args.duration}")
    return 0


def _cmd_unban(args: argparse.Namespace) -> int:
    from .state.admin import remove_ban

    try:
        store, base = _store_of(args)
        was = remove_ban(store, base, args.address)
    except (RampartsError, ValueError) as exc:
        print(f"ramparts: {exc}", file=sys.stderr)
        return 1
    print(f"unbanned {args.address}" if was else f"{args.address} was not banned")
    return 0 if was else 3


def _cmd_bans(args: argparse.Namespace) -> int:
    from .state.admin import format_left, list_bans

    try:
        store, base = _store_of(args)
        bans = list_bans(store, base)
    except (RampartsError, ValueError) as exc:
        print(f"ramparts: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([{"address": a, "seconds_left": s, "reason": r} for a, s, r in bans]))
        return 0
    for address, left, why in bans:
        print(f"{address:<40} {format_left(left):>12}  {why}")
    if not bans:
        print("no bans")
    return 0


# -- ramparts fw ------------------------------------------------------------------------


def _rules_arg(p: argparse.ArgumentParser, name: str = "rules") -> None:
    """A rule file argument in any format, with --format and --select."""
    p.add_argument(name, help="a rule file: YAML, CSV, or another supported format")
    p.add_argument("--format", dest="rules_format", default=None, help="the file's rule format")
    p.add_argument(
        "--select", default=None, help="the chain, group or ACL to take from a file of several"
    )


def _load_rules(args: argparse.Namespace, path: str) -> RuleSet:
    from .firewall.formats import load_rules

    return load_rules(path, args.rules_format, args.select)


def _cmd_fw_check(args: argparse.Namespace) -> int:
    try:
        rs = _load_rules(args, args.rules)
    except ConfigError as exc:
        print(f"ramparts: {exc}", file=sys.stderr)
        return 1
    print(f"{args.rules}: ok ({len(rs.rules)} rule(s), default {rs.default.value})")
    return 0


def _cmd_fw_eval(args: argparse.Namespace) -> int:
    from .firewall.files import parse_flag_list
    from .firewall.model import evaluate
    from .net.packet import Packet

    try:
        rs = _load_rules(args, args.rules)
        extra: dict[str, object] = {}
        if args.icmp_type is not None:
            extra["icmp_type"] = args.icmp_type
            extra["icmp_code"] = args.icmp_code or 0
        flags = args.tcp_flags
        if flags is None and str(args.proto).lower() in ("tcp", "6"):
            flags = "syn"  # a connection's first packet
        pkt = Packet.make(
            args.src,
            args.dst,
            args.proto,
            args.sport,
            args.dport,
            direction=args.direction,
            iface=args.iface,
            ct_state=args.state,
            tcp_flags=parse_flag_list(flags) if flags is not None else 0,
            **extra,
        )
    except ConfigError as exc:
        print(f"ramparts: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"ramparts: {exc}", file=sys.stderr)
        return 2
    v = evaluate(rs, pkt)
    if v.rule is None:
        print(f"{v.action.value.upper()} by the default policy (no rule matched)")
    else:
        where = f" (line {v.rule.line})" if v.rule.line else ""
        name = f" {v.rule.id}" if v.rule.id else ""
        print(f"{v.action.value.upper()} by rule {v.index}{name}{where}: {v.rule.describe()}")
    return 0


def _cmd_fw_classify(args: argparse.Namespace) -> int:
    from .firewall.classbench import classify_trace

    try:
        result = classify_trace(args.rules, args.trace, reference=args.reference)
    except RampartsError as exc:
        print(f"ramparts: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0 if result.get("mismatches", 1) == 0 else 1


def _cmd_fw_replay(args: argparse.Namespace) -> int:
    from .firewall.replay import replay_pcap

    try:
        rs = _load_rules(args, args.rules)
        report = replay_pcap(rs, args.capture, progress=not args.no_progress)
    except RampartsError as exc:
        print(f"ramparts: {exc}", file=sys.stderr)
        return 1
    print(report.render())
    return 0


def _add_fw(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fw = sub.add_parser("fw", help="the L3/L4 firewall: check, evaluate, replay, classify")
    fsub = fw.add_subparsers(dest="fw_command", required=True)

    c = fsub.add_parser("check", help="validate a rule file")
    _rules_arg(c)
    c.set_defaults(func=_cmd_fw_check)

    e = fsub.add_parser("eval", help="the verdict for one packet, and the rule that decided")
    _rules_arg(e)
    e.add_argument("--src", required=True)
    e.add_argument("--dst", required=True)
    e.add_argument("--proto", default="tcp")
    e.add_argument("--sport", type=int, default=0)
    e.add_argument("--dport", type=int, default=0)
    e.add_argument("--direction", choices=["in", "out"], default=None)
    e.add_argument("--iface", default=None)
    e.add_argument("--state", choices=["new", "established", "related", "invalid"], default=None)
    e.add_argument(
        "--tcp-flags", default=None, help="TCP flags set, e.g. syn,ack (default for tcp: syn)"
    )
    e.add_argument("--icmp-type", type=int, default=None)
    e.add_argument("--icmp-code", type=int, default=None)
    e.set_defaults(func=_cmd_fw_eval)

    r = fsub.add_parser("replay", help="run a pcap capture through the stateful engine")
    _rules_arg(r)
    r.add_argument("capture")
    r.add_argument("--no-progress", action="store_true")
    r.set_defaults(func=_cmd_fw_replay)

    k = fsub.add_parser("classify", help="classify a ClassBench trace; prints one JSON object")
    k.add_argument("rules")
    k.add_argument("trace")
    k.add_argument("--format", choices=["classbench"], default="classbench")
    k.add_argument("--reference", action="store_true", help="also time the linear reference")
    k.set_defaults(func=_cmd_fw_classify)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ramparts", description="A layered network-security gateway.")
    p.add_argument("--version", action="version", version=f"ramparts {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("check", help="validate a configuration file (like nginx -t)")
    c.add_argument("file")
    c.set_defaults(func=_cmd_check)

    s = sub.add_parser("serve", help="run the gateway")
    s.add_argument("file")
    s.add_argument("--workers", type=int, default=0, help="override the worker count")
    s.set_defaults(func=_cmd_serve)

    t = sub.add_parser("cert", help="make a self-signed certificate for local trials")
    t.add_argument("--name", action="append", default=None, help="DNS name or IP (repeatable)")
    t.add_argument("--out", default=".", help="directory for cert.pem and key.pem")
    t.add_argument("--days", type=int, default=30)
    t.set_defaults(func=_cmd_cert)

    o = sub.add_parser("origin", help="run a small demo origin server")
    o.add_argument("--listen", default="127.0.0.1:3000")
    o.add_argument("--name", default="origin")
    o.set_defaults(func=_cmd_origin)

    j = sub.add_parser("schema", help="print the configuration JSON Schema")
    j.set_defaults(func=_cmd_schema)

    d = sub.add_parser("docs", help="write the configuration reference and JSON Schema")
    d.add_argument("dir", nargs="?", default="docs", help="output directory (default: docs)")
    d.set_defaults(func=_cmd_docs)

    def config_arg(q: argparse.ArgumentParser) -> None:
        q.add_argument(
            "-c", "--config", default="ramparts.yaml", help="the gateway's configuration"
        )

    b = sub.add_parser("ban", help="ban an address (dropped before a byte is read)")
    b.add_argument("address")
    b.add_argument("--for", dest="duration", required=True, help="e.g. 10m, 1h, 30s")
    b.add_argument("--reason", default="manual")
    config_arg(b)
    b.set_defaults(func=_cmd_ban)

    u = sub.add_parser("unban", help="lift a ban")
    u.add_argument("address")
    config_arg(u)
    u.set_defaults(func=_cmd_unban)

    ls = sub.add_parser("bans", help="list the bans in force")
    ls.add_argument("--json", action="store_true")
    config_arg(ls)
    ls.set_defaults(func=_cmd_bans)

    _add_fw(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "name", None) is None and args.command == "cert":
        args.name = ["localhost", "127.0.0.1"]
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
