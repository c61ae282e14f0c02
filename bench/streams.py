"""``python -m bench.streams``: streaming through narun against direct uvicorn.

Downloads and uploads of ``--mib`` MiB (generated, never held in memory: curl reads
the upload from a pipe and throws the download away), throughput of each and the ratio
narun / direct uvicorn measured in the same run; the peak RSS of every process during
the transfers; and the delay of Server-Sent Events (the app's timestamp to the client's
arrival, p50 and p99). Part of ``make bench`` (see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.pair import start_direct, start_narun
from bench.procs import Procs, RssSampler, cpu_seconds

__all__ = ["StreamResult", "main", "run_streams"]

MIB = 1024 * 1024
SERVICE = "benchstream"
APP = "bench.stream_app:app"


@dataclass
class StreamResult:
    """One stack's streaming figures."""

    stack: str
    download_mib_s: float
    upload_mib_s: float
    sse_p50_ms: float
    sse_p99_ms: float
    rss_peak_mib: dict[str, float] = field(default_factory=dict)
    cpu_down_s: dict[str, float] = field(default_factory=dict)
    """CPU seconds of each role during the download."""
    cpu_up_s: dict[str, float] = field(default_factory=dict)
    """CPU seconds of each role during the upload."""


def _curl(args: list[str], stdin: int | None = None) -> float:
    out = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{time_total}", *args],
        stdin=stdin,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(out)


def _download(url: str, size: int) -> float:
    return size / _curl([f"{url}/download?size={size}"]) / MIB


def _upload(url: str, size: int) -> float:
    gen = subprocess.Popen(["head", "-c", str(size), "/dev/zero"], stdout=subprocess.PIPE)
    try:
        seconds = _curl(
            ["-T", "-", "-X", "POST", "-H", "Transfer-Encoding: chunked", f"{url}/upload"],
            stdin=gen.stdout.fileno() if gen.stdout else None,
        )
    finally:
        gen.wait()
    return size / seconds / MIB


async def _sse(url: str, events: int, gap: float) -> list[float]:
    delays: list[float] = []
    async with (
        httpx.AsyncClient(timeout=60) as client,
        client.stream("GET", f"{url}/sse", params={"n": events, "gap": gap}) as response,
    ):
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                delays.append((time.time() - float(line[6:])) * 1000)
    return delays


def _measure(stack: str, url: str, pids: dict[str, list[int]], size: int) -> StreamResult:
    everyone = [pid for group in pids.values() for pid in group]
    with RssSampler(everyone, interval=0.1) as rss:
        before = cpu_seconds(everyone)
        down = _download(url, size)
        middle = cpu_seconds(everyone)
        up = _upload(url, size)
        after = cpu_seconds(everyone)
    delays = asyncio.run(_sse(url, 200, 0.01))
    peak = {role: max(rss.peak[p] for p in group) / MIB for role, group in pids.items()}
    return StreamResult(
        stack=stack,
        download_mib_s=down,
        upload_mib_s=up,
        sse_p50_ms=statistics.median(delays),
        sse_p99_ms=statistics.quantiles(delays, n=100)[98],
        rss_peak_mib=peak,
        cpu_down_s=_cpu_by_role(pids, before, middle),
        cpu_up_s=_cpu_by_role(pids, middle, after),
    )


def _cpu_by_role(
    pids: dict[str, list[int]], start: dict[int, float], end: dict[int, float]
) -> dict[str, float]:
    return {
        role: sum(end.get(p, 0.0) - start.get(p, 0.0) for p in group)
        for role, group in pids.items()
    }


def run_streams(size_mib: int, workdir: Path) -> list[StreamResult]:
    """Measure direct uvicorn and narun (1 gateway, 1 consumer) with ``size_mib``."""
    size = size_mib * MIB
    results: list[StreamResult] = []
    with Procs(workdir) as procs:
        direct = start_direct(procs, "uvicorn-stream", APP)
        results.append(_measure("uvicorn (direct)", direct.url, direct.roles, size))
        narun = start_narun(
            procs,
            workdir,
            "stream",
            APP,
            SERVICE,
            [{"path": "/", "methods": ["GET", "POST"], "service": SERVICE}],
            request_timeout_seconds=30,
        )
        results.append(_measure("narun (1 gateway)", narun.url, narun.roles, size))
    return results


def report(results: list[StreamResult], size_mib: int) -> str:
    """The streaming section of the report."""
    direct = results[0]
    lines = [
        f"Streaming ({size_mib} MiB each way; SSE: 200 events 10 ms apart)",
        f"{'stack':<20}{'down MiB/s':>12}{'x direct':>10}{'up MiB/s':>10}{'x direct':>10}"
        f"{'SSE p50 ms':>12}{'SSE p99 ms':>12}",
    ]
    for r in results:
        down_x = r.download_mib_s / direct.download_mib_s
        up_x = r.upload_mib_s / direct.upload_mib_s
        lines.append(
            f"{r.stack:<20}{r.download_mib_s:>12.0f}{down_x:>9.2f}x"
            f"{r.upload_mib_s:>10.0f}{up_x:>9.2f}x"
            f"{r.sse_p50_ms:>12.2f}{r.sse_p99_ms:>12.2f}"
        )
    lines.append(
        "Peak RSS during the transfers, MiB: "
        + "; ".join(
            f"{r.stack}: " + ", ".join(f"{role} {mib:.1f}" for role, mib in r.rss_peak_mib.items())
            for r in results
        )
    )
    for r in results:
        lines.append(
            f"CPU seconds, {r.stack}: down "
            + ", ".join(f"{role} {s:.2f}" for role, s in r.cpu_down_s.items())
            + "; up "
            + ", ".join(f"{role} {s:.2f}" for role, s in r.cpu_up_s.items())
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the streaming section alone."""
    p = argparse.ArgumentParser(prog="python -m bench.streams", description=__doc__.split("\n")[0])
    p.add_argument("--mib", type=int, default=1024, help="MiB per transfer (default 1024)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="narun-bench-stream-") as tmp:
        results = run_streams(args.mib, Path(tmp))
    print(report(results, args.mib))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
