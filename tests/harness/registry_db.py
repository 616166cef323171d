"""A registry database emptied for a test or a benchmark run: every row of the registry's
tables removed, the schema version kept (tables made or upgraded first)."""

from __future__ import annotations

from sqlalchemy import text

from hypermesh.registry.service import Registry
from hypermesh.registry.tables import RegistryBase


def emptied(url: str) -> str:
    """``url``'s registry tables, made if missing and emptied; ``url`` again."""
    Registry.open(url).close()  # creates (or upgrades) the tables
    cleaner = Registry.open(url)
    with cleaner.engine.begin() as conn:
        for table in reversed(RegistryBase.metadata.sorted_tables):
            if table.name == "registry_meta":
                conn.execute(text("DELETE FROM registry_meta WHERE key <> 'schema_version'"))
            else:
                conn.execute(text(f"DELETE FROM {table.name}"))
    cleaner.close()
    return url
