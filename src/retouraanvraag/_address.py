"""E-mail addresses as headers and the SMTP envelope carry them: one check for every caller.

Core code (the shop's settings) and the mail package both check addresses; neither imports
the other for it.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

from retouraanvraag.errors import InvalidInput

__all__ = ["checked_address", "one_line", "sender_address", "split_mailbox"]

# An address as the SMTP envelope and a header both carry it without quoting.
_ADDRESS: Final = re.compile(r'[^@\s<>()",;:\\\[\]]{1,64}@[^@\s<>()",;:\\\[\]]{1,253}')
# "Name <address>": the address is what the last angle brackets hold.
_NAME_ADDR: Final = re.compile(r"(?P<name>.*?)\s*<(?P<address>[^<>]*)>\s*", re.DOTALL)
_QUOTED_PAIR: Final = re.compile(r"\\(.)", re.DOTALL)
_DOMAIN_RE: Final = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")


def split_mailbox(text: str) -> tuple[str, str]:
    """``Name <address>`` (the name maybe quoted) or a bare address, as ``(name, address)``.

    The same on every Python release, unlike :func:`email.utils.parseaddr`, whose handling of
    several addresses or comments changed in patch releases. The name is taken as text: it
    is never decoded, and whatever it holds (``,``, ``<``, quotes) stays part of the name.
    """
    match = _NAME_ADDR.fullmatch(text)
    if match is None:
        return "", text.strip()
    name = match["name"].strip()
    if len(name) >= 2 and name[0] == name[-1] == '"':  # noqa: PLR2004 - the two quotes
        name = _QUOTED_PAIR.sub(r"\1", name[1:-1])
    return name, match["address"].strip()


def checked_address(text: str, *, field: str) -> str:
    """``text`` if it is one address a header and the SMTP envelope can carry as it is.

    Encoded words (``=?``) are refused as well: RFC 2047 forbids them in an address, and the
    stdlib's parser would decode one.

    Raises:
        InvalidInput: naming ``field``, never the address.
    """
    if (
        not isinstance(text, str)
        or not text.isprintable()  # NUL and other controls, format characters, surrogates
        or "=?" in text
        or not _ADDRESS.fullmatch(text)
    ):
        raise InvalidInput("is not a single valid e-mail address", field=field)
    return text


def sender_address(sender: object, *, field: str = "sender") -> str:
    """The address of a shop's ``sender`` setting (``Shop <retouren@shop.example>``).

    Its domain names the shop's Message-IDs, so it must be a plain host name as well.

    Raises:
        InvalidInput: not one address on one line; ``field`` names the setting.
    """
    if not isinstance(sender, str) or one_line(sender) != sender:
        raise InvalidInput("is not a single e-mail address", field=field)
    address = checked_address(split_mailbox(sender)[1], field=field)
    if not _DOMAIN_RE.match(address.rpartition("@")[2]):
        raise InvalidInput("is not a single e-mail address", field=field)
    return address


def one_line(text: str) -> str:
    """``text`` on one line: control characters (CR, LF, …) become spaces, runs of space one."""
    cleaned = "".join(" " if unicodedata.category(c) in {"Cc", "Zl", "Zp"} else c for c in text)
    return " ".join(cleaned.split())
