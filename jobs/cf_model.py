"""Collaborative filtering from implicit feedback: a Keras model with a multinomial likelihood.

Each user u has a free embedding P_u, each item i an embedding Q_i and a bias b_i. The logits
of user u over the whole catalogue are P_u @ Q.T + b, and the loss is the multinomial
log-likelihood of the user's positives (the "Mult" likelihood of Mult-VAE, Liang et al. 2018,
with free user embeddings instead of an encoder):

    loss_u = -sum over positives i of w_ui * log_softmax(P_u @ Q.T + b)_i

plus L2 on P and Q. Batches are sets of users, so a step costs a (batch_users x n_items)
logit matrix: about 6 * batch_users * n_items * dim flops forward and backward, and
batch_users * n_items * 4 bytes a few times over in memory (256 users x 1M items is 1 GiB
per copy; lower batch_users for catalogues that large). An epoch is
~6 * n_users * n_items * dim flops whatever the batch size.

The output folds the bias into the factors, user_factors = [P_u, 1] and item_factors =
[Q_i, b_i], so a score is a plain dot product, as `jobs.topn` computes it.
"""

from __future__ import annotations

import operator
import time
import warnings
from dataclasses import asdict, dataclass

import keras
import numpy as np
import tensorflow as tf

from jobs.topn import seen_csr


