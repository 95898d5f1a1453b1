"""The item index as the API reads it: one object owns the ScaNN searcher and the item ids.

Like TFRS's ScaNN layer, an `ItemIndex` holds the searcher together with the id of every row,
so a search can never run against the wrong ids or before the index is loaded: the only way
to get one is `ItemIndex.load`, which checks the manifest against the files. `scann` (which
imports TensorFlow) is imported inside `load`; importing this module stays cheap. Nothing
here unpickles: the embeddings are read with `allow_pickle=False` and a searcher directory
holding ScaNN's pickled docids is refused.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from schemas.manifest import (
    INDEX_EMBEDDINGS,
    INDEX_ITEM_IDS,
    INDEX_MANIFEST,
    INDEX_SEARCHER_DIR,
    IndexManifest,
    ManifestError,
)

DISTANCE = "dot_product"
SEARCHER_KINDS = ("scann", "brute_force")
SCANN_ASSETS = "scann_assets.pbtxt"
SCANN_DOCIDS = "scann_docids.pkl"
_CANONICAL_INT = re.compile(r"-?(0|[1-9][0-9]*)")
_LOAD_TOKEN = object()


class IndexLoadError(RuntimeError):
    """An index directory is missing, incomplete, or disagrees with its manifest."""


class ItemIndex:
    """A loaded item index: ScaNN searcher, item ids, id-to-row map and embeddings.

    Build one with `ItemIndex.load(directory)`; the constructor is not for direct use.
    """

    def __init__(
        self,
        token: object,
        searcher: Any,
        item_ids: list[int] | list[str],
        embeddings: np.ndarray,
        manifest: IndexManifest,
    ) -> None:
        if token is not _LOAD_TOKEN:
            raise TypeError("build an ItemIndex with ItemIndex.load(directory)")
        self._searcher = searcher
        self._item_ids: tuple[int | str, ...] = tuple(item_ids)
        self._rows = {item_id: row for row, item_id in enumerate(self._item_ids)}
        self._int_ids = bool(self._item_ids) and isinstance(self._item_ids[0], int)
        embeddings.setflags(write=False)
        self._embeddings = embeddings
        self._manifest = manifest

    @classmethod
    def load(cls, directory: str | Path) -> ItemIndex:
        """Load an index directory written by the job, checking it against its manifest.

        Raises:
            IndexLoadError: the directory or a file in it is missing or unreadable, or the
                files disagree with the manifest (count, dimension, distance, searcher).
        """
        root = Path(directory)
        if not root.is_dir():
            raise IndexLoadError(
                f"index directory {root} does not exist; expected the index/ directory of a "
                f"finished run (run the job, or point --out at where it wrote)"
            )
        manifest = _read_manifest(root)
        item_ids = _read_item_ids(root, manifest.count)
        embeddings = _read_embeddings(root, manifest)
        searcher = _load_searcher(root, manifest.count)
        return cls(_LOAD_TOKEN, searcher, item_ids, embeddings, manifest)

    @property
    def item_ids(self) -> tuple[int | str, ...]:
        """The item id of every row, as the job wrote them (ints stay ints)."""
        return self._item_ids

    @property
    def embeddings(self) -> np.ndarray:
        """The (count, dim) float32 item embeddings, read-only."""
        return self._embeddings

    @property
    def manifest(self) -> IndexManifest:
        """The manifest the index was loaded with."""
        return self._manifest

    def __len__(self) -> int:
        return len(self._item_ids)

    def row_of(self, item_id: object) -> int | None:
        """Return the row of an item id, or None when the index does not hold it.

        A string from a URL finds an int id when it is that int written plainly ("42", not
        "042" or "+42"); an int finds a string id equal to its decimal form.
        """
        if isinstance(item_id, np.generic):
            item_id = item_id.item()
        if isinstance(item_id, bool) or not isinstance(item_id, int | str):
            return None
        key: int | str = item_id
        if self._int_ids and isinstance(item_id, str):
            if not _CANONICAL_INT.fullmatch(item_id):
                return None
            key = int(item_id)
        elif not self._int_ids and isinstance(item_id, int):
            key = str(item_id)
        return self._rows.get(key)

    def search(self, query_vecs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return the k rows nearest each query by dot product, best first.

        Args:
            query_vecs: (queries, dim) or (dim,) L2-normalised query embeddings, encoded by
                the encoder the manifest names.
            k: rows wanted per query; at most the item count come back.

        Returns:
            (rows, scores): int32 rows and float32 scores, (queries, min(k, count)) or
            (min(k, count),) for a 1-D query, ordered by score descending, then row
            ascending; -1 and -inf where the searcher found fewer.
        """
        q = np.asarray(query_vecs, dtype=np.float32)
        single = q.ndim == 1
        q = np.ascontiguousarray(q[None, :] if single else q)
        dim = self._manifest.dim
        if q.ndim != 2 or q.shape[1] != dim:
            raise ValueError(
                f"query vectors must be ({dim},) or (queries, {dim}) (got {np.shape(query_vecs)})"
            )
        if k < 1:
            raise ValueError(f"k must be at least 1 (got {k})")
        width = min(k, len(self))
        if len(q) == 0:
            rows = np.zeros((0, width), dtype=np.int32)
            scores = np.zeros((0, width), dtype=np.float32)
        else:
            rows, scores = self._search(q, width)
        return (rows[0], scores[0]) if single else (rows, scores)

    def _search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        # ScaNN cuts an answer at the candidates it re-scores: ask for at least k of them.
        idx, dist = self._searcher.search_batched(
            q, final_num_neighbors=k, pre_reorder_num_neighbors=max(k, self._manifest.reorder)
        )
        rows = np.asarray(idx, dtype=np.int32)
        scores = np.asarray(dist, dtype=np.float32)
        missing = ~np.isfinite(scores)  # ScaNN pads a short answer with row 0 and NaN
        rows[missing] = -1
        scores[missing] = -np.inf
        # lexsort's last key is primary: score descending, then row ascending.
        order = np.lexsort((rows, -scores), axis=1)
        return np.take_along_axis(rows, order, axis=1), np.take_along_axis(scores, order, axis=1)


