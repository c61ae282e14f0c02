"""Which OS and CPU an executable is built for, read from its first bytes (pure).

So a node refuses an executable of another platform with a clear message instead of
"exec format error" at every restart. Names are Go's (``GOOS``/``GOARCH``: ``linux``,
``amd64``, ...), as Go narun's ``deploy`` detects them; scripts (``#!``), universal
Mach-O files and unknown formats have no platform (``None``): they may run anywhere.
"""

from __future__ import annotations

import struct

__all__ = ["HEAD_SIZE", "executable_platform", "go_platform"]

HEAD_SIZE = 4096
"""How many leading bytes of a file :func:`executable_platform` needs at most."""

_ELF_OS = {0: "linux", 3: "linux", 2: "netbsd", 6: "solaris", 9: "freebsd", 12: "openbsd"}
_ELF_ARCH = {0x03: "386", 0x28: "arm", 0x3E: "amd64", 0xB7: "arm64", 0xF3: "riscv64"}
_MACHO_ARCH = {0x01000007: "amd64", 0x0100000C: "arm64"}
_PE_ARCH = {0x014C: "386", 0x8664: "amd64", 0xAA64: "arm64"}
_MACHINES = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "i386": "386",
    "i686": "386",
    "x86": "386",
    "armv7l": "arm",
    "armv6l": "arm",
    "riscv64": "riscv64",
}


def executable_platform(head: bytes) -> tuple[str, str] | None:
    """``(os, arch)`` of an ELF, Mach-O or PE file from its first bytes, else ``None``."""
    if head[:4] == b"\x7fELF" and len(head) >= 20:
        order = "<" if head[5] == 1 else ">"
        (machine,) = struct.unpack_from(order + "H", head, 18)
        os_name, arch = _ELF_OS.get(head[7]), _ELF_ARCH.get(machine)
    elif head[:4] in (b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe") and len(head) >= 8:
        (cpu,) = struct.unpack_from("<I", head, 4)
        os_name, arch = "darwin", _MACHO_ARCH.get(cpu)
    elif head[:2] == b"MZ" and len(head) >= 0x40:
        (offset,) = struct.unpack_from("<I", head, 0x3C)
        if head[offset : offset + 4] != b"PE\x00\x00" or len(head) < offset + 6:
            return None
        (machine,) = struct.unpack_from("<H", head, offset + 4)
        os_name, arch = "windows", _PE_ARCH.get(machine)
    else:
        return None
    if os_name is None or arch is None:
        return None
    return os_name, arch


def go_platform(sys_platform: str, machine: str) -> tuple[str, str | None]:
    """``(os, arch)`` in Go's names for ``sys.platform`` and ``platform.machine()``."""
    if sys_platform.startswith("linux"):
        os_name = "linux"
    elif sys_platform == "win32":
        os_name = "windows"
    else:  # darwin, freebsd14, openbsd7, ...
        os_name = sys_platform.rstrip("0123456789")
    return os_name, _MACHINES.get(machine.lower())
