"""End to end over HTTP: `nightrec serve` (gunicorn, two workers) on a free port."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from serving.local_redis import free_port

pytestmark = pytest.mark.slow
START_SECONDS = 240  # two workers each import TensorFlow and torch on two shared cores


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def wait_ready(base: str, proc: subprocess.Popen) -> dict:
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


def test_nightrec_serve_answers_over_http(published, tmp_path):
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "jobs",
        "serve",
        "--out",
        str(published.out),
        "--redis-url",
        published.redis_url,
        "--port",
        str(port),
        "--workers",
        "2",
        "--threads",
        "2",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NIGHTREC_ENCODER_THREADS": "1"}
    log = (tmp_path / "serve.out").open("w")
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        assert wait_ready(base, proc)["serving_version"] == "v1"
        status, body = fetch(f"{base}/v1/users/1/recommendations?n=3")
        assert status == 200 and json.loads(body)["source"] == "personal"
        assert len(json.loads(body)["items"]) == 3
        status, body = fetch(f"{base}/v1/search?q=scary%20zombie%20movies&user_id=1")
        assert status == 200 and json.loads(body)["ranking"] == "personal"
        status, body = fetch(f"{base}/v1/search?n=0&q=x")
        assert status == 400 and json.loads(body)["error"]["parameter"] == "n"
        status, body = fetch(f"{base}/v1/search?q=" + "%D7%A9" * 600)  # 600 x "ש"
        assert status == 400 and json.loads(body)["error"]["parameter"] == "q"
        status, _ = fetch(f"{base}/v1/search?q=" + "a" * 10_000)  # refused by gunicorn itself
        assert status == 414
        for _ in range(6):  # reach both workers
            fetch(f"{base}/healthz")
        status, metrics = fetch(f"{base}/metrics")
        assert status == 200
        assert 'route="/v1/search"' in metrics and 'status="400"' in metrics
        assert 'role="serving"' in metrics and 'version="v1"' in metrics
    finally:
        proc.send_signal(signal.SIGTERM)
        returncode = proc.wait(timeout=60)
        log.close()
    output = (tmp_path / "serve.out").read_text()
    assert returncode == 0, output[-3000:]
    access = [json.loads(line) for line in output.splitlines() if line.startswith('{"method"')]
    assert {"route": "/v1/users/<user_id>/recommendations", "status": 200}.items() <= next(
        a for a in access if a["path"] == "/v1/users/1/recommendations"
    ).items()