@dataclass(frozen=True)
class CFParams:
    """Hyperparameters of `train_cf`.

    The defaults were chosen on MovieLens ml-latest-small (NDCG@10 of a temporal validation
    split carved from the training data); they train in about 4 s on 2 CPU cores. A strong
    rating exponent helped even when every held-out item counted as relevant: low ratings
    are weak evidence of taste.

    Attributes:
        dim: embedding size; the output factors have dim + 1 columns (the item bias).
        epochs: passes over the users.
        batch_users: users per gradient step.
        learning_rate: Adam step size.
        l2: weight of the squared L2 norm of each user's and item's embedding, per user
            and per item, relative to one positive's negative log-likelihood.
        rating_weight: exponent a of a positive's weight, rating ** a rescaled to mean 1; 0
            treats every interaction alike (plain implicit feedback).
        recency_half_life: a positive's weight halves for every this many later
            interactions of the same user (0: no recency weighting); needs timestamps.
        text_weight: weight of the projected item text embedding added to each item's
            free embedding (0: pure collaborative filtering); needs item text.
        init_std: standard deviation of the initial embeddings.
        seed: seed of the initial embeddings and of the order of users.
    """

    dim: int = 64
    epochs: int = 40
    batch_users: int = 128
    learning_rate: float = 0.01
    l2: float = 5.0
    rating_weight: float = 4.0
    recency_half_life: float = 0.0
    text_weight: float = 0.5
    init_std: float = 0.1
    seed: int = 42

    def to_dict(self) -> dict:
        """Return the parameters as a JSON-ready dict."""
        return asdict(self)

    def validate(self) -> None:
        """Raise ValueError naming the first parameter out of range."""
        for name in ("dim", "epochs", "batch_users"):
            if getattr(self, name) < 1:
                raise ValueError(f"CFParams.{name} must be >= 1 (got {getattr(self, name)})")
        for name in ("learning_rate", "init_std"):
            if not getattr(self, name) > 0:
                raise ValueError(f"CFParams.{name} must be > 0 (got {getattr(self, name)})")
        for name in ("l2", "rating_weight", "recency_half_life", "text_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"CFParams.{name} must be >= 0 (got {getattr(self, name)})")


@dataclass(frozen=True)
class CFFactors:
    """Trained factors; score(u, i) = user_factors[u] @ item_factors[i].

    Attributes:
        user_factors: (n_users, dim + 1) float32, [P_u, 1]; users without interactions
            get P_u = 0, so their scores are the item biases (a popularity-like order).
        item_factors: (n_items, dim + 1) float32, [Q_i, b_i].
        history: {"loss": per epoch, the mean over users of the weighted negative
            log-likelihood (L2 term excluded), "seconds": training time}.
    """

    user_factors: np.ndarray
    item_factors: np.ndarray
    history: dict


def set_tf_threads(threads: int) -> bool:
    """Cap TensorFlow's CPU thread pools at `threads`; call before TensorFlow runs an op.

    TensorFlow sizes its pools from the host's cores, not the container's CPU limit, so a
    pod on a large node would oversubscribe its quota without this.

    Returns:
        True if the cap is in force, False (with a warning) if TensorFlow had already
        started with other settings.
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1 (got {threads})")
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        warnings.warn(
            f"TensorFlow was already running, so its thread pools were not capped at {threads}; "
            f"call jobs.cf_model.set_tf_threads before any TensorFlow work",
            stacklevel=2,
        )
        return False
    return True


class MultModel(keras.Model):
    """User and item embeddings plus an item bias; maps user indices to logits over items.

    With item text features T, an item's vector is Q_i + text_weight * T_i @ W, W a learned
    (text dim x dim) projection: items with few interactions borrow from similar texts.
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        dim: int,
        init_std: float,
        seed: int,
        text: np.ndarray | None = None,
        text_weight: float = 0.0,
    ):
        super().__init__()
        self.user_embedding = keras.layers.Embedding(
            n_users, dim, embeddings_initializer=keras.initializers.RandomNormal(0, init_std, seed)
        )
        self.item_embedding = keras.layers.Embedding(
            n_items,
            dim,
            embeddings_initializer=keras.initializers.RandomNormal(0, init_std, seed + 1),
        )
        self.user_embedding.build()
        self.item_embedding.build()
        self.item_bias = self.add_weight(shape=(n_items,), initializer="zeros", name="item_bias")
        self.text = None if text is None or text_weight == 0 else tf.constant(text, tf.float32)
        self.text_weight = text_weight
        if self.text is not None:
            init = keras.initializers.RandomNormal(0, init_std, seed + 2)
            self.projection = self.add_weight(
                shape=(text.shape[1], dim), initializer=init, name="text_projection"
            )

    def call(self, users):
        """Return the (batch, n_items) logits of the given user indices."""
        return tf.matmul(self.user_vectors(users), self.item_vectors(), transpose_b=True) + (
            self.item_bias
        )

    def user_vectors(self, users):
        """Return the (batch, dim) embeddings of the given user indices."""
        return self.user_embedding(users)

    def item_vectors(self):
        """Return the (n_items, dim) item vectors: free embeddings plus projected text."""
        items = self.item_embedding.embeddings
        if self.text is None:
            return items
        return items + self.text_weight * tf.matmul(self.text, self.projection)


def train_cf(
    user_idx: np.ndarray,
    item_idx: np.ndarray,
    rating: np.ndarray | None,
    n_users: int,
    n_items: int,
    params: CFParams = CFParams(),  # noqa: B008 - frozen, so sharing the default is safe
    timestamp: np.ndarray | None = None,
    item_text: np.ndarray | None = None,
) -> CFFactors:
    """Train the model on (user, item[, rating]) interactions and return its factors.

    Args:
        user_idx: (n,) user index of each interaction, in [0, n_users).
        item_idx: (n,) item index of each interaction, in [0, n_items).
        rating: (n,) positive ratings, or None; used only when params.rating_weight > 0.
        n_users: number of users (rows of user_factors).
        n_items: number of items (rows of item_factors).
        params: hyperparameters.
        timestamp: (n,) time of each interaction, or None; used only when
            params.recency_half_life > 0.
        item_text: (n_items, t) text embeddings of the items, or None; used only when
            params.text_weight > 0.

    Returns:
        The factors and the training history. A repeated interaction counts twice.
    """
    params.validate()
    # numpy integers are welcome, but Keras layers take Python ints only.
    n_users, n_items = operator.index(n_users), operator.index(n_items)
    user_idx, item_idx = _check_indices(user_idx, item_idx, n_users, n_items)
    weights = _positive_weights(rating, len(user_idx), params.rating_weight)
    if timestamp is not None and params.recency_half_life > 0:
        weights = _rescaled(
            weights * recency_weights(user_idx, timestamp, params.recency_half_life)
        )
    start = time.perf_counter()
    text = _check_text(item_text, n_items) if params.text_weight > 0 else None
    model = MultModel(
        n_users, n_items, params.dim, params.init_std, params.seed, text, params.text_weight
    )
    optimizer = keras.optimizers.Adam(params.learning_rate)
    optimizer.build(model.trainable_variables)
    # Grouping positions rather than items gives the order that sorts all arrays by user.
    indptr, order = seen_csr(user_idx, np.arange(len(user_idx)), n_users)
    data = _Positives(indptr, item_idx[order], weights[order])
    step = _make_step(model, optimizer, params.l2, n_users)
    losses = _fit(step, data, params)
    return CFFactors(
        *_export(model, active=np.diff(indptr) > 0),
        history={"loss": losses, "seconds": time.perf_counter() - start},
    )


