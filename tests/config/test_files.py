"""narun.config.files: reading a YAML config file safely, duplicate keys refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from narun.config.files import read_yaml
from narun.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "some.yaml"
    path.write_text(text)
    return path


def test_reads_the_data(tmp_path: Path) -> None:
    path = write(tmp_path, "a: 1\nb: [x, {c: null}]\n")
    assert read_yaml(path) == {"a": 1, "b": ["x", {"c": None}]}
    assert read_yaml(str(path)) == read_yaml(path)


@pytest.mark.parametrize("text", ["", "# nothing\n"])
def test_empty_file_is_none(tmp_path: Path, text: str) -> None:
    assert read_yaml(write(tmp_path, text)) is None


def test_duplicate_key_in_a_nested_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "outer:\n  k: 1\n  k: 2\n")
    with pytest.raises(ConfigError) as info:
        read_yaml(path)
    assert str(info.value) == f"{path}: line 3, column 3: invalid YAML: found duplicate key 'k'"


def test_duplicate_number_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="found duplicate key 1"):
        read_yaml(write(tmp_path, "1: a\n1: b\n"))


def test_python_tags_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid YAML"):
        read_yaml(write(tmp_path, "x: !!python/object/apply:os.getcwd []\n"))
