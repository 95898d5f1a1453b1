"""Bad input to the job (issue 7): every broken input either publishes a new version with the
bad rows quarantined and counted, or fails with a one-line reason naming the problem while the
previously published version stays current with every key as it was.

A good version is published once per module (checkerboard data); each test restores its Redis
keys (DUMP/RESTORE) into the flushed session server, then runs the job on the broken input into
the same Redis and the same OUT. Cases that fail in `ingest` run the whole job (it stops
there); row-level cases where the later stages add nothing run `ingest` alone; the cases that
reach the model (huge ids, unicode and empty texts, unknown items, one item, one user) run
every stage and publish.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from jobs.pipeline import RunFailed, run_job
from schemas.redis_layout import Keys
from serving.store import ListStore
from tests.conftest import REPO
from tests.movielens import checkerboard, job_config, write_movielens
from tests.serving.conftest import dump_keys, restore_keys

pytestmark = pytest.mark.slow
SIZE, TOP_N = 12, 3
# The model's defaults suit thousands of users; 12 users need more steps and less shrinkage.
TINY_MODEL = {"cf_dim": 4, "cf_epochs": 100, "cf_l2": 0.1, "cf_learning_rate": 0.05}
BIG = 2**63 - 1  # the largest id a 64-bit integer holds
T0 = 1_500_000_000
RATINGS, MOVIES = checkerboard(SIZE)
KEYS = Keys()


def config(data: Path, out: Path, redis_url: str, run_id: str, **extra):
    flags = {"top_n": TOP_N, "similar_n": 4, "export_query_encoder": False, **TINY_MODEL}
    return job_config(data, out, redis_url, run_id, **{**flags, **extra})


@dataclass(frozen=True)
class Good:
    """The version published before every case: its OUT, its data and its Redis keys."""

    out: Path
    data: Path
    keys: dict[bytes, bytes]


@pytest.fixture(scope="module")
def good(spark, redis_server, tmp_path_factory) -> Good:
    client = redis.Redis.from_url(redis_server)
    client.flushall()
    base = tmp_path_factory.mktemp("bad-input")
    data = write_movielens(base / "good", RATINGS, MOVIES)
    # No holdout: its meta records no quality, so no case is refused by the quality gate.
    manifest = run_job(config(data, base / "out", redis_server, "good", eval_holdout=0), spark)
    assert manifest.version == "good"
    keys = dump_keys(client)
    client.flushall()
    return Good(base / "out", data, keys)


@pytest.fixture
def redis_good(redis_url, good) -> str:
    """The session's Redis holding exactly the good version's keys."""
    restore_keys(redis.Redis.from_url(redis_url), good.keys)
    return redis_url


Edit = Callable[[Path], None]


@dataclass(frozen=True)
class Case:
    """A broken input: ratings and movies to write, then an edit of the written files."""

    ratings: list[tuple] = field(default_factory=lambda: RATINGS)
    movies: list[tuple] = field(default_factory=lambda: MOVIES)
    edit: Edit | None = None

    def write(self, directory: Path) -> Path:
        write_movielens(directory, self.ratings, self.movies)
        if self.edit:
            self.edit(directory)
        return directory


def _remove(name: str) -> Edit:
    return lambda d: (d / name).unlink()


def _replace(name: str, text: str) -> Edit:
    return lambda d: (d / name).write_text(text, encoding="utf-8")


def _delimit(name: str, delimiter: str) -> Edit:
    return lambda d: (d / name).write_text((d / name).read_text().replace(",", delimiter))


# Each: the input, then the reason the run must fail with (a regex over the one line).
FAILURES = {
    "missing_file": (
        Case(edit=_remove("movies.csv")),
        r"^ingest: input not found: \S+/movies.csv$",
    ),
    "missing_column": (
        Case(edit=_replace("movies.csv", "movieId,genres\n101,Drama\n")),
        r"^ingest: \S+/movies.csv has no column 'title' \(found: 'movieId', 'genres'\)$",
    ),
    "empty_file": (
        Case(edit=_replace("ratings.csv", "")),
        r"^ingest: \S+/ratings.csv is empty \(no header, no rows\)$",
    ),
    "header_only_interactions": (
        Case(edit=_replace("ratings.csv", "userId,movieId,rating,timestamp\n")),
        r"^ingest: \S+/ratings.csv holds no rows$",
    ),
    "header_only_catalogue": (  # not "every interaction is on an unknown item"
        Case(edit=_replace("movies.csv", "movieId,title,genres\n")),
        r"^ingest: \S+/movies.csv holds no rows$",
    ),
    "wrong_delimiter": (
        Case(edit=_delimit("ratings.csv", ";")),
        r"^ingest: \S+/ratings.csv has no column 'userId' \(found: "
        r"'userId;movieId;rating;timestamp'\); the file does not look ','-delimited "
        r"\(set NIGHTREC_CSV_DELIMITER\)$",
    ),
    "non_numeric_ids_everywhere": (  # 60 distinct bad values are one cause of 60 rows
        Case(ratings=[(f"u{u}", i, r, t) for u, i, r, t in RATINGS]),
        r"^ingest: 60 of 60 rows of \S+/ratings.csv rejected \(100.0% > "
        r"NIGHTREC_MAX_REJECT_FRACTION=0.05\); most common: 'userId is not an integer' "
        r"\(60 rows\); see \S+/quarantine$",
    ),
    "bad_catalogue_ids": (  # the catalogue's own rejects are named, not their interactions
        Case(movies=[(f"m{i}", t, g) for i, t, g in MOVIES]),
        r"^ingest: 12 of 12 rows of \S+/movies.csv rejected .*most common: "
        r"'movieId is not an integer' \(12 rows\)",
    ),
}


@pytest.mark.parametrize("name", FAILURES)
def test_broken_input_fails_with_one_line_and_the_old_version_untouched(
    name, spark, good, redis_good, tmp_path
):
    case, reason = FAILURES[name]
    data = case.write(tmp_path / name)
    client = redis.Redis.from_url(redis_good)
    before = dump_keys(client)
    good_manifest = (good.out / "runs/good/manifest.json").read_text()

    with pytest.raises(RunFailed) as failure:
        run_job(config(data, good.out, redis_good, name), spark)

    message = str(failure.value)
    assert "\n" not in message and "Traceback" not in message
    assert re.search(reason, message), message
    assert str(data) in message  # the file is named by its path
    recorded = json.loads((good.out / f"runs/{name}/manifest.json").read_text())
    assert (recorded["status"], recorded["reason"]) == ("failed", message)
    assert dump_keys(client) == before  # the pointer and every key of the good version
    assert ListStore(client).current_version() == "good"
    assert (good.out / "runs/good/manifest.json").read_text() == good_manifest


def test_the_command_prints_one_line_and_keeps_the_old_version(good, redis_good, tmp_path):
    """`nightrec run` as cron runs it: exit 1, stderr exactly the reason (no JVM or Spark
    start-up lines, no traceback), the good version current with every key as it was."""
    case, reason = FAILURES["wrong_delimiter"]
    data = case.write(tmp_path / "semicolons")
    client = redis.Redis.from_url(redis_good)
    before = dump_keys(client)
    command = ["run", "--data", str(data), "--out", str(good.out), "--redis-url", redis_good]
    command += ["--run-id", "cli", "--spark-master", "local[1]"]

    proc = subprocess.run(
        [sys.executable, "-m", "jobs", *command],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )

    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    prefix = "nightrec: run cli failed: "
    assert lines[0].startswith(prefix) and re.search(reason, lines[0].removeprefix(prefix))
    assert dump_keys(client) == before
    recorded = json.loads((good.out / "runs/cli/manifest.json").read_text())
    assert recorded["status"] == "failed" and recorded["reason"] == lines[0].removeprefix(prefix)


def in_order(rows) -> list[tuple[str, str, dict]]:
    """(source, reason, row) triples sorted by source, reason, then the row's JSON."""
    return sorted(rows, key=lambda t: (t[0], t[1], json.dumps(t[2], sort_keys=True)))


