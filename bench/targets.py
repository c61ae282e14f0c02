"""The performance targets of ``make bench`` and their verdicts, from one run's results.

Pure: :func:`verdicts` reads the results dict that :mod:`bench.run` also writes as JSON
(``http``, ``grpc``, ``streams``, ``codec`` rows, ``options`` and ``skipped``) and says,
for every target of :data:`TARGETS`, MET, MISS or not measured (and why). Every figure is
a median of this run, and every ratio is between two rows of this run.

A target written "~N" in its issue (the CPU time per request of each process) is read as
met when the measurement is at most :data:`ABOUT` above N (within 10 %).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["ABOUT", "TARGETS", "Target", "Verdict", "render", "verdicts"]

ABOUT = 0.10
"""How far above its figure an "about" (~) target may be and still be met."""

Kind = Literal["http_ratio", "http_p50_added", "grpc_ratio", "cpu", "stream_ratio", "codec", "rss"]


@dataclass(frozen=True)
class Target:
    """One performance target: a figure of the run, a bound, and where it comes from."""

    key: str
    """Stable name (the JSON's ``targets[].key``)."""
    what: str
    """What is measured, for the report."""
    kind: Kind
    bound: float
    """The figure must be at least this (``higher``) or at most this."""
    higher: bool
    unit: str
    """``x`` for ratios, else the unit of the figure."""
    source: str
    """The issue (or document) that set the target."""
    aim: float | None = None
    """A better figure aimed for, beyond the bound (reported, not judged)."""
    about: bool = False
    """A "~" target: met within :data:`ABOUT` of the bound."""
    versus: str = ""
    """The other stack of a ratio (``uvicorn``, ``caddy``; gRPC ``direct``)."""
    connections: int = 0
    """The load (connections, gRPC concurrency) the figure is taken at."""
    role: str = ""
    """The process of a CPU target (``gateway``, ``consumer``, ``nats-server``)."""
    field: str = ""
    """The stream figure of a stream ratio (``download_mib_s``, ``upload_mib_s``)."""

    def limit(self) -> float:
        """The bound as judged (an "about" target's is :data:`ABOUT` looser)."""
        if not self.about:
            return self.bound
        return self.bound * (1 - ABOUT) if self.higher else self.bound * (1 + ABOUT)

    def label(self) -> str:
        """``what`` with its bound, e.g. ``HTTP @64 x direct uvicorn >= 0.65x (aim 0.8x)``."""
        sign = ">=" if self.higher else "<="
        tilde = "~" if self.about else ""
        unit = "x" if self.unit == "x" else f" {self.unit}"
        text = f"{self.what} {sign} {tilde}{self.bound:g}{unit}"
        if self.aim is not None:
            text += f" (aim {self.aim:g}{unit})"
        return text


TARGETS: tuple[Target, ...] = (
    Target(
        "http64_vs_direct",
        "HTTP @64, narun x direct uvicorn",
        "http_ratio",
        0.65,
        True,
        "x",
        "issue 14",
        aim=0.8,
        versus="uvicorn",
        connections=64,
    ),
    Target(
        "http64_vs_caddy",
        "HTTP @64, narun x Caddy -> uvicorn",
        "http_ratio",
        2.0,
        True,
        "x",
        "issue 14",
        versus="caddy",
        connections=64,
    ),
    Target(
        "http1_p50_added_ms",
        "HTTP @1, p50 added over direct uvicorn",
        "http_p50_added",
        0.15,
        False,
        "ms",
        "issue 14",
        versus="uvicorn",
        connections=1,
    ),
    Target(
        "grpc64_vs_direct",
        "gRPC unary @64, narun x direct grpc.aio",
        "grpc_ratio",
        0.6,
        True,
        "x",
        "issue 14",
        versus="direct",
        connections=64,
    ),
    *(
        Target(
            f"cpu64_{role.replace('-', '_')}_us",
            f"CPU per request @64, {role}",
            "cpu",
            bound,
            False,
            "us",
            "issue 14",
            about=True,
            connections=64,
            role=role,
        )
        for role, bound in (("gateway", 18.0), ("consumer", 20.0), ("nats-server", 8.0))
    ),
    *(
        Target(
            f"stream_{way}_vs_direct",
            f"streamed {way}, narun x direct uvicorn",
            "stream_ratio",
            0.5,
            True,
            "x",
            "issue 12",
            field=f"{way}_mib_s",
        )
        for way in ("download", "upload")
    ),
    Target(
        "codec_us",
        "Binary HTTP encode+decode of a request and a response",
        "codec",
        20.0,
        False,
        "us",
        "docs/benchmarks.md",
    ),
    Target(
        "gateway_rss_mib",
        "gateway peak RSS under load, each process",
        "rss",
        60.0,
        False,
        "MiB",
        "docs/benchmarks.md",
    ),
)
"""Every target ``make bench`` judges, in report order."""

NARUN = "narun"
"""The stack the HTTP targets are about: one gateway process."""
STREAM_DIRECT = "uvicorn (direct)"
STREAM_NARUN = "narun (1 gateway)"


@dataclass(frozen=True)
class Verdict:
    """A target judged on one run."""

    target: Target
    value: float | None
    """The measured figure; None when not measured."""
    shown: str
    """The figure as reported, or ``not measured (<why>)``."""
    met: bool | None
    """None when not measured."""

    def as_json(self) -> dict[str, Any]:
        """The verdict for the results file."""
        t = self.target
        return {
            "key": t.key,
            "what": t.label(),
            "source": t.source,
            "value": self.value,
            "measured": self.shown,
            "met": self.met,
        }


def _judge(target: Target, value: float | None, why: str = "") -> Verdict:
    if value is None:
        return Verdict(target, None, f"not measured ({why})", None)
    # A figure on the bound meets it (1e-9: float noise, e.g. 0.230 - 0.080 ms).
    ok = value >= target.limit() - 1e-9 if target.higher else value <= target.limit() + 1e-9
    if target.unit == "x":
        shown = f"{value:.2f}x"
    elif target.kind == "http_p50_added":
        shown = f"{value:+.3f} ms"
    else:
        shown = f"{value:.1f} {target.unit}"
    return Verdict(target, value, shown, ok)


def _why_no_row(stack: str, connections: int | None, results: Mapping[str, Any]) -> str:
    """Why the HTTP row of ``stack`` (at ``connections``, if given) is not in ``results``."""
    skipped: Mapping[str, str] = results.get("skipped", {})
    if "http" in skipped:
        return f"no HTTP rows: {skipped['http']}"
    if stack in skipped:
        return f"{stack}: {skipped[stack]}"
    if connections is None:
        return f"no {stack} row"
    ran = results.get("options", {}).get("connections", [])
    if connections not in ran:
        shown = ",".join(map(str, ran)) or "none"
        return f"no {connections}-connection run (--connections {shown})"
    return f"no {stack} row at {connections} connections"


def _find(rows: Sequence[Mapping[str, Any]], **match: Any) -> Mapping[str, Any] | None:
    return next((r for r in rows if all(r.get(k) == v for k, v in match.items())), None)


def _verdict(t: Target, results: Mapping[str, Any]) -> Verdict:
    http: Sequence[Mapping[str, Any]] = results.get("http", [])
    skipped: Mapping[str, str] = results.get("skipped", {})
    if t.kind in ("http_ratio", "http_p50_added", "cpu"):
        n = _find(http, stack=NARUN, connections=t.connections)
        if n is None:
            return _judge(t, None, _why_no_row(NARUN, t.connections, results))
        if t.kind == "cpu":
            cpu = n.get("cpu_us", {})
            if t.role not in cpu:
                return _judge(t, None, f"no CPU figure for {t.role}")
            return _judge(t, float(cpu[t.role]))
        other = _find(http, stack=t.versus, connections=t.connections)
        if other is None:
            return _judge(t, None, _why_no_row(t.versus, t.connections, results))
        if t.kind == "http_ratio":
            return _judge(t, n["rps"] / other["rps"] if other["rps"] else None, "no requests")
        return _judge(t, float(n["p50_ms"]) - float(other["p50_ms"]))
    if t.kind == "grpc_ratio":
        grpc: Sequence[Mapping[str, Any]] = results.get("grpc", [])
        if not grpc:
            return _judge(t, None, f"no gRPC rows: {skipped.get('grpc', 'none ran')}")
        n = _find(grpc, target=NARUN, concurrency=t.connections)
        d = _find(grpc, target=t.versus, concurrency=t.connections)
        if n is None or d is None:
            return _judge(t, None, f"no gRPC rows at concurrency {t.connections}")
        return _judge(t, n["rps"] / d["rps"] if d["rps"] else None, "no direct calls")
    if t.kind == "stream_ratio":
        streams: Sequence[Mapping[str, Any]] = results.get("streams", [])
        n = _find(streams, stack=STREAM_NARUN)
        d = _find(streams, stack=STREAM_DIRECT)
        if n is None or d is None:
            return _judge(t, None, f"no streaming rows: {skipped.get('streams', 'none ran')}")
        return _judge(t, n[t.field] / d[t.field] if d[t.field] else None, "no direct transfer")
    if t.kind == "codec":
        codec: Mapping[str, float] | None = results.get("codec")
        if not codec or "round_trip" not in codec:
            return _judge(t, None, skipped.get("codec", "the codec micro-benchmark did not run"))
        return _judge(t, float(codec["round_trip"]))
    # rss: the worst gateway process of any narun stack
    peaks = [mib for r in http if r.get("rss_mib") for ms in r["rss_mib"].values() for mib in ms]
    if peaks:
        return _judge(t, max(peaks))
    if _find(http, stack=NARUN) is None:
        return _judge(t, None, _why_no_row(NARUN, None, results))
    return _judge(t, None, "no gateway RSS samples")


def verdicts(results: Mapping[str, Any]) -> list[Verdict]:
    """Every target of :data:`TARGETS`, judged on ``results`` (the run's JSON shape)."""
    return [_verdict(t, results) for t in TARGETS]


def render(judged: Sequence[Verdict]) -> str:
    """The Targets section of the report: one ``[MET ]``/``[MISS]``/``[ -- ]`` line each."""
    lines = [f"Targets (medians of this run; ~N is met within {ABOUT:.0%} above N):"]
    for v in judged:
        mark = " -- " if v.met is None else ("MET " if v.met else "MISS")
        lines.append(f"  [{mark}] {v.target.label()}: {v.shown}  [{v.target.source}]")
    return "\n".join(lines)
