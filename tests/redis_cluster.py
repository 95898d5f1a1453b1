"""A real Redis Cluster for tests: redis-server processes on free loopback ports, joined with
`redis-cli --cluster create`, every node protected by a password."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis

from serving.local_redis import free_port, wait_for


class RedisClusterProcesses:
    """`nodes` primaries (no replicas) sharing the 16384 slots, started and stopped together."""

    def __init__(self, directory: Path, nodes: int = 3, password: str = "s3cret pass") -> None:
        self.directory = directory
        self.password = password
        self.ports = [free_port() for _ in range(nodes)]
        # The bus port defaults to port + 10000, past 65535 for a free port above 55535
        # (redis-server then exits at start): every node gets a free bus port of its own.
        self.bus_ports = [free_port() for _ in range(nodes)]
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        """The URL of the first node, password included (%20 is the space)."""
        return f"redis://:{self.password.replace(' ', '%20')}@127.0.0.1:{self.ports[0]}/0"

    def start(self) -> RedisClusterProcesses:
        for port, bus in zip(self.ports, self.bus_ports, strict=True):
            self.procs.append(subprocess.Popen(self._server(port, bus), stdout=subprocess.DEVNULL))
        for port in self.ports:
            wait_for(f"redis://:{self.password.replace(' ', '%20')}@127.0.0.1:{port}/0")
        nodes = [f"127.0.0.1:{port}" for port in self.ports]
        subprocess.run(
            [shutil.which("redis-cli") or "redis-cli", "-a", self.password, "--no-auth-warning"]
            + ["--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
        )
        self._wait_ok()
        return self

    def _server(self, port: int, bus: int) -> list[str]:
        node_dir = self.directory / str(port)
        node_dir.mkdir(parents=True, exist_ok=True)
        return [
            shutil.which("redis-server") or "redis-server",
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--dir", str(node_dir),
            "--cluster-enabled", "yes",
            "--cluster-port", str(bus),
            "--cluster-config-file", "nodes.conf",
            "--requirepass", self.password,
            "--masterauth", self.password,
            "--save", "",
            "--appendonly", "no",
        ]  # fmt: skip

    def _wait_ok(self, seconds: float = 20.0) -> None:
        """Wait until every node sees the cluster as ok (slots assigned, nodes agreed)."""
        deadline = time.monotonic() + seconds
        for port in self.ports:
            node = redis.Redis(host="127.0.0.1", port=port, password=self.password)
            while node.execute_command("CLUSTER INFO").get("cluster_state") != "ok":
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Redis Cluster node {port} never reached state ok")
                time.sleep(0.1)

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(timeout=10)
        self.procs = []
