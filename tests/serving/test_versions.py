"""VersionManager: pointer caching, switching, keeping the old version when a load fails."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from schemas.redis_layout import HOLD_SECONDS
from serving.errors import ApiError
from serving.store import Catalogue
from serving.versions import Version, VersionManager, VersionStatus


class FakeStore:
    """Stands in for ListStore: a pointer that tests move, and a count of pointer reads."""

    def __init__(self, pointer: str | None) -> None:
        self.pointer = pointer
        self.reads = 0
        self.down = False
        self.holds: dict[str, float] = {}

    def current_version(self) -> str | None:
        self.reads += 1
        if self.down:
            raise redis.ConnectionError("connection refused")
        return self.pointer

    def hold(self, version: str, until: float) -> None:
        self.holds[version] = until


def version(name: str, complete: bool = True) -> Version:
    catalogue = Catalogue(name, [1], ["One (2000)"])
    search = object() if complete else None
    error = None if complete else "IndexLoadError: index directory is missing"
    return Version(name, {"generated_at": "now"}, catalogue, {"1": 0}, [], search, error)  # type: ignore[arg-type]


class FakeLoader:
    def __init__(self, broken: set[str] | None = None, partial: set[str] | None = None):
        self.broken, self.partial = broken or set(), partial or set()
        self.loaded: list[str] = []

    def __call__(self, name: str) -> Version:
        self.loaded.append(name)
        if name in self.broken:
            raise RuntimeError(f"cannot load {name}")
        return version(name, complete=name not in self.partial)


class GatedLoader(FakeLoader):
    """A loader whose load of version `gated` waits until `release` is set (at most 5 s)."""

    def __init__(self, gated: str) -> None:
        super().__init__()
        self.gated, self.release = gated, threading.Event()

    def __call__(self, name: str) -> Version:
        if name == self.gated:
            self.release.wait(5)
        return super().__call__(name)


def manager(store, loader, **options) -> VersionManager:
    options = {"check_seconds": 60.0, "retry_seconds": 60.0, "background": False, **options}
    return VersionManager(store, loader, **options)


def test_the_pointer_is_read_once_per_interval():
    store, loader = FakeStore("a"), FakeLoader()
    versions = manager(store, loader)
    names = [versions.current().name for _ in range(50)]
    assert names == ["a"] * 50
    assert store.reads == 1 and loader.loaded == ["a"]


def test_a_new_pointer_is_loaded_and_switched_to():
    store, loader = FakeStore("a"), FakeLoader()
    versions = manager(store, loader, check_seconds=0.01)
    first = versions.current()
    store.pointer = "b"
    time.sleep(0.02)
    assert versions.current().name == "b"
    assert first.name == "a"  # a request holding the old object keeps it whole
    assert loader.loaded == ["a", "b"]


def test_a_failed_load_keeps_the_old_version_and_is_retried_later():
    store, loader = FakeStore("a"), FakeLoader(broken={"b"})
    versions = manager(store, loader, check_seconds=0.01, retry_seconds=1.0)
    versions.current()
    store.pointer = "b"
    time.sleep(0.02)
    assert versions.current().name == "a"
    status = versions.status
    assert status.stale and status.published == "b"
    assert "cannot load b" in (status.reason() or "")
    time.sleep(0.02)
    versions.current()
    assert loader.loaded == ["a", "b"]  # not retried before retry_seconds
    loader.broken.clear()
    time.sleep(1.0)
    assert versions.current().name == "b"
    assert not versions.status.stale and versions.status.reason() is None


def test_the_old_version_is_held_while_the_published_one_is_not_served():
    store, loader = FakeStore("a"), FakeLoader(broken={"b"})
    versions = manager(store, loader, check_seconds=0.01, retry_seconds=60.0)
    versions.current()
    assert store.holds == {}  # serving what the pointer names: nothing to hold
    store.pointer = "b"
    time.sleep(0.02)
    before = time.time()
    assert versions.current().name == "a"
    assert set(store.holds) == {"a"} and store.holds["a"] >= before + HOLD_SECONDS
    loader.broken.clear()
    versions.retry_seconds = 0.0
    time.sleep(0.02)
    versions.current()  # loads b (retry due)
    store.holds.clear()
    time.sleep(0.02)
    assert versions.current().name == "b" and store.holds == {}


def test_a_version_without_index_does_not_replace_a_complete_one():
    store, loader = FakeStore("a"), FakeLoader(partial={"b"})
    versions = manager(store, loader, check_seconds=0.01)
    versions.current()
    store.pointer = "b"
    time.sleep(0.02)
    assert versions.current().name == "a"
    assert "index directory is missing" in (versions.status.reason() or "")


def test_a_version_without_index_is_served_when_there_is_nothing_better():
    versions = manager(FakeStore("a"), FakeLoader(partial={"a"}))
    current = versions.current()
    assert current.name == "a" and not current.complete
    assert versions.status.stale


def test_no_version_or_no_redis_is_a_503_saying_why():
    store = FakeStore(None)
    versions = manager(store, FakeLoader(), check_seconds=0.01)
    with pytest.raises(ApiError, match="no version published yet") as error:
        versions.current()
    assert error.value.status == 503
    store.down = True
    time.sleep(0.02)
    with pytest.raises(ApiError, match="Redis does not answer"):
        versions.current()


def test_redis_going_down_keeps_the_loaded_version():
    store = FakeStore("a")
    versions = manager(store, FakeLoader(), check_seconds=0.01)
    versions.current()
    store.down = True
    time.sleep(0.02)
    assert versions.current().name == "a"
    assert not versions.status.redis_ok


def test_background_loading_keeps_answering_from_the_old_version():
    loader = GatedLoader("b")
    store, changes = FakeStore("a"), []
    versions = VersionManager(
        store, loader, check_seconds=0.01, background=True, on_change=changes.append
    )
    versions.check(wait=True)
    store.pointer = "b"
    time.sleep(0.02)
    assert versions.current().name == "a"  # starts the load, answers from "a"
    assert versions.status.loading == "b"
    assert versions.current().name == "a"
    loader.release.set()
    deadline = time.monotonic() + 5
    while versions.current().name != "b" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert versions.current().name == "b" and loader.loaded == ["a", "b"]
    assert all(isinstance(c, VersionStatus) for c in changes)


def test_a_watched_manager_follows_the_pointer_without_requests():
    """A worker that no request reaches still loads the new version (and holds the old one
    while it loads), through its watcher thread; the thread ends with the manager."""
    loader = GatedLoader("b")
    store = FakeStore("a")
    versions = VersionManager(store, loader, check_seconds=0.01, background=True)
    versions.check(wait=True)
    watcher = versions.watch()
    store.pointer = "b"
    deadline = time.monotonic() + 5
    while versions.status.loading != "b" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert versions.status.loading == "b" and "a" in store.holds  # no request was made
    loader.release.set()
    while versions.status.serving.name != "b" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert versions.status.serving.name == "b" and loader.loaded == ["a", "b"]
    del versions
    watcher.join(5)
    assert not watcher.is_alive()
