"""The first target of the CRS runner: nginx with Debian's ModSecurity module
(libnginx-mod-http-modsecurity, libmodsecurity3) and Debian's CRS 3.3.4
(modsecurity-crs), in front of the demo origin (``ramparts origin``), all on 127.0.0.1
and started by the caller. Rule ids are read back from ModSecurity's messages in nginx's
error log (:class:`NginxErrorLog`).

The ModSecurity configuration reproduces the setup CRS 3.3.4's own regression run used
(``tests/docker-compose.yml``: the owasp/modsecurity-crs image, ``MODSEC_RULE_ENGINE:
DetectionOnly``, ``PARANOIA: 4``, ``COMBINED_FILE_SIZES: 65535``,
``CRS_ENABLE_TEST_MARKER: 1``; ModSecurity's recommended base config; PCRE match limits
of 100000 as in the owasp/modsecurity image) with rule 910000 removed, as the suite's
README asks. Deliberate differences, each for a reason:

- ``SecResponseBodyAccess Off``: the suite has no response tests, and the echo origin
  would otherwise feed the request's payload to the response rules.
- ``SecRequestBodyLimitAction ProcessPartial``: a detection-only run never rejects.
- nginx passes every header to ModSecurity (``ignore_invalid_headers off``,
  ``underscores_in_headers on``) as Apache does; by default it drops headers whose names
  have ``_`` or other characters silently, before any module sees them.
- ``client_max_body_size 20m``: test 920400-1 declares a 10 MiB body it never sends and
  expects the server to wait (ftw: an error), not to answer 413 at once.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

from ..peers import NGINX, nginx_config
from ..support import Proc, free_port, start_origin, wait_port
from .runner import Recorded, Target, WindowedLog

__all__ = [
    "CRS_RULES",
    "CRS_SETUP",
    "MARKER_RULE_ID",
    "NginxErrorLog",
    "crs_nginx",
    "missing",
    "modsecurity_config",
    "nginx_http_block",
]

MODULE_DIRS = (Path("/usr/lib/nginx/modules"), Path("/usr/share/nginx/modules"))
MODULE = "ngx_http_modsecurity_module.so"
CRS_RULES = Path("/usr/share/modsecurity-crs/rules")
CRS_SETUP = Path("/etc/modsecurity/crs/crs-setup.conf")
UNICODE_MAPS = (Path("/etc/nginx/unicode.mapping"), Path("/etc/modsecurity/unicode.mapping"))
MARKER_RULE_ID = 999999  # CRS's own test marker rule (CRS_ENABLE_TEST_MARKER)


def _module() -> Path | None:
    for d in MODULE_DIRS:
        if (d / MODULE).exists():
            return d / MODULE
    return None


def missing() -> str | None:
    """Why this target cannot run here, or None."""
    if not Path(NGINX).exists():
        return "nginx is not installed"
    if _module() is None:
        return f"{MODULE} is not installed (libnginx-mod-http-modsecurity)"
    if not (CRS_RULES / "REQUEST-901-INITIALIZATION.conf").exists():
        return f"no CRS rules in {CRS_RULES} (modsecurity-crs)"
    if not CRS_SETUP.exists():
        return f"no {CRS_SETUP} (modsecurity-crs)"
    return None


def modsecurity_config(scratch: Path, paranoia: int = 4) -> str:
    """The ModSecurity rules file nginx loads: base config, CRS setup, the suite's
    settings, the marker rule, the CRS rules."""
    unicode_map = next((p for p in UNICODE_MAPS if p.exists()), None)
    unicode_line = f"SecUnicodeMapFile {unicode_map} 20127\n" if unicode_map else ""
    return f"""# Written by tests/crs/nginx.py for the CRS regression runner.
# -- ModSecurity's recommended base configuration (modsecurity.conf-recommended) --
SecRuleEngine DetectionOnly
SecRequestBodyAccess On
SecRule REQUEST_HEADERS:Content-Type "^(?:application(?:/soap\\+|/)|text/)xml" \\
    "id:200000,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=XML"
SecRule REQUEST_HEADERS:Content-Type "^application/json" \\
    "id:200001,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON"
