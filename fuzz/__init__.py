"""Coverage-guided fuzz targets (atheris); ``make fuzz`` runs them."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterable


def run(check: Callable[[bytes], None], seeds: Iterable[bytes], name: str) -> None:
    """Fuzz ``check`` with atheris from a fresh corpus of ``seeds``.

    The command-line arguments (``-runs=N`` etc.) go to atheris.
    """
    import atheris

    corpus = tempfile.mkdtemp(prefix=f"{name}-corpus-")
    for i, seed in enumerate(seeds):
        with open(os.path.join(corpus, f"seed{i}"), "wb") as fh:
            fh.write(seed)
    atheris.Setup([*sys.argv, corpus], check)
    atheris.Fuzz()
