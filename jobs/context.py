"""What every stage gets (the run's context) and gives back (its result), and the Stage record."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jobs.config import JobConfig
from jobs.run_store import RunDir
from schemas.manifest import RunManifest
from schemas.tables import Table

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession


@dataclass
class Context:
    """The state one run shares between its stages.

    Attributes:
        config: the run's settings.
        spark: the SparkSession.
        run: the run's artefact directory.
        manifest: the manifest being filled in; stages record counts and parameters in it.
        redis_url: where to publish (resolved once: a private server when none is given).
    """

    config: JobConfig
    spark: SparkSession
    run: RunDir
    manifest: RunManifest
    redis_url: str | None = None
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def id_types(self) -> dict[str, str]:
        return self.manifest.id_types

    def read(self, table: Table) -> DataFrame:
        return self.run.read_table(self.spark, table, self.id_types)

    def write(self, df: DataFrame, table: Table) -> None:
        self.run.write_table(df, table, self.id_types)

    def collect(self, table: Table, *columns: str, order_by: str | None = None) -> pd.DataFrame:
        """Bring a small table to the driver, sorted there (no Spark shuffle for the order).

        Item tables sorted by item_id give the catalogue order every stage indexes items by.
        """
        df = self.read(table)
        frame = (df.select(*columns) if columns else df).toPandas()
        if order_by is None:
            return frame
        return frame.sort_values(order_by, kind="stable", ignore_index=True)


@dataclass(frozen=True)
class StageResult:
    """What a stage reports: rows produced and a short human detail for the progress line."""

    rows: int
    detail: str = ""


@dataclass(frozen=True)
class Stage:
    """A pipeline stage: its name, the tables it reads and writes, and its body."""

    name: str
    reads: tuple[Table, ...]
    writes: tuple[Table, ...]
    body: Callable[[Context], StageResult]
