"""Small MovieLens-layout data sets written for tests (ratings.csv and movies.csv)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

GENRES = ("Horror|Thriller", "Comedy|Romance")


def write_movielens(directory: Path, ratings: list[tuple], movies: list[tuple]) -> Path:
    """Write ratings (userId, movieId, rating, timestamp) and movies (movieId, title, genres)."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "ratings.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["userId", "movieId", "rating", "timestamp"])
        writer.writerows(ratings)
    with (directory / "movies.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["movieId", "title", "genres"])
        writer.writerows(movies)
    return directory


def checkerboard(size: int = 12) -> tuple[list[tuple], list[tuple]]:
    """Every even user liked every even item, odd users odd items; the diagonal is withheld.

    User ids are 1..size and item ids 101..100+size, so user u's withheld item is 100 + u and
    it is the only unseen item of the user's parity: it must top the user's list.
    """
    ratings = [
        (u, 100 + i, 4.0 + (i % 2) * 0.5, 1_500_000_000 + u * 1000 + i)
        for u in range(1, size + 1)
        for i in range(1, size + 1)
        if u % 2 == i % 2 and u != i
    ]
    movies = [(100 + i, f"Film number {i} ({1990 + i})", GENRES[i % 2]) for i in range(1, size + 1)]
    return ratings, movies


def job_config(data: Path, out: Path, redis_url: str, run_id: str, **extra: Any):
    """Return a job config for a small test data set: no quality split to speak of, short lists.

    `extra` overrides or adds settings (top_n, similar_n, the CF model's, ...).
    """
    from jobs.config import build_config

    flags = {
        "data": str(data),
        "out": str(out),
        "redis_url": redis_url,
        "run_id": run_id,
        "eval_holdout": 1,
        **extra,
    }
    return build_config(flags, {})
