"""Headers the library encodes and folds itself: the subject and the address headers.

The stdlib's :mod:`email` parses a header value when it is set and folds the parse again when
the message is written; both steps have had flaws that turn text into structure. Encoded words
in the text were decoded and their CR LF written as a real line break (CVE-2024-6923, fixed in
3.11.10, 3.12.5 and 3.13.0), and a long display name that needs quotes loses its quotes when it
is folded (seen on 3.11.7 and 3.13.0): ``"Shop B.V., <x@y>" <a@b>`` arrives as two addresses.

A :class:`WrittenHeader` is never parsed or refolded by the stdlib: its policy hands a value
with a matching ``name`` attribute back unchanged and asks it to :meth:`~WrittenHeader.fold`
itself (``email.policy.EmailPolicy.header_store_parse`` and ``fold``). Its lines are plain
ASCII words and RFC 2047 "B" encoded words the library made, so no reader finds structure
in them: a word that is not plain (non-ASCII, too long, a special in a display name) is
encoded, and whitespace the text needs sits inside the encoded words.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator, Sequence
from email.policy import Policy
from typing import Any, Final, Self

from retouraanvraag._address import checked_address, split_mailbox

__all__ = [
    "WrittenHeader",
    "checked_address",
    "display_form",
    "mailbox_header",
    "split_mailbox",
    "unstructured_header",
]

#: RFC 5322 §2.1.1: lines SHOULD stay within 78 characters.
_FOLD_AT: Final = 78
#: The UTF-8 bytes in one encoded word: 45 bytes are 60 base64 characters, 72 with the frame.
_CHUNK_BYTES: Final = 45
# A plain word: printable ASCII, short enough to stand on a continuation line by itself.
_PLAIN_TEXT: Final = re.compile(r"[!-~]{1,76}")
# In a display name, only atoms (RFC 5322 atext) may go unencoded: no specials, no quotes.
_PLAIN_ATOM: Final = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,76}")
#: Characters that make a display name need quotes (RFC 5322 "specials").
_SPECIALS: Final = re.compile(r'[()<>\[\]:;@\\,."]')


class WrittenHeader(str):  # noqa: SLOT000 - str subtypes cannot have slots for attributes
    """A header value with the lines that write it; the stdlib neither parses nor refolds it.

    As a ``str`` it is the value a reader sees (``Voorbeeldshop <retouren@shop.example>``).

    Attributes:
        name: the header's name.
        lines: the header as written, without line separators.
        mailbox: ``(display name, address)`` for an address header, else ``None``.
    """

    name: str
    lines: tuple[str, ...]
    mailbox: tuple[str, str] | None

    def __new__(
        cls,
        name: str,
        value: str,
        lines: Sequence[str],
        mailbox: tuple[str, str] | None = None,
    ) -> Self:
        """Make the header ``name`` that reads as ``value`` and is written as ``lines``."""
        header = super().__new__(cls, value)
        header.name = name
        header.lines = tuple(lines)
        header.mailbox = mailbox
        return header

    def fold(self, *, policy: Policy) -> str:
        """The header as the policy's generator writes it: the lines, each ended by linesep."""
        return policy.linesep.join(self.lines) + policy.linesep

    def __reduce__(self) -> tuple[Any, ...]:
        """Copy and pickle with the lines (``str`` alone would lose them)."""
        return (type(self), (self.name, str(self), self.lines, self.mailbox))


def unstructured_header(name: str, text: str) -> WrittenHeader:
    """A header of free text (``Subject``): ``text`` must already be one line, single-spaced.

    Plain ASCII words stay as they are; each run of other words becomes encoded words that
    carry the spaces inside the run, so a reader decodes exactly ``text``.
    """
    return WrittenHeader(name, text, _fold(name, list(_tokens(text.split(), _PLAIN_TEXT))))


def mailbox_header(name: str, display_name: str, address: str) -> WrittenHeader:
    """An address header (``From``, ``To``) with one mailbox: ``Name <address>`` or ``address``.

    A display name of atoms is written as it is; any other is encoded as a whole, so that no
    reader sees a special (``,``, ``<``, ``"``, …) in it. ``address`` must be checked already.
    """
    if not display_name:
        return WrittenHeader(name, address, [f"{name}: {address}"], ("", address))
    words = display_name.split()
    if all(_is_plain(word, _PLAIN_ATOM) for word in words):
        tokens = words
    else:
        tokens = _encoded_words(" ".join(words))
    lines = _fold(name, [*tokens, f"<{address}>"])
    return WrittenHeader(name, display_form(display_name, address), lines, (display_name, address))


def display_form(display_name: str, address: str) -> str:
    """``Name <address>`` as a reader shows it: the name quoted when it holds a special."""
    if not display_name:
        return address
    if _SPECIALS.search(display_name):
        quoted = display_name.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{quoted}" <{address}>'
    return f"{display_name} <{address}>"


def _tokens(words: list[str], plain: re.Pattern[str]) -> Iterator[str]:
    """Plain words as they are, each maximal run of other words as encoded words."""
    run: list[str] = []
    for word in words:
        if _is_plain(word, plain):
            if run:
                yield from _encoded_words(" ".join(run))
                run = []
            yield word
        else:
            run.append(word)
    if run:
        yield from _encoded_words(" ".join(run))


def _is_plain(word: str, plain: re.Pattern[str]) -> bool:
    # A word that could open an encoded word is encoded itself, so that it reads as typed.
    return plain.fullmatch(word) is not None and "=?" not in word


def _encoded_words(text: str) -> list[str]:
    """``text`` as RFC 2047 "B" encoded words of whole characters, each within 75 characters.

    Readers drop the whitespace between two encoded words, so the text's own spaces travel
    inside them.
    """
    chunks: list[str] = []
    current = b""
    for char in text:
        encoded = char.encode("utf-8")
        if current and len(current) + len(encoded) > _CHUNK_BYTES:
            chunks.append(_encoded_word(current))
            current = b""
        current += encoded
    if current:
        chunks.append(_encoded_word(current))
    return chunks


def _encoded_word(data: bytes) -> str:
    return f"=?utf-8?b?{base64.b64encode(data).decode('ascii')}?="


def _fold(name: str, tokens: list[str]) -> list[str]:
    """``name: tokens…`` in lines of at most 78 characters; a break replaces a space.

    The first token always joins the name's line, and a token longer than a line (an address
    of up to 320 characters) stands on a line of its own: no line exceeds 998 characters.
    """
    lines = [f"{name}:"]
    for index, token in enumerate(tokens):
        if index and len(lines[-1]) + 1 + len(token) > _FOLD_AT:
            lines.append(f" {token}")
        else:
            lines[-1] += f" {token}"
    return lines
