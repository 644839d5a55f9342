"""Customer photos: recognise JPEG, PNG and WebP by their bytes and strip their metadata.

A photo is accepted by what its bytes are, never by its file name or declared type. Before it
is stored, everything that can carry where or when it was taken is removed: a photo from a
customer's phone tells the merchant the customer's home address through its GPS tags.

- JPEG: APP1 (EXIF, XMP) and every other APPn segment except APP0 (JFIF) and APP14 (Adobe
  colour transform) are dropped, so are comments (COM) and anything after the end-of-image
  marker (where phones append preview images). Dropping APP2 drops an ICC profile too: the
  photo may show slightly different colours, which is fine for judging a damaged product.
- PNG: ``eXIf``, ``tEXt``, ``zTXt``, ``iTXt`` and ``tIME`` chunks are dropped; the other chunks
  are copied unchanged with their (checked) CRCs.
- WebP: ``EXIF`` and ``XMP `` chunks are dropped, the VP8X flags that announce them cleared and
  the RIFF size fixed.

A truncated or malformed structure raises :class:`~retouraanvraag.errors.InvalidPhoto` naming the
problem. The image data itself is not decoded.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from typing import Final

import attrs

from retouraanvraag.errors import InvalidPhoto

__all__ = [
    "CONTENT_TYPES",
    "MAX_PHOTOS_PER_REQUEST",
    "MAX_PHOTO_BYTES",
    "ValidatedPhoto",
    "validate_photo",
    "validate_photos",
]

MAX_PHOTOS_PER_REQUEST: Final = 10
MAX_PHOTO_BYTES: Final = 10 * 1024 * 1024

#: Accepted content types and the file extension each is stored under.
CONTENT_TYPES: Final = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}


@attrs.frozen
class ValidatedPhoto:
    """An image that passed validation, with its metadata removed.

    Attributes:
        content_type: ``image/jpeg``, ``image/png`` or ``image/webp``, from the magic bytes.
        data: the image without metadata.
    """

    content_type: str
    data: bytes = attrs.field(repr=lambda d: f"<{len(d)} bytes>")

    @property
    def extension(self) -> str:
        """The file extension for the content type, without a dot (``jpg``)."""
        return CONTENT_TYPES[self.content_type]

    @property
    def size(self) -> int:
        """The size in bytes."""
        return len(self.data)


def validate_photo(
    data: bytes | bytearray | memoryview, *, index: int | None = None
) -> ValidatedPhoto:
    """Check that ``data`` is a JPEG, PNG or WebP image and strip its metadata.

    Args:
        data: the uploaded bytes.
        index: the photo's position in an upload, named in the error (``photos[2]``).

    Returns:
        The content type recognised from the magic bytes and the image without metadata.

    Raises:
        InvalidPhoto: not one of the three formats, empty, larger than
            :data:`MAX_PHOTO_BYTES`, or a truncated or malformed structure.
    """
    field = "photo" if index is None else f"photos[{index}]"
    if not isinstance(data, bytes | bytearray | memoryview):  # callers without type checks
        raise InvalidPhoto(f"must be bytes, not {type(data).__name__}", field=field)
    raw = bytes(data)
    if not raw:
        raise InvalidPhoto("is empty", field=field)
    if len(raw) > MAX_PHOTO_BYTES:
        raise InvalidPhoto(
            f"is {len(raw)} bytes; at most {MAX_PHOTO_BYTES} bytes (10 MiB) are allowed",
            field=field,
        )
    try:
        if raw.startswith(_JPEG_MAGIC):
            return ValidatedPhoto("image/jpeg", _strip_jpeg(raw))
        if raw.startswith(_PNG_MAGIC):
            return ValidatedPhoto("image/png", _strip_png(raw))
        if raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
            return ValidatedPhoto("image/webp", _strip_webp(raw))
    except _Malformed as exc:
        raise InvalidPhoto(str(exc), field=field) from None
    raise InvalidPhoto("is not a JPEG, PNG or WebP image", field=field)


def validate_photos(uploads: Sequence[bytes]) -> list[ValidatedPhoto]:
    """Validate every photo of one request, and their number.

    Raises:
        InvalidPhoto: more than :data:`MAX_PHOTOS_PER_REQUEST` photos, or one is invalid
            (its ``field`` names it: ``photos[3]``).
    """
    if len(uploads) > MAX_PHOTOS_PER_REQUEST:
        raise InvalidPhoto(
            f"{len(uploads)} photos; at most {MAX_PHOTOS_PER_REQUEST} per request are allowed",
            field="photos",
        )
    return [validate_photo(data, index=i) for i, data in enumerate(uploads)]


class _Malformed(Exception):
    """A structural problem; the message says what and where."""


# -- JPEG ------------------------------------------------------------------------------------

_JPEG_MAGIC: Final = b"\xff\xd8\xff"
_SOI, _EOI, _SOS, _TEM = 0xD8, 0xD9, 0xDA, 0x01
_APP0, _APP14, _COM = 0xE0, 0xEE, 0xFE
_RST = range(0xD0, 0xD8)
_APPN = range(0xE0, 0xF0)
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _strip_jpeg(data: bytes) -> bytes:  # noqa: C901 - one loop over the segments reads best
    """Copy the segments worth keeping up to EOI; drop APPn (but APP0/APP14) and COM."""
    out = bytearray(data[:2])
    pos = 2
    seen_frame = False
    while True:
        marker, pos = _jpeg_marker(data, pos)
        if marker == _EOI:
            if not seen_frame:
                raise _Malformed("JPEG has no image (no frame and scan before the end)")
            out += b"\xff\xd9"
            return bytes(out)
        if marker in _RST or marker in {_SOI, _TEM}:
            raise _Malformed(f"JPEG has a stray marker 0xFF{marker:02X} at byte {pos - 2}")
        if pos + 2 > len(data):
            raise _Malformed(f"JPEG is truncated in the segment header at byte {pos}")
        (length,) = struct.unpack_from(">H", data, pos)
        end = pos + length
        if length < 2 or end > len(data):  # noqa: PLR2004 - the length counts itself
            raise _Malformed(f"JPEG segment 0xFF{marker:02X} at byte {pos - 2} is truncated")
        segment = data[pos - 2 : end]
        if marker in _SOF:
            seen_frame = True
        if marker == _SOS:
            if not seen_frame:
                raise _Malformed("JPEG scan starts before a frame header")
            scan_end = _jpeg_scan_end(data, end)
            out += data[pos - 2 : scan_end]
            pos = scan_end
            continue
        if marker == _COM or (marker in _APPN and marker not in {_APP0, _APP14}):
            pos = end
            continue
        out += segment
        pos = end


def _jpeg_marker(data: bytes, pos: int) -> tuple[int, int]:
    """Read the marker at ``pos`` (fill bytes allowed); return it and the position after it."""
    if pos >= len(data):
        raise _Malformed("JPEG is truncated: the end-of-image marker is missing")
    if data[pos] != 0xFF:  # noqa: PLR2004
        raise _Malformed(f"JPEG has no segment marker at byte {pos}")
    while pos < len(data) and data[pos] == 0xFF:  # noqa: PLR2004
        pos += 1
    if pos >= len(data):
        raise _Malformed("JPEG is truncated: the end-of-image marker is missing")
    if data[pos] == 0:
        raise _Malformed(f"JPEG has an empty marker at byte {pos - 1}")
    return data[pos], pos + 1


def _jpeg_scan_end(data: bytes, pos: int) -> int:
    """The position of the first marker after entropy-coded data (stuffed 0x00 and RSTn skipped)."""
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= len(data):
            raise _Malformed("JPEG is truncated inside the image data")
        following = data[pos + 1]
        if following == 0 or following in _RST or following == 0xFF:  # noqa: PLR2004
            pos += 1 if following == 0xFF else 2  # noqa: PLR2004
            continue
        return pos


# -- PNG -------------------------------------------------------------------------------------

_PNG_MAGIC: Final = b"\x89PNG\r\n\x1a\n"
_PNG_DROP: Final = frozenset({b"eXIf", b"tEXt", b"zTXt", b"iTXt", b"tIME"})
_PNG_MAX_CHUNK: Final = 2**31 - 1
_IHDR_LENGTH: Final = 13


def _strip_png(data: bytes) -> bytes:
    """Copy every chunk but the metadata ones; check lengths, types, CRCs and chunk order."""
    out = bytearray(_PNG_MAGIC)
    pos = len(_PNG_MAGIC)
    first = True
    seen_data = False
    while True:
        if pos + 8 > len(data):
            raise _Malformed(f"PNG is truncated in the chunk header at byte {pos}")
        length, kind = struct.unpack_from(">I4s", data, pos)
        if not kind.isalpha() or not kind.isascii():
            raise _Malformed(f"PNG has an invalid chunk type at byte {pos + 4}")
        name = kind.decode("ascii")
        end = pos + 12 + length
        if length > _PNG_MAX_CHUNK or end > len(data):
            raise _Malformed(f"PNG chunk {name} at byte {pos} is truncated")
        (crc,) = struct.unpack_from(">I", data, end - 4)
        if zlib.crc32(data[pos + 4 : end - 4]) != crc:
            raise _Malformed(f"PNG chunk {name} at byte {pos} has a bad CRC")
        if first and (kind != b"IHDR" or length != _IHDR_LENGTH):
            raise _Malformed("PNG does not start with an image header (IHDR)")
        first = False
        seen_data = seen_data or kind == b"IDAT"
        if kind not in _PNG_DROP:
            out += data[pos:end]
        pos = end
        if kind == b"IEND":
            if not seen_data:
                raise _Malformed("PNG has no image data (IDAT)")
            return bytes(out)


# -- WebP ------------------------------------------------------------------------------------

_WEBP_DROP: Final = frozenset({b"EXIF", b"XMP "})
_WEBP_IMAGE: Final = frozenset({b"VP8 ", b"VP8L", b"VP8X"})
_WEBP_DATA: Final = frozenset({b"VP8 ", b"VP8L", b"ANIM"})
_VP8X_EXIF, _VP8X_XMP = 0x08, 0x04
_VP8X_MIN: Final = 10


def _strip_webp(data: bytes) -> bytes:  # noqa: C901 - one loop over the chunks reads best
    """Drop EXIF and XMP chunks, clear their VP8X flags and fix the RIFF size."""
    if len(data) < 12:  # noqa: PLR2004
        raise _Malformed("WebP is truncated in the RIFF header")
    (riff_size,) = struct.unpack_from("<I", data, 4)
    end = 8 + riff_size
    if end > len(data):
        raise _Malformed(f"WebP is truncated: RIFF says {end} bytes, there are {len(data)}")
    chunks: list[bytearray] = []
    pos = 12
    while pos < end:
        if pos + 8 > end:
            raise _Malformed(f"WebP is truncated in the chunk header at byte {pos}")
        kind, size = struct.unpack_from("<4sI", data, pos)
        chunk_end = pos + 8 + size + (size & 1)
        if chunk_end > end:
            raise _Malformed(f"WebP chunk at byte {pos} is truncated")
        if not chunks and kind not in _WEBP_IMAGE:
            raise _Malformed("WebP does not start with an image chunk (VP8, VP8L or VP8X)")
        if kind not in _WEBP_DROP:
            chunks.append(bytearray(data[pos:chunk_end]))
        pos = chunk_end
    if not chunks:
        raise _Malformed("WebP holds no image chunk")
    if chunks[0][:4] == b"VP8X":
        if len(chunks[0]) < 8 + _VP8X_MIN:
            raise _Malformed("WebP extended header (VP8X) is too short")
        chunks[0][8] &= ~(_VP8X_EXIF | _VP8X_XMP) & 0xFF
        if not any(bytes(chunk[:4]) in _WEBP_DATA for chunk in chunks[1:]):
            raise _Malformed("WebP extended file holds no image data")
    body = b"".join(chunks)
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body
