"""Drive an HTTP stack with wrk and measure every process of it while it runs."""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.procs import Procs, RssSampler, cpu_seconds
from bench.stacks import BODY, Running

__all__ = ["RunResult", "have_wrk", "run_wrk", "write_script"]

_MARK = "BENCHJSON "
_SCRIPT = """\
wrk.method = "POST"
wrk.body = '%s'
wrk.headers["Content-Type"] = "application/json"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%s{"requests":%%d,"duration_us":%%d,"connect":%%d,"read":%%d,"write":%%d,' ..
    '"status":%%d,"timeout":%%d,"p50_us":%%d,"p99_us":%%d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass(frozen=True)
class RunResult:
    """One wrk run against one stack at one connection count."""

    connections: int
    requests: int
    seconds: float
    errors: int
    """Socket errors, timeouts and non-2xx/3xx answers together."""
    p50_ms: float
    p99_ms: float
    cpu_us_per_request: dict[str, float]
    """Role -> CPU microseconds per request (the role's whole process tree); ``wrk`` too."""
    rss_peak: dict[str, list[int]]
    """Role -> peak RSS in bytes of each of its processes."""

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def have_wrk() -> bool:
    """Whether the ``wrk`` load generator is installed."""
    return shutil.which("wrk") is not None


def write_script(workdir: Path) -> Path:
    """The wrk Lua script: the benchmark request and a JSON summary line."""
    path = workdir / "post.lua"
    path.write_text(_SCRIPT % (BODY.decode(), _MARK))
    return path


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(
    procs: Procs,
    running: Running,
    script: Path,
    *,
    connections: int,
    seconds: float,
) -> RunResult:
    """Run wrk (one thread) for ``seconds`` (whole); measure CPU of every role and RSS of some."""
    tree = {role: procs.pids(child) for role, child in running.roles.items()}
    every = [pid for pids in tree.values() for pid in pids]
    sampled = [pid for role in running.rss_roles for pid in tree[role]]
    argv = [
        *("wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "5s"),
        *("-s", str(script), running.url),
    ]
    before = cpu_seconds(every)
    wrk_before = _children_cpu()
    with RssSampler(sampled) as rss:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=seconds + 60, check=False
        )
    after = cpu_seconds(every)
    wrk_cpu = _children_cpu() - wrk_before
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith(_MARK)), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    data = json.loads(line[len(_MARK) :])
    requests = int(data["requests"])
    per = 1e6 / requests if requests else 0.0
    cpu = {
        role: sum(after.get(p, before[p]) - before[p] for p in pids if p in before) * per
        for role, pids in tree.items()
    }
    cpu["wrk"] = wrk_cpu * per
    errors = sum(int(data[k]) for k in ("connect", "read", "write", "status", "timeout"))
    return RunResult(
        connections=connections,
        requests=requests,
        seconds=int(data["duration_us"]) / 1e6,
        errors=errors,
        p50_ms=int(data["p50_us"]) / 1000,
        p99_ms=int(data["p99_us"]) / 1000,
        cpu_us_per_request=cpu,
        rss_peak={role: [rss.peak[p] for p in tree[role]] for role in running.rss_roles},
    )
