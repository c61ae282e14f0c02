"""The instance launcher: apply an instance's isolation to itself, then exec the program.

Run by the node as ``python -I launcher.py CONFIG_JSON -- ARGV...`` in the new process (it
imports nothing but the standard library, so it works whatever the instance's environment
and path are). In order, each step only when the config asks for it:

1. join the instance's cgroups (write its pid to each ``cgroup.procs``);
2. a mount namespace of its own in which every mounted file is bind-mounted read-only
   onto itself (so not even root inside can write it);
3. a network namespace of its own (``nonet``) with ``lo`` up and, per declared host port,
   a forwarder listening on ``127.0.0.1:<port>`` inside that relays to a Unix socket the
   node serves outside (which connects to ``127.0.0.1:<port>`` on the host);
4. drop to the given user (``setgroups`` to its groups, ``setgid``, ``setuid``);
5. ``PR_SET_NO_NEW_PRIVS`` and a Landlock ruleset allowing only the listed paths;
6. ``execvpe`` the program with exactly the environment it was given.

Any failure prints ``narun-launch: <step>: <reason>`` on stderr and exits
:data:`EXIT_SETUP` (the node shows that line and marks the instance ``failed``): nothing
is ever skipped silently. The config holds paths and numbers, never environment values.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import socket
import struct
import sys
import threading
from typing import Any, NoReturn

EXIT_SETUP = 120
"""Exit code of a launcher that could not set the instance up (never an app's fault)."""

# syscalls (x86_64 and aarch64 share the Landlock numbers)
_SYS_LANDLOCK_CREATE_RULESET = 444
_SYS_LANDLOCK_ADD_RULE = 445
_SYS_LANDLOCK_RESTRICT_SELF = 446
_LANDLOCK_CREATE_RULESET_VERSION = 1
_LANDLOCK_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_PDEATHSIG = 1
_CLONE_NEWNS = 0x00020000
_CLONE_NEWNET = 0x40000000
_MS_RDONLY = 1
_MS_NOSUID = 2
_MS_NODEV = 4
_MS_REMOUNT = 32
_MS_BIND = 4096
_MS_REC = 16384
_MS_PRIVATE = 1 << 18

# Landlock filesystem rights (ABI 1 .. 5)
_EXECUTE = 1 << 0
_WRITE_FILE = 1 << 1
_READ_FILE = 1 << 2
_READ_DIR = 1 << 3
_REMOVE_DIR = 1 << 4
_REMOVE_FILE = 1 << 5
_MAKE_CHAR = 1 << 6
_MAKE_DIR = 1 << 7
_MAKE_REG = 1 << 8
_MAKE_SOCK = 1 << 9
_MAKE_FIFO = 1 << 10
_MAKE_BLOCK = 1 << 11
_MAKE_SYM = 1 << 12
_REFER = 1 << 13  # ABI 2
_TRUNCATE = 1 << 14  # ABI 3
_IOCTL_DEV = 1 << 15  # ABI 5

_FILE_RIGHTS = _EXECUTE | _WRITE_FILE | _READ_FILE | _TRUNCATE | _IOCTL_DEV
_READ = _READ_FILE | _READ_DIR
_WRITE = (
    _WRITE_FILE
    | _REMOVE_DIR
    | _REMOVE_FILE
    | _MAKE_CHAR
    | _MAKE_DIR
    | _MAKE_REG
    | _MAKE_SOCK
    | _MAKE_FIFO
    | _MAKE_BLOCK
    | _MAKE_SYM
    | _REFER
    | _TRUNCATE
)
MODES = {"r": _READ, "w": _WRITE_FILE | _TRUNCATE, "x": _EXECUTE, "c": _WRITE}
"""Go narun's path mode letters: read, write, execute, create (and remove) within."""


class _RulesetAttr(ctypes.Structure):
    _fields_ = (("handled_access_fs", ctypes.c_uint64),)


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = (("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))


_libc = ctypes.CDLL(None, use_errno=True)  # the symbols of the running process: libc


class SetupError(Exception):
    """One launcher step failed."""


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise SetupError(f"{what}: {os.strerror(err)} (errno {errno.errorcode.get(err, err)})")
    return result


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 without Landlock (or disabled at boot)."""
    if not sys.platform.startswith("linux"):
        return 0
    result = _libc.syscall(
        _SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), _LANDLOCK_CREATE_RULESET_VERSION
    )
    return max(int(result), 0)


def _handled(abi: int) -> int:
    rights = _EXECUTE | _WRITE_FILE | _READ_FILE | _READ_DIR | _WRITE
    if abi < 2:
        rights &= ~_REFER
    if abi < 3:
        rights &= ~_TRUNCATE
    if abi >= 5:
        rights |= _IOCTL_DEV
    return rights


def restrict_filesystem(paths: list[tuple[str, str]]) -> None:
    """Allow only ``paths`` (``(path, modes)``, modes from ``rwxc``) from now on."""
    abi = landlock_abi()
    if abi < 1:
        raise SetupError("this kernel has no Landlock (or it is disabled: lsm= boot option)")
    handled = _handled(abi)
    attr = _RulesetAttr(handled)
    ruleset = _check(
        _libc.syscall(
            _SYS_LANDLOCK_CREATE_RULESET,
            ctypes.byref(attr),
            ctypes.c_size_t(ctypes.sizeof(attr)),
            0,
        ),
        "landlock_create_ruleset",
    )
    try:
        for path, modes in paths:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except FileNotFoundError:
                continue  # an optional system path this machine does not have
            except OSError as exc:
                raise SetupError(f"landlock: cannot open {path}: {exc.strerror}") from None
            try:
                allowed = 0
                for letter in modes:
                    allowed |= MODES[letter]
                allowed &= handled
                if not os.path.isdir(path):
                    allowed &= _FILE_RIGHTS
                rule = _PathBeneath(allowed, fd)
                _check(
                    _libc.syscall(
                        _SYS_LANDLOCK_ADD_RULE, ruleset, _LANDLOCK_RULE_PATH_BENEATH,
                        ctypes.byref(rule), 0,
                    ),
                    f"landlock_add_rule {path}",
                )  # fmt: skip
            finally:
                os.close(fd)
        _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
        _check(_libc.syscall(_SYS_LANDLOCK_RESTRICT_SELF, ruleset, 0), "landlock_restrict_self")
    finally:
        os.close(ruleset)


def _mount(source: str | None, target: str, flags: int, what: str) -> None:
    _check(
        _libc.mount(
            source.encode() if source else None, target.encode(), None, ctypes.c_ulong(flags), None
        ),
        what,
    )


def read_only_files(files: list[str]) -> None:
    """A private mount namespace in which each of ``files`` is read-only."""
    _check(_libc.unshare(_CLONE_NEWNS), "unshare(mount namespace)")
    _mount(None, "/", _MS_REC | _MS_PRIVATE, "make / private")
    for path in files:
        _mount(path, path, _MS_BIND, f"bind {path}")
        flags = _MS_BIND | _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID | _MS_NODEV
        _mount(None, path, flags, f"read-only {path}")


def _lo_up() -> None:
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(s.fileno(), siocgifflags, req))[1]
        fcntl.ioctl(s.fileno(), siocsifflags, struct.pack("16sH22x", b"lo", flags | iff_up))


def _relay(a: socket.socket, b: socket.socket) -> None:
    def pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    threading.Thread(target=pipe, args=(a, b), daemon=True).start()
    threading.Thread(target=pipe, args=(b, a), daemon=True).start()


def _forward(listener: socket.socket, unix_path: str) -> None:
    while True:
        conn, _ = listener.accept()
        out = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            out.connect(unix_path)
        except OSError:
            conn.close()
            out.close()
            continue
        _relay(conn, out)


def _serve_inside(listener: socket.socket, port: int) -> None:
    while True:
        conn, _ = listener.accept()
        try:
            out = socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            conn.close()
            continue
        _relay(conn, out)


def isolate_network(
    ports: list[tuple[int, str]], serve: list[tuple[str, int]] | None = None
) -> None:
    """Own network namespace, ``lo`` up, and a forwarder per ``(port, unix socket)``.

    ``serve``: ``(unix socket, port)`` pairs the other way: the node reaches the instance's
    port (its metrics) through that socket. The forwarders run in a forked helper that
    dies with the instance.
    """
    _check(_libc.unshare(_CLONE_NEWNET), "unshare(network namespace)")
    try:
        _lo_up()
    except OSError as exc:
        raise SetupError(f"bring lo up: {exc.strerror}") from None
    if not ports and not serve:
        return
    inside = []
    for unix_path, port in serve or []:
        u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            u.bind(unix_path)
        except OSError as exc:
            raise SetupError(f"nonet: listen on {unix_path}: {exc.strerror}") from None
        u.listen(16)
        inside.append((u, port))
    listeners = []
    for port, unix_path in ports:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            raise SetupError(f"nonet: listen on 127.0.0.1:{port}: {exc.strerror}") from None
        s.listen(64)
        listeners.append((s, unix_path))
    pid = os.fork()
    if pid:
        for s, _ in listeners:
            s.close()
        for u, _ in inside:
            u.close()
        return
    try:  # the helper: relays until the instance (its parent) ends
        _libc.prctl(_PR_SET_PDEATHSIG, 9, 0, 0, 0)
        os.setsid()
        for fd in (0, 1):
            os.dup2(os.open(os.devnull, os.O_RDWR), fd)
        threads = [threading.Thread(target=_forward, args=pair, daemon=True) for pair in listeners]
        threads += [
            threading.Thread(target=_serve_inside, args=pair, daemon=True) for pair in inside
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        os._exit(0)


def drop_privileges(uid: int, gid: int, groups: list[int]) -> None:
    """Become ``uid``/``gid`` with exactly ``groups``."""
    try:
        os.setgroups(groups)
        os.setgid(gid)
        os.setuid(uid)
    except OSError as exc:
        raise SetupError(f"become uid {uid}: {exc.strerror}") from None


def join_cgroups(procs_files: list[str]) -> None:
    """Move this process into each cgroup (``cgroup.procs`` paths)."""
    for path in procs_files:
        try:
            with open(path, "w") as f:
                f.write(str(os.getpid()))
        except OSError as exc:
            raise SetupError(f"join cgroup {os.path.dirname(path)}: {exc.strerror}") from None


def apply(config: dict[str, Any]) -> None:
    """Every step the config asks for, in order."""
    join_cgroups(config.get("cgroups", []))
    if config.get("read_only"):
        read_only_files(config["read_only"])
    if config.get("nonet") is not None:
        isolate_network(
            [(int(p), str(u)) for p, u in config["nonet"]],
            [(str(u), int(p)) for u, p in config.get("nonet_serve", [])],
        )
    user = config.get("user")
    if user is not None:
        drop_privileges(int(user["uid"]), int(user["gid"]), [int(g) for g in user["groups"]])
        _libc.prctl(_PR_SET_PDEATHSIG, 15, 0, 0, 0)  # a change of uid cleared it
    if config.get("landlock") is not None:
        restrict_filesystem([(str(p), str(m)) for p, m in config["landlock"]])


def _fail(step: str, reason: object) -> NoReturn:
    sys.stderr.write(f"narun-launch: {step}: {reason}\n")
    sys.stderr.flush()
    os._exit(EXIT_SETUP)


def main(argv: list[str]) -> NoReturn:
    """``launcher.py CONFIG_JSON -- PROGRAM ARGS...``."""
    if len(argv) < 3 or argv[1] != "--":
        _fail("usage", "launcher.py CONFIG_JSON -- PROGRAM [ARGS...]")
    try:
        config = json.loads(argv[0])
    except ValueError as exc:
        _fail("config", exc)
    try:
        apply(config)
    except SetupError as exc:
        _fail("setup", exc)
    program = argv[2:]
    try:
        os.execvpe(program[0], program, dict(os.environ))
    except OSError as exc:
        _fail("exec", f"{program[0]}: {exc.strerror}")


if __name__ == "__main__":
    main(sys.argv[1:])