def _read_manifest(root: Path) -> IndexManifest:
    path = root / INDEX_MANIFEST
    try:
        manifest = IndexManifest.from_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise IndexLoadError(f"index manifest {path} is missing") from exc
    except (OSError, UnicodeDecodeError, ManifestError, TypeError) as exc:
        raise IndexLoadError(f"index manifest {path} is corrupt: {exc}") from exc
    problems = []
    if not isinstance(manifest.count, int) or manifest.count < 1:
        problems.append(f"count must be a positive int (got {manifest.count!r})")
    if not isinstance(manifest.dim, int) or manifest.dim < 1:
        problems.append(f"dim must be a positive int (got {manifest.dim!r})")
    if manifest.distance != DISTANCE:
        problems.append(f"distance must be {DISTANCE!r} (got {manifest.distance!r})")
    if manifest.searcher not in SEARCHER_KINDS:
        problems.append(f"searcher must be one of {SEARCHER_KINDS} (got {manifest.searcher!r})")
    if not isinstance(manifest.reorder, int) or manifest.reorder < 0:
        problems.append(f"reorder must be an int >= 0 (got {manifest.reorder!r})")
    if problems:
        raise IndexLoadError(f"index manifest {path} is corrupt: {'; '.join(problems)}")
    return manifest


def _read_item_ids(root: Path, count: int) -> list[int] | list[str]:
    path = root / INDEX_ITEM_IDS
    try:
        ids = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise IndexLoadError(f"item ids file {path} is missing") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IndexLoadError(f"item ids file {path} is corrupt: {exc}") from exc
    if not isinstance(ids, list):
        raise IndexLoadError(f"item ids file {path} must hold a JSON list")
    if len(ids) != count:
        raise IndexLoadError(
            f"count mismatch: the manifest says {count} items, {path} holds {len(ids)} ids"
        )
    kinds = {type(v) for v in ids}
    if kinds not in ({int}, {str}):
        names = ", ".join(sorted(k.__name__ for k in kinds))
        raise IndexLoadError(f"item ids in {path} must be all int or all str (got {names})")
    if len(set(ids)) != len(ids):
        raise IndexLoadError(f"item ids in {path} are not unique")
    return ids


def _read_embeddings(root: Path, manifest: IndexManifest) -> np.ndarray:
    path = root / INDEX_EMBEDDINGS
    try:
        # Memory-mapped: the pages are shared by every worker process that loads this index.
        embeddings = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError as exc:
        raise IndexLoadError(f"embeddings file {path} is missing") from exc
    except (OSError, ValueError) as exc:
        raise IndexLoadError(f"embeddings file {path} is corrupt: {exc}") from exc
    expected = (manifest.count, manifest.dim)
    if embeddings.shape != expected or embeddings.dtype != np.float32:
        raise IndexLoadError(
            f"count or dimension mismatch: the manifest says {expected} float32 embeddings, "
            f"{path} holds {embeddings.shape} {embeddings.dtype}"
        )
    return embeddings


def _load_searcher(root: Path, count: int) -> Any:
    path = root / INDEX_SEARCHER_DIR
    if not (path / SCANN_ASSETS).is_file():
        raise IndexLoadError(f"ScaNN searcher {path} is missing ({SCANN_ASSETS} not found)")
    if (path / SCANN_DOCIDS).exists():
        raise IndexLoadError(
            f"ScaNN searcher {path} holds pickled docids ({SCANN_DOCIDS}), which are never "
            f"loaded; rebuild the index with the job (ids belong in {INDEX_ITEM_IDS})"
        )
    import scann

    try:
        searcher = scann.scann_ops_pybind.load_searcher(str(path), assets_backcompat_shim=False)
    except (RuntimeError, ValueError, OSError) as exc:
        raise IndexLoadError(f"ScaNN searcher {path} could not be loaded: {exc}") from exc
    if searcher.size() != count:
        raise IndexLoadError(
            f"count mismatch: the manifest says {count} items, the searcher in {path} "
            f"holds {searcher.size()}"
        )
    return searcher
