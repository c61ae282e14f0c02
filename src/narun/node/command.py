"""Run a short command to its end: ``pip wheel`` when packing, ``pip install`` and a venv's
``python`` when installing.

Its input is empty, its output (stdout and stderr together) is kept, and a failure raises
:class:`~narun.node.archive.ArtifactError` quoting the end of that output: the part where
pip says what went wrong. Long-lived children are :mod:`narun.supervise`'s.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Mapping
from pathlib import Path

from narun.node.archive import ArtifactError

__all__ = ["OUTPUT_TAIL", "run"]

logger = logging.getLogger(__name__)

OUTPUT_TAIL = 3000
"""Characters of a failed command's output quoted in its error."""


def run(command: list[str], *, cwd: Path, env: Mapping[str, str], what: str = "") -> None:
    """Run ``command`` in ``cwd`` with exactly ``env``, and wait for it. Blocking.

    A non-zero exit raises :class:`ArtifactError`: ``<what> failed (exit N):`` (``what``
    defaults to the program) and the last :data:`OUTPUT_TAIL` characters of the output.
    A program that cannot be started raises it too.
    """
    what = what or command[0]
    logger.debug("running %s", command)
    try:
        proc = subprocess.run(
            command,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            check=False,
        )
    except OSError as exc:
        raise ArtifactError(f"{what} could not start: {exc}") from None
    if proc.returncode != 0:
        output = proc.stdout.decode(errors="replace").strip()
        raise ArtifactError(f"{what} failed (exit {proc.returncode}):\n{output[-OUTPUT_TAIL:]}")
