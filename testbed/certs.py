"""TLS material for the testbed: a private CA, nginx's certificate and the nodes' keystore.

Modern keys (ECDSA P-256), SANs for both host names of the guide and 127.0.0.1, private keys
written with mode 0600 -- not the guide's 1024-bit self-signed example.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from eicore.fsutil import atomic_write_bytes

VALID_DAYS = 825


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    node_keystore: Path
    keystore_password: str


def _name(cn: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "eiperf testbed"),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ])


def _issue(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey, ca: bool, sans: list[x509.GeneralName],
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(sans), critical=False
        ).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        ).add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def generate_tls(
    ssl_dir: Path, keystore: Path, host_names: list[str], node_names: list[str],
    ip_addresses: list[str] = (),
) -> TlsFiles:
    """Write ca.crt, server.crt, server.key (0600) in `ssl_dir` and the nodes' PKCS12 keystore.

    The certificate names the host names, the nodes, localhost, 127.0.0.1 and `ip_addresses`
    (the multi-host testbed's load balancer address)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _issue("eiperf testbed CA", ca_key, _name("eiperf testbed CA"), ca_key, True, [])
    dns = sorted({*host_names, "localhost", *node_names})
    sans: list[x509.GeneralName] = [x509.DNSName(h) for h in dns]
    for ip in ("127.0.0.1", *ip_addresses):
        sans.append(x509.IPAddress(ipaddress.ip_address(ip)))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _issue(host_names[0], key, ca_cert.subject, ca_key, False, sans)

    pem = serialization.Encoding.PEM
    ca_path, crt_path, key_path = ssl_dir / "ca.crt", ssl_dir / "server.crt", ssl_dir / "server.key"
    atomic_write_bytes(ca_path, ca_cert.public_bytes(pem), 0o644)
    atomic_write_bytes(crt_path, cert.public_bytes(pem) + ca_cert.public_bytes(pem), 0o644)
    atomic_write_bytes(
        key_path,
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        0o600,
    )
    password = secrets.token_urlsafe(18)
    p12 = pkcs12.serialize_key_and_certificates(
        b"wso2carbon", key, cert, [ca_cert], _keystore_encryption(password.encode()))
    atomic_write_bytes(keystore, p12, 0o600)
    return TlsFiles(ca_path, crt_path, key_path, keystore, password)


#: PBKDF2 rounds of the node keystore: OpenSSL's own PKCS12 default. cryptography's best
#: available (20,000) cost a cold node JVM ~0.1 s of its start, on every start; the keystore's
#: password sits next to it in carbon.xml, as in the product, so the rounds guard nothing more.
KEYSTORE_KDF_ROUNDS = 2048


def _keystore_encryption(password: bytes) -> serialization.KeySerializationEncryption:
    """AES-256-CBC / PBKDF2-SHA256 (PBES2) for keys and certificates, HMAC-SHA256 for the
    MAC: what JDK 11.0.12+ and 17 read, with KEYSTORE_KDF_ROUNDS rounds."""
    return (serialization.PrivateFormat.PKCS12.encryption_builder()
            .kdf_rounds(KEYSTORE_KDF_ROUNDS)
            .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
            .hmac_hash(hashes.SHA256())
            .build(password))
