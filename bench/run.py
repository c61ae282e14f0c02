"""``python -m bench.run``: narun against direct uvicorn, Caddy and nginx, on 127.0.0.1.

Every row serves the same tiny JSON POST from the same ASGI app (``bench/app.py``).
Each (stack, connection count) is run ``--runs`` times with wrk and the medians are
reported, with CPU time per request of every process (from ``/proc/<pid>/stat``) and the
gateway's peak RSS under load. Then the gRPC rows (when the gRPC gateway exists) and a
micro-benchmark of the Binary HTTP codec. See ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from types import FrameType
from typing import Any

from bench import grpc_bench, targets
from bench import streams as stream_bench
from bench import websocket as ws_bench
from bench.codec import run_codec
from bench.procs import ROOT, Procs
from bench.stacks import STACKS, Stack, check
from bench.wrk import RunResult, have_wrk, run_wrk, write_script

MIB = 1024 * 1024


@dataclass
class Row:
    """Medians of the runs of one stack at one connection count."""

    stack: str
    title: str
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us: dict[str, float]
    rss_mib: dict[str, list[float]] = field(default_factory=dict)
    runs: list[float] = field(default_factory=list)
    """req/s of every run."""


def _median_row(stack: Stack, results: list[RunResult]) -> Row:
    roles = results[0].cpu_us_per_request.keys()
    rss: dict[str, list[float]] = {}
    for role in results[0].rss_peak:
        per_proc = zip(*(r.rss_peak[role] for r in results), strict=False)
        rss[role] = [max(values) / MIB for values in per_proc]
    return Row(
        stack=stack.key,
        title=stack.title,
        connections=results[0].connections,
        rps=statistics.median(r.rps for r in results),
        p50_ms=statistics.median(r.p50_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        errors=sum(r.errors for r in results),
        cpu_us={
            role: statistics.median(r.cpu_us_per_request[role] for r in results) for role in roles
        },
        rss_mib=rss,
        runs=[r.rps for r in results],
    )


def _metrics_count(url: str) -> float:
    """Sum of ``http_gateway_requests_total`` samples on a Prometheus endpoint."""
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("http_gateway_requests_total{")
    )


def bench_stack(
    stack: Stack, args: argparse.Namespace, workdir: Path, script: Path
) -> tuple[list[Row], list[str]]:
    """Start one stack, warm it up, run wrk at every connection count, stop it."""
    rows: list[Row] = []
    notes: list[str] = []
    stack_dir = workdir / stack.key
    stack_dir.mkdir()
    with Procs(stack_dir) as procs:
        try:
            running = stack.start(procs, stack_dir)
            check(running.url)
        except Exception:
            for child in procs.names():
                print(f"--- {child} log ---\n{procs.log_tail(child)}", file=sys.stderr)
            raise
        run_wrk(procs, running, script, connections=max(args.connections), seconds=args.warmup)
        for connections in args.connections:
            results = []
            for i in range(args.runs):
                result = run_wrk(
                    procs, running, script, connections=connections, seconds=args.duration
                )
                results.append(result)
                print(
                    f"  {stack.title:<22} c={connections:<3} run {i + 1}: "
                    f"{result.rps:9.0f} req/s  p50 {result.p50_ms:.3f} ms  "
                    f"p99 {result.p99_ms:.3f} ms  errors {result.errors}",
                    flush=True,
                )
            rows.append(_median_row(stack, results))
        if running.metrics_url:
            counted = _metrics_count(running.metrics_url)
            notes.append(f"{stack.title}: metrics endpoint counted {counted:.0f} requests")
    return rows, notes


def _fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def print_http(rows: list[Row]) -> None:
    """The HTTP table, with ratios against direct uvicorn and Caddy at the same load."""
    by = {(r.stack, r.connections): r for r in rows}
    print()
    print(
        f"{'HTTP stack':<22}{'conns':>6}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'x direct':>10}{'x caddy':>9}{'errors':>8}"
    )
    for r in rows:
        direct = by.get(("uvicorn", r.connections))
        caddy = by.get(("caddy", r.connections))
        print(
            f"{r.title:<22}{r.connections:>6}{r.rps:>10.0f}{r.p50_ms:>9.3f}{r.p99_ms:>9.3f}"
            f"{_fmt_ratio(r.rps / direct.rps if direct else None):>10}"
            f"{_fmt_ratio(r.rps / caddy.rps if caddy else None):>9}{r.errors:>8}"
        )


def print_cpu(rows: list[Row], connections: list[int]) -> None:
    """CPU microseconds per request of every process, by stack and load."""
    print()
    print("CPU time per request, us (utime+stime of the process tree / requests)")
    head = "".join(f"{'c=' + str(c):>9}" for c in connections)
    print(f"{'stack':<22}{'process':<14}{head}")
    stacks: dict[str, list[Row]] = {}
    for r in rows:
        stacks.setdefault(r.title, []).append(r)
    for title, group in stacks.items():
        roles = list(group[0].cpu_us)
        for role in [*roles, "total"]:
            cells = ""
            for c in connections:
                row = next((r for r in group if r.connections == c), None)
                if row is None:
                    cells += f"{'-':>9}"
                    continue
                value = (
                    sum(v for k, v in row.cpu_us.items() if k != "wrk")
                    if role == "total"
                    else row.cpu_us[role]
                )
                cells += f"{value:>9.1f}"
            label = "total (no wrk)" if role == "total" else role
            print(f"{title:<22}{label:<14}{cells}")


def gateway_rss(rows: list[Row]) -> dict[str, list[float]]:
    """Peak RSS (MiB) of each gateway process per narun stack, over every load."""
    out: dict[str, list[float]] = {}
    for r in rows:
        for mib in r.rss_mib.values():
            peak = out.setdefault(r.title, [0.0] * len(mib))
            if len(peak) < len(mib):
                peak.extend([0.0] * (len(mib) - len(peak)))
            for i, value in enumerate(mib):
                peak[i] = max(peak[i], value)
    return out


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    packages = {}
    for name in ("narun", "uvicorn", "uvloop", "httptools", "nats-py", "prometheus-client"):
        try:
            packages[name] = version(name)
        except Exception:
            packages[name] = "?"
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "packages": packages,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="short smoke run (1 run of 2 s each)")
    p.add_argument("--duration", type=int, help="whole seconds per wrk run (default 5)")
    p.add_argument("--runs", type=int, help="runs per cell, medians reported (default 3)")
    p.add_argument("--warmup", type=int, help="whole seconds of warm-up per stack (default 2)")
    p.add_argument(
        "--connections",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 16, 64],
        help="comma-separated connection counts (default 1,16,64)",
    )
    keys = [s.key for s in STACKS]
    p.add_argument(
        "--stacks",
        type=lambda s: s.split(","),
        default=keys,
        help=f"comma-separated subset of {','.join(keys)}",
    )
    p.add_argument("--no-grpc", action="store_true", help="skip the gRPC rows")
    p.add_argument("--no-codec", action="store_true", help="skip the codec micro-benchmark")
    p.add_argument("--no-streams", action="store_true", help="skip the streaming section")
    p.add_argument("--no-websocket", action="store_true", help="skip the WebSocket section")
    p.add_argument(
        "--stream-mib",
        type=int,
        help="MiB per streamed download/upload (default 1024; 128 with --quick)",
    )
    p.add_argument("--json", type=Path, help="also write the results here (JSON)")
    args = p.parse_args(argv)
    if args.quick:
        args.duration = args.duration or 2.0
        args.runs = args.runs or 1
        args.warmup = args.warmup or 1.0
        args.stream_mib = args.stream_mib or 128
    args.stream_mib = args.stream_mib or 1024
    args.duration = args.duration or 5.0
    args.runs = args.runs or 3
    args.warmup = args.warmup if args.warmup is not None else 2.0
    unknown = set(args.stacks) - set(keys)
    if unknown:
        p.error(f"unknown stacks: {', '.join(sorted(unknown))}")
    return args


def _terminate(signum: int, frame: FrameType | None) -> None:
    # Once: the clean-up that follows (stopping every process) is not interrupted again.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    print(f"\n{signal.Signals(signum).name}: stopping every process", file=sys.stderr)
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the report."""
    args = parse_args(argv)
    # Also when started with SIGINT ignored (in the background of a script).
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    os.chdir(ROOT)
    info = machine()
    started = time.monotonic()
    print(
        f"narun benchmark: {info['nproc']} x {info['cpu']}, Python {info['python']}; "
        f"{args.duration:g} s per run, median of {args.runs}, warm-up {args.warmup:g} s"
    )
    rows: list[Row] = []
    notes: list[str] = []
    grpc_rows: list[grpc_bench.GRPCRow] = []
    grpc_stream: list[dict[str, float | str]] = []
    codec: dict[str, float] | None = None
    streamed: list[stream_bench.StreamResult] = []
    ws_results: list[ws_bench.WSResult] = []
    skipped: dict[str, str] = {}  # why a section or stack did not run ("not measured")
    with tempfile.TemporaryDirectory(prefix="narun-bench-") as tmp:
        workdir = Path(tmp)
        if not have_wrk():
            print("wrk is not installed (apt-get install wrk): SKIPPING every HTTP row")
            skipped["http"] = "wrk is not installed"
        else:
            script = write_script(workdir)
            for stack in STACKS:
                if stack.key not in args.stacks:
                    skipped[stack.key] = "not in --stacks"
                    continue
                missing = stack.missing()
                if missing:
                    print(f"{stack.title}: {', '.join(missing)} not installed: SKIPPED")
                    skipped[stack.key] = f"{', '.join(missing)} not installed"
                    continue
                print(f"{stack.title} ...", flush=True)
                stack_rows, stack_notes = bench_stack(stack, args, workdir, script)
                rows += stack_rows
                notes += stack_notes
        if args.no_grpc:
            skipped["grpc"] = "--no-grpc"
        else:
            reason = grpc_bench.unavailable()
            if reason:
                print(f"gRPC rows SKIPPED: {reason}")
                notes.append(f"gRPC rows skipped: {reason}")
                skipped["grpc"] = reason
            else:
                grpc_rows = grpc_bench.run_grpc(
                    workdir,
                    concurrency=args.connections,
                    seconds=args.duration,
                    runs=args.runs,
                    warmup=args.warmup,
                )
                grpc_stream = grpc_bench.run_grpc_stream(
                    workdir, messages=20_000 if args.quick else 100_000
                )
        if args.no_streams:
            skipped["streams"] = "--no-streams"
        else:
            print(f"streaming ({args.stream_mib} MiB each way) ...", flush=True)
            streamed = stream_bench.run_streams(args.stream_mib, workdir)
        if not args.no_websocket:
            print("WebSocket echo ...", flush=True)
            ws_results = ws_bench.run_websocket(workdir, seconds=2.0 if args.quick else 5.0)
    if args.no_codec:
        skipped["codec"] = "--no-codec"
    else:
        codec = run_codec(seconds=1.0 if args.quick else 2.5)

    if rows:
        print_http(rows)
        print_cpu(rows, args.connections)
    rss = gateway_rss(rows)
    for title, mibs in rss.items():
        shown = " + ".join(f"{m:.1f}" for m in mibs)
        whose = " (supervisor + workers)" if len(mibs) > 1 else ""
        print(f"\nPeak RSS under load, {title}{whose}: {shown} MiB")
    if grpc_rows:
        grpc_bench.print_rows(grpc_rows)
    if grpc_stream:
        grpc_bench.print_stream_rows(grpc_stream)
    if codec:
        print("\nBinary HTTP codec, us per operation (best of 5):")
        for name, us in codec.items():
            print(f"  {name:<16}{us:8.2f}")
    if streamed:
        print("\n" + stream_bench.report(streamed, args.stream_mib))
    if ws_results:
        print("\n" + ws_bench.report(ws_results, 32))
    for note in notes:
        print(f"note: {note}")
    elapsed = time.monotonic() - started
    print(f"\n(done in {elapsed:.0f} s)")
    out = args.json or ROOT / "bench-results" / time.strftime("bench-%Y%m%d-%H%M%S.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "machine": info,
        "options": {
            "duration": args.duration,
            "runs": args.runs,
            "warmup": args.warmup,
            "connections": args.connections,
            "stacks": args.stacks,
        },
        "http": [asdict(r) for r in rows],
        "grpc": [asdict(r) for r in grpc_rows],
        "grpc_stream": grpc_stream,
        "codec": codec,
        "streams": [asdict(r) for r in streamed],
        "websocket": [asdict(r) for r in ws_results],
        "skipped": skipped,
        "notes": notes,
    }
    judged = targets.verdicts(results)
    results["targets"] = [v.as_json() for v in judged]
    out.write_text(json.dumps(results, indent=2))
    print(f"results written to {out}")
    print("\n" + targets.render(judged))
    return 0


if __name__ == "__main__":
    sys.exit(main())
