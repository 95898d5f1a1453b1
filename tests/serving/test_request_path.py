"""The pieces every request goes through, each checked against the thing it replaced: JSON
answers by orjson, the access line written by the middleware, the per-thread Redis
connections, and the buffered access log."""

from __future__ import annotations

import dataclasses
import io
import json
import threading
import time

import redis

from serving.app import create_app
from serving.logs import AccessLog
from serving.models import Item, Recommendations
from serving.redis_client import PerThreadClient, connect

RECS = "/v1/users/<user_id>/recommendations"


def test_answers_are_the_bodies_the_standard_encoder_writes(app):
    body = Recommendations(
        user_id=7,
        version="v1",
        generated_at="2026-12-05T00:00:00+00:00",
        source="personal",
        items=[
            Item(1, 0.123457, "Amélie (2001)"),
            Item("x", -1e-06, "Léon: The Professional 「レオン」"),
            Item(3, 12.0, 'Quote " and \\ backslash'),
        ],
    )
    with app.app_context():
        written = app.json.dumps(body)
    standard = json.dumps(dataclasses.asdict(body), ensure_ascii=False, separators=(",", ":"))
    assert json.loads(written) == json.loads(standard)
    assert list(json.loads(written)) == [f.name for f in dataclasses.fields(Recommendations)]
    assert "Amélie" in written  # UTF-8, not \\u escapes


def test_the_middleware_writes_one_access_line_per_request(published):
    stream = io.BytesIO()
    app = create_app(published.config(), background=False, access_log=stream)
    client = app.test_client()
    assert client.get("/v1/users/1/recommendations?n=2").status_code == 200
    assert client.get("/v1/users/1/recommendations?n=0").status_code == 400
    assert client.get("/no/such/päth").status_code == 404

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(a["route"], a["status"]) for a in lines] == [
        (RECS, 200),
        (RECS, 400),
        ("unmatched", 404),
    ]
    assert lines[0]["path"] == "/v1/users/1/recommendations" and lines[0]["version"] == "v1"
    assert lines[2]["path"] == "/no/such/päth" and lines[2]["version"] is None
    assert all(a["method"] == "GET" and a["ms"] >= 0 for a in lines)
    metrics = client.get("/metrics").get_data(as_text=True)
    assert f'route="{RECS}",status="400"' in metrics
    assert 'route="unmatched",status="404"' in metrics


def test_each_thread_keeps_one_connection_of_its_own(redis_url):
    client = connect(redis_url, timeout=2, connect_timeout=2, per_thread=True)
    assert isinstance(client, PerThreadClient)
    names = []

    def work(name: str) -> None:
        for _ in range(20):
            client.set(name, name)
            assert client.get(name) == name.encode()
        names.append(client.client_id())

    threads = [threading.Thread(target=work, args=(f"t{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    work("main")
    assert len(set(names)) == 5  # five threads, five connections (client ids)
    admin = redis.Redis.from_url(redis_url)
    assert admin.get("t3") == b"t3"


def test_a_kept_connection_recovers_after_redis_drops_it(redis_url):
    client = connect(redis_url, timeout=2, connect_timeout=2, retries=1, per_thread=True)
    client.set("k", "1")
    admin = redis.Redis.from_url(redis_url)
    killed = admin.client_kill_filter(_id=client.client_id())
    assert killed == 1
    assert client.get("k") == b"1"  # the broken connection is replaced, once


def test_access_lines_stay_whole_across_threads_and_reach_the_stream_within_a_second():
    raw = io.BytesIO()
    stream = io.BufferedWriter(raw, buffer_size=1 << 20)  # nothing reaches raw until a flush
    log = AccessLog(stream, flush_seconds=0.2)

    def work(thread: int) -> None:
        for i in range(500):
            log.write({"thread": thread, "i": i, "path": "/ü" * 20})

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    deadline = time.monotonic() + 5
    while raw.getvalue().count(b"\n") < 2000 and time.monotonic() < deadline:
        time.sleep(0.05)

    lines = [json.loads(line) for line in raw.getvalue().splitlines()]
    assert len(lines) == 2000
    assert {(a["thread"], a["i"]) for a in lines} == {(t, i) for t in range(4) for i in range(500)}


def test_an_access_line_that_cannot_be_written_is_dropped_not_raised():
    stream = io.BytesIO()
    log = AccessLog(stream)
    stream.close()
    log.write({"status": 200})  # no exception: the answer still goes out
    log.flush()
