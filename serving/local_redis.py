"""A private redis-server kept under the artefact directory, for `nightrec run` and `serve`
when no Redis URL is configured (the demo, a laptop). Production passes a URL instead.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis


class LocalRedisError(RuntimeError):
    """The private redis-server could not be started or does not answer."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, seconds: float = 10.0) -> None:
    """Wait until the server at url answers PING, or raise LocalRedisError."""
    deadline = time.monotonic() + seconds
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    while True:
        try:
            client.ping()
            return
        except redis.ConnectionError as exc:
            if time.monotonic() > deadline:
                raise LocalRedisError(f"redis-server at {url} does not answer: {exc}") from None
            time.sleep(0.05)


def server_command(port: int, directory: Path, daemonize: bool) -> list[str]:
    """Return the redis-server command line for a loopback server keeping data in directory."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise LocalRedisError(
            "redis-server not found on PATH: install it (Debian: apt-get install redis-server; "
            "make system-deps does it as root) or pass --redis-url"
        )
    return [
        exe,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(directory),
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "",
        "--daemonize",
        "yes" if daemonize else "no",
        "--pidfile",
        str(directory / "redis.pid"),
        "--logfile",
        str(directory / "redis.log"),
    ]


def ensure_local_redis(out: Path) -> str:
    """Return the URL of the private server under OUT/redis, starting it when not running."""
    directory = (out / "redis").resolve()
    directory.mkdir(parents=True, exist_ok=True)
    port_file = directory / "port"
    if port_file.exists():
        url = f"redis://127.0.0.1:{port_file.read_text().strip()}/0"
        try:
            redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
            return url
        except redis.RedisError:
            pass  # stale port file: the server is gone, start a new one on its data
    port = free_port()
    subprocess.run(server_command(port, directory, daemonize=True), check=True)
    url = f"redis://127.0.0.1:{port}/0"
    wait_for(url)
    port_file.write_text(str(port))
    return url
