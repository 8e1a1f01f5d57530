"""The ramparts gateway as a target of the CRS regression runner: the demo origin behind
ramparts with the WAF configured the way the suite expects (paranoia 4, detection only,
the CRS's 910 IP-reputation file left out by the engine for want of GeoIP, the suite's
combined_file_sizes), rule ids read back from its JSON access log (``waf_rules``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..support import free_port, start_gateway, start_origin
from .runner import JsonLinesLog, Target


def ramparts_config(port: int, origin_port: int, log: Path, paranoia: int = 4) -> str:
    return f"""
workers: 1
log_level: warning
limits: {{ max_body_size: 20m }}
access_log: {{ path: "{log}", buffer: 0 }}
upstreams:
  origin: {{ servers: ["127.0.0.1:{origin_port}"] }}
servers:
  - listen: "127.0.0.1:{port}"
    waf:
      mode: detection_only
      paranoia: {paranoia}
      body_limit: 13m
      over_limit: inspect_partial
      rules_before_crs:
        - 'SecAction "id:900350,phase:1,nolog,pass,t:none,setvar:tx.combined_file_sizes=65535"'
    locations:
      - location: /
        proxy: {{ upstream: origin }}
"""


@contextmanager
def crs_ramparts(scratch: Path, paranoia: int = 4) -> Iterator[Target]:
    """The origin and ramparts with the WAF on free ports; yields the runner's Target."""
    scratch.mkdir(parents=True, exist_ok=True)
    origin, origin_port = start_origin(scratch, name="crs-origin")
    try:
        port = free_port()
        log = scratch / "access.log"
        cfg = ramparts_config(port, origin_port, log, paranoia)
        gw = start_gateway(scratch, cfg, [port], name="crs-ramparts")
        try:
            yield Target(port=port, log=JsonLinesLog(log), name="ramparts + ModSecurity + CRS")
        finally:
            gw.stop()
    finally:
        origin.stop()
