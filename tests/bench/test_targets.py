"""The targets of ``make bench`` judged from a results dict (bench.targets, pure)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bench.targets import ABOUT, TARGETS, render, verdicts


def http_row(stack: str, connections: int, rps: float, p50: float, **cpu: float) -> dict[str, Any]:
    return {
        "stack": stack,
        "connections": connections,
        "rps": rps,
        "p50_ms": p50,
        "cpu_us": cpu,
        "rss_mib": {"gateway": [40.0]} if stack.startswith("narun") else {},
    }


def results() -> dict[str, Any]:
    """A full run where every target is met (and some only just)."""
    return {
        "options": {"connections": [1, 16, 64]},
        "http": [
            http_row("uvicorn", 1, 10_000, 0.080),
            http_row("uvicorn", 64, 10_000, 1.5),
            http_row("caddy", 64, 4_000, 4.0),
            http_row("narun", 1, 5_000, 0.230),  # +0.15 ms: exactly the bound
            http_row("narun", 64, 8_000, 2.0, gateway=19.7, consumer=15.0, **{"nats-server": 7.0}),
        ],
        "grpc": [
            {"target": "direct", "concurrency": 64, "rps": 1000.0},
            {"target": "narun", "concurrency": 64, "rps": 650.0},
        ],
        "streams": [
            {"stack": "uvicorn (direct)", "download_mib_s": 1000.0, "upload_mib_s": 800.0},
            {"stack": "narun (1 gateway)", "download_mib_s": 600.0, "upload_mib_s": 400.0},
        ],
        "codec": {"round_trip": 12.0},
        "skipped": {},
    }


def by_key(res: dict[str, Any]) -> dict[str, tuple[float | None, bool | None, str]]:
    return {v.target.key: (v.value, v.met, v.shown) for v in verdicts(res)}


def test_every_issue_14_and_12_target_is_in_the_table() -> None:
    keys = {t.key for t in TARGETS}
    assert {
        "http64_vs_direct",
        "http64_vs_caddy",
        "http1_p50_added_ms",
        "grpc64_vs_direct",
        "cpu64_gateway_us",
        "cpu64_consumer_us",
        "cpu64_nats_server_us",
        "stream_download_vs_direct",
        "stream_upload_vs_direct",
    } <= keys
    bounds = {t.key: t.bound for t in TARGETS}
    assert bounds["http64_vs_direct"] == 0.65
    assert bounds["http64_vs_caddy"] == 2.0
    assert bounds["http1_p50_added_ms"] == 0.15
    assert bounds["grpc64_vs_direct"] == 0.6
    assert (bounds["cpu64_gateway_us"], bounds["cpu64_consumer_us"]) == (18.0, 20.0)
    assert bounds["cpu64_nats_server_us"] == 8.0


def test_a_run_meeting_everything() -> None:
    got = by_key(results())
    assert all(met for _, met, _ in got.values()), got
    assert got["http64_vs_direct"][:2] == (0.8, True)
    assert got["http64_vs_caddy"][:2] == (2.0, True)
    assert got["grpc64_vs_direct"][:2] == (0.65, True)
    assert got["stream_upload_vs_direct"][:2] == (0.5, True)
    assert got["http1_p50_added_ms"][2] == "+0.150 ms"
    # ~18 us: 19.7 is within 10 % above
    assert got["cpu64_gateway_us"] == (19.7, True, "19.7 us")


@pytest.mark.parametrize(
    ("path", "value", "key"),
    [
        (("http", 1, "rps"), 12_400, "http64_vs_direct"),  # 0.645x
        (("http", 2, "rps"), 4_001, "http64_vs_caddy"),  # 1.9995x
        (("http", 3, "p50_ms"), 0.231, "http1_p50_added_ms"),
        (("grpc", 1, "rps"), 599.0, "grpc64_vs_direct"),
        (("streams", 1, "download_mib_s"), 499.0, "stream_download_vs_direct"),
        (("codec", None, "round_trip"), 20.5, "codec_us"),
    ],
)
def test_just_past_a_bound_is_a_miss(
    path: tuple[str, int | None, str], value: float, key: str
) -> None:
    res = copy.deepcopy(results())
    section, index, name = path
    (res[section] if index is None else res[section][index])[name] = value
    got = by_key(res)
    assert got[key][1] is False, got[key]
    assert [k for k, (_, met, _) in got.items() if not met] == [key]


def test_about_targets_allow_ten_percent_and_no_more() -> None:
    assert ABOUT == 0.10
    res = results()
    cpu = res["http"][4]["cpu_us"]
    cpu["gateway"] = 18 * 1.1 + 0.01
    cpu["nats-server"] = 8.8  # exactly 10 % above 8
    got = by_key(res)
    assert got["cpu64_gateway_us"][1] is False
    assert got["cpu64_nats_server_us"][1] is True


def test_missing_rows_are_not_measured_with_the_reason() -> None:
    res = results()
    res["http"] = [r for r in res["http"] if r["stack"] != "caddy"]
    res["skipped"] = {
        "caddy": "caddy not installed",
        "grpc": "--no-grpc",
        "streams": "--no-streams",
    }
    res["grpc"] = []
    res["streams"] = []
    res["codec"] = None
    got = by_key(res)
    assert got["http64_vs_caddy"] == (None, None, "not measured (caddy: caddy not installed)")
    assert got["grpc64_vs_direct"] == (None, None, "not measured (no gRPC rows: --no-grpc)")
    assert got["stream_download_vs_direct"][2] == "not measured (no streaming rows: --no-streams)"
    assert got["codec_us"][1] is None
    assert got["http64_vs_direct"][1] is True  # the rest is still judged


def test_no_64_connection_run_says_so() -> None:
    res = results()
    res["options"]["connections"] = [1, 16]
    res["http"] = [r for r in res["http"] if r["connections"] != 64]
    got = by_key(res)
    assert got["http64_vs_direct"][2] == "not measured (no 64-connection run (--connections 1,16))"
    assert got["cpu64_consumer_us"][1] is None
    assert got["http1_p50_added_ms"][1] is True


def test_no_wrk_means_no_http_target_measured() -> None:
    res = results()
    res["http"] = []
    res["skipped"] = {"http": "wrk is not installed"}
    got = by_key(res)
    for key in ("http64_vs_direct", "http1_p50_added_ms", "cpu64_gateway_us", "gateway_rss_mib"):
        assert got[key] == (None, None, "not measured (no HTTP rows: wrk is not installed)")


def test_render_marks_each_line_and_json_carries_the_verdicts() -> None:
    res = results()
    res["http"][4]["rps"] = 5_000
    res["grpc"] = []
    judged = verdicts(res)
    text = render(judged).splitlines()
    assert text[0].startswith("Targets (medians of this run; ~N is met within 10% above N)")
    assert (
        "  [MISS] HTTP @64, narun x direct uvicorn >= 0.65x (aim 0.8x): 0.50x  [issue 14]" in text
    )
    assert any(line.startswith("  [ -- ] gRPC unary @64") for line in text)
    assert "  [MET ] CPU per request @64, gateway <= ~18 us: 19.7 us  [issue 14]" in text
    first = judged[0].as_json()
    assert first == {
        "key": "http64_vs_direct",
        "what": "HTTP @64, narun x direct uvicorn >= 0.65x (aim 0.8x)",
        "source": "issue 14",
        "value": 0.5,
        "measured": "0.50x",
        "met": False,
    }
