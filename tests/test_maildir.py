from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Sequence
from email.message import EmailMessage
from pathlib import Path

import attrs
import pytest

from retouraanvraag.adapters.maildir import MaildirTransport
from retouraanvraag.errors import PortRejected, PortUnavailable
from retouraanvraag.mail import message_bytes, to_email_message
from retouraanvraag.ports import Mail, MailTransport
from retouraanvraag.testing import MailRecorder
from retouraanvraag.testing.mail_contract import MailTransportContract, sample_mail


class TestMaildirContract(MailTransportContract):
    exactly_once = True
    path: Path

    @pytest.fixture(autouse=True)
    def _maildir(self, tmp_path: Path) -> None:
        self.path = tmp_path / "Maildir"

    def make_transport(self) -> MailTransport:
        return MaildirTransport(self.path)

    def delivered(self, transport: MailTransport) -> Sequence[EmailMessage]:
        assert isinstance(transport, MaildirTransport)
        return transport.messages()


class TestMailRecorderContract(MailTransportContract):
    """The in-memory recorder keeps every send, repeats included: at least once."""

    def make_transport(self) -> MailTransport:
        return MailRecorder()

    def delivered(self, transport: MailTransport) -> Sequence[EmailMessage]:
        assert isinstance(transport, MailRecorder)
        return [to_email_message(mail) for _, mail in transport.sent]


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def files_in(path: Path) -> list[str]:
    return sorted(p.name for p in (path / "new").iterdir()) + sorted(
        p.name for p in (path / "cur").iterdir()
    )


def test_the_maildir_is_created_on_first_send(tmp_path: Path) -> None:
    path = tmp_path / "a" / "Maildir"
    transport = MaildirTransport(path)
    assert not path.exists()
    transport.send("mail:r1:cancelled", sample_mail())
    assert {p.name for p in path.iterdir()} >= {"tmp", "new", "cur"}
    assert transport.path == path
    assert len(files_in(path)) == 1
    assert list((path / "tmp").iterdir()) == []


def test_a_second_send_with_the_same_key_delivers_nothing_even_after_the_reader_moved_it(
    tmp_path: Path,
) -> None:
    transport = MaildirTransport(tmp_path)
    transport.send("mail:r1:cancelled", sample_mail())
    (name,) = names(tmp_path / "new")
    (tmp_path / "new" / name).rename(tmp_path / "cur" / f"{name}:2,S")
    transport.send("mail:r1:cancelled", sample_mail())
    (tmp_path / "cur" / f"{name}:2,S").unlink()  # the customer... er, the reader deleted it
    transport.send("mail:r1:cancelled", sample_mail())
    assert files_in(tmp_path) == []


def test_a_crash_between_delivery_and_marker_is_healed_without_a_second_copy(
    tmp_path: Path,
) -> None:
    transport = MaildirTransport(tmp_path)
    transport.send("mail:r1:cancelled", sample_mail())
    digest = hashlib.sha256(b"mail:r1:cancelled").hexdigest()
    marker = tmp_path / "retouraanvraag-keys" / digest
    assert marker.exists()
    marker.unlink()  # as if the process died right after linking into new/
    transport.send("mail:r1:cancelled", sample_mail())
    assert len(files_in(tmp_path)) == 1
    assert marker.exists()
    marker.unlink()
    (name,) = names(tmp_path / "new")
    (tmp_path / "new" / name).rename(tmp_path / "cur" / f"{name}:2,S")
    transport.send("mail:r1:cancelled", sample_mail())
    assert files_in(tmp_path) == [f"{name}:2,S"]


def test_a_new_file_left_by_a_crashed_try_is_not_duplicated(tmp_path: Path) -> None:
    transport = MaildirTransport(tmp_path)
    transport.send("mail:r1:cancelled", sample_mail())
    (name,) = names(tmp_path / "new")
    digest = hashlib.sha256(b"mail:r1:cancelled").hexdigest()
    (tmp_path / "retouraanvraag-keys" / digest).unlink()
    # new/<name> exists: the next try must see it rather than link a second copy.
    transport._deliver(name, message_bytes(to_email_message(sample_mail()), key="k"))
    assert files_in(tmp_path) == [name]


def test_messages_are_stored_with_unix_line_endings(tmp_path: Path) -> None:
    MaildirTransport(tmp_path).send("k", sample_mail())
    (name,) = names(tmp_path / "new")
    data = (tmp_path / "new" / name).read_bytes()
    assert b"\r\n" not in data.split(b"\n\n", 1)[0]
    assert b"Message-ID: <contract-1@shop.example>" in data


def test_a_non_ascii_recipient_is_stored_in_utf8(tmp_path: Path) -> None:
    transport = MaildirTransport(tmp_path)
    transport.send("k", sample_mail(to="anaïs@example.nl"))
    (message,) = transport.messages()
    assert message["To"] == "anaïs@example.nl"


