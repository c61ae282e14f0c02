"""The node tests' helpers leave nothing running, however a test or fixture ends.

A node e2e test that fails, times out or is interrupted (Ctrl-C) must not leave ``narun
node`` processes, or the instances they started, behind: they would keep running on the
shared machine, holding ports and CPU, long after the suite.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from narun.transport.server import NATSServer
from tests.e2e.test_node import Cluster, alive, deploy, running, start_node
from tests.support import Processes, unique_service


class BodyFailed(Exception):
    """The failure a test body ends with here."""


def _pids_mentioning(text: str) -> list[int]:
    """Processes (not zombies) whose command line contains ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


@pytest.mark.parametrize("ending", [BodyFailed, KeyboardInterrupt])
def test_a_node_and_its_instance_are_gone_when_the_block_ends_abnormally(
    tmp_path: Path, ending: type[BaseException]
) -> None:
    jetstream = f'jetstream {{ store_dir: "{tmp_path / "js"}" }}'
    name = unique_service("leak")
    pids: dict[str, int] = {}
    with NATSServer(extra_config=jetstream) as server:
        c = Cluster(server.url, tmp_path, {}, "", {})

        def a_test_that_ends_abnormally() -> None:
            with Processes(tmp_path, server.url, check=False) as procs:
                node = procs.add(start_node(c, "k1"))
                deploy(c, name, "--replicas", "1")
                [run] = running(c.url, name)
                pids.update(node=node.pid, instance=run["pid"])
                raise ending("the test ends here")

        with pytest.raises(ending):
            a_test_that_ends_abnormally()
    assert set(pids) == {"node", "instance"}  # both were running when it ended
    assert not alive(pids["node"])
    assert not alive(pids["instance"])  # the node stopped its instance on the way out


def test_a_node_that_is_not_up_in_time_is_stopped(tmp_path: Path) -> None:
    jetstream = f'jetstream {{ store_dir: "{tmp_path / "js"}" }}'
    with NATSServer(extra_config=jetstream) as server:
        c = Cluster(server.url, tmp_path, {}, "", {})
        with pytest.raises(AssertionError, match="not within 0s: node late up"):
            start_node(c, "late", timeout=0)  # not in the KV yet the moment it starts
    assert list(tmp_path.glob("late-*.log"))  # it was started
    assert _pids_mentioning(str(tmp_path / "late")) == []
