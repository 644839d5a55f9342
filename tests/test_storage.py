"""The storage adapters: the contract suite against each, then what is particular to each."""

from __future__ import annotations

from pathlib import Path

import pytest

from retouraanvraag.adapters.memory import MemoryStorage
from retouraanvraag.adapters.sqlite import SqliteStorage
from retouraanvraag.ports import Storage
from retouraanvraag.testing.storage_contract import StorageContract


class TestMemoryStorage(StorageContract):
    def make_storage(self) -> Storage:
        return MemoryStorage()


class TestSqliteStorageInMemory(StorageContract):
    def make_storage(self) -> Storage:
        return SqliteStorage(":memory:")


class TestSqliteStorageOnFile(StorageContract):
    @pytest.fixture(autouse=True)
    def _directory(self, tmp_path: Path) -> None:
        self.directory = tmp_path

    def make_storage(self) -> Storage:
        return SqliteStorage(self.directory / "returns.sqlite3")
