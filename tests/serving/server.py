"""`nightrec serve` (gunicorn) over a published version on a free port, for tests over HTTP."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from serving.local_redis import free_port

START_SECONDS = 240  # each worker imports TensorFlow and torch on two shared cores


@dataclass
class Server:
    """A running `nightrec serve`: its address, its process, and how it ended."""

    base: str
    proc: subprocess.Popen
    log: Path
    returncode: int | None = None

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def fetch(url: str) -> tuple[int, str]:
    """GET url; return the status and the body, for error statuses too."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def fetch_json(url: str) -> dict:
    """GET url and return its JSON body; fail unless the status is 200."""
    status, body = fetch(url)
    assert status == 200, f"{url}: {status} {body[:300]}"
    return json.loads(body)


def wait_ready(base: str, proc: subprocess.Popen) -> dict:
    """Wait until /readyz says 200 and return its body; fail if the process exits first."""
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        assert proc.poll() is None, "nightrec serve exited during start-up"
        try:
            status, body = fetch(f"{base}/readyz")
            if status == 200:
                return json.loads(body)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"not ready after {START_SECONDS} s")


@contextmanager
def nightrec_serve(
    published, log: Path, workers: int = 2, threads: int = 2, env: dict[str, str] | None = None
) -> Iterator[Server]:
    """Run `nightrec serve` over `published` until the block ends, then stop it (SIGTERM).

    The block gets the `Server` once /readyz answers 200; its `returncode` is set after.
    `env` adds variables (NIGHTREC_* settings) to the server's environment.
    """
    port = free_port()
    command = [
        *(sys.executable, "-m", "jobs", "serve", "--out", str(published.out)),
        *("--redis-url", published.redis_url, "--port", str(port)),
        *("--workers", str(workers), "--threads", str(threads)),
    ]
    variables = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "NIGHTREC_ENCODER_THREADS": "1",
        **(env or {}),
    }
    with log.open("w") as sink:
        proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=variables)
        server = Server(f"http://127.0.0.1:{port}", proc, log)
        try:
            wait_ready(server.base, proc)
            yield server
        finally:
            proc.send_signal(signal.SIGTERM)
            server.returncode = proc.wait(timeout=60)


def metric_lines(base: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Return the samples of one metric from /metrics: (labels, value) pairs."""
    status, text = fetch(f"{base}/metrics")
    assert status == 200, text[:300]
    samples = []
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if match:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
            samples.append((labels, float(match.group(2))))
    return samples


def workers(base: str, role: str = "serving") -> dict[str, str]:
    """Return the version each live worker serves (or sees published), by worker pid."""
    samples = metric_lines(base, "nightrec_version_info")
    return {
        labels["pid"]: labels["version"]
        for labels, v in samples
        if v == 1 and labels["role"] == role
    }


def poll(what: str, check: Callable[[], bool], seconds: float = 60.0) -> float:
    """Ask `check` every 50 ms until it holds; return the monotonic time it did."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"{what}: not seen within {seconds} s"
        time.sleep(0.05)
    return time.monotonic()
