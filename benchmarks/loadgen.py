"""A bounded HTTP/1.1 load generator for the API benchmarks, run from separate processes.

Each scenario cycles over a list of request paths on keep-alive loopback connections, spread
over `Load.processes` processes (asyncio, raw HTTP/1.1, no client library overhead), for a
warm-up and then a measured window, with a cap on the number of requests. Only 200 answers
count as successes; anything else (another status, a timeout, a dropped connection) is an error.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from dataclasses import dataclass

import numpy as np

HOST = "127.0.0.1"
REQUEST_TIMEOUT = 5.0


@dataclass(frozen=True)
class Scenario:
    """One load run: a server port, the request paths to cycle over, the connections."""

    name: str
    port: int
    paths: tuple[str, ...]
    connections: int


@dataclass(frozen=True)
class Load:
    """Bounds of every load run: seconds of warm-up and measurement, a request cap."""

    warmup: float
    duration: float
    max_requests: int
    processes: int


@dataclass(frozen=True)
class Result:
    """What one scenario measured."""

    name: str
    requests: int
    errors: int
    seconds: float
    latencies_ms: np.ndarray

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        """Return the q-th percentile latency in ms (NaN with no request)."""
        return float(np.percentile(self.latencies_ms, q)) if self.requests else float("nan")


async def _read_response(reader: asyncio.StreamReader) -> int:
    """Read one HTTP/1.1 response with a Content-Length body; return its status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    if length is None:
        raise ValueError("response without Content-Length")
    await reader.readexactly(length)
    return status


class _Tally:
    """Per-process counters shared by its connections (one event loop: no locks)."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.latencies: list[float] = []
        self.errors = 0
        self.last = 0.0


async def _connection(paths, port, first, stride, warm_at, end_at, tally) -> None:
    """Send requests on one keep-alive connection until end_at or the budget is spent."""
    reader = writer = None
    index = first
    while time.monotonic() < end_at and len(tally.latencies) < tally.budget:
        path = paths[index % len(paths)]
        index += stride
        request = f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
        start = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(request)
            status = await asyncio.wait_for(_read_response(reader), REQUEST_TIMEOUT)
        except (TimeoutError, OSError, ValueError, asyncio.IncompleteReadError):
            status = 0
            if writer is not None:
                writer.close()
            writer = None
        elapsed = time.perf_counter() - start
        if time.monotonic() >= warm_at:
            tally.last = time.monotonic()
            if status == 200:
                tally.latencies.append(elapsed * 1000.0)
            else:
                tally.errors += 1
    if writer is not None:
        writer.close()


async def _process_load(scenario, process, load, warm_at, end_at) -> tuple[list, int, float]:
    """Run this process's share of a scenario's connections; return latencies, errors, end."""
    share = range(process, scenario.connections, load.processes)
    tally = _Tally(max(1, load.max_requests // load.processes))
    await asyncio.gather(
        *(
            _connection(
                scenario.paths, scenario.port, c, scenario.connections, warm_at, end_at, tally
            )
            for c in share
        )
    )
    return tally.latencies, tally.errors, tally.last


def _load_process(args: tuple) -> tuple[list, int, float]:
    """Entry point of one load-generator process."""
    return asyncio.run(_process_load(*args))


def run_scenario(scenario: Scenario, load: Load) -> Result:
    """Load one server from `load.processes` separate processes; return what was measured."""
    processes = min(load.processes, scenario.connections)
    load = Load(load.warmup, load.duration, load.max_requests, processes)
    warm_at = time.monotonic() + 1.0 + load.warmup  # a second for the processes to start
    end_at = warm_at + load.duration
    jobs = [(scenario, p, load, warm_at, end_at) for p in range(processes)]
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        parts = pool.map(_load_process, jobs)
    latencies = np.array([ms for part in parts for ms in part[0]], dtype=float)
    errors = sum(part[1] for part in parts)
    last = max(part[2] for part in parts)
    seconds = max(0.0, min(end_at, last) - warm_at) if last else 0.0
    return Result(scenario.name, len(latencies), errors, seconds, latencies)