@dataclass(frozen=True)
class _Positives:
    """Each user's positives as CSR arrays: items[indptr[u]:indptr[u + 1]] and their weights."""

    indptr: np.ndarray
    items: np.ndarray
    weights: np.ndarray

    def batch(self, users: np.ndarray) -> tuple[np.ndarray, ...]:
        """Return (row in batch, item, weight) of every positive of the given users."""
        starts, sizes = self.indptr[users], np.diff(self.indptr)[users]
        offsets = np.zeros(len(users), dtype=np.int64)
        np.cumsum(sizes[:-1], out=offsets[1:])
        gather = np.repeat(starts - offsets, sizes) + np.arange(sizes.sum())
        rows = np.repeat(np.arange(len(users), dtype=np.int32), sizes)
        return rows, self.items[gather], self.weights[gather]


def _check_indices(user_idx, item_idx, n_users: int, n_items: int) -> tuple[np.ndarray, ...]:
    """Return the indices as int32 arrays, raising ValueError if they do not fit the sizes."""
    user_idx, item_idx = np.asarray(user_idx), np.asarray(item_idx)
    if user_idx.shape != item_idx.shape or user_idx.ndim != 1:
        raise ValueError(
            f"user_idx and item_idx must be 1-D and of the same length "
            f"(got shapes {user_idx.shape} and {item_idx.shape})"
        )
    for name, idx, size in (("user_idx", user_idx, n_users), ("item_idx", item_idx, n_items)):
        if size < 1:
            raise ValueError(f"the {name} range must hold at least one index (got {size})")
        if len(idx) and (idx.min() < 0 or idx.max() >= size):
            raise ValueError(
                f"{name} must lie in [0, {size}) (got [{idx.min()}, {idx.max()}]); "
                f"map ids to dense indices first"
            )
    return user_idx.astype(np.int32), item_idx.astype(np.int32)


def _check_text(text: np.ndarray | None, n_items: int) -> np.ndarray | None:
    """Return the item text features as float32, or None when there are none."""
    if text is None:
        return None
    text = np.asarray(text, dtype=np.float32)
    if text.ndim != 2 or text.shape[0] != n_items:
        raise ValueError(f"item_text must have one row per item ({n_items}), got {text.shape}")
    return text


def _positive_weights(rating: np.ndarray | None, n: int, exponent: float) -> np.ndarray:
    """Return rating ** exponent rescaled to mean 1, or ones when there is nothing to weight."""
    if rating is None or exponent == 0 or n == 0:
        return np.ones(n, dtype=np.float32)
    rating = np.asarray(rating, dtype=np.float64)
    if rating.shape != (n,):
        raise ValueError(f"rating must have one value per interaction (got shape {rating.shape})")
    if not (rating > 0).all():
        raise ValueError(
            f"rating weighting needs positive ratings (the lowest is {rating.min()}); "
            f"shift the ratings or set rating_weight=0"
        )
    return _rescaled(rating**exponent)