SecRequestBodyLimit 13107200
SecRequestBodyNoFilesLimit 131072
SecRequestBodyLimitAction ProcessPartial
SecRequestBodyJsonDepthLimit 512
SecRule REQBODY_ERROR "!@eq 0" \\
    "id:200002,phase:2,t:none,log,deny,status:400,msg:'Failed to parse request body.',\\
    logdata:'%{{reqbody_error_msg}}',severity:2"
SecRule MULTIPART_STRICT_ERROR "!@eq 0" \\
    "id:200003,phase:2,t:none,log,deny,status:400,\\
    msg:'Multipart request body failed strict validation'"
SecRule MULTIPART_UNMATCHED_BOUNDARY "@eq 1" \\
    "id:200004,phase:2,t:none,log,deny,\\
    msg:'Multipart parser detected a possible unmatched boundary.'"
SecPcreMatchLimit 100000
SecPcreMatchLimitRecursion 100000
SecRule TX:/^MSC_/ "!@streq 0" \\
    "id:200005,phase:2,t:none,deny,msg:'ModSecurity internal error flagged: %{{MATCHED_VAR_NAME}}'"
SecResponseBodyAccess Off
SecTmpDir {scratch}
SecDataDir {scratch}
SecAuditEngine Off
SecArgumentSeparator &
SecCookieFormat 0
{unicode_line}SecStatusEngine Off
# -- CRS, as CRS 3.3.4's regression run configured it --
Include {CRS_SETUP}
SecAction "id:900000,phase:1,nolog,pass,t:none,setvar:tx.paranoia_level={paranoia}"
SecAction "id:900350,phase:1,nolog,pass,t:none,setvar:tx.combined_file_sizes=65535"
# The test marker: logs the X-CRS-Test header, so the runner can find each request's lines.
SecRule REQUEST_HEADERS:X-CRS-Test "@rx ^.*$" \\
    "id:{MARKER_RULE_ID},phase:1,pass,t:none,log,msg:'%{{MATCHED_VAR}}'"
