"""narun.transport.auth: options -> nats.connect arguments, checks, redaction (no server needed)."""

from __future__ import annotations

import ssl
from pathlib import Path

import nats.errors
import pytest

from narun.errors import ConfigError
from narun.transport.auth import (
    NATSAuth,
    auth_problems,
    connect_options,
    describe_connect_error,
    redact_url,
    telling_error,
    wants_tls,
)
from tests.support.natsauth import jwt_chain, make_tls, user_nkey

SECRET = "pa55-w0rd-not-to-show"


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_anonymous_is_no_options() -> None:
    assert connect_options(None) == {}
    assert connect_options(NATSAuth()) == {}
    assert not NATSAuth()
    assert NATSAuth().method == "none"


def test_user_and_password_file(tmp_path: Path) -> None:
    auth = NATSAuth(user="alice", password_file=write(tmp_path / "pw", SECRET + "\n"))
    assert connect_options(auth) == {"user": "alice", "password": SECRET}
    assert auth.method == "user"


def test_user_and_password_value() -> None:
    auth = NATSAuth(user="alice", password=SECRET)
    assert connect_options(auth) == {"user": "alice", "password": SECRET}
    assert SECRET not in repr(auth)


def test_token_file_and_value(tmp_path: Path) -> None:
    auth = NATSAuth(token_file=write(tmp_path / "tok", "t0k\r\n"))
    assert connect_options(auth) == {"token": "t0k"}
    assert connect_options(NATSAuth(token=SECRET)) == {"token": SECRET}
    assert SECRET not in repr(NATSAuth(token=SECRET))
    assert auth.method == "token"


def test_nkey_seed_file_is_checked_and_passed_by_path(tmp_path: Path) -> None:
    seed = write(tmp_path / "user.nk", user_nkey().seed + "\n")
    auth = NATSAuth(nkey_seed_file=seed)
    assert connect_options(auth) == {"nkeys_seed": seed}
    assert auth.method == "nkey"


def test_creds_file_is_checked_and_passed_by_path(tmp_path: Path) -> None:
    creds = write(tmp_path / "user.creds", jwt_chain().creds)
    auth = NATSAuth(creds_file=creds)
    assert connect_options(auth) == {"user_credentials": creds}
    assert auth.method == "creds"


def test_tls_context_with_ca_client_certificate_and_hostname(tmp_path: Path) -> None:
    tls = make_tls(tmp_path)
    auth = NATSAuth(
        tls_ca=str(tls.ca),
        tls_cert=str(tls.client_cert),
        tls_key=str(tls.client_key),
        tls_hostname="nats.test",
    )
    options = connect_options(auth)
    ctx = options.pop("tls")
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname
    assert [c["subject"] for c in ctx.get_ca_certs()] == [((("commonName", "narun test CA"),),)]
    assert options == {"tls_hostname": "nats.test"}
    assert auth.uses_tls
    # TLS combines with any identity method.
    assert NATSAuth(token="t", tls_ca=str(tls.ca)).method == "token"


def test_tls_hostname_alone_leaves_the_context_to_nats_py() -> None:
    assert connect_options(NATSAuth(tls_hostname="nats.test")) == {"tls_hostname": "nats.test"}


