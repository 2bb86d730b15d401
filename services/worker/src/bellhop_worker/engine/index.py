"""The loaded dataset: its columns, row ids and field lookups for requests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from bellhop_shared.jsonrpc import InvalidParams

from bellhop_worker.engine import bitset
from bellhop_worker.engine.columns import Column
from bellhop_worker.engine.facets import FacetGroup, FacetGroups, group_facets

# How many valid names an "unknown field" message lists before it cuts off.
_MAX_LISTED_NAMES = 60


@dataclass
class Index:
    """Every column of one dataset plus the bitset of all its rows."""

    name: str
    columns: dict[str, Column]
    n_rows: int
    raw_bytes: int
    id_column: str | None = None
    all_rows: np.ndarray = field(init=False)
    facets: FacetGroups = field(init=False)

    def __post_init__(self) -> None:
        self.all_rows = bitset.full(self.n_rows)
        self.all_rows.flags.writeable = False
        facets = [column for column in self.columns.values() if column.is_facet]
        self.facets = group_facets(facets, self.n_rows)

    @property
    def n_words(self) -> int:
        return len(self.all_rows)

    @property
    def facet_groups(self) -> tuple[FacetGroup, ...]:
        return self.facets.groups

    @property
    def facet_names(self) -> list[str]:
        return [name for name, column in self.columns.items() if column.is_facet]

    @property
    def numeric_names(self) -> list[str]:
        return [name for name, column in self.columns.items() if column.is_numeric]

    def index_bytes(self) -> int:
        columns_bytes = sum(column.index_bytes() for column in self.columns.values())
        return columns_bytes + self.facets.index_bytes()

    def column(self, name: Any, setting: str) -> Column:
        """Return the column called name; raise InvalidParams listing valid ones."""
        column = self.columns.get(name) if isinstance(name, str) else None
        if column is None:
            raise InvalidParams(
                f"Unknown field {name!r} in {setting!r}; valid fields: "
                f"{list_names(list(self.columns))}.",
                {"setting": setting, "field": name, "valid": list(self.columns)},
            )
        return column

    def facet_column(self, name: Any, setting: str) -> Column:
        column = self.column(name, setting)
        if not column.is_facet:
            raise InvalidParams(
                f"Field {name!r} in {setting!r} is not a facet field; facet fields: "
                f"{list_names(self.facet_names)}.",
                {"setting": setting, "field": name, "valid": self.facet_names},
            )
        return column

    def numeric_column(self, name: Any, setting: str) -> Column:
        column = self.column(name, setting)
        if not column.is_numeric:
            raise InvalidParams(
                f"Field {name!r} in {setting!r} is not numeric; numeric fields: "
                f"{list_names(self.numeric_names)}.",
                {"setting": setting, "field": name, "valid": self.numeric_names},
            )
        return column

    def row_ids(self, rows: np.ndarray) -> list[Any]:
        """Return the ids of rows: id-column values, else the row numbers."""
        if self.id_column is None:
            return rows.tolist()
        return self.columns[self.id_column].row_values(rows)


def list_names(names: list[str]) -> str:
    """Join names for a message, cut off after _MAX_LISTED_NAMES."""
    shown = ", ".join(str(name) for name in names[:_MAX_LISTED_NAMES])
    hidden = len(names) - _MAX_LISTED_NAMES
    return f"{shown} and {hidden} more" if hidden > 0 else shown
