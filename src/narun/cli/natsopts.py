"""NATS authentication and TLS flags shared by ``narun gateway`` and ``narun serve``.

Each flag is the gateway config key with dashes (``--nats-password-file`` for
``nats_password_file``) and reads the same environment variable as the config
(:data:`narun.transport.auth.ENV_VARS`). Secrets themselves are never flags (a command line is
visible to every user of the machine): they come from files, or from
``NARUN_NATS_PASSWORD`` / ``NARUN_NATS_TOKEN``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import click

from narun.transport.auth import ENV_VARS, NATSAuth

__all__ = ["auth_env", "auth_from_flags", "nats_auth_options"]

_META = "narun.nats_auth"
_FLAGS: dict[str, tuple[tuple[str, ...], str]] = {
    "user": (("--nats-user",), "NATS user name (password: --nats-password-file or env)."),
    "password_file": (("--nats-password-file",), "File holding the NATS password."),
    "token_file": (("--nats-token-file",), "File holding the NATS token."),
    "nkey_seed_file": (("--nkey-seed-file", "--nkey-file"), "File holding a user NKey seed."),
    "creds_file": (("--nats-creds-file",), "NATS .creds file (user JWT + NKey seed)."),
    "tls_ca": (("--nats-tls-ca",), "PEM CA file that signs the NATS server certificate."),
    "tls_cert": (("--nats-tls-cert",), "PEM client certificate for NATS (with --nats-tls-key)."),
    "tls_key": (("--nats-tls-key",), "PEM private key of --nats-tls-cert."),
    "tls_hostname": (("--nats-tls-hostname",), "Name to verify in the NATS server certificate."),
}


def _store(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value:
        assert param.name is not None
        ctx.meta.setdefault(_META, {})[param.name] = value


def nats_auth_options(f: click.decorators.FC) -> click.decorators.FC:
    """Add the NATS authentication/TLS flags; read them back with the functions below."""
    for name, (flags, help_text) in reversed(_FLAGS.items()):
        f = click.option(
            *flags,
            name,
            envvar=ENV_VARS[name],
            show_envvar=True,
            expose_value=False,
            callback=_store,
            metavar="PATH" if name.endswith(("_file", "_ca", "_cert", "_key")) else "TEXT",
            help=help_text,
        )(f)
    return f


def _given() -> dict[str, str]:
    values: dict[str, str] = click.get_current_context().meta.get(_META, {})
    return values


def auth_env() -> dict[str, str]:
    """The flags given, as the environment variables that ``load_config`` reads."""
    return {ENV_VARS[name]: value for name, value in _given().items()}


def auth_from_flags(env: Mapping[str, str] | None = None) -> NATSAuth | None:
    """A :class:`NATSAuth` from the flags plus ``NARUN_NATS_PASSWORD``/``NARUN_NATS_TOKEN``.

    Raises :class:`narun.errors.ConfigError` if the options contradict each other.
    """
    env = os.environ if env is None else env
    values: dict[str, str | None] = dict(_given())
    values["password"] = env.get(ENV_VARS["password"]) or None
    values["token"] = env.get(ENV_VARS["token"]) or None
    auth = NATSAuth(**values)
    return auth if auth else None
