"""narun.config.gateway: edge-safety and NATS auth keys, their errors and env overrides."""

from __future__ import annotations

from typing import Any

import pytest

from narun.config.gateway import DEFAULT_MAX_HEADER_BYTES, ENV_OVERRIDES, parse_config
from narun.errors import ConfigError
from narun.transport.auth import NATSAuth

ROUTES = [{"path": "/a/", "methods": ["GET"], "service": "a"}]


def cfg(**extra: Any) -> dict[str, Any]:
    return {"routes": ROUTES, **extra}


def errors_of(data: dict[str, Any], env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, source="cfg.yaml", env=env or {})
    return str(info.value).splitlines()


def test_defaults_trust_nobody_and_cap_headers_at_64_kib() -> None:
    config = parse_config(cfg(), env={})
    assert config.trusted_proxies == ()
    assert config.max_body_bytes is None
    assert config.max_header_bytes == DEFAULT_MAX_HEADER_BYTES == 65536
    assert config.nats_auth is None


def test_edge_keys() -> None:
    config = parse_config(
        cfg(
            trusted_proxies=["127.0.0.1", "10.0.0.0/8", "::1"],
            max_body_bytes=1000,
            max_header_bytes=8192,
        ),
        env={},
    )
    assert config.trusted_proxies == ("127.0.0.1", "10.0.0.0/8", "::1")
    assert config.max_body_bytes == 1000
    assert config.max_header_bytes == 8192


@pytest.mark.parametrize(
    ("extra", "line"),
    [
        (
            {"trusted_proxies": "127.0.0.1"},
            "cfg.yaml: trusted_proxies: must be a list of IP addresses or networks, "
            "e.g. ['127.0.0.1', '10.0.0.0/8'] (got '127.0.0.1')",
        ),
        (
            {"trusted_proxies": ["127.0.0.1", "localhost"]},
            "cfg.yaml: trusted_proxies[1]: must be an IP address or a CIDR network "
            "such as '10.0.0.0/8' (got 'localhost')",
        ),
        (
            {"max_body_bytes": 0},
            "cfg.yaml: max_body_bytes: must be a whole number of bytes > 0 (got 0)",
        ),
        (
            {"max_header_bytes": "64k"},
            "cfg.yaml: max_header_bytes: must be a whole number of bytes > 0 (got '64k')",
        ),
        (
            {"nkey_seed_file": ""},
            "cfg.yaml: nkey_seed_file: must be a non-empty string (or leave the key out) (got '')",
        ),
        (
            {"nats_user": "alice"},
            "cfg.yaml: nats_password_file: required with a user (or set NARUN_NATS_PASSWORD)",
        ),
        (
            {"nats_token_file": "/t", "nkey_seed_file": "/k"},
            "cfg.yaml: nkey_seed_file: use one way to authenticate, not several "
            "(nats_token_file, nkey_seed_file)",
        ),
        (
            {"nats_tls_cert": "/c.pem"},
            "cfg.yaml: nats_tls_key: a client certificate needs both nats_tls_cert and "
            "nats_tls_key",
        ),
        (
            {"nats_creds": "/x"},
            "cfg.yaml: nats_creds: unknown key (did you mean 'nats_creds_file'?)",
        ),
    ],
)
def test_errors_name_the_key(extra: dict[str, Any], line: str) -> None:
    assert errors_of(cfg(**extra)) == [line]


def test_a_malformed_secret_is_never_shown() -> None:
    lines = errors_of(cfg(nats_user="a", nats_password=123456789))
    assert lines == ["cfg.yaml: nats_password: must be a non-empty string (got <hidden>)"]


def test_credentials_in_a_bad_nats_url_are_hidden() -> None:
    (line,) = errors_of(cfg(nats_url="nats://alice:s3cret@host :4222"))
    assert "s3cret" not in line
    assert "alice:***@" in line


def test_auth_keys_build_nats_auth() -> None:
    config = parse_config(
        cfg(
            nats_user="alice",
            nats_password_file="/run/secrets/nats",
            nats_tls_ca="/etc/nats/ca.pem",
            nats_tls_hostname="nats.internal",
        ),
        env={},
    )
    assert config.nats_auth == NATSAuth(
        user="alice",
        password_file="/run/secrets/nats",
        tls_ca="/etc/nats/ca.pem",
        tls_hostname="nats.internal",
    )


def test_plain_password_is_kept_secret_in_the_config_object() -> None:
    config = parse_config(cfg(nats_user="alice", nats_password="s3cret"), env={})
    assert "s3cret" not in repr(config)
    assert config.nats_auth is not None
    assert config.nats_auth.password == "s3cret"


def test_environment_overrides_auth_keys() -> None:
    env = {"NARUN_NATS_PASSWORD": "from-env", "NARUN_NKEY_FILE": ""}
    config = parse_config(cfg(nats_user="alice", nats_password_file="/file"), env=env)
    # The password from the environment replaces the file's password_file.
    assert config.nats_auth == NATSAuth(user="alice", password="from-env")
    config = parse_config(cfg(), env={"NARUN_NKEY_FILE": "/k.nk", "NARUN_NATS_TLS_CA": "/ca"})
    assert config.nats_auth == NATSAuth(nkey_seed_file="/k.nk", tls_ca="/ca")
    token = parse_config(cfg(nats_token_file="/t"), env={"NARUN_NATS_TOKEN": "tok"})
    assert token.nats_auth == NATSAuth(token="tok")


def test_error_from_environment_names_the_variable() -> None:
    lines = errors_of(cfg(), env={"NARUN_NATS_USER": "alice"})
    assert lines == [
        "cfg.yaml: nats_password_file: required with a user (or set NARUN_NATS_PASSWORD)"
    ]
    lines = errors_of(cfg(), env={"NARUN_NATS_URL": "nats://a b"})
    assert lines[0].startswith("cfg.yaml: nats_url (from NARUN_NATS_URL): ")


def test_every_auth_key_has_an_environment_variable() -> None:
    assert set(ENV_OVERRIDES) == {
        "nats_url",
        "nats_user",
        "nats_password",
        "nats_password_file",
        "nats_token",
        "nats_token_file",
        "nkey_seed_file",
        "nats_creds_file",
        "nats_tls_ca",
        "nats_tls_cert",
        "nats_tls_key",
        "nats_tls_hostname",
    }
    assert ENV_OVERRIDES["nkey_seed_file"] == "NARUN_NKEY_FILE"  # Go narun's name
