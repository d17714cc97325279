"""The schema the composition root creates holds every table, on SQLite and on PostgreSQL."""

from __future__ import annotations

from sqlalchemy import inspect

from inferstack.db import Base
from inferstack.server import TABLES
from inferstack.store import Store


def test_the_schema_from_the_composition_root_has_every_table(store: Store) -> None:
    created = set(inspect(store.engine).get_table_names())
    assert {"tenants", "api_keys", "deployments", "replicas", "events", "files", "batches",
            "batch_results"} <= created
    # The server imports every module it runs, so a table declared anywhere in it is on Base: the
    # registration must not have left one out.
    assert set(Base.metadata.tables) == created == {table.__tablename__ for table in TABLES}
