"""Executable platforms from file headers (Go's names), as a node checks them before running."""

from __future__ import annotations

import platform
import struct
import sys
from pathlib import Path

import pytest

from narun.node.binfmt import HEAD_SIZE, executable_platform, go_platform


def elf(machine: int, osabi: int = 0, *, big_endian: bool = False) -> bytes:
    order = ">" if big_endian else "<"
    ident = b"\x7fELF" + bytes([2, 2 if big_endian else 1, 1, osabi]) + bytes(8)
    return ident + struct.pack(order + "HH", 2, machine) + bytes(40)


def pe(machine: int) -> bytes:
    head = bytearray(0x80 + 6)
    head[:2] = b"MZ"
    struct.pack_into("<I", head, 0x3C, 0x80)
    head[0x80:0x84] = b"PE\x00\x00"
    struct.pack_into("<H", head, 0x84, machine)
    return bytes(head)


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (elf(0x3E), ("linux", "amd64")),
        (elf(0xB7, 3), ("linux", "arm64")),
        (elf(0x3E, 9), ("freebsd", "amd64")),
        (elf(0xF3), ("linux", "riscv64")),
        (elf(0x28, big_endian=False), ("linux", "arm")),
        (b"\xcf\xfa\xed\xfe" + struct.pack("<I", 0x0100000C) + bytes(20), ("darwin", "arm64")),
        (b"\xcf\xfa\xed\xfe" + struct.pack("<I", 0x01000007) + bytes(20), ("darwin", "amd64")),
        (pe(0x8664), ("windows", "amd64")),
        (pe(0xAA64), ("windows", "arm64")),
    ],
)
def test_known_formats(head: bytes, expected: tuple[str, str]) -> None:
    assert executable_platform(head) == expected


@pytest.mark.parametrize(
    "head",
    [
        b"#!/bin/sh\necho hi\n",
        b"",
        b"\x7fELF",  # cut short
        elf(0x9999),  # a CPU we do not name
        elf(0x3E, 97),  # an OS ABI we do not name
        b"\xca\xfe\xba\xbe" + bytes(40),  # universal Mach-O: runs on several
        b"MZ" + bytes(100),  # DOS stub without a PE header
    ],
)
def test_scripts_and_unknown_formats_have_no_platform(head: bytes) -> None:
    assert executable_platform(head) is None


@pytest.mark.parametrize(
    ("sys_platform", "machine", "expected"),
    [
        ("linux", "x86_64", ("linux", "amd64")),
        ("linux", "aarch64", ("linux", "arm64")),
        ("darwin", "arm64", ("darwin", "arm64")),
        ("win32", "AMD64", ("windows", "amd64")),
        ("freebsd14", "amd64", ("freebsd", "amd64")),
        ("linux", "s390x", ("linux", None)),
    ],
)
def test_go_names_of_this_machine(
    sys_platform: str, machine: str, expected: tuple[str, str | None]
) -> None:
    assert go_platform(sys_platform, machine) == expected


def test_this_pythons_binary_is_of_this_platform() -> None:
    binary = Path(sys.executable).resolve()
    with binary.open("rb") as f:
        found = executable_platform(f.read(HEAD_SIZE))
    if found is None:
        pytest.skip(f"{binary} is not in a format this test knows")
    assert found == go_platform(sys.platform, platform.machine())
