"""Test credentials made on the spot: NKeys, a JWT operator/account/user chain, TLS files.

Nothing here is a fixture of a real deployment: keys are random per call. The JWTs are
the NATS v2 format (ed25519-nkey signed, base64url segments) that ``nsc`` would write,
built by hand with the ``nkeys`` package so that tests need no Go tool.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nkeys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class NKey:
    """A fresh NKey pair: ``seed`` is secret (``S...``), ``public`` is shareable."""

    seed: str
    public: str

    @classmethod
    def create(cls, prefix: int) -> NKey:
        seed = nkeys.encode_seed(os.urandom(32), prefix)
        kp = nkeys.from_seed(bytearray(seed))
        public = kp.public_key.decode()
        kp.wipe()
        return cls(seed=seed.decode(), public=public)

    def sign(self, data: bytes) -> bytes:
        kp = nkeys.from_seed(bytearray(self.seed.encode()))
        try:
            signature: bytes = kp.sign(data)
            return signature
        finally:
            kp.wipe()


def user_nkey() -> NKey:
    return NKey.create(nkeys.PREFIX_BYTE_USER)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def encode_jwt(claims: dict[str, Any], issuer: NKey) -> str:
    """A NATS JWT: header and claims as base64url JSON, signed by ``issuer``."""
    body = {"jti": "", "iat": int(time.time()), "iss": issuer.public, **claims}
    digest = hashlib.sha256(json.dumps(body, separators=(",", ":")).encode()).digest()
    body["jti"] = base64.b32encode(digest).decode().rstrip("=")
    header = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    payload = _b64(json.dumps(body, separators=(",", ":")).encode())
    signature = issuer.sign(f"{header}.{payload}".encode())
    return f"{header}.{payload}.{_b64(signature)}"


_NO_LIMIT = -1


@dataclass(frozen=True)
class JWTChain:
    """An operator trusting one account with one user, and the server config for it."""

    server_config: str
    creds: str
    other_creds: str
    """Credentials of a user signed by an account the server does not know."""


def _user_creds(account: NKey, name: str) -> str:
    user = user_nkey()
    jwt = encode_jwt(
        {
            "sub": user.public,
            "name": name,
            "nats": {
                "pub": {},
                "sub": {},
                "subs": _NO_LIMIT,
                "data": _NO_LIMIT,
                "payload": _NO_LIMIT,
                "type": "user",
                "version": 2,
            },
        },
        account,
    )
    return (
        "-----BEGIN NATS USER JWT-----\n"
        f"{jwt}\n"
        "------END NATS USER JWT------\n\n"
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n\n"
        "-----BEGIN USER NKEY SEED-----\n"
        f"{user.seed}\n"
        "------END USER NKEY SEED------\n"
    )


def jwt_chain() -> JWTChain:
    """Operator -> account -> user, for a nats-server in operator mode (memory resolver)."""
    operator = NKey.create(nkeys.PREFIX_BYTE_OPERATOR)
    account = NKey.create(nkeys.PREFIX_BYTE_ACCOUNT)
    stranger = NKey.create(nkeys.PREFIX_BYTE_ACCOUNT)
    op_jwt = encode_jwt(
        {"sub": operator.public, "name": "narun-test", "nats": {"type": "operator", "version": 2}},
        operator,
    )
    limits = dict.fromkeys(("subs", "data", "payload", "imports", "exports", "conn", "leaf"), -1)
    acc_jwt = encode_jwt(
        {
            "sub": account.public,
            "name": "APP",
            "nats": {
                "limits": {**limits, "wildcards": True},
                "default_permissions": {"pub": {}, "sub": {}},
                "type": "account",
                "version": 2,
            },
        },
        operator,
    )
    config = (
        f'operator: "{op_jwt}"\n'
        "resolver: MEMORY\n"
        f'resolver_preload: {{\n  {account.public}: "{acc_jwt}"\n}}\n'
    )
    return JWTChain(
        server_config=config,
        creds=_user_creds(account, "narun"),
        other_creds=_user_creds(stranger, "stranger"),
    )


@dataclass(frozen=True)
class TLSFiles:
    """PEM files of a test CA, a server certificate and a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    """A CA that signed nothing here (to show verification failing)."""

    def server_config(self, *, verify_clients: bool = True) -> str:
        """A nats-server ``tls`` block using these files."""
        return (
            "tls {\n"
            f'  cert_file: "{self.server_cert}"\n'
            f'  key_file: "{self.server_key}"\n'
            f'  ca_file: "{self.ca}"\n'
            f"  verify: {'true' if verify_clients else 'false'}\n"
            "  timeout: 2\n"
            "}\n"
        )


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return path


def _write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _leaf(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    name: str,
    *,
    dns: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
    client: bool = False,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = _key()
    now = datetime.datetime.now(datetime.UTC)
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def make_tls(directory: Path, *, server_dns: tuple[str, ...] = ("nats.test",)) -> TLSFiles:
    """A CA, a server certificate for ``server_dns`` (no IP address) and a client one."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = _ca("narun test CA")
    s_key, s_cert = _leaf(ca_key, ca_cert, server_dns[0], dns=server_dns)
    c_key, c_cert = _leaf(ca_key, ca_cert, "narun-client", client=True)
    _, other = _ca("some other CA")
    return TLSFiles(
        ca=_write_cert(directory / "ca.pem", ca_cert),
        server_cert=_write_cert(directory / "server.pem", s_cert),
        server_key=_write_key(directory / "server-key.pem", s_key),
        client_cert=_write_cert(directory / "client.pem", c_cert),
        client_key=_write_key(directory / "client-key.pem", c_key),
        other_ca=_write_cert(directory / "other-ca.pem", other),
    )
