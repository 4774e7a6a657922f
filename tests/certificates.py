"""A certificate authority made by the tests, and the certificates the TLS tests serve.

`TestCa` makes a CA (written to `ca.crt` in its directory, the file a crawler or an S3 client is
told to trust) and leaf certificates it signs for host names and IP addresses, valid or expired;
`self_signed` makes a leaf no CA signed. `server_context` is an SSL context serving one of them.
Keys are EC P-256: quick to make, as every test run makes its own.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class Leaf:
    """A certificate and its private key, as PEM files."""

    cert_file: Path
    key_file: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _alternative_names(hosts: list[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


class TestCa:
    """A CA in `directory`: its certificate is `ca_file`; `leaf` writes certificates it signs."""

    __test__ = False  # not a test class, despite its name

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(_name("kubeforge test CA"))
            .issuer_name(_name("kubeforge test CA"))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - DAY)
            .not_valid_after(now + 30 * DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        self.ca_file = directory / "ca.crt"
        self.ca_file.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))

    def leaf(self, name: str, hosts: list[str], *, expired: bool = False) -> Leaf:
        """A server certificate for `hosts` signed by this CA (expired yesterday if asked)."""
        key = ec.generate_private_key(ec.SECP256R1())
        return _write(self.directory, name, key, self._signed(key, hosts, expired=expired))

    def _signed(
        self, key: ec.EllipticCurvePrivateKey, hosts: list[str], *, expired: bool
    ) -> x509.Certificate:
        now = datetime.datetime.now(datetime.UTC)
        start, end = (now - 30 * DAY, now - DAY) if expired else (now - DAY, now + 30 * DAY)
        return (
            _leaf_builder(key, hosts, start, end)
            .issuer_name(self.certificate.subject)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )


def _leaf_builder(
    key: ec.EllipticCurvePrivateKey,
    hosts: list[str],
    start: datetime.datetime,
    end: datetime.datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(_alternative_names(hosts), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    )


def self_signed(directory: Path, name: str, hosts: list[str]) -> Leaf:
    """A server certificate for `hosts` that no CA signed: it is its own issuer."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        _leaf_builder(key, hosts, now - DAY, now + 30 * DAY)
        .issuer_name(_name(hosts[0]))
        .sign(key, hashes.SHA256())
    )
    return _write(directory, name, key, certificate)


def _write(
    directory: Path, name: str, key: ec.EllipticCurvePrivateKey, certificate: x509.Certificate
) -> Leaf:
    leaf = Leaf(directory / f"{name}.crt", directory / f"{name}.key")
    leaf.cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    leaf.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return leaf


def server_context(leaf: Leaf) -> ssl.SSLContext:
    """An SSL context that serves `leaf`."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(leaf.cert_file, leaf.key_file)
    return context
