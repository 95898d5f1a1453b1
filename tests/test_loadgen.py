"""`benchmarks.loadgen.connections_per_process`, which `benchmarks.api` prints each round."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from benchmarks.loadgen import connections_per_process

# A child that accepts two connections on the listening socket it inherits and holds them.
HOLD_TWO = """
import os, socket, sys
listener = socket.socket(fileno=int(sys.argv[1]))
held = [listener.accept()[0] for _ in range(2)]
print("ready", flush=True)
sys.stdin.read()
"""


def test_counts_the_established_connections_each_process_holds_on_a_port():
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    os.set_inheritable(listener.fileno(), True)
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD_TWO, str(listener.fileno())],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        pass_fds=[listener.fileno()],
    )
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        here = [listener.accept()[0] for _ in range(3)]

        spread = connections_per_process(port)

        assert spread == [3, 2]  # this process's 3, the child's 2; the clients' ends not
        for sock in here:
            sock.close()
        assert connections_per_process(port) == [2]
    finally:
        child.communicate("")
        for sock in clients:
            sock.close()
        listener.close()
    assert connections_per_process(port) == []
