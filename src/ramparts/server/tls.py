"""TLS termination: server contexts with TLS 1.2/1.3 only, a modern cipher list, ALPN
http/1.1, and the certificate chosen by SNI; and a self-signed certificate for trials."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Sequence
from pathlib import Path

__all__ = ["TLSError", "make_self_signed", "make_server_context", "make_sni_context"]


class TLSError(Exception):
    def __init__(self, index: int, reason: str) -> None:
        self.index = index
        super().__init__(reason)


def make_server_context(
    cert: Path, key: Path, protocols: Sequence[str] = ("TLSv1.2", "TLSv1.3"), ciphers: str = ""
) -> ssl.SSLContext:
    """A server context for one certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    versions = sorted(ssl.TLSVersion[p.replace("TLSv1.", "TLSv1_")] for p in protocols)
    ctx.minimum_version = versions[0]
    ctx.maximum_version = versions[-1]
    if ciphers:
        ctx.set_ciphers(ciphers)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.options |= ssl.OP_NO_RENEGOTIATION
    ctx.set_alpn_protocols(["http/1.1"])
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


def make_sni_context(
    certs: Sequence[tuple[Sequence[str], Path, Path, Sequence[str], str]],
) -> ssl.SSLContext:
    """One context per certificate; the first is the default, the SNI name picks another.

    ``certs`` holds (server names, certificate, key, protocols, ciphers) per server.
    """
    contexts: list[ssl.SSLContext] = []
    for i, (_, cert, key, protocols, ciphers) in enumerate(certs):
        try:
            contexts.append(make_server_context(cert, key, protocols, ciphers))
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise TLSError(i, f"cannot load certificate {cert} / key {key}: {exc}") from None
    exact: dict[str, ssl.SSLContext] = {}
    wildcard: list[tuple[str, ssl.SSLContext]] = []
    for (names, *_), ctx in zip(certs, contexts, strict=True):
        for name in names:
            n = name.lower()
            if n.startswith("*."):
                wildcard.append((n[1:], ctx))
            elif n.startswith("."):
                exact.setdefault(n[1:], ctx)
                wildcard.append((n, ctx))
            elif not n.startswith("~"):
                exact.setdefault(n, ctx)
    wildcard.sort(key=lambda w: len(w[0]), reverse=True)
    default = contexts[0]
    if len(contexts) == 1:
        return default

    def pick(sock: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        if not server_name:
            return
        name = server_name.lower()
        chosen = exact.get(name)
        if chosen is None:
            chosen = next((c for suffix, c in wildcard if name.endswith(suffix)), None)
        if chosen is not None and chosen is not default:
            sock.context = chosen

    default.sni_callback = pick
    return default


def make_self_signed(names: Sequence[str], cert_path: Path, key_path: Path, days: int = 30) -> None:
    """Write a self-signed certificate for ``names`` (DNS names or IP addresses)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    alt: list[x509.GeneralName] = []
    for n in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            alt.append(x509.DNSName(n))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
