"""Published versions as one worker holds them, and the switch from one to the next.

A `Version` is everything a request needs that does not change within a version: its meta,
catalogue, popular list and search assets. A request takes one `Version` object at its start
and uses it to the end, so an answer never mixes two versions.

The `VersionManager` trusts the pointer it read for `check_seconds`; after that the next
request reads it again (one Redis GET per worker per interval), and so does the manager's
watcher thread (`watch`) when no request comes, so that an idle worker follows the pointer
too. A new pointer is loaded in a background thread while the old version keeps answering;
the switch is one reference assignment. If the new version cannot be loaded completely the
worker keeps the old one, reports it (`status()`, /readyz, /metrics) and retries after
`retry_seconds`. While it answers from a version the pointer does not name, every pointer
read also renews its hold on that version in Redis, so that the job's garbage collection
does not remove its lists.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import redis

from schemas.redis_layout import HOLD_SECONDS
from schemas.text import EncoderSpec
from serving.assets import SearchAssets, find_run_dir, load_assets, read_quality
from serving.config import ServeConfig
from serving.errors import unavailable
from serving.models import Item
from serving.query_encoder import QueryEncoder, open_query_model
from serving.store import Catalogue, ListStore

log = logging.getLogger("nightrec.serving")
INT_TYPES = ("bigint", "int", "long", "integer")
MAX_FAILED = 16


class VersionLoadError(RuntimeError):
    """A published version cannot be read from Redis."""


@dataclass(frozen=True)
class Version:
    """One published version as this worker serves it.

    Attributes:
        name: the version id (the Redis pointer's value).
        meta: the version's meta JSON (run_id, generated_at, encoder, index_dir, ...).
        catalogue: item ids and titles in catalogue order.
        item_rows: catalogue index by the string form of each item id.
        popular: the popular list, decoded once.
        search: the index and what re-ranks it; None when they could not be loaded.
        search_error: why `search` is None.
        quality: the run's quality record (see `read_quality`; empty when not measured).
    """

    name: str
    meta: dict[str, Any]
    catalogue: Catalogue
    item_rows: dict[str, int]
    popular: list[Item]
    search: SearchAssets | None = None
    search_error: str | None = None
    quality: dict[str, Any] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.search is not None

    @property
    def generated_at(self) -> str:
        return str(self.meta.get("generated_at", ""))

    def typed_user_id(self, user_id: str) -> int | str:
        """Return a user id from a URL as the job typed it (int ids as ints)."""
        return _typed(user_id, self.meta.get("id_types", {}).get("user_id"))

    def typed_item_id(self, item_id: str) -> int | str:
        """Return an item id from a URL as the job typed it (int ids as ints)."""
        return _typed(item_id, self.meta.get("id_types", {}).get("item_id"))


def _typed(value: str, spark_type: str | None) -> int | str:
    if spark_type in INT_TYPES and value.lstrip("-").isdigit() and value.isascii():
        number = int(value)
        if str(number) == value:
            return number
    return value


def load_version(
    name: str, store: ListStore, out: Path, encoder: QueryEncoder, config: ServeConfig
) -> Version:
    """Read a version's Redis parts, then its search assets (failures there are recorded).

    Raises:
        VersionLoadError: the version has no meta or catalogue in Redis.
        redis.RedisError: Redis failed.
    """
    meta = store.meta(name)
    if not meta:
        raise VersionLoadError(f"version {name} has no meta in Redis (removed or not written)")
    try:
        catalogue = store.catalogue(name)
    except LookupError as exc:
        raise VersionLoadError(str(exc)) from None
    item_rows = {str(item_id): i for i, item_id in enumerate(catalogue.item_ids)}
    popular = store.popular_list(name)
    base = Version(name, meta, catalogue, item_rows, popular, quality=read_quality(meta, out))
    spec = EncoderSpec(
        name=config.encoder or str(meta.get("encoder") or ""),
        device=config.encoder_device,
        batch_size=1,
    )
    try:
        assets = _load_search(meta, out, catalogue, spec, encoder, config)
    except Exception as exc:  # any failure leaves the lists servable; the reason is reported
        log.exception("version %s: search index not loaded", name)
        return _replace(base, search_error=f"{type(exc).__name__}: {exc}")
    return _replace(base, search=assets)


def _load_search(
    meta: dict[str, Any],
    out: Path,
    catalogue: Catalogue,
    spec: EncoderSpec,
    enc: QueryEncoder,
    config: ServeConfig,
) -> SearchAssets:
    if not spec.name:
        raise VersionLoadError("the version's meta names no encoder; set NIGHTREC_ENCODER")
    run_dir = find_run_dir(meta, out)
    assets = load_assets(run_dir, catalogue, spec)
    model = open_query_model(run_dir, spec, config.query_backend, config.encoder_threads)
    width = enc.warm(model)
    if width != assets.index.manifest.dim:
        raise VersionLoadError(
            f"encoder {spec.name} gives {width}-d vectors but the index holds "
            f"{assets.index.manifest.dim}-d ones (built with {assets.index.manifest.encoder})"
        )
    log.info("queries encoded by %s (%s)", model.variant, spec.name)
    return replace(assets, query_model=model)


def _replace(version: Version, **changes: Any) -> Version:
    values = {k: getattr(version, k) for k in Version.__dataclass_fields__}
    return Version(**{**values, **changes})


@dataclass
class VersionStatus:
    """What a worker knows about versions, for /readyz and /metrics."""

    serving: Version | None = None
    published: str | None = None
    redis_ok: bool = False
    redis_error: str | None = None
    loading: str | None = None
    failed: dict[str, tuple[float, str]] = field(default_factory=dict)

    @property
    def stale(self) -> bool:
        """True when the published version is not the one served completely."""
        serving = self.serving
        return bool(self.published) and (
            serving is None or serving.name != self.published or not serving.complete
        )

    def reason(self) -> str | None:
        """Say why the worker is not serving the published version completely, if it is not."""
        if not self.redis_ok:
            return f"Redis does not answer ({self.redis_error})"
        if self.published is None and self.serving is None:
            return "no version published yet (run the job)"
        if self.loading:
            return f"loading version {self.loading}"
        name = self.published or ""
        if name in self.failed:
            return f"version {name} could not be loaded: {self.failed[name][1]}"
        if self.serving is not None and not self.serving.complete:
            return f"version {self.serving.name}: {self.serving.search_error}"
        return None


class VersionManager:
    """Holds the version this worker serves and follows the Redis pointer.

    Args:
        store: reads the pointer.
        loader: builds a `Version` from its name (see `load_version`).
        check_seconds: how long a pointer read is trusted.
        retry_seconds: how long after a failed load the same version is tried again.
        background: load new versions in a thread (False: within the request; tests).
        on_change: called with the status after every load attempt and pointer change.
    """

    def __init__(
        self,
        store: ListStore,
        loader: Callable[[str], Version],
        check_seconds: float = 1.0,
        retry_seconds: float = 10.0,
        background: bool = True,
        on_change: Callable[[VersionStatus], None] | None = None,
    ) -> None:
        self.store = store
        self.loader = loader
        self.check_seconds = check_seconds
        self.retry_seconds = retry_seconds
        self.background = background
        self.on_change = on_change
        self.status = VersionStatus()
        self._next_check = 0.0
        self._check_lock = threading.Lock()
        self._load_lock = threading.Lock()

    def current(self) -> Version:
        """Return the version to answer from (checking the pointer when due), or raise 503."""
        if time.monotonic() >= self._next_check:
            self.check()
        version = self.status.serving
        if version is None:
            raise unavailable(f"no version loaded: {self.status.reason() or 'starting'}")
        return version

    def check(self, wait: bool = False) -> None:
        """Read the pointer now and start loading a version that is due.

        Args:
            wait: load in this thread and return once done (start-up, tests).
        """
        if not self._check_lock.acquire(blocking=wait):
            return  # another thread is checking right now
        try:
            self._next_check = time.monotonic() + self.check_seconds
            name = self._read_pointer()
            self._hold_served(name)
            if name is not None and self._due(name):
                self._start_load(name, wait)
        finally:
            self._check_lock.release()

    def watch(self) -> threading.Thread:
        """Check the pointer every `check_seconds` in a daemon thread, requests or not.

        Without it a worker reads the pointer only when a request reaches it. One that the
        load balancer or the kernel's accept queue leaves idle would keep an old version
        (and report it in /metrics) until its next request, and would stop renewing its
        hold on that version, which the job's garbage collection may then remove. The thread
        holds the manager weakly and ends once the manager is gone.
        """
        thread = threading.Thread(
            target=self._watch_loop, args=(weakref.ref(self), self.check_seconds), daemon=True
        )
        thread.name = "nightrec-version-watch"
        thread.start()
        return thread

    @staticmethod
    def _watch_loop(manager_ref: weakref.ref[VersionManager], seconds: float) -> None:
        """The body of `watch`'s thread: check when no request has checked meanwhile."""
        while True:
            time.sleep(seconds)
            manager = manager_ref()
            if manager is None:
                return
            try:
                if time.monotonic() >= manager._next_check:
                    manager.check()
            except Exception:  # the watcher must outlive any one failure; requests still check
                log.exception("checking the version pointer failed")
            del manager

    def _read_pointer(self) -> str | None:
        status = self.status
        try:
            name = self.store.current_version()
        except redis.RedisError as exc:
            status.redis_ok, status.redis_error = False, f"{type(exc).__name__}: {exc}"
            self._notify()
            return None
        changed = not status.redis_ok or name != status.published
        status.redis_ok, status.redis_error, status.published = True, None, name
        if changed:
            self._notify()
        return name

    def _hold_served(self, published: str | None) -> None:
        """Keep the version this worker answers from out of the job's garbage collection
        while the pointer names another one (still loading, or failed to load)."""
        serving = self.status.serving
        if serving is None or published is None or serving.name == published:
            return
        try:
            self.store.hold(serving.name, time.time() + HOLD_SECONDS)
        except redis.RedisError as exc:  # a read-only replica: the publish's keep_versions only
            log.warning("version %s not held: %s: %s", serving.name, type(exc).__name__, exc)

    def _due(self, name: str) -> bool:
        serving, status = self.status.serving, self.status
        if status.loading or (serving is not None and serving.name == name and serving.complete):
            return False
        failed = status.failed.get(name)
        return failed is None or time.monotonic() - failed[0] >= self.retry_seconds

    def _start_load(self, name: str, wait: bool) -> None:
        self.status.loading = name
        if wait or not self.background:
            self._load(name)
        else:
            thread = threading.Thread(target=self._load, args=(name,), daemon=True)
            thread.name = f"nightrec-load-{name}"
            thread.start()

    def _load(self, name: str) -> None:
        with self._load_lock:
            try:
                version = self.loader(name)
            except Exception as exc:  # a failed load must never take the worker down
                log.warning("version %s not loaded: %s: %s", name, type(exc).__name__, exc)
                self._finish(name, None, f"{type(exc).__name__}: {exc}")
                return
            self._finish(name, version, version.search_error)

    def _finish(self, name: str, version: Version | None, error: str | None) -> None:
        status = self.status
        serving = status.serving
        if version is not None and (version.complete or serving is None or not serving.complete):
            status.serving = version  # the switch: one reference assignment
            log.info("serving version %s (search %s)", name, "on" if version.complete else "off")
        if error:
            status.failed[name] = (time.monotonic(), error)
            while len(status.failed) > MAX_FAILED:  # keep the record bounded
                status.failed.pop(next(iter(status.failed)))
        else:
            status.failed.pop(name, None)
        status.loading = None
        self._notify()

    def _notify(self) -> None:
        if self.on_change is not None:
            self.on_change(self.status)
