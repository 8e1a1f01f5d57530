"""The ``ramparts`` command: parses arguments and calls the library; nothing else."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
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
            out_iface=args.out_iface,
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


def _export_nftables(rs: RuleSet, args: argparse.Namespace) -> str:
    from .firewall.formats.nftables import render_nftables

    return render_nftables(
        rs, table=args.table, hook=args.hook, family=args.family, counters=args.counters
    )


def _export_iptables(rs: RuleSet, args: argparse.Namespace) -> str:
    """iptables-restore (IPv4) or ip6tables-restore (IPv6) input for the --hook chain."""
    from .firewall.formats.iptables import render_iptables_restore

    return render_iptables_restore(rs, args.hook.upper(), 6 if args.to == "ip6tables" else 4)


# ``fw export --to NAME``: the render function of each target (one line per target).
_EXPORTERS: dict[str, Callable[[RuleSet, argparse.Namespace], str]] = {
    "nftables": _export_nftables,
    "iptables": _export_iptables,
    "ip6tables": _export_iptables,
}


def _cmd_fw_export(args: argparse.Namespace) -> int:
    try:
        text = _EXPORTERS[args.to](_load_rules(args, args.rules), args)
    except (ConfigError, ValueError) as exc:
        print(f"ramparts: {exc}", file=sys.stderr)
        return 1
    if args.output in (None, "-"):
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
    return 0


def _cmd_fw_apply(args: argparse.Namespace) -> int:
    from .firewall.kernel import apply

    try:
        result = apply(
            _load_rules(args, args.rules),
            table=args.table,
            hook=args.hook,
            family=args.family,
            netns=args.netns,
            dry_run=args.dry_run,
            counters=args.counters,
            saved=Path(args.saved),
        )
    except (RampartsError, ValueError) as exc:
        print(f"ramparts: {exc}", file=sys.stderr)
        return 1
    print(result.summary())
    return 0


def _cmd_fw_rollback(args: argparse.Namespace) -> int:
    from .firewall.kernel import rollback

    try:
        result = rollback(Path(args.saved), netns=args.netns)
    except RampartsError as exc:
        print(f"ramparts: {exc}", file=sys.stderr)
        return 1
    print(result.summary())
    return 0


def _add_fw_nftables(fsub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """fw export, fw apply, fw rollback."""
    from .firewall.kernel import DEFAULT_SAVED

    def chain_args(q: argparse.ArgumentParser) -> None:
        q.add_argument("--table", default="ramparts", help="the nft table (default ramparts)")
        q.add_argument(
            "--hook", choices=["input", "forward", "output"], default="input", help="(input)"
        )
        q.add_argument("--family", choices=["inet", "ip", "ip6"], default="inet", help="(inet)")
        q.add_argument("--counters", action="store_true", help="a counter on every rule")

    x = fsub.add_parser("export", help="write a rule file in another firewall's language")
    _rules_arg(x)
    x.add_argument("--to", required=True, choices=sorted(_EXPORTERS), help="the target")
    x.add_argument("-o", "--output", default=None, help="write here instead of stdout")
    chain_args(x)
    x.set_defaults(func=_cmd_fw_export)

    a = fsub.add_parser(
        "apply",
        help="load a rule file into nftables (one table, one transaction, rolled back on failure)",
    )
    _rules_arg(a)
    chain_args(a)
    a.add_argument(
        "--dry-run", action="store_true", help="let nft check it (nft -c); change nothing"
    )
    a.add_argument("--netns", default=None, help="apply inside this network namespace")
    a.add_argument(
        "--saved",
        default=str(DEFAULT_SAVED),
        help=f"keep the previous table here ({DEFAULT_SAVED})",
    )
    a.set_defaults(func=_cmd_fw_apply)

    b = fsub.add_parser("rollback", help="put back the table the last fw apply replaced")
    b.add_argument("--saved", default=str(DEFAULT_SAVED), help=f"the kept table ({DEFAULT_SAVED})")
    b.add_argument("--netns", default=None, help="(default: the namespace it was saved from)")
    b.set_defaults(func=_cmd_fw_rollback)


# -- ramparts fw lint / fw diff: policy analysis -------------------------------------------


def _fail_on(text: str) -> frozenset[str]:
    from .firewall.analysis import KINDS

    words = {w.strip() for w in text.split(",") if w.strip()}
    if words <= {"none"}:
        return frozenset()
    if words == {"all"}:
        return frozenset(KINDS)
    unknown = sorted(words - set(KINDS))
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown kind {', '.join(unknown)} (kinds: {', '.join(KINDS)}; all; none)"
        )
    return frozenset(words)


def _emit(text: str, output: str | None, summary: str) -> None:
    """The report on stdout, or into ``output`` with ``summary`` on stdout."""
    if output is None:
        sys.stdout.write(text)
        return
    Path(output).write_text(text, encoding="utf-8")
    print(f"{summary}; wrote {output}")


def _cmd_fw_lint(args: argparse.Namespace) -> int:
    from .firewall.analysis import lint
    from .firewall.report import lint_json, lint_sarif, lint_summary, lint_text

    try:
        rs = _load_rules(args, args.rules)
    except (RampartsError, ValueError) as exc:
        print(f"ramparts: {exc}", file=sys.stderr)
        return 2
    result = lint(rs, budget=args.budget)
    if args.output_format == "json":
        text = lint_json(result)
    elif args.output_format == "sarif":
        text = lint_sarif(result, args.rules)
    else:
        text = lint_text(result, args.rules)
    try:
        _emit(text, args.output, lint_summary(result, args.rules))
    except OSError as exc:
        print(f"ramparts: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 1 if any(f.kind in args.fail_on for f in result.findings) else 0


def _cmd_fw_diff(args: argparse.Namespace) -> int:
    from .firewall.diff import DiffBudgetError, diff
    from .firewall.report import diff_json, diff_text

    try:
        old = _load_rules(args, args.old)
        new = _load_rules(args, args.new)
        result = diff(old, new, budget=args.budget)
    except DiffBudgetError as exc:
        print(f"ramparts: {exc}", file=sys.stderr)
        return 2
    except (RampartsError, ValueError) as exc:
        print(f"ramparts: {exc}", file=sys.stderr)
        return 2
    if args.output_format == "json":
        text = diff_json(result)
    else:
        text = diff_text(result, args.old, args.new)
    count = len(result.regions)
    try:
        _emit(text, args.output, f"{count} region(s) changed verdict")
    except OSError as exc:
        print(f"ramparts: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 1 if result.changed else 0


def _add_fw_analysis(fsub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """fw lint, fw diff."""
    from .firewall.analysis import DEFAULT_BUDGET, KINDS
    from .firewall.diff import DEFAULT_DIFF_BUDGET

    lt = fsub.add_parser(
        "lint",
        help="find shadowed, redundant, correlated and unreachable rules, with witnesses",
        description=(
            "Anomalies of an ordered rule set (Al-Shaer and Hamed's taxonomy, exact), each "
            "with a witness packet. Exit 1 when a finding of a --fail-on kind exists, 0 "
            "otherwise, 2 on bad input. See docs/firewall-analysis.md."
        ),
    )
    _rules_arg(lt)
    lt.add_argument(
        "--output-format",
        choices=["text", "json", "sarif"],
        default="text",
        help="the report: a text table (default), JSON, or SARIF 2.1.0 for code scanning",
    )
    lt.add_argument("-o", "--output", default=None, help="write the report here, not stdout")
    lt.add_argument(
        "--fail-on",
        type=_fail_on,
        default=_fail_on("shadowing,partial-shadowing"),
        metavar="KINDS",
        help=(
            "comma-separated kinds that make the exit code 1 (default: shadowing,"
            f"partial-shadowing; all; none). Kinds: {', '.join(KINDS)}"
        ),
    )
    lt.add_argument(
        "--budget",
        type=int,
        default=DEFAULT_BUDGET,
        help=f"box splits per union question before it is reported undecided ({DEFAULT_BUDGET})",
    )
    lt.set_defaults(func=_cmd_fw_lint)

    d = fsub.add_parser(
        "diff",
        help="the packets whose verdict changed between two rule sets",
        description=(
            "The regions of packet space that OLD and NEW decide differently, each with an "
            "example packet and the rule deciding before and after. Exit 1 when anything "
            "changed, 0 when nothing did, 2 on bad input (or when the diff does not finish "
            "within --budget). See docs/firewall-analysis.md."
        ),
    )
    _rules_arg(d, "old")
    d.add_argument("new", help="the new rule file (read with the same --format and --select)")
    d.add_argument(
        "--output-format", choices=["text", "json"], default="text", help="(default: text)"
    )
    d.add_argument("-o", "--output", default=None, help="write the report here, not stdout")
    d.add_argument(
        "--budget",
        type=int,
        default=DEFAULT_DIFF_BUDGET,
        help=f"boxes examined before giving up ({DEFAULT_DIFF_BUDGET})",
    )
    d.set_defaults(func=_cmd_fw_diff)


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
    e.add_argument("--iface", default=None, help="the interface it arrives on (or leaves by)")
    e.add_argument("--out-iface", default=None, help="the interface a forwarded packet leaves by")
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
    _add_fw_nftables(fsub)
    _add_fw_analysis(fsub)


# -- ramparts cloud ---------------------------------------------------------------------


def _cmd_cloud_trace(args: argparse.Namespace) -> int:
    from .firewall.cloud import load_topology, trace

    try:
        topology = load_topology(args.topology)
        result = trace(topology, args.src, args.dst, args.proto, args.port, args.sport)
    except (ConfigError, ValueError) as exc:
        print(f"ramparts: {exc}", file=sys.stderr)
        return 2
    if args.output == "json":
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(result.render())
    return 0 if result.ok else 1


def _cmd_cloud_lint(args: argparse.Namespace) -> int:
    from .firewall.cloud import load_topology
    from .firewall.cloud.lint import lint

    try:
        findings = lint(load_topology(args.topology))
    except ConfigError as exc:
        print(f"ramparts: {exc}", file=sys.stderr)
        return 2
    if args.output == "json":
        print(json.dumps([f.to_json() for f in findings], indent=2))
    else:
        for f in findings:
            print(f.render())
        serious = sum(f.severity != "info" for f in findings)
        print(f"{args.topology}: {serious} finding(s)" + (", ok" if not serious else ""))
    return 1 if any(f.severity != "info" for f in findings) else 0


def _add_cloud(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cloud = sub.add_parser("cloud", help="AWS security groups and network ACLs: trace, lint")
    csub = cloud.add_subparsers(dest="cloud_command", required=True)

    t = csub.add_parser(
        "trace",
        help="follow a connection and its reply through ACLs and security groups",
        description="Exit 0 when the connection works, 1 when it does not, 2 on bad input.",
    )
    t.add_argument("topology", help="the topology file (YAML; see docs/cloud.md)")
    t.add_argument("--from", dest="src", required=True, help="an instance name or an address")
    t.add_argument("--to", dest="dst", required=True, help="an instance name or an address")
    t.add_argument("--port", type=int, default=None, help="the service port (tcp, udp)")
    t.add_argument("--proto", default="tcp", help="tcp (default), udp, icmp, icmpv6, a number")
    t.add_argument(
        "--sport", type=int, default=None, help="the client's port (default: 32768-60999)"
    )
    t.add_argument("--format", dest="output", choices=["text", "json"], default="text")
    t.set_defaults(func=_cmd_cloud_trace)

    lt = csub.add_parser(
        "lint",
        help="check a topology: world-open admin ports, ACLs that drop replies, ...",
        description="Exit 0 with no finding (notes aside), 1 with findings, 2 on bad input.",
    )
    lt.add_argument("topology", help="the topology file (YAML; see docs/cloud.md)")
    lt.add_argument("--format", dest="output", choices=["text", "json"], default="text")
    lt.set_defaults(func=_cmd_cloud_lint)


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
    _add_cloud(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "name", None) is None and args.command == "cert":
        args.name = ["localhost", "127.0.0.1"]
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
