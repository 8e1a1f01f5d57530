"""Golden files for the cloud importers (AWS JSON, Terraform): the model read from a
realistic input, and every group's and ACL's rule sets as ``load_rules`` gives them to
lint and diff, compared with a JSON file kept next to the input.

Set RAMPARTS_UPDATE_GOLDEN=1 to rewrite the expected files after a deliberate change,
then review the diff before committing it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ramparts.errors import ConfigError
from ramparts.firewall.cloud import Policies
from ramparts.firewall.formats import load_rules

UPDATE = os.environ.get("RAMPARTS_UPDATE_GOLDEN") == "1"


def rendered(source: Path, fmt: str, policies: Policies) -> dict[str, Any]:
    """The model and, per group/ACL and direction, the rule set's lines (or the refusal).
    The first rule set goes through ``load_rules`` as lint and diff call it; the others
    through ``Policies.ruleset``, which it calls (reading the source once)."""
    rulesets: dict[str, Any] = {}
    for p in (*policies.security_groups, *policies.network_acls):
        for direction in ("ingress", "egress"):
            select = f"{p.key}:{direction}"
            try:
                rs = policies.ruleset(select) if rulesets else load_rules(source, fmt, select)
            except ConfigError as exc:
                rulesets[select] = f"refused at line {exc.line}: {exc.reason}"
                continue
            rulesets[select] = [f"{r.id}: {r.describe()}" for r in rs.rules] + [
                f"default: {rs.default.value}"
            ]
    return {"model": policies.to_json(), "rulesets": rulesets}


def check_golden(expected: Path, got: dict[str, Any]) -> None:
    text = json.dumps(got, indent=2, sort_keys=False) + "\n"
    if UPDATE:
        expected.write_text(text, encoding="utf-8")
    assert expected.exists(), f"{expected} is missing: run with RAMPARTS_UPDATE_GOLDEN=1"
    assert json.loads(expected.read_text(encoding="utf-8")) == got, (
        f"{expected} differs: review, then RAMPARTS_UPDATE_GOLDEN=1 to rewrite it"
    )
