"""Prometheus metrics of one app: requests and latency per route, the version served and
published, the index size, version loads and the query cache.

Under gunicorn every worker is a process; `serving.cli` sets PROMETHEUS_MULTIPROC_DIR before
the workers start and passes the same directory as `metrics_dir`, so /metrics on any worker
reports all of them (gauges carry a `pid` label there).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from serving.versions import VersionStatus

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
GaugeMode = Literal["liveall", "livemax", "livemin"]
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """The app's metrics in a registry of its own (several apps may live in one process)."""

    def __init__(self, multiprocess_dir: str = "") -> None:
        self.multiprocess_dir = multiprocess_dir
        self.registry = reg = CollectorRegistry()
        self.requests = Counter(
            "nightrec_http_requests",
            "HTTP requests answered, by route pattern, method and status.",
            ["route", "method", "status"],
            registry=reg,
        )
        self.latency = Histogram(
            "nightrec_http_request_duration_seconds",
            "Time to answer a request, by route pattern and method.",
            ["route", "method"],
            buckets=BUCKETS,
            registry=reg,
        )
        self.version = _gauge(
            "nightrec_version_info",
            "1 for the version this worker serves (role=serving) and the one the pointer "
            "names (role=published).",
            "liveall",
            reg,
            ["role", "version"],
        )
        stale = "1 when the published version is not served completely (loading, or failed)."
        self.stale = _gauge("nightrec_version_stale", stale, "livemax", reg)
        ready = "1 when Redis answers and the served version's index is loaded."
        self.ready = _gauge("nightrec_ready", ready, "livemin", reg)
        size = "Items in the index of the served version."
        self.index_items = _gauge("nightrec_index_items", size, "liveall", reg)
        loads = "Version load attempts by outcome (ok, partial: lists only, failed)."
        self.loads = Counter("nightrec_version_loads", loads, ["outcome"], registry=reg)
        cache = "Query vector lookups by result."
        self.query_cache = Counter("nightrec_query_cache", cache, ["result"], registry=reg)
        self._labels: dict[str, str | None] = {"serving": None, "published": None}
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request (the labelled series are looked up once per label
        set: `labels()` takes a lock and builds a key on every call)."""
        key = (route, method, status)
        series = self._children.get(key)
        if series is None:
            series = (
                self.requests.labels(route, method, str(status)),
                self.latency.labels(route, method),
            )
            self._children[key] = series
        series[0].inc()
        series[1].observe(seconds)

    def versions(self, status: VersionStatus) -> None:
        """Record the version state after a pointer read or a load."""
        serving = status.serving
        self._set_version("serving", serving.name if serving else None)
        self._set_version("published", status.published)
        self.stale.set(1 if status.stale else 0)
        complete = serving is not None and serving.search is not None
        self.ready.set(1 if status.redis_ok and complete else 0)
        self.index_items.set(len(serving.search.index) if serving and serving.search else 0)

    def load_outcome(self, outcome: str) -> None:
        """Count one version load attempt: "ok", "partial" (lists only) or "failed"."""
        self.loads.labels(outcome).inc()

    def cache_lookup(self, hit: bool) -> None:
        """Count one query-vector cache lookup."""
        self.query_cache.labels("hit" if hit else "miss").inc()

    def _set_version(self, role: str, name: str | None) -> None:
        old = self._labels[role]
        if old == name:
            return
        if old is not None:
            self.version.labels(role, old).set(0)
        if name is not None:
            self.version.labels(role, name).set(1)
        self._labels[role] = name

    def render(self) -> bytes:
        """Return the Prometheus text exposition of this app (or of all workers)."""
        if self.multiprocess_dir:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=self.multiprocess_dir)
            return generate_latest(registry)
        return generate_latest(self.registry)


def _gauge(
    name: str, text: str, mode: GaugeMode, registry: CollectorRegistry, labels: Sequence[str] = ()
) -> Gauge:
    """Return a gauge; `mode` says how workers' values combine in multiprocess mode."""
    return Gauge(name, text, labels, multiprocess_mode=mode, registry=registry)
