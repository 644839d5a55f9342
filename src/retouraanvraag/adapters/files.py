"""A photo store on the local file system: one folder per shop, generated file names.

Layout: ``<root>/<shop>/<first two characters of the key>/<key>``, where the key is 32 random hex
digits and the extension of the content type (``3f9c….jpg``). A photo is written to a
temporary file in the same folder, flushed, and renamed into place, so a reader never sees half
a photo; then the folder is flushed too, so that a photo whose key was handed out survives a
crash. Files are created readable by their owner only: customer photos are personal data.
Deleting removes the file; the (possibly empty) folders stay, so that a concurrent put into the
same folder never loses it.

The shop id becomes a folder name by percent-encoding every character other than ASCII
letters, digits, ``-`` and ``_`` (so ``.``, ``/`` and ``..`` can never leave the root). A key
that is not one this store generates is simply not found.
"""

from __future__ import annotations

import os
import re
import secrets
import tempfile
from pathlib import Path
from typing import Final

from retouraanvraag.adapters._common import fsync_folder
from retouraanvraag.errors import InvalidInput, InvalidPhoto, NotFound, PortUnavailable
from retouraanvraag.model import PhotoRef
from retouraanvraag.photos import CONTENT_TYPES

__all__ = ["DirectoryPhotoStore"]

_KEY_RE: Final = re.compile(r"[0-9a-f]{32}\.(?:jpg|png|webp)")
_SAFE: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
_MAX_FOLDER_NAME: Final = 200


class DirectoryPhotoStore:
    """Keeps validated photos as files under ``root``, per shop, under generated names.

    Args:
        root: the folder to keep photos in (created when missing).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        """Remember the root; it is created on the first put."""
        self._root = Path(root)

    @property
    def root(self) -> Path:
        """The folder photos are kept in."""
        return self._root

    def put(self, shop_id: str, data: bytes, content_type: str) -> PhotoRef:
        """Store ``data`` under a new generated key.

        Raises:
            InvalidInput: the shop id is empty or too long to be a folder name.
            InvalidPhoto: the content type is not JPEG, PNG or WebP.
            PortUnavailable: the file cannot be written (disk full, permissions, …).
        """
        extension = CONTENT_TYPES.get(content_type)
        if extension is None:
            raise InvalidPhoto(f"unsupported content type {content_type!r}", field="content_type")
        key = f"{secrets.token_hex(16)}.{extension}"
        name = _folder_name(shop_id)
        if name is None:
            raise InvalidInput("cannot be used as a photo folder name", field="shop_id")
        folder = self._root / name / key[:2]
        try:
            folder.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=folder, prefix=".upload-", suffix=".tmp")
            try:
                with os.fdopen(handle, "wb") as file:
                    file.write(data)
                    file.flush()
                    os.fsync(file.fileno())
                Path(temporary).replace(folder / key)
                fsync_folder(folder)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise PortUnavailable(
                f"shop {shop_id}: photo cannot be written ({type(exc).__name__})"
            ) from exc
        return PhotoRef(key=key, content_type=content_type, size=len(data))

    def get(self, shop_id: str, key: str) -> bytes:
        """Read the photo stored under ``key`` for this shop.

        Raises:
            NotFound: no such photo in this shop (also for keys this store never makes).
            PortUnavailable: the file exists but cannot be read.
        """
        name = _folder_name(shop_id)
        if name is None or not _is_key(key):
            raise NotFound(shop_id=shop_id, request_id=key, what="photo")
        try:
            return (self._root / name / key[:2] / key).read_bytes()
        except FileNotFoundError:
            raise NotFound(shop_id=shop_id, request_id=key, what="photo") from None
        except OSError as exc:
            raise PortUnavailable(
                f"shop {shop_id}: photo {key} cannot be read ({type(exc).__name__})"
            ) from exc

    def delete(self, shop_id: str, key: str) -> None:
        """Remove the photo stored under ``key`` for this shop; nothing to do when there is none.

        Another shop's key, or a key this store never makes, removes nothing.

        Raises:
            PortUnavailable: the file exists but cannot be removed.
        """
        name = _folder_name(shop_id)
        if name is None or not _is_key(key):
            return
        try:
            (self._root / name / key[:2] / key).unlink(missing_ok=True)
        except OSError as exc:
            raise PortUnavailable(
                f"shop {shop_id}: photo {key} cannot be removed ({type(exc).__name__})"
            ) from exc


def _is_key(key: object) -> bool:
    """Whether ``key`` is one this store generates (so it names no other path)."""
    return isinstance(key, str) and _KEY_RE.fullmatch(key) is not None


def _folder_name(shop_id: str) -> str | None:
    """``shop_id`` as one safe folder name, or ``None`` when empty or too long."""
    if not isinstance(shop_id, str) or not shop_id:
        return None
    name = "".join(
        char if char in _SAFE else "".join(f"%{byte:02X}" for byte in char.encode())
        for char in shop_id
    )
    return name if len(name) <= _MAX_FOLDER_NAME else None
