"""How narun authenticates to NATS: options in, ``nats.connect`` keyword arguments out.

:class:`NATSAuth` holds what the gateway config or the ``narun serve`` flags say (user and
password, token, NKey seed file, credentials file, TLS files). :func:`connect_options`
reads the secret files, checks them and builds the ``ssl.SSLContext``; it raises
:class:`ConfigError` naming the file and the problem, never the secret. :func:`redact_url`
hides credentials embedded in a NATS URL before it is logged, and
:func:`describe_connect_error` turns a failed first connection into one clear sentence.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from narun.errors import ConfigError

__all__ = [
    "CONFIG_KEYS",
    "ENV_VARS",
    "NATSAuth",
    "auth_problems",
    "connect_options",
    "connection_uses_tls",
    "describe_connect_error",
    "redact_url",
    "telling_error",
    "wants_tls",
]

CONFIG_KEYS: dict[str, str] = {
    "user": "nats_user",
    "password": "nats_password",
    "password_file": "nats_password_file",
    "token": "nats_token",
    "token_file": "nats_token_file",
    "nkey_seed_file": "nkey_seed_file",
    "creds_file": "nats_creds_file",
    "tls_ca": "nats_tls_ca",
    "tls_cert": "nats_tls_cert",
    "tls_key": "nats_tls_key",
    "tls_hostname": "nats_tls_hostname",
}
""":class:`NATSAuth` field -> gateway config key (and, with dashes, ``narun serve`` flag)."""

ENV_VARS: dict[str, str] = {
    "user": "NARUN_NATS_USER",
    "password": "NARUN_NATS_PASSWORD",
    "password_file": "NARUN_NATS_PASSWORD_FILE",
    "token": "NARUN_NATS_TOKEN",
    "token_file": "NARUN_NATS_TOKEN_FILE",
    "nkey_seed_file": "NARUN_NKEY_FILE",
    "creds_file": "NARUN_NATS_CREDS",
    "tls_ca": "NARUN_NATS_TLS_CA",
    "tls_cert": "NARUN_NATS_TLS_CERT",
    "tls_key": "NARUN_NATS_TLS_KEY",
    "tls_hostname": "NARUN_NATS_TLS_HOSTNAME",
}
""":class:`NATSAuth` field -> environment variable that sets it (gateway and consumer)."""

_SEED_HINT = "expected one line starting with 'SU' (a user seed, e.g. from 'nsc' or 'nk -gen user')"


@dataclass(frozen=True, kw_only=True)
class NATSAuth:
    """How to authenticate to NATS. Every field is optional; all unset means anonymous.

    At most one way to prove identity: user and password, token, NKey seed, or a
    credentials file. TLS options combine with any of them.
    """

    user: str | None = None
    """User name, used with ``password`` or ``password_file``."""
    password: str | None = field(default=None, repr=False)
    """Password itself (prefer ``password_file`` or ``NARUN_NATS_PASSWORD``)."""
    password_file: str | None = None
    """File whose content (less the trailing newline) is the password."""
    token: str | None = field(default=None, repr=False)
    """Authentication token itself (prefer ``token_file`` or ``NARUN_NATS_TOKEN``)."""
    token_file: str | None = None
    """File whose content (less the trailing newline) is the token."""
    nkey_seed_file: str | None = None
    """File holding a user NKey seed (``SU...``), Go narun's ``nkey_seed_file``."""
    creds_file: str | None = None
    """A ``.creds`` file: user JWT and NKey seed (decentralized JWT authentication)."""
    tls_ca: str | None = None
    """PEM file of the CA(s) that sign the server certificate; default: system CAs."""
    tls_cert: str | None = None
    """PEM client certificate, for servers that verify clients (with ``tls_key``)."""
    tls_key: str | None = None
    """PEM private key of ``tls_cert`` (unencrypted)."""
    tls_hostname: str | None = None
    """Name expected in the server certificate, when it differs from the URL's host."""

    def __post_init__(self) -> None:
        problems = auth_problems({f.name: getattr(self, f.name) for f in fields(self)})
        if problems:
            raise ConfigError(
                "\n".join(f"{CONFIG_KEYS[name]}: {problem}" for name, problem in problems)
            )

    @property
    def method(self) -> str:
        """The identity method in use: ``user``, ``token``, ``nkey``, ``creds`` or ``none``."""
        if self.user is not None:
            return "user"
        if self.token is not None or self.token_file is not None:
            return "token"
        if self.nkey_seed_file is not None:
            return "nkey"
        if self.creds_file is not None:
            return "creds"
        return "none"

    @property
    def uses_tls(self) -> bool:
        """Whether any TLS option is set."""
        return any((self.tls_ca, self.tls_cert, self.tls_key, self.tls_hostname))

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) is not None for f in fields(self))


NatsAuth = NATSAuth
"""The former spelling of :class:`NATSAuth`, kept so that existing code works."""


