"""A self-signed CA and a server certificate for one federated run, written into the run's folder.

The SuperLink serves TLS with a certificate for 127.0.0.1/localhost signed by a CA made for this run only;
SuperNodes and the `flwr` CLI trust that CA alone. Keys never leave the run folder. Certificates are valid
for a fixed window from the time they are made (they are transport secrets, not results, so they are the one
output of the stage that is not byte-reproducible); a resumed run checks them first and makes new ones when
they expire within a day, fail to parse or do not belong together (`ensure_certificates`).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ..atomic import write_bytes

VALID_DAYS = 7


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_certificates(folder: str | Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
                      valid_from: dt.datetime | None = None, days: float = VALID_DAYS) -> dict[str, Path]:
    """Write ca.crt, server.crt and server.key (P-256) into `folder`; returns their paths. `valid_from`
    (default: 5 minutes ago) and `days` exist so tests can make certificates that have expired."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    now = valid_from or dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    until = now + dt.timedelta(days=days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cxrdenoise federated run CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(until)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False),
                         critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    sans = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(until)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = {"ca": folder / "ca.crt", "cert": folder / "server.crt", "key": folder / "server.key"}
    write_bytes(paths["ca"], ca.public_bytes(serialization.Encoding.PEM))
    write_bytes(paths["cert"], cert.public_bytes(serialization.Encoding.PEM))
    write_bytes(paths["key"], _key_pem(key))
    paths["key"].chmod(0o600)
    return paths


MARGIN = dt.timedelta(days=1)  # certificates that expire sooner are replaced: a run must not outlive them


def certificate_problem(folder: str | Path, margin: dt.timedelta = MARGIN,
                        hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> str | None:
    """Why the certificates in `folder` cannot serve a run (None when they can).

    A resumed run reuses its folder's certificates; once they expire (or a file is damaged) every process
    fails its TLS handshake, and only the SuperLink's and SuperNodes' logs say why. So they are checked first:
    each file parses, both certificates are valid now and for `margin` more, the server certificate was issued
    by the CA and names every host, and the key is the certificate's.
    """
    folder = Path(folder)
    names = {"ca": "ca.crt", "cert": "server.crt", "key": "server.key"}
    missing = [f for f in names.values() if not (folder / f).is_file()]
    if missing:
        return f"{', '.join(missing)} missing"
    loaded = {}
    for kind, name in names.items():
        data = (folder / name).read_bytes()
        try:
            loaded[kind] = (serialization.load_pem_private_key(data, password=None) if kind == "key"
                            else x509.load_pem_x509_certificate(data))
        except (ValueError, TypeError, UnsupportedAlgorithm):
            return f"{name} is not a PEM {'private key' if kind == 'key' else 'certificate'}"
    now = dt.datetime.now(dt.timezone.utc)
    for kind in ("ca", "cert"):
        cert = loaded[kind]
        if cert.not_valid_before_utc > now:
            return f"{names[kind]} is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
        if cert.not_valid_after_utc <= now:
            return f"{names[kind]} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
        if cert.not_valid_after_utc <= now + margin:
            return (f"{names[kind]} expires on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC, within "
                    f"{margin.total_seconds() / 3600:g} h")
    try:
        loaded["cert"].verify_directly_issued_by(loaded["ca"])
    except (ValueError, TypeError, InvalidSignature):
        return "server.crt was not issued by ca.crt"
    raw = serialization.PublicFormat.SubjectPublicKeyInfo
    if (loaded["key"].public_key().public_bytes(serialization.Encoding.DER, raw)
            != loaded["cert"].public_key().public_bytes(serialization.Encoding.DER, raw)):
        return "server.key does not belong to server.crt"
    try:
        sans = loaded["cert"].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "server.crt names no host"
    named = {str(v) for v in sans.get_values_for_type(x509.IPAddress)} | set(sans.get_values_for_type(x509.DNSName))
    if not set(hosts) <= named:
        return f"server.crt does not name {', '.join(sorted(set(hosts) - named))}"
    return None


def ensure_certificates(folder: str | Path, margin: dt.timedelta = MARGIN) -> tuple[dict[str, Path], str | None]:
    """The run's certificates, made anew when missing or unusable; returns (paths, note). The note is one line
    saying why existing certificates were replaced (None when they were fine or there were none)."""
    folder = Path(folder)
    problem = certificate_problem(folder, margin)
    if problem is None:
        return {k: folder / f for k, f in (("ca", "ca.crt"), ("cert", "server.crt"), ("key", "server.key"))}, None
    existed = any((folder / f).exists() for f in ("ca.crt", "server.crt", "server.key"))
    paths = make_certificates(folder)
    note = f"TLS certificates in {folder} regenerated: {problem}" if existed else None
    return paths, note
