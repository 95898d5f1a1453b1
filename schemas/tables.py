"""The tables one stage writes and another reads, as Spark DDL strings (no pyspark import).

Id columns keep the type the input gave them: "ID" below stands for `bigint` when the
input's ids are integers and `string` otherwise (see `ddl`).
"""

from __future__ import annotations

from dataclasses import dataclass

ID = "ID"


@dataclass(frozen=True)
class Table:
    """A named table under a run directory and its columns (name, Spark SQL type)."""

    name: str
    columns: tuple[tuple[str, str], ...]

    def ddl(self, user_id_type: str = "bigint", item_id_type: str = "bigint") -> str:
        """Return the Spark DDL of the table with the id types filled in."""
        types = {"user_id": user_id_type, "item_id": item_id_type, "similar_item_id": item_id_type}
        parts = [f"{col} {types.get(col, typ) if typ == ID else typ}" for col, typ in self.columns]
        return ", ".join(parts)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(col for col, _ in self.columns)


INTERACTIONS = Table(
    "interactions",
    (("user_id", ID), ("item_id", ID), ("rating", "double"), ("timestamp", "bigint")),
)
ITEMS = Table(
    "items", (("item_id", ID), ("title", "string"), ("text", "string"), ("text_hash", "string"))
)
QUARANTINE = Table(
    "quarantine",
    (("source", "string"), ("reason", "string"), ("row", "string")),
)
ITEM_EMBEDDINGS = Table(
    "item_embeddings",
    (("item_id", ID), ("text_hash", "string"), ("embedding", "array<float>")),
)
USER_FACTORS = Table("user_factors", (("user_id", ID), ("factors", "array<float>")))
ITEM_FACTORS = Table("item_factors", (("item_id", ID), ("factors", "array<float>")))
RECOMMENDATIONS = Table(
    "recommendations",
    (("user_id", ID), ("item_id", ID), ("rank", "int"), ("score", "float")),
)
SIMILAR_ITEMS = Table(
    "similar_items",
    (("item_id", ID), ("similar_item_id", ID), ("rank", "int"), ("score", "float")),
)
POPULAR = Table("popular", (("item_id", ID), ("rank", "int"), ("score", "float")))
