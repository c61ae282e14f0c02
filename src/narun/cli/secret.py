"""``narun secret``: set, list and remove the secrets apps get through ``valueFromSecret``.

A value is read from standard input or a file, never from the command line (it would land
in the shell's history and in every process listing).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from nats.aio.client import Client

from narun.cli.node import _nats_options, _run, _table

__all__ = ["secret"]


def _master_key_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--master-key-file",
        envvar="NARUN_MASTER_KEY_PATH",
        type=click.Path(dir_okay=False, path_type=Path),
        help="File holding the master key (base64 of 32 bytes); or $NARUN_MASTER_KEY.",
    )(f)


@click.group()
def secret() -> None:
    """Encrypted secrets in NATS (bucket narun-secrets, shared with Go narun)."""


@secret.command("keygen")
def secret_keygen() -> None:
    """Print a new random master key (keep it in a file readable by its owner only)."""
    from narun.node.secrets import new_master_key

    click.echo(new_master_key().text())


@secret.command("set")
@click.argument("name")
@click.option(
    "--from-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Read the value from this file (default: standard input).",
)
@click.option("--desc", "description", default="", help="A description, stored in clear.")
@_master_key_option
@_nats_options
def secret_set(
    name: str,
    from_file: Path | None,
    description: str,
    master_key_file: Path | None,
    nats_url: str,
) -> None:
    """Encrypt a value and store it as NAME: from stdin (or --from-file), never an argument."""
    from narun.node import client
    from narun.node.secrets import SecretError, load_master_key, secret_name_problem

    problem = secret_name_problem(name)
    if problem:
        raise click.BadParameter(problem, param_hint="NAME")
    try:
        key = load_master_key(master_key_file)
    except SecretError as exc:
        raise click.ClickException(str(exc)) from None
    if key is None:
        raise click.ClickException(
            "no master key: --master-key-file, $NARUN_MASTER_KEY_PATH or $NARUN_MASTER_KEY "
            "(make one with: narun secret keygen)"
        )
    if from_file is not None:
        value = from_file.read_bytes()
    elif sys.stdin.isatty():
        value = click.prompt(
            f"value of {name}", hide_input=True, confirmation_prompt=True, err=True
        ).encode()
    else:
        value = sys.stdin.buffer.read()
        if value.endswith(b"\n"):  # `echo x | narun secret set` means "x"
            value = value[:-1]
    if not value:
        raise click.ClickException("the value is empty")

    async def work(nc: Client) -> None:
        await client.put_secret(nc, key, name, value, description=description)

    _run(nats_url, work, name="narun secret")
    click.echo(f"secret {name} stored ({len(value)} bytes, encrypted)")


@secret.command("ls")
@_nats_options
def secret_ls(nats_url: str) -> None:
    """NAME, UPDATED, DESCRIPTION of every secret (never a value)."""
    from narun.node import client

    rows = _run(nats_url, client.list_secrets, name="narun secret")
    table = [["NAME", "UPDATED", "DESCRIPTION"]]
    table += [[s.name, s.updated_at[:19], s.description or "-"] for s in rows]
    _table(table)


@secret.command("rm")
@click.argument("name")
@_nats_options
def secret_rm(name: str, nats_url: str) -> None:
    """Remove NAME (instances using it fail at their next start)."""
    from narun.node import client

    _run(nats_url, lambda nc: client.remove_secret(nc, name), name="narun secret")
    click.echo(f"removed secret {name}")
