"""A bounded HTTP/1.1 load generator for the API benchmarks and load tests, run from separate
processes.

Each scenario cycles over a list of request paths on keep-alive loopback connections, spread
over `Load.processes` processes (asyncio, raw HTTP/1.1, no client library overhead), for a
warm-up and then a measured window, with a cap on the number of requests. A connection the
server ends (`Connection: close`) is opened again for the next request. Only 200 answers
count as successes; anything else (another status, a timeout, a dropped connection) is an error.

A scenario either sends as fast as answers come (closed loop: the benchmarks' throughput) or
at a fixed `rate` (each connection on its own schedule; latency then counts from the scheduled
send time, so a stalled server cannot hide behind a client that waited for it). With
`keep_answers` every measured answer is kept (send time, status, latency, body) for tests
that check what each answer said. `start_scenario` returns while the load runs, so a test
can break something meanwhile and `stop()` the load early.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HOST = "127.0.0.1"
REQUEST_TIMEOUT = 5.0
START_SECONDS = 1.0  # for the load processes to start before the first request


@dataclass(frozen=True)
class Scenario:
    """One load run: a server port, the request paths to cycle over, the connections.

    Attributes:
        rate: requests per second over all connections; 0 sends each request as soon as
            the previous one on its connection is answered.
        keep_answers: keep every measured answer in `Result.answers` (bodies included).
    """

    name: str
    port: int
    paths: tuple[str, ...]
    connections: int
    rate: float = 0.0
    keep_answers: bool = False


@dataclass(frozen=True)
class Load:
    """Bounds of every load run: seconds of warm-up and measurement, a request cap."""

    warmup: float
    duration: float
    max_requests: int
    processes: int


@dataclass(frozen=True)
class Answer:
    """One measured request: when it was sent and answered, its status (0: no answer), its
    latency and body.

    `sent` and `received` are `time.monotonic()`, one clock for every process of the machine
    (Linux), so they compare with the times a test records around what it does to the server.
    """

    sent: float
    received: float
    status: int
    ms: float
    body: bytes


@dataclass(frozen=True)
class Result:
    """What one scenario measured."""

    name: str
    requests: int
    errors: int
    seconds: float
    latencies_ms: np.ndarray
    statuses: dict[int, int] = field(default_factory=dict)
    answers: tuple[Answer, ...] = ()

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        """Return the q-th percentile latency in ms (NaN with no request)."""
        return float(np.percentile(self.latencies_ms, q)) if self.requests else float("nan")


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """Read one HTTP/1.1 response with a Content-Length body; return its status, its body
    and whether the server closes the connection after it (`Connection: close`)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length, close = None, False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection":
            close = value.strip().lower() == "close"
    if length is None:
        raise ValueError("response without Content-Length")
    return status, await reader.readexactly(length), close


class _Tally:
    """Per-process counters shared by its connections (one event loop: no locks)."""

    def __init__(self, budget: int, keep_answers: bool) -> None:
        self.budget = budget
        self.keep_answers = keep_answers
        self.latencies: list[float] = []
        self.errors = 0
        self.statuses: Counter[int] = Counter()
        self.answers: list[Answer] = []
        self.last = 0.0

    def count(self, sent: float, status: int, ms: float, body: bytes) -> None:
        self.last = received = time.monotonic()
        self.statuses[status] += 1
        if status == 200:
            self.latencies.append(ms)
        else:
            self.errors += 1
        if self.keep_answers:
            self.answers.append(Answer(sent, received, status, ms, body))

    @property
    def spent(self) -> bool:
        return len(self.latencies) + self.errors >= self.budget


_stop_event: Any = None  # set in each load process by _init_process


def _init_process(stop: Any) -> None:
    global _stop_event
    _stop_event = stop


def _stopped() -> bool:
    return _stop_event is not None and _stop_event.is_set()


async def _send(state: dict, port: int, path: str) -> tuple[int, bytes]:
    """Send one request on the connection in `state` (opened when needed); 0 if unanswered."""
    request = f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
    try:
        if state.get("writer") is None:
            state["reader"], state["writer"] = await asyncio.open_connection(HOST, port)
        state["writer"].write(request)
        answer = _read_response(state["reader"])
        status, body, close = await asyncio.wait_for(answer, REQUEST_TIMEOUT)
        if close:  # the server ends the connection: the next request opens a new one
            state["writer"].close()
            state["writer"] = None
        return status, body
    except (TimeoutError, OSError, ValueError, asyncio.IncompleteReadError):
        if state.get("writer") is not None:
            state["writer"].close()
        state["writer"] = None
        return 0, b""


