"""Adapters: the library's own implementations of the ports.

Storage: :class:`MemoryStorage` (in memory, for tests and tools), :class:`SqliteStorage`
(the embedded default, on the standard library's :mod:`sqlite3`) and
:class:`~retouraanvraag.adapters.postgres.PostgresStorage` (many workers on many hosts; import it
from :mod:`retouraanvraag.adapters.postgres`, with the ``postgres`` extra installed). All pass the
storage contract suite in :mod:`retouraanvraag.testing.storage_contract`.

Events: :class:`WebhookSink` posts each event to the host's URL, signed; a receiver checks it
with :func:`verify_signature` (:mod:`retouraanvraag.adapters.webhook`).
"""

from retouraanvraag.adapters.memory import MemoryStorage
from retouraanvraag.adapters.sqlite import SqliteStorage
from retouraanvraag.adapters.webhook import WebhookSink, verify_signature

__all__ = ["MemoryStorage", "SqliteStorage", "WebhookSink", "verify_signature"]