def quarantine(spark, out: Path, run_id: str) -> list[tuple[str, str, dict]]:
    rows = spark.read.parquet(f"{out}/runs/{run_id}/quarantine").collect()
    return in_order((r.source, r.reason, json.loads(r.row)) for r in rows)


def raw(user, item, rating, timestamp) -> dict[str, str]:
    """A ratings.csv row as quarantine keeps it: the raw strings, by column."""
    values = (user, item, rating, timestamp)
    return dict(zip(("userId", "movieId", "rating", "timestamp"), map(str, values), strict=True))


# Rows the later stages never see: `ingest` alone. Each: extra ratings, the quarantined
# (reason, row) pairs, and the duplicates that collapse. Users 1, 3 rate only odd items and 2
# only even ones, so (1, 102) and the like are new pairs.
ROW_CASES = {
    "non_numeric_ids": (
        [("u7", 101, 4.0, T0), (1, "x9", 4.0, T0)],
        [
            ("movieId is not an integer: x9", raw(1, "x9", 4.0, T0)),
            ("userId is not an integer: u7", raw("u7", 101, 4.0, T0)),
        ],
        0,
    ),
    "nan_inf_ratings": (
        [(1, 102, "NaN", T0), (2, 101, "inf", T0), (3, 102, "-Infinity", T0)],
        [
            ("rating is not finite", raw(1, 102, "NaN", T0)),
            ("rating is not finite", raw(2, 101, "inf", T0)),
            ("rating is not finite", raw(3, 102, "-Infinity", T0)),
        ],
        0,
    ),
    "negative_or_future_timestamps": (
        [(1, 102, 4.0, -1), (2, 101, 4.0, 4_000_000_000)],
        [
            ("timestamp is in the future", raw(2, 101, 4.0, 4_000_000_000)),
            ("timestamp is negative", raw(1, 102, 4.0, -1)),
        ],
        0,
    ),
    "duplicate_rows": (RATINGS[:5], [], 5),
}


