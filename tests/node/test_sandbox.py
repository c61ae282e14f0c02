"""The isolation keys of a spec and the paths a Landlock-confined instance may use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from narun.node import launcher as launch
from narun.node.sandbox import SYSTEM_PATHS, LandlockSpec, landlock_paths
from narun.node.spec import dump_spec, parse_spec


def test_landlock_paths_hold_system_work_dir_groups_and_custom_paths() -> None:
    spec = LandlockSpec.model_validate(
        {"tmp": True, "paths": [{"path": "/data/in/", "modes": "wr"}]}
    )
    paths = landlock_paths(spec, work_dir="/w", read_exec=["/venv"], read_only=["/w/cfg"])
    assert paths[: len(SYSTEM_PATHS)] == list(SYSTEM_PATHS)
    assert ("/tmp", "rwc") in paths
    assert ("/w", "rwc") in paths
    assert ("/venv", "rx") in paths
    assert ("/w/cfg", "r") in paths
    assert ("/data/in", "rw") in paths
    assert ("/etc/resolv.conf", "r") not in paths  # dns not asked for
    assert len(paths) == len(set(paths))


def test_go_spelled_isolation_keys_round_trip() -> None:
    spec = parse_spec(
        {
            "name": "a",
            "command": "x",
            "mode": "landlock",
            "mounts": [{"path": "conf/a.txt", "source": {"objectStore": "cfg"}}],
            "nonet": {"localPorts": [{"port": 5432, "protocol": "tcp"}]},
            "memoryMB": 64,
            "memoryMaxMB": 128,
            "cpuCores": 0.5,
            "user": "nobody",
            "metrics": {"port": 9090},
        }
    )
    stored = dump_spec(spec).decode()
    assert "objectStore: cfg" in stored
    assert "localPorts:" in stored
    assert parse_spec(__import__("yaml").safe_load(stored)) == spec


def _launch(config: dict[str, object], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-I", launch.__file__, json.dumps(config), "--", *argv],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={"PATH": os.environ["PATH"]},
    )


def test_the_launcher_execs_with_the_environment_it_was_given() -> None:
    result = _launch({}, sys.executable, "-c", "import os, sys; print(sorted(os.environ))")
    assert result.returncode == 0, result.stderr
    assert "PATH" in result.stdout
    assert "NARUN" not in result.stdout  # no config variable reaches the program


def test_a_launcher_step_that_fails_says_which_and_exits_120() -> None:
    result = _launch({"cgroups": ["/nonexistent/cgroup.procs"]}, "true")
    assert result.returncode == launch.EXIT_SETUP
    assert result.stderr.startswith("narun-launch: setup: join cgroup /nonexistent:")
    missing = _launch({}, "/no/such/program")
    assert missing.returncode == launch.EXIT_SETUP
    assert "narun-launch: exec: /no/such/program" in missing.stderr


@pytest.mark.skipif(launch.landlock_abi() < 1, reason="this kernel has no Landlock")
def test_landlock_confines_a_real_process(tmp_path: Path) -> None:
    allowed, denied = tmp_path / "allowed", tmp_path / "denied"
    allowed.mkdir()
    denied.mkdir()
    code = (
        "import sys\n"
        "for d in sys.argv[1:]:\n"
        "    try:\n"
        "        open(d + '/f', 'w').write('x'); print(d, 'ok')\n"
        "    except PermissionError: print(d, 'refused')\n"
    )
    paths = [
        *SYSTEM_PATHS,
        (sys.base_prefix, "rx"),
        (sys.prefix, "rx"),
        (str(allowed), "rwc"),
    ]
    result = _launch({"landlock": paths}, sys.executable, "-c", code, str(allowed), str(denied))
    assert result.returncode == 0, result.stderr
    assert f"{allowed} ok" in result.stdout
    assert f"{denied} refused" in result.stdout
    assert not (denied / "f").exists()


def test_landlock_abi_is_reported() -> None:
    assert launch.landlock_abi() >= 0
