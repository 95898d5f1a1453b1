"""No id a client sends can reach a Redis key outside the configured prefix, and no command
with client input is anything but a GET: checked with MONITOR on a real redis-server while
hostile ids go through every route that takes one."""

from __future__ import annotations

import re
from collections import Counter
from urllib.parse import quote

import pytest
import redis

from schemas.redis_layout import Keys
from serving.app import create_app
from serving.params import MAX_ID_CHARS

pytestmark = pytest.mark.slow

PREFIX = "shop-7"  # not the default, so a key built with the default would show
SENTINEL = "nightrec-monitor-end"
HOSTILE_IDS = {  # id: whether it reaches Redis (as the end of one user list key)
    "*": True,
    "?": True,
    "[a-z]*": True,
    ":": True,
    "::": True,
    "1:meta": True,
    "{": True,
    "}": True,
    "{nightrec}": True,
    "{shop-7}:current": True,
    "nightrec:v:v1:items": True,
    "..": True,
    "..:..:v2": True,
    " 1": True,
    "1 2": True,
    '"quoted"': True,
    "\\x41": True,
    "ünïcödé-שלום": True,
    "\u202eevil": True,
    "k" * MAX_ID_CHARS: True,
    "../../v2/items": False,  # a path segment cannot hold "/": no route (404)
    "a\nb": False,  # control characters and over-long ids: 400
    "\r\nFLUSHALL\r\n": False,
    "*1\r\n$8\r\nFLUSHALL\r\n": False,
    "\x00": False,
    "k" * (MAX_ID_CHARS + 1): False,
}
ALLOWED = {"GET", "PING", "HELLO", "CLIENT"}  # HELLO, CLIENT SETINFO: a connection's handshake
_ARG = re.compile(r'"((?:[^"\\]|\\.)*)"')
_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|.)")
_NAMED = {"n": b"\n", "r": b"\r", "t": b"\t", "a": b"\a", "b": b"\b"}


def unquote(arg: str) -> str:
    """Undo MONITOR's quoting of one argument (\\n, \\xHH, \\", \\\\)."""

    def one(match: re.Match) -> bytes:
        code = match.group(1)
        if code.startswith("x") and len(code) == 3:
            return bytes([int(code[1:], 16)])
        return _NAMED.get(code, code.encode())

    out, pos = b"", 0
    for match in _ESCAPE.finditer(arg):
        out += arg[pos : match.start()].encode() + one(match)
        pos = match.end()
    return (out + arg[pos:].encode()).decode("utf-8", errors="surrogateescape")


def monitored(monitor) -> list[list[str]]:
    """Read MONITOR lines up to the sentinel ECHO; return each command's arguments."""
    commands = []
    while True:
        line = monitor.connection.read_response()
        line = line.decode() if isinstance(line, bytes) else line
        args = [unquote(a) for a in _ARG.findall(line.split("]", 1)[1])]
        if args and args[0].upper() == "ECHO" and args[1:] == [SENTINEL]:
            return commands
        commands.append(args)


@pytest.fixture(scope="module")
def prefixed(published, redis_server):
    """The published version copied under PREFIX into a Redis of its own, and an app on it."""
    source = redis.Redis.from_url(published.redis_url)
    target = redis.Redis.from_url(redis_server)
    target.flushall()
    for pattern in ("{nightrec}:*", "nightrec:v:v1:*"):
        for key in source.scan_iter(match=pattern):
            name = key.decode()
            renamed = name.replace("nightrec", PREFIX, 1)
            target.restore(renamed, 0, source.dump(key), replace=True)
    config = published.config(redis_prefix=PREFIX, redis_url=redis_server)
    app = create_app(config, background=False)
    yield app.test_client(), target
    target.flushall()


def test_hostile_ids_stay_inside_the_prefix(prefixed):
    client, server = prefixed
    keys = Keys(PREFIX)
    before = (server.dbsize(), server.get(keys.current))
    statuses = []
    with server.monitor() as monitor:
        for hostile in HOSTILE_IDS:
            path_id = quote(hostile, safe="")
            for path in (
                f"/v1/users/{path_id}/recommendations?exclude={path_id}",
                f"/v1/users/{path_id}/history",
                f"/v1/items/{path_id}/similar",
                f"/v1/search?q=zombies&user_id={path_id}",
            ):
                statuses.append(client.get(path).status_code)
            body = {"item_ids": [hostile, 1], "n": 3}
            statuses.append(client.post("/v1/recommendations", json=body).status_code)
        server.echo(SENTINEL)
        commands = monitored(monitor)
    assert max(statuses) < 500 and statuses.count(200) > 4 * sum(HOSTILE_IDS.values())
    names = {args[0].upper() for args in commands}
    assert names <= ALLOWED, f"commands other than {ALLOWED}: {names - ALLOWED}"
    read = [args[1] for args in commands if args[0].upper() == "GET"]
    outside = [k for k in read if not k.startswith((f"{PREFIX}:", f"{{{PREFIX}}}:"))]
    assert outside == [], f"keys outside {PREFIX!r}: {outside[:5]}"
    for hostile, reaches in HOSTILE_IDS.items():
        assert (keys.user("v1", hostile) in read) == reaches, hostile  # verbatim, or not at all
    assert (server.dbsize(), server.get(keys.current)) == before  # nothing written
    counts = Counter(args[0].upper() for args in commands)
    print(f"\nnamespace: {len(statuses)} requests; Redis commands {dict(counts)}")
