"""A mail transport that delivers into a local Maildir, exactly once per effect key.

Useful for development (point a mail reader at the folder), for hosts whose MTA picks mail up
from a Maildir, and in tests. Delivery follows the Maildir protocol: the message is written to
``tmp/``, flushed to disk, then linked into ``new/`` in one atomic step, and ``new/`` itself is
flushed, so that a delivered message survives a power cut. Only then is the key recorded (and
its folder flushed): a recorded key always has its message on disk. Message and marker files
are created readable and writable by their owner only (``0600``, whatever the umask): the mails
carry customers' names and addresses. The folders are created ``0700``. POSIX only (the folder
flush needs ``fsync`` on a directory).

**Exactly once.** The file name in ``new/`` is derived from the key, and a marker file per key
(``<maildir>/retouraanvraag-keys/<sha256 of the key>``) is created atomically after the
delivery. A second :meth:`MaildirTransport.send` with the same key finds the marker (or, after a
crash between delivery and marker, the message itself in ``new/`` or ``cur/``) and delivers
nothing. The one window left: a crash after the delivery and before the marker, *and* the
reader moving the message out of ``new/`` and ``cur/`` (to another folder, or deleting it)
before the retry; then the retry delivers a second copy. Sends of one key are expected one
at a time (the outbox leases an effect to one worker); within one process they are serialised.
"""

from __future__ import annotations

import contextlib
import hashlib
import mailbox
import os
import secrets
import socket
import threading
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Final

from retouraanvraag.adapters._common import fsync_folder
from retouraanvraag.errors import InvalidInput, PortRejected, PortUnavailable
from retouraanvraag.mail import message_bytes, to_email_message
from retouraanvraag.ports import Mail

__all__ = ["MaildirTransport"]

_INDEX: Final = "retouraanvraag-keys"
_FILE_MODE: Final = 0o600


class MaildirTransport:
    """Delivers mail into the Maildir at ``path`` (created on first use), once per key.

    Args:
        path: the Maildir folder (with ``tmp``, ``new`` and ``cur``).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Remember the folder; nothing touches the disk before the first send."""
        self._path = Path(path)
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        """The Maildir folder."""
        return self._path

    def send(self, key: str, mail: Mail) -> None:
        """Deliver ``mail`` unless a mail was already delivered under ``key``.

        The message is serialised and checked to carry only the headers the library writes
        (:func:`~retouraanvraag.mail.message_bytes`) before anything touches the disk.

        Raises:
            PortRejected: the mail cannot be built (an invalid recipient or sender), or would
                carry a header the library did not write.
            PortUnavailable: the folder cannot be written (disk full, permissions, …).
        """
        try:
            message = to_email_message(mail)
        except InvalidInput as exc:
            raise PortRejected(f"{key}: {exc}") from exc
        data = _serialise(message, key=key)
        digest = hashlib.sha256(key.encode()).hexdigest()
        name = f"{digest[:40]}.retouraanvraag"
        with self._lock:
            try:
                self._deliver_once(digest, name, data)
            except OSError as exc:
                raise PortUnavailable(
                    f"{key}: maildir {self._path} cannot be written ({type(exc).__name__})"
                ) from exc

    def messages(self) -> list[EmailMessage]:
        """Every message in the Maildir (``new/`` and ``cur/``), parsed; for tests and tools.

        Raises:
            PortUnavailable: the folder cannot be read.
        """
        try:
            box = mailbox.Maildir(self._path, factory=None, create=False)
            files = sorted(box.iterkeys())
            parsed = []
            for key in files:
                with box.get_file(key) as handle:
                    data = handle.read()
                parsed.append(_parse(data))
        except (OSError, mailbox.Error) as exc:
            raise PortUnavailable(f"maildir {self._path} cannot be read") from exc
        return parsed

    def _deliver_once(self, digest: str, name: str, data: bytes) -> None:
        for folder in ("tmp", "new", "cur", _INDEX):
            (self._path / folder).mkdir(mode=0o700, parents=True, exist_ok=True)
        index = self._path / _INDEX
        marker = index / digest
        if marker.exists():
            return
        if not self._present(name):
            self._deliver(name, data)
        _write_atomically(marker, name.encode())
        fsync_folder(index)

    def _present(self, name: str) -> bool:
        if (self._path / "new" / name).exists():
            return True
        # A reader moves new/<name> to cur/<name>:2,<flags>.
        return any(entry.name.split(":", 1)[0] == name for entry in os.scandir(self._path / "cur"))

    def _deliver(self, name: str, data: bytes) -> None:
        tmp = self._path / "tmp" / f"{name}.{secrets.token_hex(8)}.{_hostname()}"
        try:
            _write_private(tmp, data)
            # FileExistsError: delivered by an earlier try that died before its marker (and
            # maybe before flushing new/, which is why new/ is flushed in either case).
            with contextlib.suppress(FileExistsError):
                os.link(tmp, self._path / "new" / name)
            fsync_folder(self._path / "new")
        finally:
            tmp.unlink(missing_ok=True)


def _serialise(message: EmailMessage, *, key: str) -> bytes:
    try:
        return message_bytes(message, key=key, linesep="\n")
    except UnicodeEncodeError:  # a non-ASCII address needs the UTF-8 form (RFC 6532)
        return message_bytes(message, key=key, linesep="\n", utf8=True)


def _parse(data: bytes) -> EmailMessage:
    parsed = message_from_bytes(data, policy=policy.default)
    if not isinstance(parsed, EmailMessage):  # pragma: no cover - policy.default makes one
        msg = "the parser did not return an EmailMessage"
        raise TypeError(msg)
    return parsed


def _hostname() -> str:
    return socket.gethostname().replace("/", "_").replace(":", "_") or "localhost"


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        _write_private(tmp, data)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_private(path: Path, data: bytes) -> None:
    """Create ``path`` (it must not exist) with mode 0600 and flush its bytes to disk."""
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, _FILE_MODE)
    with os.fdopen(handle, "wb") as file:
        os.fchmod(file.fileno(), _FILE_MODE)  # exactly 0600: the umask could take bits away
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
