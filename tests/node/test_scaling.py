"""The autoscaling decision (pure): wake bounds, idle back to the minimum, scale up on load."""

from __future__ import annotations

from typing import Any

import pytest

from narun.errors import ConfigError
from narun.node.scaling import SUSTAIN_SECONDS, Sample, ScaleDoc, Scaler, current_replicas
from narun.node.spec import AppSpec, parse_spec


def spec(**extra: Any) -> AppSpec:
    settings: dict[str, Any] = {"max_replicas": 3, "idle_seconds": 10, "target_in_flight": 2}
    return parse_spec({"name": "shop", "app": "shop:app", **settings, **extra})


def test_the_count_comes_from_the_scale_entry_within_the_bounds() -> None:
    s = spec(min_replicas=1)
    assert current_replicas(s, None) == 1
    assert current_replicas(s, ScaleDoc(0)) == 1
    assert current_replicas(s, ScaleDoc(7)) == 3
    assert current_replicas(parse_spec({"name": "a", "app": "a:b", "replicas": 4}), None) == 4


def test_scale_entries_round_trip_and_junk_is_none() -> None:
    assert ScaleDoc.decode(ScaleDoc(2, "why", "t").encode()) == ScaleDoc(2, "why", "t")
    assert ScaleDoc.decode(b'{"replicas": -1}') is None
    assert ScaleDoc.decode(b"nope") is None


def test_idle_goes_back_to_the_minimum_only_after_idle_seconds() -> None:
    scaler = Scaler(spec(), now=0)
    assert scaler.decide(0, 1, Sample(requests=5, in_flight=0, instances=1)) == (1, "")
    assert scaler.decide(5, 1, Sample(6, 0, 1))[0] == 1  # a request: active at 5
    assert scaler.decide(14, 1, Sample(6, 0, 1))[0] == 1
    wanted, reason = scaler.decide(15, 1, Sample(6, 0, 1))
    assert wanted == 0
    assert "idle" in reason


def test_requests_in_flight_keep_it_awake() -> None:
    scaler = Scaler(spec(), now=0)
    for t in range(0, 30, 2):
        assert scaler.decide(t, 1, Sample(1, in_flight=1, instances=1))[0] == 1


def test_a_wake_restarts_the_idle_clock() -> None:
    scaler = Scaler(spec(), now=0)
    assert scaler.decide(0, 0, None)[0] == 0
    assert scaler.decide(100, 1, Sample(0, 0, 1))[0] == 1  # just woken: not idle yet
    assert scaler.decide(110, 1, Sample(0, 0, 1))[0] == 0


def test_sustained_load_scales_up_to_the_maximum() -> None:
    scaler = Scaler(spec(), now=0)
    assert scaler.decide(0, 1, Sample(0, in_flight=9, instances=1))[0] == 1  # not sustained yet
    wanted, reason = scaler.decide(SUSTAIN_SECONDS, 1, Sample(9, 9, 1))
    assert wanted == 3  # ceil(9 / 2) = 5, capped at max_replicas
    assert "in flight" in reason
    # a count whose instances are not all up yet is not raised again
    scaler = Scaler(spec(max_replicas=5), now=0)
    scaler.decide(0, 2, Sample(0, 9, 1))
    assert scaler.decide(5, 2, Sample(0, 9, 1))[0] == 2


def test_light_load_scales_down_one_at_a_time() -> None:
    scaler = Scaler(spec(), now=0)
    assert scaler.decide(0, 3, Sample(0, 1, 3))[0] == 3
    assert scaler.decide(10, 3, Sample(1, 1, 3))[0] == 2


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ({"replicas": 2}, "leave out 'replicas' and 'nodes'"),
        ({"min_replicas": 4}, "min_replicas must not be above max_replicas"),
        ({"max_replicas": 0}, "max_replicas: must be a whole number >= 1"),
        ({"target_in_flight": 0}, "target_in_flight: must be a whole number >= 1"),
    ],
)
def test_bad_scaling_settings_are_refused(extra: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        spec(**extra)


def test_camel_case_keys_are_accepted() -> None:
    s = parse_spec({"name": "a", "app": "a:b", "minReplicas": 1, "maxReplicas": 2})
    assert (s.min_replicas, s.max_replicas) == (1, 2)
    assert s.autoscaled
    assert spec().digest == spec(idle_seconds=99).digest  # scaling settings restart nothing
