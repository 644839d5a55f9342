"""Adapters: the library's own implementations of the ports.

Storage: :class:`MemoryStorage` (in memory, for tests and tools) and :class:`SqliteStorage`
(the embedded default, on the standard library's :mod:`sqlite3`). Both pass the storage
contract suite in :mod:`retouraanvraag.testing.storage_contract`.
"""

from retouraanvraag.adapters.memory import MemoryStorage
from retouraanvraag.adapters.sqlite import SqliteStorage

__all__ = ["MemoryStorage", "SqliteStorage"]