@pytest.mark.parametrize(
    ("options", "key", "problem"),
    [
        ({"user": "a"}, "nats_password_file", "required with a user"),
        ({"password": "p"}, "nats_user", "required with a password"),
        ({"user": "a", "password": "p", "password_file": "f"}, "nats_password_file", "not both"),
        ({"token": "t", "token_file": "f"}, "nats_token_file", "not both"),
        ({"token": "t", "nkey_seed_file": "f"}, "nkey_seed_file", "one way"),
        ({"creds_file": "c", "nkey_seed_file": "f"}, "nats_creds_file", "one way"),
        ({"tls_cert": "c"}, "nats_tls_key", "both nats_tls_cert and nats_tls_key"),
        ({"tls_key": "k"}, "nats_tls_cert", "both nats_tls_cert and nats_tls_key"),
        ({"user": ""}, "nats_user", "non-empty string"),
    ],
)
def test_contradictions_are_config_errors_naming_the_key(
    options: dict[str, str], key: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as info:
        NATSAuth(**options)
    assert f"{key}: " in str(info.value)
    assert problem in str(info.value)


def test_problems_of_a_plain_mapping() -> None:
    assert auth_problems({"user": "u", "password": "p"}) == []
    assert auth_problems({"token": 5}) == [("token", "must be a non-empty string")]


def test_unreadable_files_name_the_file_not_the_secret(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope")
    cases = [
        (NATSAuth(user="a", password_file=missing), "cannot read password file"),
        (NATSAuth(token_file=missing), "cannot read token file"),
        (NATSAuth(nkey_seed_file=missing), "cannot read NKey seed file"),
        (NATSAuth(creds_file=missing), "cannot read credentials file"),
        (NATSAuth(tls_ca=missing), "cannot read TLS CA file"),
    ]
    for auth, message in cases:
        with pytest.raises(ConfigError, match=message) as info:
            connect_options(auth)
        assert missing in str(info.value)
        assert "No such file" in str(info.value)


def test_empty_secret_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is empty"):
        connect_options(NATSAuth(token_file=write(tmp_path / "t", "\n")))


def test_bad_seed_is_refused_without_showing_it(tmp_path: Path) -> None:
    path = write(tmp_path / "seed", f"SU{SECRET}\n")
    with pytest.raises(ConfigError, match="no valid NKey seed") as info:
        connect_options(NATSAuth(nkey_seed_file=path))
    assert SECRET not in str(info.value)


def test_account_seed_is_not_a_user_seed(tmp_path: Path) -> None:
    import nkeys

    account_seed = nkeys.encode_seed(b"\x01" * 32, nkeys.PREFIX_BYTE_ACCOUNT).decode()
    path = write(tmp_path / "seed", account_seed)
    with pytest.raises(ConfigError, match="no user NKey seed") as info:
        connect_options(NATSAuth(nkey_seed_file=path))
    assert account_seed not in str(info.value)


@pytest.mark.parametrize(
    "text",
    [
        "just a token\n",
        "-----BEGIN NATS USER JWT-----\nabc\n------END NATS USER JWT------\n",
        "-----BEGIN NATS USER JWT-----\nabc\n-----BEGIN USER NKEY SEED-----\nSUnope\n",
    ],
)
def test_malformed_creds_file_is_refused(tmp_path: Path, text: str) -> None:
    # (nats-py would loop forever on a file without the JWT block.)
    with pytest.raises(ConfigError, match="credentials file"):
        connect_options(NATSAuth(creds_file=write(tmp_path / "c.creds", text)))


def test_tls_files_that_are_not_pem(tmp_path: Path) -> None:
    junk = write(tmp_path / "junk.pem", "not a certificate\n")
    with pytest.raises(ConfigError, match="holds no PEM certificate"):
        connect_options(NATSAuth(tls_ca=junk))
    with pytest.raises(ConfigError, match="cannot use TLS client certificate"):
        connect_options(NATSAuth(tls_cert=junk, tls_key=junk))
    with pytest.raises(ConfigError, match="cannot read TLS client certificate"):
        connect_options(NATSAuth(tls_cert=str(tmp_path / "x"), tls_key=str(tmp_path / "y")))


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("nats://localhost:4222", "nats://localhost:4222"),
        ("nats://alice:s3cret@host:4222", "nats://alice:***@host:4222"),
        ("nats://t0ken@host:4222", "nats://***@host:4222"),
        ("tls://a:b@h1:1, nats://h2:2", "tls://a:***@h1:1, nats://h2:2"),
        ("nats://a:b@[::1]:4222", "nats://a:***@[::1]:4222"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_describe_connect_error() -> None:
    violation = nats.errors.Error("nats: 'Authorization Violation'")
    assert describe_connect_error(violation) == (
        "authorization violation: the server requires credentials"
    )
    assert describe_connect_error(violation, url="nats://a:b@h:1") == (
        "authorization violation: the server rejected the credentials in the URL"
    )
    assert describe_connect_error(violation, NATSAuth(token="x")) == (
        "authorization violation: the server rejected the token"
    )
    assert "NKey" in describe_connect_error(violation, NATSAuth(nkey_seed_file="f"))
    assert describe_connect_error(ConnectionRefusedError(111, "x")) == "connection refused"
    assert describe_connect_error(TimeoutError()) == "timed out"
    verify = ssl.SSLCertVerificationError(1, "verify failed")
    verify.verify_message = "unable to get local issuer certificate"
    assert describe_connect_error(verify).endswith("(set nats_tls_ca to the CA file?)")
    verify.verify_message = "Hostname mismatch, certificate is not valid for 'x'."
    assert "nats_tls_hostname" in describe_connect_error(verify)
    handshake = ssl.SSLError(1, "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] alert")
    handshake.reason = "TLSV13_ALERT_CERTIFICATE_REQUIRED"
    assert "requires a client certificate" in describe_connect_error(handshake)
    assert describe_connect_error(nats.errors.Error("other")) == "other"


def test_telling_error_prefers_tls_then_authorization() -> None:
    reset = ConnectionResetError(104, "reset")
    violation = nats.errors.Error("nats: 'Authorization Violation'")
    handshake = ssl.SSLError(1, "handshake")
    assert telling_error([]) is None
    assert telling_error([violation, reset]) is violation
    assert telling_error([reset, violation, handshake]) is handshake
    assert telling_error([ConnectionRefusedError(), reset]) is reset


def test_wants_tls() -> None:
    assert wants_tls("tls://h:1", None)
    assert wants_tls("nats://a:1, TLS://b:2", None)
    assert wants_tls("nats://h:1", NATSAuth(tls_ca="ca.pem"))
    assert not wants_tls("nats://h:1", NATSAuth(token="t"))
    assert not wants_tls("nats://h:1", None)


def test_former_spelling_nats_auth_still_works() -> None:
    from narun.transport.auth import NatsAuth

    assert NatsAuth is NATSAuth
    assert NatsAuth(token="t") == NATSAuth(token="t")
