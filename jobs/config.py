"""The job's configuration: one frozen object built once from flags, NIGHTREC_* variables,
an optional TOML file and defaults (in that order of precedence).

`SETTINGS` is the explicit table of every setting; nothing else reads os.environ.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from jobs.errors import ConfigError
from schemas import settings
from schemas.redis_layout import VERSION_PATTERN
from schemas.settings import (
    Setting,
    choice,
    fraction,
    non_negative,
    parse_bool,
    positive,
    redact_url,
    resolve,
)
from schemas.text import DEFAULT_ENCODER, EncoderSpec

__all__ = ["SETTINGS", "JobConfig", "Setting", "build_config", "redact_url"]

STAGE_NAMES = (
    "ingest",
    "embed_items",
    "evaluate",
    "train_cf",
    "score_users",
    "build_index",
    "publish",
)


def _run_id(text: str) -> str:
    """A run id names a directory and the Redis version: keep it to safe characters."""
    if not VERSION_PATTERN.match(text):
        raise ValueError(
            f"expected letters, digits, '.', '_' or '-' (at most 128, not starting with "
            f"'.', '_' or '-'), got {text!r}"
        )
    return text


def _stages(text: str) -> tuple[str, ...]:
    names = tuple(s.strip() for s in str(text).split(",") if s.strip())
    unknown = [s for s in names if s not in STAGE_NAMES]
    if unknown:
        raise ValueError(f"unknown stage {unknown[0]!r} (stages: {', '.join(STAGE_NAMES)})")
    return names


BASELINE_NAMES = ("popularity", "item_knn", "ease", "implicit_als", "spark_als")


def _baselines(text: str) -> tuple[str, ...]:
    names = tuple(s.strip() for s in str(text).split(",") if s.strip())
    unknown = [s for s in names if s not in BASELINE_NAMES]
    if unknown:
        raise ValueError(
            f"unknown baseline {unknown[0]!r} (baselines: {', '.join(BASELINE_NAMES)})"
        )
    return names


SETTINGS: tuple[Setting, ...] = (
    Setting("data", str, "MovieLens-layout directory (ratings.csv, movies.csv)"),
    Setting("interactions", str, "interactions file or directory (CSV/Parquet, any URI)"),
    Setting("items", str, "item catalogue file or directory (CSV/Parquet, any URI)"),
    Setting("input_format", choice("auto", "csv", "parquet"), "format of the inputs"),
    Setting("csv_delimiter", str, "CSV field delimiter"),
    Setting("col_user_id", str, "interactions column holding the user id"),
    Setting("col_item_id", str, "interactions column holding the item id"),
    Setting("col_rating", str, "interactions column holding the rating ('' = none)"),
    Setting("col_timestamp", str, "interactions column holding the time ('' = none)"),
    Setting("col_items_item_id", str, "catalogue column holding the item id"),
    Setting("col_title", str, "catalogue column holding the title"),
    Setting("col_genres", str, "catalogue column with |-separated genres ('' = none)"),
    Setting("id_type", choice("auto", "int", "string"), "how ids are typed"),
    Setting("timestamp_unit", choice("s", "ms"), "unit of numeric timestamps"),
    Setting("max_reject_fraction", float, "fail when more input rows are rejected", fraction),
    Setting("out", str, "artefact directory (runs/<run_id>/ under it)"),
    Setting("run_id", _run_id, "run id (default: UTC time of the start)"),
    Setting("stages", _stages, "comma-separated stages to run"),
    Setting("top_n", int, "items per user list", positive),
    Setting("similar_n", int, "items per similar-items list", positive),
    Setting("similar_cf_weight", float, "weight of CF cosine in similar items", fraction),
    Setting("redis_url", str, "Redis URL (default: a private redis-server under --out)"),
    Setting("redis_prefix", str, "prefix of every Redis key"),
    Setting("redis_cluster", parse_bool, "the Redis URL names a node of a Redis Cluster"),
    Setting("keep_versions", int, "published versions kept in Redis", positive),
    Setting("keep_runs", int, "run directories kept under OUT/runs (0 = all)", non_negative),
    Setting("publish_batch", int, "lists per Redis write batch", positive),
    Setting("spark_master", str, "Spark master URL"),
    Setting("spark_driver_memory", str, "Spark driver memory"),
    Setting("spark_partitions", int, "shuffle partitions (0 = 2 x cores)"),
    Setting("spark_class_cache", str, "local mode: JVM class archive directory ('' = off)"),
    Setting("score_block_users", int, "users per scoring block", positive),
    Setting("encoder", str, "sentence-transformers model name or path"),
    Setting("encoder_device", str, "cuda or cpu (default: cuda when present)"),
    Setting("encoder_batch_size", int, "texts per encoder batch", positive),
    Setting("export_query_encoder", parse_bool, "export the encoder to ONNX for the API's queries"),
    Setting("cf_dim", int, "CF embedding size", positive),
    Setting("cf_epochs", int, "CF training epochs (0 = the model's default)"),
    Setting("cf_seed", int, "random seed of the CF model"),
    Setting("cf_l2", float, "CF L2 regularisation (default: the model's)"),
    Setting("cf_learning_rate", float, "CF Adam learning rate (default: the model's)"),
    Setting("cf_text_weight", float, "CF weight of the item text embedding (0 = pure CF)"),
    Setting("eval_holdout", int, "held-out interactions per user (0 = skip)"),
    Setting("eval_k", int, "cut-off K of the evaluation metrics", positive),
    Setting("eval_min_rating", float, "rating from which a held-out item is relevant"),
    Setting("eval_baselines", _baselines, "baselines the evaluate stage runs ('' = none)"),
    Setting("gate_max_drop", float, "refuse to publish when NDCG@K drops by more", fraction),
    Setting("force_publish", parse_bool, "publish even when the quality gate fails"),
    Setting("verbose", parse_bool, "print Spark's own log lines"),
    Setting("log_format", choice("text", "json"), "stage lines and logs as text or JSON lines"),
    Setting("metrics_file", str, "Prometheus textfile the run's metrics go to ('' = none)"),
    Setting("pushgateway_url", str, "Prometheus Pushgateway to push the run's metrics to"),
)


@dataclass(frozen=True)
class JobConfig:
    """Every setting of one `nightrec run`, validated."""

    data: str | None = None
    interactions: str | None = None
    items: str | None = None
    input_format: str = "auto"
    csv_delimiter: str = ","
    col_user_id: str = "user_id"
    col_item_id: str = "item_id"
    col_rating: str = "rating"
    col_timestamp: str = "timestamp"
    col_items_item_id: str = "item_id"
    col_title: str = "title"
    col_genres: str = "genres"
    id_type: str = "auto"
    timestamp_unit: str = "s"
    max_reject_fraction: float = 0.05
    out: str = "var"
    run_id: str | None = None
    stages: tuple[str, ...] = STAGE_NAMES
    top_n: int = 100
    similar_n: int = 20
    similar_cf_weight: float = 0.5
    redis_url: str | None = None
    redis_prefix: str = "nightrec"
    redis_cluster: bool = False
    keep_versions: int = 2
    keep_runs: int = 10
    publish_batch: int = 2000
    spark_master: str = "local[*]"
    spark_driver_memory: str = "4g"
    spark_partitions: int = 0
    spark_class_cache: str = "~/.cache/nightrec"
    score_block_users: int = 4096
    encoder: str = DEFAULT_ENCODER
    encoder_device: str | None = None
    encoder_batch_size: int = 128
    export_query_encoder: bool = True
    cf_dim: int = 64
    cf_epochs: int = 0
    cf_seed: int = 42
    cf_l2: float | None = None
    cf_learning_rate: float | None = None
    cf_text_weight: float | None = None
    eval_holdout: int = 10
    eval_k: int = 10
    eval_min_rating: float = 4.0
    eval_baselines: tuple[str, ...] = ("popularity",)
    gate_max_drop: float = 0.1
    force_publish: bool = False
    verbose: bool = False
    log_format: str = "text"
    metrics_file: str = ""
    pushgateway_url: str = ""

    @property
    def encoder_spec(self) -> EncoderSpec:
        return EncoderSpec(self.encoder, self.encoder_device, self.encoder_batch_size)

    def public(self) -> dict[str, Any]:
        """Return the settings as plain values, for the run manifest (no secrets)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ("redis_url", "pushgateway_url"):  # URLs that may carry credentials
            if values[name]:
                values[name] = redact_url(values[name])
        values["stages"] = list(values["stages"])
        values["eval_baselines"] = list(values["eval_baselines"])
        return values


