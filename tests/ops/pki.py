"""Throw-away certificates for TLS tests, made with `cryptography` (no openssl, no network).

A CA, a server certificate for 127.0.0.1/localhost, and client certificates
named by CN; EC P-256 keys keep generation in milliseconds.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Issued:
    cert_pem: bytes
    key_pem: bytes

    def write(self, directory: Path, stem: str) -> tuple[Path, Path]:
        cert, key = directory / f"{stem}.crt", directory / f"{stem}.key"
        cert.write_bytes(self.cert_pem)
        key.write_bytes(self.key_pem)
        key.chmod(0o600)
        return cert, key


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


_CA_USAGE = x509.KeyUsage(
    digital_signature=True, content_commitment=False, key_encipherment=False,
    data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
    encipher_only=False, decipher_only=False,
)  # fmt: skip


class CertificateAuthority:
    def __init__(self, common_name: str = "cts test CA") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(_name(common_name))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_CA_USAGE, critical=True)
            .sign(self.key, hashes.SHA256())
        )

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def _issue(self, common_name: str, san: list[x509.GeneralName], usage: x509.ObjectIdentifier
               ) -> Issued:  # fmt: skip
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))

    def server(self) -> Issued:
        san: list[x509.GeneralName] = [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]
        return self._issue("localhost", san, ExtendedKeyUsageOID.SERVER_AUTH)

    def client(self, name: str) -> Issued:
        return self._issue(name, [x509.DNSName(name)], ExtendedKeyUsageOID.CLIENT_AUTH)


@dataclass(frozen=True)
class Pki:
    """A CA, a server certificate and key, and a bearer-token file, written under `root`."""

    root: Path
    ca: CertificateAuthority
    ca_file: Path
    server_cert: Path
    server_key: Path
    token_file: Path

    def client(self, name: str) -> tuple[bytes, bytes]:
        """(key PEM, certificate PEM) of a client certificate with CN `name`."""
        issued = self.ca.client(name)
        return issued.key_pem, issued.cert_pem

    def private(self, name: str, text: str, mode: int = 0o600) -> Path:
        path = self.root / name
        path.write_text(text)
        path.chmod(mode)
        return path


def issue_pki(root: Path, token: str) -> Pki:
    ca = CertificateAuthority()
    ca_file = root / "ca.crt"
    ca_file.write_bytes(ca.cert_pem)
    cert, key = ca.server().write(root, "server")
    token_file = root / "token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    return Pki(root, ca, ca_file, cert, key, token_file)