Include {CRS_RULES}/*.conf
SecRuleRemoveById 910000
"""


def nginx_http_block(port: int, origin_port: int, rules_file: Path, scratch: Path) -> str:
    """The inside of ``http {}``: one server with ModSecurity, proxying to the origin."""
    return f"""
    log_format ftw '$remote_addr [$time_local] "$request" $status $body_bytes_sent '
                   'rid=$request_id';
    access_log {scratch}/access.log ftw;
    client_max_body_size 20m;
    client_body_timeout 10s;
    client_header_timeout 10s;
    ignore_invalid_headers off;
    underscores_in_headers on;
    server {{
        listen 127.0.0.1:{port} default_server;
        server_name localhost;
        modsecurity on;
        modsecurity_rules_file {rules_file};
        location / {{
            proxy_pass http://127.0.0.1:{origin_port};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_read_timeout 5s;
        }}
    }}
"""


def start_nginx_modsecurity(scratch: Path, http_block: str, port: int) -> Proc:
    """nginx with the ModSecurity module loaded (``peers.start_nginx`` cannot load
    modules): checked with ``nginx -t`` first, then waits for ``port``."""
    module = _module()
    assert module is not None, missing()
    scratch.mkdir(parents=True, exist_ok=True)
    conf = scratch / "nginx.conf"
    conf.write_text(f"load_module {module};\n" + nginx_config(scratch, http_block))
    check = subprocess.run(
        [NGINX, "-t", "-q", "-c", str(conf), "-p", str(scratch)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check.returncode != 0:
        raise RuntimeError(f"nginx refused its config:\n{check.stderr}")
    log = scratch / "nginx.out"
    popen = subprocess.Popen(
        [NGINX, "-c", str(conf), "-p", str(scratch)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    proc = Proc(popen, log, {"error_log": scratch / "nginx-error.log"})
    try:
        wait_port(port, timeout=30.0)
    except TimeoutError:
        proc.stop()
        raise RuntimeError(f"nginx did not start:\n{proc.output()}") from None
    return proc


@contextlib.contextmanager
def crs_nginx(scratch: Path, paranoia: int = 4) -> Iterator[Target]:
    """The origin and nginx + ModSecurity + CRS on free ports; yields the runner's
    :class:`Target` and stops both afterwards."""
    reason = missing()
    if reason is not None:
        raise RuntimeError(reason)
    scratch.mkdir(parents=True, exist_ok=True)
    origin, origin_port = start_origin(scratch, name="crs-origin")
    try:
        rules = scratch / "modsecurity-crs.conf"
        rules.write_text(modsecurity_config(scratch, paranoia))
        port = free_port()
        proc = start_nginx_modsecurity(
            scratch, nginx_http_block(port, origin_port, rules, scratch), port
        )
        try:
            log = NginxErrorLog(scratch / "nginx-error.log")
            yield Target(port=port, log=log, name="nginx + ModSecurity + CRS 3.3.4")
        finally:
            proc.stop()
    finally:
        origin.stop()


_MODSEC = "ModSecurity: "
_ID = re.compile(r'\[id "(\d+)"\]')
_MSG = re.compile(r'\[msg "([^"]*)"\]')
_CONN = re.compile(r"^\S+ \S+ \[\w+\] \d+#\d+: \*(\d+) ")
# nginx's own refusals while reading a request ("client sent invalid method while reading
# client request line, client: ..."), logged at level info before any module runs.
_NGINX_REFUSAL = re.compile(r"\*\d+ (client sent [^,]*?)(?:, client: |$)")


class NginxErrorLog(WindowedLog):
    """ModSecurity's messages in nginx's error log (level info), e.g.::

        2026/11/26 18:11:23 [info] 12#12: *1 ModSecurity: Warning. Matched "Operator `Rx'
        ..." [file "..."] [line "1571"] [id "942432"] ... [unique_id "1795716683.782980"]
        [ref "..."], client: 127.0.0.1, server: localhost, request: "GET /?id=1 HTTP/1.1"

    Every line names nginx's connection number (``*1``), which grows with each accepted
    connection. The marker's line is the marker rule's (``[id "999999"] ... [msg
    "<token>"]``); a window keeps only the lines of connections opened after the previous
    marker's and before this marker's, so neither the markers' own lines nor a late line
    of an earlier test can leak into it. nginx cuts a line at 2 KiB; ModSecurity shortens
    the long parts of its messages, so the id comes well before the cut, and a ModSecurity
    line without an id makes the window an error rather than a silent miss.

    ``refused`` is nginx's ``client sent ...`` message when nginx refused the request and
    ModSecurity logged nothing for it.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._prev_marker = 0  # connection number of the previous marker
        self._this_marker: int | None = None

    def reset(self) -> None:
        super().reset()
        self._prev_marker, self._this_marker = 0, None

    def is_marker(self, line: str, token: str) -> bool:
        if token not in line or _MODSEC not in line:
            return False
        msg = _MSG.search(line)
        if msg is None or msg.group(1) != token:
            return False
        conn = _CONN.match(line)
        self._this_marker = int(conn.group(1)) if conn else None
        return True

    def summarise(self, lines: list[str], ports: frozenset[int]) -> Recorded:
        low, high = self._prev_marker, self._this_marker
        if high is not None:
            self._prev_marker, self._this_marker = high, None
        ids: set[int] = set()
        nginx_says = None
        modsec_lines = 0
        unreadable = 0
        evidence = []
        for line in lines:
            conn = _CONN.match(line)
            if conn is None:
                continue
            n = int(conn.group(1))
            if n <= low or (high is not None and n >= high):
                continue
            if _MODSEC in line:
                modsec_lines += 1
                found = _ID.findall(line)
                if not found:
                    unreadable += 1
                    evidence.append("ModSecurity line without an id: " + line[:300])
                ids.update(int(i) for i in found)
                continue
            m = _NGINX_REFUSAL.search(line)
            if m is not None:
                nginx_says = nginx_says or m.group(1)
                evidence.append("nginx: " + m.group(1))
        refused = nginx_says if nginx_says is not None and modsec_lines == 0 else None
        error = f"{unreadable} ModSecurity line(s) without a rule id" if unreadable else None
        return Recorded(frozenset(ids), refused, None, tuple(evidence), error)