def build_config(
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config_file: str | None = None,
) -> JobConfig:
    """Build the config from flags (highest), NIGHTREC_* variables, a TOML file, defaults."""
    file_values = _read_toml(config_file) if config_file else {}
    optional = {f.name for f in fields(JobConfig) if f.default is None}
    try:
        values = resolve(SETTINGS, flags, env, file_values, config_file or "", optional)
    except settings.ConfigError as exc:
        raise ConfigError(str(exc)) from None
    config = JobConfig(**values)
    _check_inputs(config)
    return config


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with Path(path).open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):  # [columns] user_id = "uid"  ->  col_user_id
            prefix = "col_" if key == "columns" else f"{key}_"
            flat.update({prefix + k: v for k, v in value.items()})
        else:
            flat[key] = value
    return flat


def _check_inputs(config: JobConfig) -> None:
    if config.data and (config.interactions or config.items):
        raise ConfigError("give either --data or --interactions/--items, not both")
    if bool(config.interactions) != bool(config.items):
        raise ConfigError("--interactions and --items go together (both or neither)")
    if config.redis_cluster and not config.redis_url:
        raise ConfigError(
            "NIGHTREC_REDIS_CLUSTER needs a Redis URL (--redis-url or NIGHTREC_REDIS_URL)"
        )
