"""A real Redis Cluster for tests: redis-server processes on free loopback ports, joined with
`redis-cli --cluster create`, every node protected by a password."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis

from serving.local_redis import LocalRedisError, free_port, wait_for


class RedisClusterProcesses:
    """`nodes` primaries (no replicas) sharing the 16384 slots, started and stopped together."""

    def __init__(self, directory: Path, nodes: int = 3, password: str = "s3cret pass") -> None:
        self.directory = directory
        self.password = password
        self.nodes = nodes
        self.ports: list[int] = []
        self.bus_ports: list[int] = []
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        """The URL of the first node, password included (%20 is the space)."""
        return f"redis://:{self.password.replace(' ', '%20')}@127.0.0.1:{self.ports[0]}/0"

    def start(self, attempts: int = 3) -> RedisClusterProcesses:
        """Start the nodes and join them. A free port can be taken by another process of the
        test run before its node binds it (the node then exits): the nodes are then started
        again on fresh ports, up to `attempts` times."""
        for attempt in range(attempts):
            self._start_nodes()
            try:
                for port in self.ports:
                    wait_for(f"redis://:{self.password.replace(' ', '%20')}@127.0.0.1:{port}/0")
                break
            except LocalRedisError:
                self.stop()
                if attempt == attempts - 1:
                    raise
        nodes = [f"127.0.0.1:{port}" for port in self.ports]
        subprocess.run(
            [shutil.which("redis-cli") or "redis-cli", "-a", self.password, "--no-auth-warning"]
            + ["--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
        )
        self._wait_ok()
        return self

    def _start_nodes(self) -> None:
        """Start one redis-server per node on distinct free ports."""
        ports: set[int] = set()
        while len(ports) < 2 * self.nodes:
            ports.add(free_port())
        # The bus port defaults to port + 10000, past 65535 for a free port above 55535
        # (redis-server then exits at start): every node gets a free bus port of its own.
        chosen = sorted(ports)
        self.ports, self.bus_ports = chosen[: self.nodes], chosen[self.nodes :]
        for port, bus in zip(self.ports, self.bus_ports, strict=True):
            self.procs.append(subprocess.Popen(self._server(port, bus), stdout=subprocess.DEVNULL))

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