def auth_problems(values: Mapping[str, object]) -> list[tuple[str, str]]:
    """Contradictions between :class:`NATSAuth` field values, as ``(field, problem)``.

    ``values`` maps field names to values (missing or ``None``: unset). Empty when
    consistent.
    """
    problems: list[tuple[str, str]] = []
    for name, value in values.items():
        if value is not None and (not isinstance(value, str) or not value):
            problems.append((name, "must be a non-empty string"))
    if problems:
        return problems

    def has(*names: str) -> bool:
        return any(values.get(n) is not None for n in names)

    if has("password") and has("password_file"):
        problems.append(("password_file", "give the password once: file or value, not both"))
    if has("token") and has("token_file"):
        problems.append(("token_file", "give the token once: file or value, not both"))
    if has("password", "password_file") and not has("user"):
        problems.append(("user", "required with a password"))
    if has("user") and not has("password", "password_file"):
        problems.append(("password_file", "required with a user (or set NARUN_NATS_PASSWORD)"))
    methods = [
        name
        for name, used in (
            ("user", has("user")),
            ("token" if has("token") else "token_file", has("token", "token_file")),
            ("nkey_seed_file", has("nkey_seed_file")),
            ("creds_file", has("creds_file")),
        )
        if used
    ]
    if len(methods) > 1:
        shown = ", ".join(CONFIG_KEYS[m] for m in methods)
        problems.append((methods[1], f"use one way to authenticate, not several ({shown})"))
    if has("tls_cert") != has("tls_key"):
        missing = "tls_cert" if has("tls_key") else "tls_key"
        problems.append((missing, "a client certificate needs both nats_tls_cert and nats_tls_key"))
    return problems


def _read_secret(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} is not UTF-8 text") from None
    secret = text.rstrip("\r\n")
    if not secret.strip():
        raise ConfigError(f"{what} {path} is empty")
    return secret


def _check_seed(path: str) -> None:
    seed = _read_secret(path, "NKey seed file").strip()
    nkeys = _import_nkeys()
    try:
        nkeys.from_seed(bytearray(seed.encode())).wipe()
    except Exception:
        raise ConfigError(f"NKey seed file {path} holds no valid NKey seed: {_SEED_HINT}") from None
    if not seed.startswith("SU"):
        raise ConfigError(f"NKey seed file {path} holds no user NKey seed: {_SEED_HINT}")


def _check_creds(path: str) -> None:
    text = _read_secret(path, "credentials file")
    jwt_at = text.find("BEGIN NATS USER JWT")
    seed_at = text.find("BEGIN USER NKEY SEED")
    if jwt_at < 0 or seed_at < 0:
        raise ConfigError(
            f"credentials file {path} is not a NATS .creds file "
            "(needs a 'BEGIN NATS USER JWT' and a 'BEGIN USER NKEY SEED' block)"
        )
    lines = text[seed_at:].splitlines()
    seed = lines[1].strip() if len(lines) > 1 else ""
    nkeys = _import_nkeys()
    try:
        nkeys.from_seed(bytearray(seed.encode())).wipe()
    except Exception:
        raise ConfigError(f"credentials file {path} holds no valid user NKey seed") from None


def _import_nkeys() -> Any:
    try:
        import nkeys
    except ImportError:
        raise ConfigError(
            "NKey and credentials-file authentication need the 'nkeys' package: "
            "pip install 'narun[auth]'"
        ) from None
    return nkeys


def _ssl_context(auth: NATSAuth) -> ssl.SSLContext:
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=auth.tls_ca)
    except OSError as exc:
        if isinstance(exc, ssl.SSLError):
            raise ConfigError(f"TLS CA file {auth.tls_ca} holds no PEM certificate") from None
        raise ConfigError(f"cannot read TLS CA file {auth.tls_ca}: {exc.strerror or exc}") from None
    if auth.tls_cert is not None and auth.tls_key is not None:
        try:
            # password=b"": an encrypted key fails here instead of prompting on a terminal.
            ctx.load_cert_chain(auth.tls_cert, auth.tls_key, password=b"")
        except ssl.SSLError as exc:
            raise ConfigError(
                f"cannot use TLS client certificate {auth.tls_cert} with key {auth.tls_key}: "
                f"{exc.reason or exc} (PEM files, key unencrypted and matching the certificate)"
            ) from None
        except OSError as exc:
            raise ConfigError(
                f"cannot read TLS client certificate {auth.tls_cert} or key {auth.tls_key}: "
                f"{exc.strerror or exc}"
            ) from None
    return ctx


