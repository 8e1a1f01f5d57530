"""Finding an OWASP Core Rule Set on disk: its version, its rule files in load order, its
plugins (CRS 4), and the names its setup and scores go by, which changed from 3.x to 4.x.

- CRS 3.x: ``rules/*.conf``; setup ``tx.paranoia_level`` / ``tx.executing_paranoia_level``;
  inbound scores ``tx.anomaly_score_pl1..4``.
- CRS 4.x: the same ``rules/*.conf`` plus ``plugins/*-config.conf``, ``*-before.conf``
  (before the rules) and ``*-after.conf`` (after them); setup
  ``tx.blocking_paranoia_level`` / ``tx.detection_paranoia_level``; inbound scores
  ``tx.inbound_anomaly_score_pl1..4``.

Both: outbound scores ``tx.outbound_anomaly_score_pl1..4``, thresholds
``tx.inbound_anomaly_score_threshold`` / ``tx.outbound_anomaly_score_threshold``, and the
setup must set ``tx.crs_setup_version`` (the version's digits: 3.3.4 is 334, 4.10.0 is
4100) or rule 901001 refuses every request. The version is read from the rules' own
``ver:'OWASP_CRS/x.y.z'``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CrsLayout", "find_crs"]

_INIT = "REQUEST-901-INITIALIZATION.conf"
_VERSION = re.compile(rb"ver:'OWASP_CRS/(\d+)\.(\d+)\.(\d+)'")


@dataclass(frozen=True, slots=True)
class CrsLayout:
    """A Core Rule Set found on disk."""

    root: Path
    version: tuple[int, int, int]
    rule_files: tuple[Path, ...]
    plugin_configs: tuple[Path, ...] = ()
    plugins_before: tuple[Path, ...] = ()
    plugins_after: tuple[Path, ...] = ()

    @property
    def major(self) -> int:
        return self.version[0]

    @property
    def setup_version(self) -> int:
        return int("".join(str(n) for n in self.version))

    @property
    def paranoia_var(self) -> str:
        return "paranoia_level" if self.major == 3 else "blocking_paranoia_level"

    @property
    def detection_paranoia_var(self) -> str:
        return "executing_paranoia_level" if self.major == 3 else "detection_paranoia_level"

    @property
    def inbound_score_var(self) -> str:
        """Prefix of the per-paranoia-level inbound scores (append 1..4)."""
        return "anomaly_score_pl" if self.major == 3 else "inbound_anomaly_score_pl"

    @property
    def outbound_score_var(self) -> str:
        return "outbound_anomaly_score_pl"

    def describe(self) -> str:
        return "OWASP CRS %d.%d.%d at %s" % (*self.version, self.root)


def find_crs(path: Path) -> CrsLayout:
    """The Core Rule Set at ``path``: its top directory (with ``rules/``) or the rules
    directory itself. ValueError when there is none, or its version is not 3.x or 4.x."""
    rules = path / "rules" if (path / "rules" / _INIT).is_file() else path
    init = rules / _INIT
    try:
        head = init.read_bytes()
    except OSError as exc:
        raise ValueError(
            f"crs: no Core Rule Set at {path} ({_INIT} not found there or in rules/: "
            f"{exc.strerror})"
        ) from None
    m = _VERSION.search(head)
    if m is None:
        raise ValueError(f"crs: cannot tell the Core Rule Set version from {init}")
    version = (int(m.group(1)), int(m.group(2)), int(m.group(3)))
    if version[0] not in (3, 4):
        raise ValueError("crs: Core Rule Set %d.%d.%d is not supported (3.x or 4.x)" % version)
    root = rules.parent if rules.name == "rules" else rules
    plugins = root / "plugins"
    has_plugins = version[0] >= 4 and plugins.is_dir()

    def conf(where: Path, pattern: str) -> tuple[Path, ...]:
        return tuple(sorted(p for p in where.glob(pattern) if p.is_file()))

    return CrsLayout(
        root=root,
        version=version,
        rule_files=conf(rules, "*.conf"),
        plugin_configs=conf(plugins, "*-config.conf") if has_plugins else (),
        plugins_before=conf(plugins, "*-before.conf") if has_plugins else (),
        plugins_after=conf(plugins, "*-after.conf") if has_plugins else (),
    )