@pytest.mark.parametrize("name", ROW_CASES)
def test_bad_rows_are_quarantined_and_counted(name, spark, good, redis_good, tmp_path):
    extra, expected, duplicates = ROW_CASES[name]
    data = Case(ratings=RATINGS + extra).write(tmp_path / name)
    client = redis.Redis.from_url(redis_good)
    before = dump_keys(client)

    manifest = run_job(config(data, good.out, redis_good, name, stages="ingest"), spark)

    assert manifest.status == "completed"
    got = quarantine(spark, good.out, name)
    assert got == in_order(("interactions", r, row) for r, row in expected)
    kinds: dict[str, int] = {}
    for reason, _ in expected:
        kind = f"interactions: {reason.split(': ')[0]}"
        kinds[kind] = kinds.get(kind, 0) + 1
    rejected = manifest.rejected
    assert rejected["reasons"] == kinds
    assert (rejected["interactions_read"], rejected["interactions_rejected"]) == (
        len(RATINGS) + len(extra),
        len(expected),
    )
    assert rejected["duplicates_collapsed"] == duplicates
    assert manifest.counts["interactions"] == len(RATINGS)  # the good rows, once each
    assert dump_keys(client) == before  # nothing published: ingest alone


@dataclass(frozen=True)
class Published:
    """A case that publishes: its input, its quarantined interactions (reason, row) and a
    check of the published version."""

    case: Case
    quarantined: list[tuple[str, dict]]
    check: Callable[[ListStore, str, dict], None]
    evaluate: bool = False  # the holdout evaluation too (where the data tests its protocol)


def _huge_ids(store: ListStore, version: str, counts: dict) -> None:
    assert BIG in store.catalogue(version).item_ids
    mine = store.user_list(version, BIG)
    assert mine is not None and len(mine) == TOP_N
    assert not {101, 103} & {e.item_id for e in mine}
    assert len(store.similar_list(version, BIG) or []) == 4
    assert [e.item_id for e in store.user_list(version, 1) or []].count(BIG) == 0  # seen


def _unicode_titles(store: ListStore, version: str, counts: dict) -> None:
    assert store.catalogue(version).titles == [t for _, t, _ in UNICODE_MOVIES]
    assert counts["items_encoded"] == len(UNICODE)


def _no_text(store: ListStore, version: str, counts: dict) -> None:
    assert counts["items_without_text"] == 2
    assert store.catalogue(version).titles[:2] == ["", ""]
    assert len(store.similar_list(version, 101) or []) == 4


