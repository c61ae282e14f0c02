"""Cgroup discovery and limits on fake v1/v2 trees, and once on this machine's real tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from narun.node.cgroups import CgroupError, Hierarchy, Limits, create, hierarchies

MIXED_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
MIXED_SELF = "4:memory:/api/abc\n1:cpu:/\n0::/\n"


def test_a_v1_memory_controller_next_to_a_v2_tree_without_it() -> None:
    found = hierarchies(MIXED_MOUNTINFO, MIXED_SELF)
    by = {(h.version, h.mount.name): h for h in found}
    assert by[(1, "memory")].own == Path("/sys/fs/cgroup/memory/api/abc")
    assert by[(1, "cpu")].own == Path("/sys/fs/cgroup/cpu")
    assert by[(2, "unified")].own == Path("/sys/fs/cgroup/unified")


def test_pure_v2_with_a_nested_cgroup() -> None:
    info = "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n"
    [h] = hierarchies(info, "0::/system.slice/narun.service\n")
    assert h.version == 2
    assert h.own == Path("/sys/fs/cgroup/system.slice/narun.service")


def _fake_v1(tmp: Path) -> list[Hierarchy]:
    mem, cpu = tmp / "memory" / "node", tmp / "cpu"
    for d in (mem, cpu):
        d.mkdir(parents=True)
    return [
        Hierarchy(1, tmp / "memory", frozenset({"memory"}), mem),
        Hierarchy(1, tmp / "cpu", frozenset({"cpu"}), cpu),
        Hierarchy(2, tmp / "unified", frozenset({"hugetlb"}), tmp / "unified"),
    ]


def test_v1_limits_are_written(tmp_path: Path) -> None:
    found = _fake_v1(tmp_path)
    limits = Limits(memory_low=10 << 20, memory_max=64 << 20, cpu_cores=0.5)
    groups = create("n1-app-0", limits, found=found)
    mem = tmp_path / "memory" / "node" / "narun-n1-app-0"
    assert groups.dirs == {"memory": mem, "cpu": tmp_path / "cpu" / "narun-n1-app-0"}
    assert (mem / "memory.limit_in_bytes").read_text() == str(64 << 20)
    assert (mem / "memory.soft_limit_in_bytes").read_text() == str(10 << 20)
    assert (groups.dirs["cpu"] / "cpu.cfs_quota_us").read_text() == "50000"
    assert (groups.dirs["cpu"] / "cpu.cfs_period_us").read_text() == "100000"
    (mem / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 0\n")
    assert not groups.oom_killed()
    (mem / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
    assert groups.oom_killed()


def test_v2_is_preferred_when_it_has_the_controller(tmp_path: Path) -> None:
    v2 = tmp_path / "v2"
    (v2 / "node").mkdir(parents=True)
    found = [
        *_fake_v1(tmp_path),
        Hierarchy(2, v2, frozenset({"memory", "cpu"}), v2 / "node"),
    ]
    groups = create("x", Limits(memory_low=1 << 20, memory_max=2 << 20, cpu_cores=2), found=found)
    d = v2 / "node" / "narun-x"
    assert groups.dirs == {"memory": d, "cpu": d}
    assert groups.procs_files == [str(d / "cgroup.procs")]
    assert (
        v2 / "node" / "cgroup.subtree_control"
    ).read_text() == "+cpu"  # +memory, then +cpu: each write adds one
    assert (d / "memory.max").read_text() == str(2 << 20)
    assert (d / "memory.low").read_text() == str(1 << 20)
    assert (d / "cpu.max").read_text() == "200000 100000"
    (d / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert groups.oom_killed()


def test_cgroup_parent_is_relative_to_the_mount(tmp_path: Path) -> None:
    v2 = tmp_path / "v2"
    (v2 / "narun.slice").mkdir(parents=True)
    found = [Hierarchy(2, v2, frozenset({"memory"}), v2 / "busy")]
    groups = create("x", Limits(memory_max=1 << 20), parent="narun.slice", found=found)
    assert groups.dirs["memory"] == v2 / "narun.slice" / "narun-x"


def test_no_hierarchy_with_the_controller_says_what_was_seen(tmp_path: Path) -> None:
    found = [Hierarchy(2, tmp_path, frozenset({"hugetlb"}), tmp_path)]
    with pytest.raises(CgroupError, match=r"no cgroup hierarchy has the memory controller") as e:
        create("x", Limits(memory_max=1 << 20), found=found)
    assert "v2 at" in str(e.value)
    assert "hugetlb" in str(e.value)


@pytest.mark.skipif(os.geteuid() != 0, reason="creating cgroups needs root")
def test_this_machine_gives_a_memory_and_a_cpu_group() -> None:
    groups = create(f"probe-{os.getpid()}", Limits(memory_max=64 << 20, cpu_cores=0.5))
    try:
        assert set(groups.dirs) == {"memory", "cpu"}
        assert groups.memory_bytes() == 0
        assert not groups.oom_killed()
    finally:
        groups.remove()
    assert not any(d.exists() for d in groups.dirs.values())
