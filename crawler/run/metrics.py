"""Prometheus metrics for `follow --metrics-port`: read from the follower at scrape time, never pushed.

A custom collector pulls cumulative totals plus the running pass's live counters when scraped, so
the hot path keeps plain integers and knows nothing of Prometheus. Served on 127.0.0.1 by default.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import start_http_server
from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily

from crawler.run.follow import Follower

PREFIX = "civitai_mirror"


class FollowerCollector:
    def __init__(self, follower: Follower) -> None:
        self.follower = follower

    def collect(self) -> Iterator[Any]:
        f = self.follower
        totals = f.totals
        live = f.current
        images = dict(totals.images)
        failures = dict(totals.failures)
        byte_count = totals.bytes
        api_statuses, cdn_statuses = dict(totals.api_statuses), dict(totals.cdn_statuses)
        throttled = {"api": totals.api_throttled, "cdn": totals.cdn_throttled}
        retries = {"api": totals.api_retries, "cdn": totals.cdn_retries}
        queue = 0
        if live is not None:  # the pass under way has not been added to the totals yet
            s = live.stats
            for name, value in (("done", s.done), ("failed", s.failed), ("gone", s.gone)):
                images[name] = images.get(name, 0) + value
            for reason, value in s.failures.items():
                failures[reason] = failures.get(reason, 0) + value
            byte_count += s.bytes
            queue = live.queue_depth()
            api, cdn = live.counters
            for source, target, kind in ((api, api_statuses, "api"), (cdn, cdn_statuses, "cdn")):
                if source is not None:
                    for code, value in source.statuses.items():
                        target[code] = target.get(code, 0) + value
                    throttled[kind] += source.throttled
                    retries[kind] += source.retries

        c = CounterMetricFamily(f"{PREFIX}_images", "Images settled, by outcome", labels=["status"])
        for status in ("done", "failed", "gone"):
            c.add_metric([status], images.get(status, 0))
        yield c
        c = CounterMetricFamily(f"{PREFIX}_failures", "Failed images, by reason", labels=["reason"])
        for reason, value in sorted(failures.items()):
            c.add_metric([reason], value)
        yield c
        yield CounterMetricFamily(f"{PREFIX}_bytes", "Bytes of images written", value=byte_count)
        c = CounterMetricFamily(f"{PREFIX}_requests", "HTTP answers by target and status (0: no answer)",
                                labels=["target", "code"])
        for target, statuses in (("api", api_statuses), ("cdn", cdn_statuses)):
            for code, value in sorted(statuses.items()):
                c.add_metric([target, str(code)], value)
        yield c
        c = CounterMetricFamily(f"{PREFIX}_throttled", "HTTP 429 answers (each paused the host's pool)", labels=["target"])
        for target, value in throttled.items():
            c.add_metric([target], value)
        yield c
        c = CounterMetricFamily(f"{PREFIX}_retries", "Requests retried after a failure", labels=["target"])
        for target, value in retries.items():
            c.add_metric([target], value)
        yield c
        yield GaugeMetricFamily(f"{PREFIX}_queue_depth", "Jobs waiting for a download worker", value=queue)
        yield GaugeMetricFamily(f"{PREFIX}_pass", "The current (or last) pass number", value=f.passes)
        yield GaugeMetricFamily(f"{PREFIX}_up", "1 when the last pass reached the API, 0 during an outage",
                                value=1 if f.up else 0)
        yield GaugeMetricFamily(f"{PREFIX}_last_success_timestamp_seconds", "When the last complete pass ended",
                                value=f.last_success or 0)


def serve(follower: Follower, port: int, addr: str = "127.0.0.1"):  # type: ignore[no-untyped-def]
    """Start the scrape endpoint in a thread; returns the server (its `server_port`, `shutdown()`)."""
    registry = CollectorRegistry()
    registry.register(FollowerCollector(follower))  # type: ignore[arg-type]
    server, _thread = start_http_server(port, addr=addr, registry=registry)
    return server
