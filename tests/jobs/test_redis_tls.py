"""Redis over TLS with a password: the job's list writer and the API's store, both through
rediss:// URLs, against a real redis-server that only speaks TLS."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import redis

from jobs.publish import list_writer
from schemas.redis_layout import Keys
from serving.local_redis import free_port
from serving.redis_client import connect
from serving.store import ListStore

PASSWORD = "tls-secret"
OPENSSL = shutil.which("openssl")


def make_certs(directory: Path) -> dict[str, Path]:
    """Write a throw-away CA and a server certificate for 127.0.0.1 signed by it."""
    run = lambda *args: subprocess.run([OPENSSL, *args], check=True, capture_output=True)  # noqa: E731
    d = {n: directory / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem")}
    (directory / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test-ca",
        "-keyout", str(d["ca.key"]), "-out", str(d["ca.pem"]))  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", str(d["server.key"]), "-out", str(d["server.csr"]))  # fmt: skip
    run("x509", "-req", "-days", "1", "-in", str(d["server.csr"]), "-CA", str(d["ca.pem"]),
        "-CAkey", str(d["ca.key"]), "-CAcreateserial", "-out", str(d["server.pem"]),
        "-extfile", str(directory / "san.cnf"))  # fmt: skip
    return d


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    """A redis-server listening on TLS only (port 0 turns plain TCP off), with a password."""
    if OPENSSL is None:
        pytest.fail("openssl not found: scripts/system-deps.sh installs it")
    directory = tmp_path_factory.mktemp("redis-tls")
    certs, port = make_certs(directory), free_port()
    proc = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--port", "0", "--bind", "127.0.0.1",
         "--tls-port", str(port), "--tls-cert-file", str(certs["server.pem"]),
         "--tls-key-file", str(certs["server.key"]), "--tls-ca-cert-file", str(certs["ca.pem"]),
         "--tls-auth-clients", "no", "--requirepass", PASSWORD, "--save", "",
         "--dir", str(directory)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"rediss://:{PASSWORD}@127.0.0.1:{port}/0?ssl_ca_certs={certs['ca.pem']}"
    try:
        _wait(url)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _wait(url: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            connect(url, connect_timeout=0.5).ping()
            return
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_lists_written_by_the_job_read_back_by_the_api_over_tls(tls_server):
    keys = Keys()
    client = connect(tls_server)
    client.set(keys.items("t1"), '{"item_ids": [10, 20, 30], "titles": ["a", "b", "c"]}')
    frame = pd.DataFrame(
        {"user_id": [7, 7, 8], "item": [30, 10, 20], "rank": [1, 2, 1], "score": [0.5, 0.25, 1.0]}
    )
    writer = list_writer(tls_server, lambda u: keys.user("t1", u), [10, 20, 30], "user_id", 10)

    assert next(writer(iter([frame])))["written"].tolist() == [2]
    store = ListStore(connect(tls_server), keys)
    got = [(e.item_id, e.score, e.title) for e in store.user_list("t1", 7)]
    assert got == [(30, 0.5, "c"), (10, 0.25, "a")]


def test_a_wrong_password_or_plain_tcp_is_refused(tls_server):
    with pytest.raises(redis.AuthenticationError):
        connect(tls_server.replace(PASSWORD, "wrong")).ping()
    with pytest.raises(redis.ConnectionError):
        plain = tls_server.replace("rediss://", "redis://").split("?")[0]
        connect(plain, timeout=1, connect_timeout=1, retries=0).ping()
