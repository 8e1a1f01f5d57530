"""The web application firewall: ModSecurity 3 with the OWASP Core Rule Set, behind an
engine-neutral seam so another engine could take its place.

- ``engine``: the seam: ``WafEngine`` / ``WafTransaction`` protocols, ``Verdict``,
  ``Outcome``, and ``inspect_request`` / ``inspect_response`` (one call per direction).
- ``policy``: ``WafPolicy`` and its parts (exclusions, body inspection), plain values.
- ``crs``: finding a Core Rule Set (3.x or 4.x) on disk.
- ``seclang``: a policy written out as ModSecurity configuration.
- ``modsec``: ``ModSecurityEngine``, the engine on libmodsecurity.

``decided_by`` is ``waf:<rule id>`` (``waf:949110``: the CRS's inbound anomaly score) or
``waf:request-body-limit``.

How a shell drives it. The engine is built once per plan (it loads the rules: tens of
milliseconds; ConfigError on a rule that does not load). Per request, every call below is
CPU work only and may run in a worker thread; a transaction is used by one thread at a
time. The binding holds the GIL through each ModSecurity call, so a worker thread keeps
the loop responsive only between calls, and gives no parallelism: that comes from worker
processes::

    engine = ModSecurityEngine(policy)                # per plan
    if engine.mode is not WafMode.OFF:
        txn = engine.transaction(request_id)
        verdict = txn.declare_request_body(content_length)    # before reading the body
        if verdict.blocked:
            return verdict.respond()                  # 413, waf:request-body-limit
        # buffer at most engine.request_body_limit + 1 bytes of the body, then:
        verdict = await loop.run_in_executor(
            pool, inspect_request, txn, conn, method, target, "1.1", headers, body
        )
        if verdict.blocked:
            return verdict.respond()                  # Respond(403, decided_by=waf:949110)
        ...                                           # upstream
        verdict = txn.process_response_headers(status, "1.1", resp_headers)
        # if txn.response_body_wanted: hold the answer, buffer up to
        # txn.response_body_limit bytes of its body, then:
        verdict = inspect_response_body(txn, body)   # b"" when not buffered
        if verdict.blocked: ...                       # answer verdict.status instead
        outcome = await loop.run_in_executor(pool, txn.finish)   # log phase, always
        # outcome.rule_ids, outcome.inbound_score, outcome.outbound_score, outcome.blocked
"""

from .crs import CrsLayout, find_crs
from .engine import (
    CONTINUE,
    Connection,
    Outcome,
    RuleMatch,
    Verdict,
    WafEngine,
    WafMode,
    WafTransaction,
    inspect_request,
    inspect_request_body,
    inspect_request_head,
    inspect_response,
    inspect_response_body,
)
from .modsec import ModSecurityEngine, ModSecurityTransaction, modsecurity_version
from .policy import (
    DEFAULT_CRS,
    Exclusion,
    OverLimit,
    RequestBodyInspection,
    ResponseBodyInspection,
    RuleIds,
    WafPolicy,
    parse_rule_ids,
)

__all__ = [
    "CONTINUE",
    "DEFAULT_CRS",
    "Connection",
    "CrsLayout",
    "Exclusion",
    "ModSecurityEngine",
    "ModSecurityTransaction",
    "Outcome",
    "OverLimit",
    "RequestBodyInspection",
    "ResponseBodyInspection",
    "RuleIds",
    "RuleMatch",
    "Verdict",
    "WafEngine",
    "WafMode",
    "WafPolicy",
    "WafTransaction",
    "find_crs",
    "inspect_request",
    "inspect_request_body",
    "inspect_request_head",
    "inspect_response",
    "inspect_response_body",
    "modsecurity_version",
    "parse_rule_ids",
]
