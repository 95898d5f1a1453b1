"""What search needs from a run's files, loaded once per version: the ScaNN index, the CF
factors and every user's interactions (seen items, history), all aligned to the index rows;
and the run's quality record.

The Parquet tables are read with pyarrow (no Spark in the API). Memory is about
4 x (users + items) x (cf_dim + 1) bytes for the factors plus 12 bytes per interaction
(see `serving.histories`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from schemas.manifest import RUN_MANIFEST, ManifestError, RunManifest
from schemas.text import EncoderSpec
from serving.histories import Histories, build_histories
from serving.item_index import ItemIndex
from serving.store import Catalogue

log = logging.getLogger("nightrec.serving")


class AssetsError(RuntimeError):
    """A run's files for search are missing or do not fit the index."""


@dataclass(frozen=True)
class SearchAssets:
    """The index of a version with what re-ranks and filters its answers.

    Attributes:
        index: the ScaNN index over item text embeddings.
        titles: the title of every index row.
        item_cf: (rows, d) CF item factors by index row (zeros for an item without any).
        user_cf: (users, d) CF user factors; score(u, i) = user_cf[u] @ item_cf[i].
        user_rows: the user's row in user_cf, by the string form of the user id.
        histories: every user's interactions (index rows, ratings, times), by the string
            form of the user id.
        encoder: the encoder queries are encoded with (the one the index was built with).
        query_model: what encodes queries (see `serving.query_encoder.open_query_model`);
            set once the version's encoder is opened.
    """

    index: ItemIndex
    titles: list[str]
    item_cf: np.ndarray
    user_cf: np.ndarray
    user_rows: dict[str, int]
    histories: Histories
    encoder: EncoderSpec
    query_model: Any = None

    def user_vector(self, user_key: str) -> np.ndarray | None:
        """Return the user's CF factors, or None for a user the model does not know."""
        row = self.user_rows.get(user_key)
        return None if row is None else self.user_cf[row]

    def seen_rows(self, user_key: str) -> np.ndarray:
        """Return the sorted index rows the user has interacted with (empty when none)."""
        return self.histories.seen_rows(user_key)


def find_run_dir(meta: dict[str, Any], out: Path) -> Path:
    """Return the run directory of a version: OUT/runs/RUN_ID, else where the meta says.

    Raises:
        AssetsError: neither place holds an index directory.
    """
    run_id = str(meta.get("run_id", ""))
    candidates = [out / "runs" / run_id] if run_id else []
    if meta.get("index_dir"):
        candidates.append(Path(meta["index_dir"]).parent)
    for candidate in candidates:
        if (candidate / "index").is_dir():
            return candidate
    tried = ", ".join(str(c / "index") for c in candidates) or "nothing (no run_id in meta)"
    raise AssetsError(
        f"no index for run {run_id!r}: tried {tried}; mount the job's --out directory and "
        f"pass it as --out (NIGHTREC_OUT)"
    )


def load_assets(run_dir: Path, catalogue: Catalogue, encoder: EncoderSpec) -> SearchAssets:
    """Load the index, factors and seen items of a run (see `SearchAssets`)."""
    index = ItemIndex.load(run_dir / "index")
    title_of = dict(zip(map(str, catalogue.item_ids), catalogue.titles, strict=True))
    titles = [title_of.get(str(item_id), "") for item_id in index.item_ids]
    user_ids, user_cf = read_factors(run_dir / "user_factors", "user_id")
    item_ids, item_factors = read_factors(run_dir / "item_factors", "item_id")
    if user_cf.shape[1] != item_factors.shape[1]:
        raise AssetsError(
            f"user and item factors of {run_dir} differ in width "
            f"({user_cf.shape[1]} and {item_factors.shape[1]})"
        )
    rows = index_rows(index, item_ids)
    item_cf = np.zeros((len(index), item_factors.shape[1]), dtype=np.float32)
    item_cf[rows[rows >= 0]] = item_factors[rows >= 0]
    return SearchAssets(
        index=index,
        titles=titles,
        item_cf=item_cf,
        user_cf=user_cf,
        user_rows={str(user_id): row for row, user_id in enumerate(user_ids)},
        histories=read_histories(run_dir / "interactions", index),
        encoder=encoder,
    )


def index_rows(index: ItemIndex, item_ids: Any) -> np.ndarray:
    """Return the index row of every item id (-1 for ids the index does not hold)."""
    import pandas as pd

    return np.asarray(pd.Index(index.item_ids).get_indexer(item_ids), dtype=np.int64)


def read_factors(path: Path, id_col: str) -> tuple[list[Any], np.ndarray]:
    """Read a factors table: the ids as written and a (rows, d) float32 matrix."""
    table = _read_parquet(path, [id_col, "factors"])
    ids = table.column(id_col).to_pylist()
    column = table.column("factors").combine_chunks()
    if len(column) == 0:
        return ids, np.zeros((0, 0), dtype=np.float32)
    values = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    width = len(values) // len(column)
    if width * len(column) != len(values) or column.null_count:
        raise AssetsError(f"{path}: factors rows must all have the same width and no nulls")
    return ids, values.reshape(len(column), width)


def read_histories(path: Path, index: ItemIndex) -> Histories:
    """Read the interactions table into every user's history (see `serving.histories`)."""
    table = _read_parquet(path, ["user_id", "item_id", "rating", "timestamp"])
    rows = index_rows(index, table.column("item_id").to_pandas())
    return build_histories(
        table.column("user_id").to_pandas(),
        rows,
        table.column("rating").to_numpy(),
        table.column("timestamp").to_numpy(),
    )


def read_quality(meta: dict[str, Any], out: Path) -> dict[str, Any]:
    """Return the quality record of a version's run: its manifest.json's, else the meta's.

    The manifest is the run's own record (an `evaluate` rerun updates it); the copy in the
    version's meta is what publish saw, used when the run's directory is not mounted.
    """
    quality: Any
    try:
        text = (find_run_dir(meta, out) / RUN_MANIFEST).read_text(encoding="utf-8")
        quality = RunManifest.from_json(text).quality
    except (AssetsError, OSError, ManifestError, UnicodeDecodeError) as exc:
        log.warning("quality of run %s from the version meta: %s", meta.get("run_id"), exc)
        quality = meta.get("quality")
    return dict(quality) if isinstance(quality, dict) else {}


def _read_parquet(path: Path, columns: list[str]) -> Any:
    import pyarrow.parquet as pq

    if not path.exists():
        raise AssetsError(f"{path} is missing: the run did not write it (rerun the job)")
    try:
        return pq.read_table(path, columns=columns)
    except (OSError, ValueError, KeyError) as exc:  # pyarrow's errors derive from these
        raise AssetsError(f"cannot read {path}: {exc}") from exc
