"""gRPC rows: the example Greeter served directly by grpc.aio, and through narun.

Both are driven by ``bench.grpc_load`` (a Python grpc.aio client: see its docstring) at
each concurrency, ``runs`` times; medians are reported, with CPU time per call of every
process as for the HTTP rows.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.procs import ROOT, Procs, cpu_seconds, free_port

__all__ = [
    "GRPCRow",
    "print_rows",
    "print_stream_rows",
    "run_grpc",
    "run_grpc_stream",
    "unavailable",
]

SERVICE = "greeter-bench"
_PY = sys.executable


@dataclass
class GRPCRow:
    """Medians of the runs of one target at one concurrency."""

    target: str
    title: str
    concurrency: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us: dict[str, float] = field(default_factory=dict)
    runs: list[float] = field(default_factory=list)


def unavailable() -> str | None:
    """Why the gRPC rows cannot run, or None."""
    for path in ("src/narun/gateway/grpc.py", "examples/grpc_hello/server.py"):
        if not (ROOT / path).exists():
            return f"{path} does not exist yet"
    try:
        import grpc  # noqa: F401
    except ImportError:
        return "grpcio is not installed (pip install 'narun[grpc]')"
    return None


def _direct(procs: Procs, workdir: Path) -> tuple[str, dict[str, str]]:
    port = free_port()
    proc = procs.start("grpc-server", [_PY, "-m", "bench.grpc_direct", str(port)])
    proc.wait_for_port(port, timeout=30)
    return f"127.0.0.1:{port}", {"grpc.aio server": "grpc-server"}


def _narun(procs: Procs, workdir: Path) -> tuple[str, dict[str, str]]:
    from narun.transport.server import find_nats_server

    nats_port = free_port()
    nats = procs.start("nats-server", [find_nats_server(), "-a", "127.0.0.1", "-p", str(nats_port)])
    nats.wait_for_port(nats_port, timeout=30)
    nats_url = f"nats://127.0.0.1:{nats_port}"
    procs.start(
        "consumer",
        [
            *(_PY, "-m", "narun", "serve", "examples.grpc_hello.server:register"),
            *("--service", SERVICE, "--interface", "grpc"),
            *("--nats-url", nats_url, "--log-level", "warning"),
        ],
    )
    port = free_port()
    config = workdir / "gateway-grpc.yaml"
    config.write_text(
        textwrap.dedent(
            f"""\
            nats_url: "{nats_url}"
            server_addr: "127.0.0.1:{free_port()}"
            grpc_addr: "127.0.0.1:{port}"
            metrics_addr: "127.0.0.1:{free_port()}"
            request_timeout_seconds: 10
            routes:
              - grpc: "hello.v1.Greeter"
                service: "{SERVICE}"
            """
        )
    )
    gateway = procs.start(
        "gateway", [_PY, "-m", "narun", "gateway", "-c", str(config), "--log-level", "warning"]
    )
    gateway.wait_for_port(port, timeout=30)
    return f"127.0.0.1:{port}", {
        "gateway": "gateway",
        "nats-server": "nats-server",
        "consumer": "consumer",
    }


_TARGETS: tuple[tuple[str, str, Callable[[Procs, Path], tuple[str, dict[str, str]]]], ...] = (
    ("direct", "grpc.aio (direct)", _direct),
    ("narun", "narun gRPC", _narun),
)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _load(
    procs: Procs, target: str, roles: dict[str, str], concurrency: int, seconds: float
) -> dict[str, float]:
    tree = {role: procs.pids(child) for role, child in roles.items()}
    every = [pid for pids in tree.values() for pid in pids]
    before = cpu_seconds(every)
    client_before = _children_cpu()
    done = subprocess.run(
        [_PY, "-m", "bench.grpc_load", target, str(concurrency), str(seconds)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=seconds + 60,
        check=False,
    )
    after = cpu_seconds(every)
    client = _children_cpu() - client_before
    if done.returncode != 0:
        raise RuntimeError(f"gRPC load generator failed:\n{done.stdout}\n{done.stderr}")
    out: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    per = 1e6 / out["requests"] if out["requests"] else 0.0
    for role, pids in tree.items():
        used = sum(after.get(p, before[p]) - before[p] for p in pids if p in before)
        out[f"cpu:{role}"] = used * per
    out["cpu:client"] = client * per
    return out


def run_grpc(
    workdir: Path, *, concurrency: list[int], seconds: float, runs: int, warmup: float
) -> list[GRPCRow]:
    """Start each target, warm it up, load it at every concurrency, stop it."""
    rows: list[GRPCRow] = []
    for key, title, start in _TARGETS:
        target_dir = workdir / f"grpc-{key}"
        target_dir.mkdir()
        print(f"{title} ...", flush=True)
        with Procs(target_dir) as procs:
            try:
                target, roles = start(procs, target_dir)
            except Exception:
                for name in procs.names():
                    print(f"--- {name} log ---\n{procs.log_tail(name)}", file=sys.stderr)
                raise
            _load(procs, target, roles, max(concurrency), warmup)
            for c in concurrency:
                results = []
                for i in range(runs):
                    r = _load(procs, target, roles, c, seconds)
                    rps = r["requests"] / r["seconds"]
                    results.append((rps, r))
                    print(
                        f"  {title:<22} c={c:<3} run {i + 1}: {rps:9.0f} calls/s  "
                        f"p50 {r['p50_us'] / 1000:.3f} ms  p99 {r['p99_us'] / 1000:.3f} ms  "
                        f"errors {r['errors']:.0f}",
                        flush=True,
                    )
                cpu_keys = [k for k in results[0][1] if k.startswith("cpu:")]
                rows.append(
                    GRPCRow(
                        target=key,
                        title=title,
                        concurrency=c,
                        rps=statistics.median(rps for rps, _ in results),
                        p50_ms=statistics.median(r["p50_us"] for _, r in results) / 1000,
                        p99_ms=statistics.median(r["p99_us"] for _, r in results) / 1000,
                        errors=int(sum(r["errors"] for _, r in results)),
                        cpu_us={
                            k[4:]: statistics.median(r[k] for _, r in results) for k in cpu_keys
                        },
                        runs=[rps for rps, _ in results],
                    )
                )
    return rows


def print_rows(rows: list[GRPCRow]) -> None:
    """The gRPC table and its CPU per call."""
    direct = {r.concurrency: r for r in rows if r.target == "direct"}
    print()
    print(
        f"{'gRPC (unary SayHello)':<22}{'conc':>6}{'calls/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'x direct':>10}{'errors':>8}"
    )
    for r in rows:
        d = direct.get(r.concurrency)
        ratio = f"{r.rps / d.rps:.2f}x" if d and d.rps else "-"
        print(
            f"{r.title:<22}{r.concurrency:>6}{r.rps:>10.0f}{r.p50_ms:>9.3f}{r.p99_ms:>9.3f}"
            f"{ratio:>10}{r.errors:>8}"
        )
    print("\nCPU time per gRPC call, us")
    for r in rows:
        cells = "  ".join(f"{role} {us:.1f}" for role, us in r.cpu_us.items())
        print(f"  {r.title:<20} c={r.concurrency:<3} {cells}")


def run_grpc_stream(workdir: Path, *, messages: int) -> list[dict[str, float | str]]:
    """One bidi ``Chat`` stream per target (``bench.grpc_stream_load``), one run each."""
    rows: list[dict[str, float | str]] = []
    for key, title, start in _TARGETS:
        target_dir = workdir / f"grpc-stream-{key}"
        target_dir.mkdir()
        print(f"{title}, bidi stream of {messages} messages ...", flush=True)
        with Procs(target_dir) as procs:
            target, _ = start(procs, target_dir)
            done = subprocess.run(
                [_PY, "-m", "bench.grpc_stream_load", target, str(messages)],
                capture_output=True,
                text=True,
                cwd=ROOT,
                timeout=600,
                check=False,
            )
            if done.returncode != 0:
                raise RuntimeError(f"gRPC stream load failed:\n{done.stdout}\n{done.stderr}")
            out: dict[str, float | str] = json.loads(done.stdout.strip().splitlines()[-1])
            out["target"], out["title"] = key, title
            rows.append(out)
    return rows


def print_stream_rows(rows: list[dict[str, float | str]]) -> None:
    """The bidi stream table: messages/s and round-trip delay, with the ratio to direct."""
    direct = next((r for r in rows if r["target"] == "direct"), None)
    print()
    head = f"{'gRPC bidi Chat stream':<22}{'msgs/s':>10}{'x direct':>10}"
    print(f"{head}{'rtt p50 ms':>12}{'p99 ms':>9}")
    for r in rows:
        rate = float(r["msgs_per_s"])
        ratio = f"{rate / float(direct['msgs_per_s']):.2f}x" if direct else "-"
        print(
            f"{r['title']!s:<22}{rate:>10.0f}{ratio:>10}"
            f"{float(r['rtt_p50_us']) / 1000:>12.3f}{float(r['rtt_p99_us']) / 1000:>9.3f}"
        )
