"""The job's configuration: one frozen object built once from flags, NIGHTREC_* variables,
an optional TOML file and defaults (in that order of precedence).

`SETTINGS` is the explicit table of every setting; nothing else reads os.environ.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from jobs.errors import ConfigError
from schemas.text import DEFAULT_ENCODER, EncoderSpec

STAGE_NAMES = (
    "ingest",
    "embed_items",
    "evaluate",
    "train_cf",
    "score_users",
    "build_index",
    "publish",
)


def _positive(value: Any) -> bool:
    return value > 0


def _fraction(value: Any) -> bool:
    return 0.0 <= value <= 1.0


@dataclass(frozen=True)
class Setting:
    """One row of the settings table: field name, parser, help and range check.

    The default is the field's default in `JobConfig`; the variable is NIGHTREC_<NAME>.
    """

    name: str
    type: Callable[[str], Any]
    help: str
    check: Callable[[Any], bool] | None = None

    @property
    def env(self) -> str:
        return "NIGHTREC_" + self.name.upper()


def _stages(text: str) -> tuple[str, ...]:
    names = tuple(s.strip() for s in str(text).split(",") if s.strip())
    unknown = [s for s in names if s not in STAGE_NAMES]
    if unknown:
        raise ValueError(f"unknown stage {unknown[0]!r} (stages: {', '.join(STAGE_NAMES)})")
    return names


def _bool(text: str) -> bool:
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _choice(*options: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in options:
            raise ValueError(f"expected one of {', '.join(options)}, got {text!r}")
        return text

    return parse


SETTINGS: tuple[Setting, ...] = (
    Setting("data", str, "MovieLens-layout directory (ratings.csv, movies.csv)"),
    Setting("interactions", str, "interactions file or directory (CSV/Parquet, any URI)"),
    Setting("items", str, "item catalogue file or directory (CSV/Parquet, any URI)"),
    Setting("input_format", _choice("auto", "csv", "parquet"), "format of the inputs"),
    Setting("csv_delimiter", str, "CSV field delimiter"),
    Setting("col_user_id", str, "interactions column holding the user id"),
    Setting("col_item_id", str, "interactions column holding the item id"),
    Setting("col_rating", str, "interactions column holding the rating ('' = none)"),
    Setting("col_timestamp", str, "interactions column holding the time ('' = none)"),
    Setting("col_items_item_id", str, "catalogue column holding the item id"),
    Setting("col_title", str, "catalogue column holding the title"),
    Setting("col_genres", str, "catalogue column with |-separated genres ('' = none)"),
    Setting("id_type", _choice("auto", "int", "string"), "how ids are typed"),
    Setting("timestamp_unit", _choice("s", "ms"), "unit of numeric timestamps"),
    Setting("max_reject_fraction", float, "fail when more input rows are rejected", _fraction),
    Setting("out", str, "artefact directory (runs/<run_id>/ under it)"),
    Setting("run_id", str, "run id (default: UTC time of the start)"),
    Setting("stages", _stages, "comma-separated stages to run"),
    Setting("top_n", int, "items per user list", _positive),
    Setting("similar_n", int, "items per similar-items list", _positive),
    Setting("similar_cf_weight", float, "weight of CF cosine in similar items", _fraction),
    Setting("redis_url", str, "Redis URL (default: a private redis-server under --out)"),
    Setting("redis_prefix", str, "prefix of every Redis key"),
    Setting("keep_versions", int, "published versions kept in Redis", _positive),
    Setting("publish_batch", int, "lists per Redis write batch", _positive),
    Setting("spark_master", str, "Spark master URL"),
    Setting("spark_driver_memory", str, "Spark driver memory"),
    Setting("spark_partitions", int, "shuffle partitions (0 = 2 x cores)"),
    Setting("spark_class_cache", str, "local mode: JVM class archive directory ('' = off)"),
    Setting("score_block_users", int, "users per scoring block", _positive),
    Setting("encoder", str, "sentence-transformers model name or path"),
    Setting("encoder_device", str, "cuda or cpu (default: cuda when present)"),
    Setting("encoder_batch_size", int, "texts per encoder batch", _positive),
    Setting("cf_dim", int, "CF embedding size", _positive),
    Setting("cf_epochs", int, "CF training epochs (0 = the model's default)"),
    Setting("cf_seed", int, "random seed of the CF model"),
    Setting("cf_l2", float, "CF L2 regularisation (default: the model's)"),
    Setting("cf_learning_rate", float, "CF Adam learning rate (default: the model's)"),
    Setting("eval_holdout", int, "held-out interactions per user (0 = skip)"),
    Setting("eval_k", int, "cut-off K of the evaluation metrics", _positive),
    Setting("eval_min_rating", float, "rating from which a held-out item is relevant"),
    Setting("verbose", _bool, "print Spark's own log lines"),
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
    keep_versions: int = 2
    publish_batch: int = 2000
    spark_master: str = "local[*]"
    spark_driver_memory: str = "4g"
    spark_partitions: int = 0
    spark_class_cache: str = "~/.cache/nightrec"
    score_block_users: int = 4096
    encoder: str = DEFAULT_ENCODER
    encoder_device: str | None = None
    encoder_batch_size: int = 128
    cf_dim: int = 64
    cf_epochs: int = 0
    cf_seed: int = 42
    cf_l2: float | None = None
    cf_learning_rate: float | None = None
    eval_holdout: int = 10
    eval_k: int = 10
    eval_min_rating: float = 4.0
    verbose: bool = False

    @property
    def encoder_spec(self) -> EncoderSpec:
        return EncoderSpec(self.encoder, self.encoder_device, self.encoder_batch_size)

    def public(self) -> dict[str, Any]:
        """Return the settings as plain values, for the run manifest (no secrets)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        if values["redis_url"]:
            values["redis_url"] = redact_url(values["redis_url"])
        values["stages"] = list(values["stages"])
        return values


def redact_url(url: str) -> str:
    """Hide the password of a URL such as redis://:secret@host:6379/0."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


def build_config(
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config_file: str | None = None,
) -> JobConfig:
    """Build the config from flags (highest), NIGHTREC_* variables, a TOML file, defaults."""
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    env = env or {}
    file_values = _read_toml(config_file) if config_file else {}
    unknown = sorted(set(file_values) - {s.name for s in SETTINGS})
    if unknown:
        raise ConfigError(f"{config_file}: unknown setting {unknown[0]!r}")
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        if setting.name in flags:
            raw, source = flags[setting.name], f"--{setting.name.replace('_', '-')}"
        elif setting.env in env:
            raw, source = env[setting.env], setting.env
        elif setting.name in file_values:
            raw, source = file_values[setting.name], f"{config_file}: {setting.name}"
        else:
            continue
        values[setting.name] = _parse(setting, raw, source)
    config = JobConfig(**values)
    _check_inputs(config)
    return config


def _parse(setting: Setting, raw: Any, source: str) -> Any:
    try:
        value = raw if isinstance(raw, tuple) else setting.type(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {exc}") from None
    if setting.check and not setting.check(value):
        raise ConfigError(f"{source}: {value!r} is out of range ({setting.help})")
    return value


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