def connect_options(auth: NATSAuth | None) -> dict[str, Any]:
    """Keyword arguments for ``nats.connect`` that apply ``auth``.

    Secret files are read (and NKey seeds and ``.creds`` files checked) now, so that a
    missing or malformed file stops the program at start with a :class:`ConfigError`
    naming the file. NKey seeds and ``.creds`` files are passed by path: nats-py reads
    them again at each (re)connection, so a rotated file is picked up.
    """
    if auth is None:
        return {}
    options: dict[str, Any] = {}
    if auth.user is not None:
        options["user"] = auth.user
        if auth.password_file is not None:
            options["password"] = _read_secret(auth.password_file, "password file")
        else:
            options["password"] = auth.password
    if auth.token is not None:
        options["token"] = auth.token
    elif auth.token_file is not None:
        options["token"] = _read_secret(auth.token_file, "token file")
    if auth.nkey_seed_file is not None:
        _check_seed(auth.nkey_seed_file)
        options["nkeys_seed"] = auth.nkey_seed_file
    if auth.creds_file is not None:
        _check_creds(auth.creds_file)
        options["user_credentials"] = auth.creds_file
    if auth.tls_ca is not None or auth.tls_cert is not None:
        options["tls"] = _ssl_context(auth)
    if auth.tls_hostname is not None:
        options["tls_hostname"] = auth.tls_hostname
    return options


def redact_url(url: str) -> str:
    """``url`` (one or several, comma-separated) with embedded credentials hidden.

    ``nats://alice:pw@host:4222`` becomes ``nats://alice:***@host:4222``; a lone
    user part, which NATS reads as a token (``nats://tok@host``), becomes ``***``.
    """
    return ",".join(_redact_one(part) for part in url.split(","))


def _redact_one(url: str) -> str:
    if "@" not in url:
        return url
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return "<unparsable URL>"
    userinfo, sep, hostport = parts.netloc.rpartition("@")
    if not sep:
        return url
    user, colon, _ = userinfo.partition(":")
    hidden = f"{user}:***" if colon else "***"
    lead = url[: len(url) - len(url.lstrip())]
    return lead + urlunsplit(parts._replace(netloc=f"{hidden}@{hostport}"))


def wants_tls(url: str, auth: NATSAuth | None) -> bool:
    """Whether TLS was asked for: a TLS option is set or a server URL is ``tls://``."""
    if auth is not None and auth.uses_tls:
        return True
    return any(u.strip().lower().startswith("tls://") for u in url.split(","))


def connection_uses_tls(nc: object) -> bool | None:
    """Whether a connected nats-py client talks TLS; ``None`` if that cannot be seen.

    Reads nats-py internals (the transport's stream writer); a nats-py that changed
    them gives ``None``, not a false alarm.
    """
    writer = getattr(getattr(nc, "_transport", None), "_io_writer", None)
    get_extra_info = getattr(writer, "get_extra_info", None)
    if get_extra_info is None:
        return None
    return get_extra_info("ssl_object") is not None


def telling_error(errors: Sequence[BaseException]) -> BaseException | None:
    """The error that best explains failed connection attempts: a TLS failure, else a
    refusal of the credentials, else the last one (a reset that follows a refusal says
    nothing)."""
    for exc in errors:
        if isinstance(exc, ssl.SSLError):
            return exc
    for exc in errors:
        if "authorization violation" in str(exc).lower():
            return exc
    return errors[-1] if errors else None


def describe_connect_error(
    exc: BaseException, auth: NATSAuth | None = None, *, url: str = ""
) -> str:
    """One sentence for why a first connection failed (no secrets, no traceback).

    ``auth`` and ``url`` tell which credentials were offered, to say which were refused.
    """
    text = str(exc)
    if "authorization violation" in text.lower():
        if auth is None or auth.method == "none":
            if any("@" in urlsplit(u.strip()).netloc for u in url.split(",")):
                return "authorization violation: the server rejected the credentials in the URL"
            return "authorization violation: the server requires credentials"
        return f"authorization violation: the server rejected the {_METHOD_NAMES[auth.method]}"
    if "authentication expired" in text.lower() or "user authentication revoked" in text.lower():
        return f"the server rejected the credentials ({text.removeprefix('nats: ')})"
    if isinstance(exc, ssl.SSLCertVerificationError):
        message = str(exc.verify_message)
        if "mismatch" in message:
            hint = " (set nats_tls_hostname to the name in the server certificate?)"
        elif auth is None or not auth.tls_ca:
            hint = " (set nats_tls_ca to the CA file?)"
        else:
            hint = ""
        return f"TLS certificate verification failed: {message}{hint}"
    if isinstance(exc, ssl.SSLError):
        reason = str(exc.reason or exc)
        if "CERTIFICATE_REQUIRED" in reason.upper():
            return (
                "TLS handshake failed: the server requires a client certificate "
                "(set nats_tls_cert and nats_tls_key)"
            )
        return f"TLS handshake failed: {reason}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return text or type(exc).__name__


_METHOD_NAMES = {
    "user": "user name or password",
    "token": "token",
    "nkey": "NKey (is its public key in the server's config?)",
    "creds": "credentials (JWT)",
}