def test_an_invalid_recipient_is_rejected_for_good(tmp_path: Path) -> None:
    transport = MaildirTransport(tmp_path)
    with pytest.raises(PortRejected, match="to: is not a single valid e-mail address"):
        transport.send("k", sample_mail(to="a@b.nl, c@d.nl"))
    assert not (tmp_path / "new").exists() or files_in(tmp_path) == []


def test_an_unwritable_maildir_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    transport = MaildirTransport(blocker / "Maildir")
    with pytest.raises(PortUnavailable, match="cannot be written") as caught:
        transport.send("mail:r1:cancelled", sample_mail())
    assert "klant@example.nl" not in str(caught.value)
    with pytest.raises(PortUnavailable, match="cannot be read"):
        transport.messages()


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o277])
def test_message_and_marker_files_are_readable_by_their_owner_only(
    tmp_path: Path, umask: int
) -> None:
    previous = os.umask(umask)
    try:
        MaildirTransport(tmp_path).send("mail:r1:cancelled", sample_mail())
    finally:
        os.umask(previous)
    (message,) = (tmp_path / "new").iterdir()
    (marker,) = (tmp_path / "retouraanvraag-keys").iterdir()
    assert stat.S_IMODE(message.stat().st_mode) == 0o600
    assert stat.S_IMODE(marker.stat().st_mode) == 0o600


def identity(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_dev, info.st_ino


@pytest.fixture
def fsynced(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The (device, inode) of everything flushed to disk, in order."""
    synced: list[tuple[int, int]] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        info = os.fstat(fd)
        synced.append((info.st_dev, info.st_ino))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    return synced


def test_the_message_and_new_are_on_disk_before_the_key_is_recorded(
    tmp_path: Path, fsynced: list[tuple[int, int]]
) -> None:
    MaildirTransport(tmp_path).send("mail:r1:cancelled", sample_mail())
    (message,) = (tmp_path / "new").iterdir()
    (marker,) = (tmp_path / "retouraanvraag-keys").iterdir()
    assert fsynced == [
        identity(message),
        identity(tmp_path / "new"),
        identity(marker),
        identity(tmp_path / "retouraanvraag-keys"),
    ]


def test_a_retry_that_finds_the_message_linked_already_flushes_new_again(
    tmp_path: Path, fsynced: list[tuple[int, int]]
) -> None:
    transport = MaildirTransport(tmp_path)
    transport.send("mail:r1:cancelled", sample_mail())
    (name,) = names(tmp_path / "new")
    fsynced.clear()
    transport._deliver(
        name, message_bytes(to_email_message(sample_mail()), key="k")
    )  # the link exists: a crashed try
    assert fsynced[-1] == identity(tmp_path / "new")
    assert files_in(tmp_path) == [name]


def test_a_failing_flush_is_unavailable_and_records_no_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_fsync(_fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    transport = MaildirTransport(tmp_path)
    with pytest.raises(PortUnavailable, match="cannot be written"):
        transport.send("mail:r1:cancelled", sample_mail())
    assert list((tmp_path / "retouraanvraag-keys").iterdir()) == []
    assert list((tmp_path / "tmp").iterdir()) == []


class TextOnlyRecorder(MailRecorder):
    """Empties the HTML body."""

    def send(self, key: str, mail: Mail) -> None:
        super().send(key, attrs.evolve(mail, html=""))


class FailingRecorder(MailRecorder):
    """Refuses every mail."""

    def send(self, key: str, mail: Mail) -> None:
        raise PortUnavailable(f"{key}: try again ({mail.request_id})")


@pytest.mark.parametrize(
    ("broken", "exactly_once", "check", "problem"),
    [
        (MailRecorder, True, "test_a_retry_of_one_key_carries_the_same_message_id", "2 deliv"),
        (TextOnlyRecorder, False, "test_text_and_html_arrive_as_alternatives", "HTML body"),
        (FailingRecorder, False, "test_concurrent_sends_of_different_keys_all_arrive", "failed"),
    ],
)
def test_the_contract_catches_a_transport_that_breaks_it(
    broken: type[MailRecorder], *, exactly_once: bool, check: str, problem: str
) -> None:
    class Broken(TestMailRecorderContract):
        def make_transport(self) -> MailTransport:
            return broken()

    Broken.exactly_once = exactly_once
    with pytest.raises(AssertionError, match=problem):
        getattr(Broken(), check)()


def test_the_contract_catches_a_missing_html_part() -> None:
    class PlainOnly(TestMailRecorderContract):
        def delivered(self, transport: MailTransport) -> Sequence[EmailMessage]:
            del transport
            message = EmailMessage()
            message.set_content("Beste Anaïs")
            return [message]

    with pytest.raises(AssertionError, match="a body part is missing"):
        PlainOnly().test_text_and_html_arrive_as_alternatives()