def _unknown_items(store: ListStore, version: str, counts: dict) -> None:
    assert not {998, 999} & set(store.catalogue(version).item_ids)
    assert all(len(store.user_list(version, u) or []) == TOP_N for u in range(1, SIZE + 1))


def _one_item(store: ListStore, version: str, counts: dict) -> None:
    # Every user has seen the only item: min(N, unseen) = 0, an empty personal list (not the
    # popular list, which is that seen item).
    assert counts["empty_user_lists"] == 5
    assert all(store.user_list(version, u) == [] for u in range(1, 6))
    assert [e.item_id for e in store.popular_list(version)] == [101]
    assert not store.similar_list(version, 101)


def _single_user(store: ListStore, version: str, counts: dict) -> None:
    items = [e.item_id for e in store.user_list(version, 1) or []]
    assert len(items) == TOP_N and set(items) <= {109, 110, 111, 112}  # the unseen ones
    assert counts["users"] == 1


# Accents, CJK, Cyrillic with an emoji, Arabic (right to left), a combining accent.
UNICODE = [
    "Amélie (2001)",
    "千と千尋の神隠し (2001)",
    "Звёзды 🌟 (2010)",
    "فيلم (2005)",
    "e\u0301 (1999)",
]
UNICODE_MOVIES = [(i, t, g) for (i, _, g), t in zip(MOVIES, UNICODE, strict=False)] + MOVIES[5:]
PUBLISHED = {
    "huge_ids": Published(
        Case(
            ratings=RATINGS
            + [(BIG, 101, 4.0, T0), (BIG, 103, 4.0, T0 + 1), (1, BIG, 4.0, T0 + 2)]
            + [(2, 10**20, 4.0, T0)],
            movies=[*MOVIES, (BIG, "The largest id (2000)", "Horror|Thriller")],
        ),
        [
            (
                "movieId is outside the 64-bit integer range: 100000000000000000000",
                raw(2, 10**20, 4.0, T0),
            )
        ],
        _huge_ids,
    ),
    "unicode_titles": Published(Case(movies=UNICODE_MOVIES), [], _unicode_titles),
    "items_without_text": Published(
        Case(movies=[(101, "", ""), (102, "", "(no genres listed)"), *MOVIES[2:]]), [], _no_text
    ),
    "unknown_items": Published(
        Case(ratings=RATINGS + [(1, 999, 4.0, T0), (2, 998, 5.0, T0)]),
        [
            ("item_id not in the item catalogue", raw(1, 999, 4.0, T0)),
            ("item_id not in the item catalogue", raw(2, 998, 5.0, T0)),
        ],
        _unknown_items,
    ),
    "one_item_catalogue": Published(
        Case(
            ratings=[(u, 101, 4.0, T0 + u) for u in range(1, 6)],
            movies=[(101, "The only film (1999)", "Drama")],
        ),
        [],
        _one_item,
        evaluate=True,
    ),
    "single_user": Published(
        Case(ratings=[(1, 100 + i, 4.0, T0 + i) for i in range(1, 9)]),
        [],
        _single_user,
        evaluate=True,
    ),
}


@pytest.mark.parametrize("name", PUBLISHED)
def test_odd_input_publishes_with_bad_rows_counted(name, spark, good, redis_good, tmp_path):
    case = PUBLISHED[name]
    data = case.case.write(tmp_path / name)
    client = redis.Redis.from_url(redis_good)

    holdout = 1 if case.evaluate else 0
    manifest = run_job(config(data, good.out, redis_good, name, eval_holdout=holdout), spark)

    assert (manifest.status, manifest.version) == ("published", name)
    store = ListStore(client)
    assert store.current_version() == name
    assert [v.decode() for v in client.zrange(KEYS.versions, 0, -1)] == ["good", name]
    control = {KEYS.current.encode(), KEYS.versions.encode()}
    kept = {k: v for k, v in dump_keys(client).items() if k in good.keys and k not in control}
    assert kept == {k: v for k, v in good.keys.items() if k not in control}
    got = quarantine(spark, good.out, name)
    assert got == in_order(("interactions", r, row) for r, row in case.quarantined)
    assert manifest.rejected["interactions_rejected"] == len(case.quarantined)
    assert sum(manifest.rejected["reasons"].values()) == len(case.quarantined)
    case.check(store, name, manifest.counts)