def _rescaled(weights: np.ndarray) -> np.ndarray:
    """Return weights / their mean as float32."""
    # Mean 1 keeps the likelihood on the scale the l2 default was tuned for.
    return (weights / weights.mean()).astype(np.float32)


def recency_weights(user_idx: np.ndarray, timestamp: np.ndarray, half_life: float) -> np.ndarray:
    """Return 0.5 ** (later interactions of the same user / half_life) per interaction.

    Counting interactions rather than seconds makes the decay independent of how often a
    user comes back; ties in time are broken by position, as in the holdout split.
    """
    n = len(user_idx)
    if len(timestamp) != n:
        raise ValueError(f"timestamp must have one value per interaction (got {len(timestamp)})")
    order = np.lexsort((np.arange(n), np.asarray(timestamp), np.asarray(user_idx)))
    sorted_users = np.asarray(user_idx)[order]
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    sizes = np.diff(np.r_[starts, n])
    later = np.empty(n, dtype=np.float64)
    later[order] = np.repeat(starts + sizes, sizes) - 1 - np.arange(n)
    return 0.5 ** (later / half_life)


def _make_step(model: MultModel, optimizer, l2: float, n_users: int):
    """Return a compiled training step: (users, rows, items, weights) -> mean NLL per user."""
    vector = tf.TensorSpec([None], tf.int32)
    spec = [vector, vector, vector, tf.TensorSpec([None], tf.float32)]

    @tf.function(input_signature=spec)
    def step(users, rows, items, weights):
        batch = tf.shape(users)[0]
        with tf.GradientTape() as tape:
            logits = model(users)
            positive = tf.gather_nd(logits, tf.stack([rows, items], axis=1))
            # sum_i w_i * -log_softmax_i = W * logsumexp - sum_i w_i * logit_i, W = sum_i w_i:
            # no dense multi-hot target is needed.
            total = tf.math.unsorted_segment_sum(weights, rows, batch)
            nll = tf.reduce_sum(total * tf.reduce_logsumexp(logits, axis=1))
            nll = (nll - tf.reduce_sum(weights * positive)) / tf.cast(batch, tf.float32)
            # An unbiased batch estimate of l2 * (sum_u |P_u|^2 + sum_i |Q_i|^2) / n_users.
            user_norms = tf.reduce_mean(tf.reduce_sum(tf.square(model.user_vectors(users)), 1))
            item_norms = tf.reduce_sum(tf.square(model.item_embedding.embeddings)) / n_users
            loss = nll + l2 * (user_norms + item_norms)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return nll

    return step


def _fit(step, data: _Positives, params: CFParams) -> list[float]:
    """Run the epochs over the users with positives; return the mean NLL per user per epoch."""
    rng = np.random.default_rng(params.seed)
    active = np.flatnonzero(np.diff(data.indptr) > 0).astype(np.int32)
    losses = []
    for _ in range(params.epochs):
        order = rng.permutation(active)
        total = 0.0
        for start in range(0, len(order), params.batch_users):
            users = order[start : start + params.batch_users]
            total += float(step(users, *data.batch(users))) * len(users)
        losses.append(total / max(1, len(active)))
    return losses


def _export(model: MultModel, active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fold the item bias into the factors: users [P_u, 1], items [Q_i, b_i]."""
    users = model.user_embedding.embeddings.numpy()
    users[~active] = 0.0
    ones = np.ones((users.shape[0], 1), dtype=np.float32)
    items = model.item_vectors().numpy()
    bias = model.item_bias.numpy()[:, None]
    return (
        np.ascontiguousarray(np.hstack([users, ones]), dtype=np.float32),
        np.ascontiguousarray(np.hstack([items, bias]), dtype=np.float32),
    )
