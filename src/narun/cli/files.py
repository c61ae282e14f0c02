"""``narun files``: add, list and remove the files app specs mount (Object Store narun-files)."""

from __future__ import annotations

from pathlib import Path

import click
from nats.aio.client import Client

from narun.cli.node import _nats_options, _run, _table

__all__ = ["files"]


@click.group()
def files() -> None:
    """Files that specs mount read-only into instances (shared with Go narun)."""


@files.command("add")
@click.argument("name")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_nats_options
def files_add(name: str, path: Path, nats_url: str) -> None:
    """Store PATH as NAME (a new version replaces the old one)."""
    from narun.node.files import add_file

    async def work(nc: Client) -> None:
        row = await add_file(nc.jetstream(timeout=60), name, path)
        click.echo(f"stored {row.name} ({row.size} bytes, {row.digest})")

    _run(nats_url, work, name="narun files")


@files.command("ls")
@_nats_options
def files_ls(nats_url: str) -> None:
    """NAME, SIZE, MODIFIED, ORIGINAL FILENAME, DIGEST of every file."""
    from narun.node.files import list_files

    async def work(nc: Client) -> None:
        rows = await list_files(nc.jetstream(timeout=10))
        table = [["NAME", "SIZE", "MODIFIED", "ORIGINAL FILENAME", "DIGEST"]]
        table += [
            [r.name, str(r.size), r.modified[:19], r.original_filename or "-", r.digest]
            for r in rows
        ]
        _table(table)

    _run(nats_url, work, name="narun files")


@files.command("rm")
@click.argument("name")
@_nats_options
def files_rm(name: str, nats_url: str) -> None:
    """Remove NAME (instances that mount it fail at their next start)."""
    from narun.node.files import remove_file

    async def work(nc: Client) -> None:
        await remove_file(nc.jetstream(timeout=10), name)
        click.echo(f"removed file {name}")

    _run(nats_url, work, name="narun files")
