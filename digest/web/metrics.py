"""``GET /metrics`` for Prometheus: runs, messages, subscribers and how fresh each source is.

Read from the store at each scrape (``store.health.figures``), so every `digest serve` process and host shows the
same numbers, and those of runs made by cron or `digest schedule` elsewhere. The exposition format is
prometheus_client's. Like the API, it needs ``Authorization: Bearer <DIGEST_API_TOKEN>`` (Prometheus:
``authorization: {credentials: …}``) and answers 404 without a configured token: the reader's app faces the
internet, and subscriber counts are the operator's business.

    digest_subscribers{state="active|bouncing|unsubscribed"}
    digest_outbox_unfinished{status="sending|retry"}            rows the next run sends again
    digest_day_messages{day="2026-11-23",status="sent|retry|failed|expired|sending"}
    digest_runs_total, digest_last_run_finished_timestamp_seconds
    digest_source_last_new_paper_timestamp_seconds{source="arxiv"}
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from digest.models import MessageState
from digest.store import Figures
from digest.web.stores import ThreadStores

STATES = ("active", "bouncing", "unsubscribed")


def families(f: Figures) -> Iterator[Metric]:
    """The figures as Prometheus metric families (every label value present, zeros included)."""
    subscribers = GaugeMetricFamily("digest_subscribers", "Subscribers by state", labels=["state"])
    for state in STATES:
        subscribers.add_metric([state], f.subscribers.get(state, 0))
    yield subscribers
    unfinished = GaugeMetricFamily(
        "digest_outbox_unfinished", "Outbox rows the next run sends again", labels=["status"]
    )
    for status in (MessageState.SENDING, MessageState.RETRY):
        unfinished.add_metric([status], f.unfinished.get(status, 0))
    yield unfinished
    day = GaugeMetricFamily(
        "digest_day_messages", "Messages of the latest run's digest date by status", labels=["day", "status"]
    )
    if f.day:
        for status in (*MessageState,):
            day.add_metric([f.day, status], f.day_messages.get(status, 0))
    yield day
    yield CounterMetricFamily("digest_runs", "Runs finished", value=f.runs)
    if f.last_run_finished is not None:
        yield GaugeMetricFamily(
            "digest_last_run_finished_timestamp_seconds",
            "When the last run finished",
            value=f.last_run_finished,
        )
    fresh = GaugeMetricFamily(
        "digest_source_last_new_paper_timestamp_seconds",
        "When each source last brought a paper not seen before",
        labels=["source"],
    )
    for source, seen in sorted(f.last_new_paper.items()):
        fresh.add_metric([source], seen)
    yield fresh


class StoreCollector:
    """A prometheus_client collector that reads the store at each scrape."""

    def __init__(self, stores: ThreadStores) -> None:
        self.stores = stores

    def collect(self) -> Iterator[Metric]:
        with self.stores.get() as store:
            figures = store.health.figures()
        yield from families(figures)


def metrics_routes(stores: ThreadStores, authorised: Callable[[Request], Response | None]) -> list[Route]:
    registry = CollectorRegistry()
    registry.register(StoreCollector(stores))

    async def metrics(request: Request) -> Response:
        refused = authorised(request)
        if refused:
            return refused
        body = await run_in_threadpool(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return [Route("/metrics", metrics, methods=["GET"])]
