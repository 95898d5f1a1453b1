"""Query vectors: encoded with `schemas.text.encode_texts` (exactly as the items were), kept in
an LRU cache of recent queries.

One lock serialises the model: torch already uses the worker's CPU threads for one query,
and two concurrent forward passes on a small CPU only slow each other down.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from schemas.text import EncoderSpec, encode_texts


class QueryEncoder:
    """Encodes queries with the encoder a version names; remembers recent ones.

    Args:
        cache_size: query vectors kept (least recently used dropped first; 0 = none).
        threads: torch CPU threads for this process (0 = leave torch's default).
        on_lookup: called with True for a cache hit and False for a miss.
    """

    def __init__(
        self,
        cache_size: int = 1024,
        threads: int = 0,
        on_lookup: Callable[[bool], None] | None = None,
    ) -> None:
        self.cache_size = cache_size
        self.threads = threads
        self.on_lookup = on_lookup
        self._cache: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._model_lock = threading.Lock()
        self._threads_set = False

    def encode(self, spec: EncoderSpec, text: str) -> np.ndarray:
        """Return the L2-normalised float32 vector of `text` (read-only; shared by callers)."""
        key = (spec.name, text)
        with self._cache_lock:
            vector = self._cache.get(key)
            if vector is not None:
                self._cache.move_to_end(key)
        if self.on_lookup is not None:
            self.on_lookup(vector is not None)
        if vector is not None:
            return vector
        vector = self._encode(spec, text)
        if self.cache_size:
            with self._cache_lock:
                self._cache[key] = vector
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return vector

    def warm(self, spec: EncoderSpec) -> int:
        """Load the encoder now (not on the first query); return its vector width."""
        return int(self._encode(spec, "warm up").shape[0])

    def _encode(self, spec: EncoderSpec, text: str) -> np.ndarray:
        with self._model_lock:
            if not self._threads_set and self.threads > 0:
                import torch

                torch.set_num_threads(self.threads)
                self._threads_set = True
            vector = encode_texts(spec, [text])[0]
        vector.setflags(write=False)
        return vector