async def _connection(scenario, first, start_at, warm_at, end_at, tally) -> None:
    """Send requests on one keep-alive connection until end_at, a stop, or the budget."""
    paths, state, index = scenario.paths, {}, first
    interval = scenario.connections / scenario.rate if scenario.rate else 0.0
    due = start_at + first / scenario.rate if scenario.rate else 0.0  # staggered schedules
    while time.monotonic() < end_at and not tally.spent and not _stopped():
        if interval:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
        path = paths[index % len(paths)]
        index += scenario.connections
        sent, start = time.monotonic(), time.perf_counter()
        status, body = await _send(state, scenario.port, path)
        elapsed = time.perf_counter() - start + (max(0.0, sent - due) if interval else 0.0)
        due += interval
        if sent >= warm_at:
            tally.count(sent, status, elapsed * 1000.0, body if tally.keep_answers else b"")
    if state.get("writer") is not None:
        state["writer"].close()


async def _process_load(scenario, process, load, warm_at, end_at) -> tuple:
    """Run this process's share of a scenario's connections; return what it measured."""
    share = range(process, scenario.connections, load.processes)
    tally = _Tally(max(1, load.max_requests // load.processes), scenario.keep_answers)
    start_at = max(warm_at - load.warmup, time.monotonic())  # a late start: no catch-up burst
    await asyncio.gather(
        *(_connection(scenario, c, start_at, warm_at, end_at, tally) for c in share)
    )
    return tally.latencies, tally.errors, tally.last, tally.statuses, tally.answers


def _load_process(args: tuple) -> tuple:
    """Entry point of one load-generator process."""
    return asyncio.run(_process_load(*args))


class Running:
    """A scenario under way in its load processes: `stop()` ends it early, `result()` waits.

    Attributes:
        warm_at: the monotonic time the measured window opens.
        end_at: the monotonic time it closes at the latest.
    """

    def __init__(self, scenario: Scenario, load: Load) -> None:
        processes = min(load.processes, scenario.connections)
        load = Load(load.warmup, load.duration, load.max_requests, processes)
        self.scenario = scenario
        self.warm_at = time.monotonic() + START_SECONDS + load.warmup
        self.end_at = self.warm_at + load.duration
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        self._pool = context.Pool(processes, _init_process, (self._stop,))
        jobs = [(scenario, p, load, self.warm_at, self.end_at) for p in range(processes)]
        self._parts = self._pool.map_async(_load_process, jobs)

    def stop(self) -> None:
        """Ask every load process to finish after its requests in flight."""
        self._stop.set()

    def result(self) -> Result:
        """Wait for the load processes and return what they measured together."""
        try:
            wait = self.end_at - time.monotonic() + 2 * REQUEST_TIMEOUT + 30
            parts = self._parts.get(timeout=max(wait, 1.0))
        finally:
            self._pool.terminate()
            self._pool.join()
        latencies = np.array([ms for part in parts for ms in part[0]], dtype=float)
        last = max(part[2] for part in parts)
        seconds = max(0.0, min(self.end_at, last) - self.warm_at) if last else 0.0
        statuses: Counter[int] = Counter()
        for part in parts:
            statuses.update(part[3])
        answers = sorted((a for part in parts for a in part[4]), key=lambda a: a.sent)
        return Result(
            self.scenario.name,
            len(latencies),
            sum(part[1] for part in parts),
            seconds,
            latencies,
            dict(statuses),
            tuple(answers),
        )


def connections_per_process(port: int) -> list[int]:
    """Return how many established TCP connections to local `port` each process holds,
    largest first: under gunicorn, how the workers' accepts spread a load's keep-alive
    connections (a worker holding most of them answers them later). Linux /proc; [] where
    it is missing or the caller may not read other processes' descriptors.
    """
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:  # sl local_address rem_address st ... uid timeout inode
            fields = row.split()
            if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    held: Counter[str] = Counter()
    for fds in Path("/proc").glob("[0-9]*/fd"):
        try:
            names = list(fds.iterdir())
        except OSError:  # the process ended, or its descriptors are not ours to read
            continue
        for fd in names:
            try:
                held[fds.parent.name] += os.readlink(fd) in inodes
            except OSError:  # closed since the listing (the listing's own, for one)
                continue
    return sorted((count for count in held.values() if count), reverse=True)


def start_scenario(scenario: Scenario, load: Load) -> Running:
    """Start loading one server from `load.processes` separate processes; return at once."""
    return Running(scenario, load)


def run_scenario(scenario: Scenario, load: Load) -> Result:
    """Load one server from `load.processes` separate processes; return what was measured."""
    return start_scenario(scenario, load).result()
