"""narun.node.command: the short commands packing and installing run."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from narun.node.archive import ArtifactError
from narun.node.command import OUTPUT_TAIL, run


def test_a_command_runs_in_its_folder_with_exactly_its_environment(tmp_path: Path) -> None:
    script = (
        "import os, pathlib; pathlib.Path('seen').write_text("
        "os.getcwd() + '|' + os.environ.get('ONLY', '') + '|' + os.environ.get('HOME', '-'))"
    )
    run([sys.executable, "-I", "-c", script], cwd=tmp_path, env={"ONLY": "this"})
    assert (tmp_path / "seen").read_text() == f"{os.path.realpath(tmp_path)}|this|-"


def test_a_failure_names_what_failed_and_quotes_the_end_of_its_output(tmp_path: Path) -> None:
    script = (
        "import sys; print('x' * 10000); sys.stderr.write('the reason at the end'); sys.exit(3)"
    )
    with pytest.raises(ArtifactError, match=r"^resolving things failed \(exit 3\):\n") as info:
        run([sys.executable, "-c", script], cwd=tmp_path, env={}, what="resolving things")
    message = str(info.value)
    assert message.endswith("the reason at the end")  # stderr is in the quoted output
    assert len(message) < OUTPUT_TAIL + 100  # the tail, not all of it


def test_the_program_is_named_when_no_what_is_given(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"failed \(exit 1\)") as info:
        run([sys.executable, "-c", "raise SystemExit(1)"], cwd=tmp_path, env={})
    assert str(info.value).startswith(sys.executable)


def test_a_command_reading_its_input_gets_nothing_rather_than_waiting(tmp_path: Path) -> None:
    script = "import sys; sys.exit(0 if sys.stdin.read() == '' else 1)"
    run([sys.executable, "-c", script], cwd=tmp_path, env={})


def test_a_program_that_cannot_start_is_an_artifact_error(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="no-such-program could not start"):
        run([str(tmp_path / "no-such-program")], cwd=tmp_path, env={}, what="no-such-program")
