"""Metric collectors: in-flight counts read when scraped, consumer metrics."""

from __future__ import annotations

from prometheus_client import generate_latest

from narun.observe.metrics import ConsumerMetrics, GatewayMetrics


def scrape(registry: object) -> list[str]:
    return generate_latest(registry).decode().splitlines()  # type: ignore[arg-type]


def test_gateway_in_flight_series_exist_from_the_start_and_follow_the_count() -> None:
    metrics = GatewayMetrics()
    lines = scrape(metrics.registry)
    assert 'narun_gateway_in_flight_requests{protocol="http"} 0.0' in lines
    assert 'narun_gateway_in_flight_requests{protocol="grpc"} 0.0' in lines
    metrics.in_flight_http.inc()
    metrics.in_flight_http.inc()
    metrics.in_flight_grpc.inc()
    metrics.in_flight_http.dec()
    lines = scrape(metrics.registry)
    assert 'narun_gateway_in_flight_requests{protocol="http"} 1.0' in lines
    assert 'narun_gateway_in_flight_requests{protocol="grpc"} 1.0' in lines


def test_consumer_metrics_have_go_narun_names_and_labels() -> None:
    metrics = ConsumerMetrics()
    http = metrics.recorder("hello", "default")
    rpc = metrics.recorder("greeter", "grpc")
    http.active.inc()
    http.observe("200", 0.01)
    http.observe("200", 0.02)
    http.observe("500", 0.5)
    rpc.observe("UNAVAILABLE", 0.001)
    lines = scrape(metrics.registry)
    assert 'narun_worker_active_count{app="hello",stream="default"} 1.0' in lines
    assert 'narun_worker_active_count{app="greeter",stream="grpc"} 0.0' in lines
    count = "narun_request_processing_seconds_count"
    assert f'{count}{{app="hello",status="200",stream="default"}} 2.0' in lines
    assert f'{count}{{app="hello",status="500",stream="default"}} 1.0' in lines
    assert f'{count}{{app="greeter",status="UNAVAILABLE",stream="grpc"}} 1.0' in lines
