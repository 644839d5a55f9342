"""Customer photos: recognise JPEG, PNG and WebP by their bytes and strip their metadata.

A photo is accepted by what its bytes are, never by its file name or declared type. Before it
is stored, everything that can carry where or when it was taken is removed: a photo from a
customer's phone tells the merchant the customer's home address through its GPS tags.

Metadata is removed by an allowlist: only the parts needed to show the image correctly are
copied, everything else is dropped, including kinds of metadata invented after this code.

- JPEG: SOI, the frame headers (SOFn, DHP, EXP), the tables (DQT, DHT, DAC), DRI, DNL, the
  scans with their entropy-coded data, and EOI. Of the APPn segments only three stay: a JFIF
  APP0 as the first segment (rewritten without its thumbnail), an Adobe APP14 (it says how the
  colours are encoded; rewritten to its 12 defined bytes) and ``ICC_PROFILE`` APP2 segments (the
  colour profile; see below). EXIF and XMP (APP1), MPF previews (APP2), IPTC (APP13), JFXX
  thumbnails, comments (COM), unknown markers and anything after the end-of-image marker (where
  phones append preview images) are dropped.
- PNG: IHDR, PLTE, IDAT and IEND, and the ancillary chunks that change how the pixels look:
  tRNS, gAMA, cHRM, sRGB, iCCP, sBIT, bKGD, pHYs, and cICP, mDCv, cLLi (HDR, PNG third
  edition). An ancillary chunk longer than its format allows is dropped too. Everything else
  goes: eXIf, tEXt, zTXt, iTXt, tIME, C2PA (caBX), private chunks. Animated PNGs become their
  still default image (acTL, fcTL and fdAT are dropped): a damaged product needs no animation,
  and each kept chunk is one more place to hide data. An unknown *critical* chunk (one a viewer
  must understand) means the file cannot be shown safely: it is refused.
- WebP: VP8, VP8L, VP8X, ALPH, ANIM, ANMF (with only ALPH, VP8 and VP8L inside) and ICCP.
  EXIF, XMP and unknown chunks are dropped; the VP8X header is rebuilt with only the ICC,
  alpha and animation flags (ICC and animation only when their chunks are kept), its reserved
  bytes zero, and the RIFF size fixed. A simple (VP8 or VP8L) file keeps only its image chunk.

**Colour profiles are kept** (JPEG APP2 ``ICC_PROFILE``, PNG iCCP, WebP ICCP). Phones shoot in
wide-gamut colour spaces (Display P3); without the profile a viewer takes the colours for sRGB
and shows them duller or shifted, and "the colour is not as described" is a return reason. A
profile describes a colour space, not the photo: it carries no place or time of the shot.

Checking is linear in the size and never slow on hostile input: markers in JPEG image data are
found by a compiled pattern, not byte by byte, and a file with more than
:data:`MAX_SEGMENTS` JPEG segments, PNG chunks or WebP chunks is refused.

**Declared sizes are checked.** Every header that states a width and height (JPEG frame
headers, PNG IHDR, WebP VP8X canvas, VP8 and VP8L images, ANMF frames) must state at least one
pixel each way and at most :data:`MAX_PHOTO_PIXELS` in all: a few kilobytes can declare a canvas
that takes gigabytes to show (a decompression bomb). Where two headers state a size they must
agree: one JPEG frame (or frames no larger than the hierarchical DHP), a DNL equal to its frame's
height, one PNG IHDR, a still WebP's image the size of its canvas, and animation frames inside
the canvas and the size of their image.

A truncated or malformed structure raises :class:`~retouraanvraag.errors.InvalidPhoto` naming the
problem. The image data itself is not decoded.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Final

import attrs

from retouraanvraag.errors import InvalidPhoto

__all__ = [
    "CONTENT_TYPES",
    "MAX_PHOTOS_PER_REQUEST",
    "MAX_PHOTO_BYTES",
    "MAX_PHOTO_PIXELS",
    "MAX_SEGMENTS",
    "ValidatedPhoto",
    "validate_photo",
    "validate_photos",
]

MAX_PHOTOS_PER_REQUEST: Final = 10
MAX_PHOTO_BYTES: Final = 10 * 1024 * 1024
#: The most pixels (width times height) a photo may declare. Phones' largest usual modes fit
#: (a 50 MP sensor gives 8160 x 6120 = 49.9 million), and a real photo of that many pixels is
#: already near the 10 MiB limit. It bounds what showing a photo costs the merchant's browser
#: or thumbnailer: decoded at 4 bytes a pixel, 200 MB. Without it a file of a few hundred bytes
#: can declare 100,000 x 100,000 pixels: 40 GB to decode (a decompression bomb).
MAX_PHOTO_PIXELS: Final = 50_000_000
#: The most JPEG segments, PNG chunks or WebP chunks a photo may have (real ones have dozens).
MAX_SEGMENTS: Final = 10_000

#: Accepted content types and the file extension each is stored under.
CONTENT_TYPES: Final[Mapping[str, str]] = MappingProxyType(
    {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}
)


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
            :data:`MAX_PHOTO_BYTES`, declaring no pixels or more than :data:`MAX_PHOTO_PIXELS`,
            or a truncated or malformed structure.
    """
    return _validate(data, "photo" if index is None else f"photos[{index}]")


def validate_photos(
    uploads: Sequence[bytes], *, fields: Sequence[str] | None = None
) -> list[ValidatedPhoto]:
    """Validate every photo of one request, and their number.

    Args:
        uploads: the uploaded bytes of every photo of the request, in order.
        fields: one name per upload, used as the ``field`` of an error about it
            (``items[1].photos[0]``); by default ``photos[i]``, the position in ``uploads``.

    Raises:
        InvalidPhoto: more than :data:`MAX_PHOTOS_PER_REQUEST` photos (``field`` is
            ``photos``), or one is invalid (its ``field`` names it).
        ValueError: ``fields`` is not one name per upload (a programming error, not bad input).
    """
    if fields is None:
        names = [f"photos[{i}]" for i in range(len(uploads))]
    elif isinstance(fields, str) or len(fields) != len(uploads):
        count = "a string" if isinstance(fields, str) else f"{len(fields)} names"
        raise ValueError(f"fields must name each of the {len(uploads)} uploads; got {count}")
    else:
        names = list(fields)
    if len(uploads) > MAX_PHOTOS_PER_REQUEST:
        raise InvalidPhoto(
            f"{len(uploads)} photos; at most {MAX_PHOTOS_PER_REQUEST} per request are allowed",
            field="photos",
        )
    return [_validate(data, field) for data, field in zip(uploads, names, strict=True)]


def _validate(data: bytes | bytearray | memoryview, field: str) -> ValidatedPhoto:
    """:func:`validate_photo`, with errors naming ``field``."""
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


class _Malformed(Exception):
    """A structural problem; the message says what and where."""


def _count(count: int, what: str) -> int:
    """``count + 1``, refusing a file with more than :data:`MAX_SEGMENTS` parts."""
    if count >= MAX_SEGMENTS:
        raise _Malformed(f"{what} has more than {MAX_SEGMENTS} parts; real images have far fewer")
    return count + 1


def _check_pixels(what: str, width: int, height: int) -> None:
    """Refuse a declared size without pixels or with more than :data:`MAX_PHOTO_PIXELS`."""
    if width < 1 or height < 1:
        raise _Malformed(
            f"{what} declares {width} x {height} pixels; width and height must be at least 1"
        )
    if width * height > MAX_PHOTO_PIXELS:  # Python integers: the product cannot wrap around
        raise _Malformed(
            f"{what} declares {width} x {height} pixels ({width * height}); at most "
            f"{MAX_PHOTO_PIXELS} pixels ({MAX_PHOTO_PIXELS // 1_000_000} megapixels) are allowed"
        )


# -- JPEG ------------------------------------------------------------------------------------

_JPEG_MAGIC: Final = b"\xff\xd8\xff"
_SOI, _EOI, _SOS, _TEM = 0xD8, 0xD9, 0xDA, 0x01
_APP0, _APP2, _APP14 = 0xE0, 0xE2, 0xEE
_DHP, _DNL = 0xDE, 0xDC
_RST = range(0xD0, 0xD8)
#: Frame headers: SOF0-SOF15 but DHT (C4), JPG (C8) and DAC (CC); DHP starts a hierarchical one.
_FRAME: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC} | {0xDE}
#: Segments decoding needs besides frames and scans: DHT, DAC, DQT, DNL, DRI, EXP.
_TABLES: Final = frozenset({0xC4, 0xCC, 0xDB, 0xDC, 0xDD, 0xDF})
_FRAME_FIXED: Final = 6  # precision, height, width, number of components; then 3 bytes each
_JFIF: Final = b"JFIF\x00"
_JFIF_FIELDS: Final = 12  # identifier, version, units, densities; then thumbnail size and pixels
_ADOBE: Final = b"Adobe"
_ADOBE_LENGTH: Final = 12  # identifier, version, flags0, flags1, transform
_ICC: Final = b"ICC_PROFILE\x00"
#: In entropy-coded data, the first 0xFF followed by a marker byte (not 0x00 stuffing, not RSTn,
#: not another 0xFF): the end of the scan.
_SCAN_END: Final = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_FILL: Final = re.compile(rb"\xff+")


def _strip_jpeg(data: bytes) -> bytes:
    """Copy the segments needed to decode the image, up to EOI; drop everything else."""
    out = bytearray(data[:2])
    pos = 2
    segments = 0
    seen_scan = False
    frames = _JpegFrames()
    while True:
        marker, pos = _jpeg_marker(data, pos)
        segments = _count(segments, "JPEG")
        if marker == _EOI:
            if not seen_scan:
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
        payload = data[pos + 2 : end]
        if marker == _SOS:
            if not frames.count:
                raise _Malformed("JPEG scan starts before a frame header")
            seen_scan = True
            scan_end = _jpeg_scan_end(data, end)
            out += b"\xff\xda" + data[pos:scan_end]
            pos = scan_end
            continue
        if marker in _FRAME or marker == _DNL:
            frames.declare(marker, payload, pos - 2)
        out += _jpeg_kept(marker, payload, first=len(out) == 2)  # noqa: PLR2004 - just SOI
        pos = end


@attrs.define
class _JpegFrames:
    """The sizes one JPEG's frame headers declared so far, to check each new one against.

    A JPEG has one frame, unless a hierarchical header (DHP) comes first: then every frame is at
    most the DHP's size. A DNL segment may only repeat its frame's height: the height 0 it
    exists for ("lines given after the first scan") is refused, as libjpeg and browsers do.
    """

    hierarchy: tuple[int, int] | None = None
    count: int = 0
    lines: int = 0

    def declare(self, marker: int, payload: bytes, at: int) -> None:
        """Check the frame header or DNL ``payload`` of the segment at byte ``at``."""
        if marker == _DNL:
            lines = struct.unpack(">H", payload)[0] if len(payload) == 2 else None  # noqa: PLR2004
            if lines is None or not self.count or lines != self.lines:
                raise _Malformed(
                    f"JPEG number of lines (DNL) at byte {at} does not repeat the height "
                    f"{self.lines} of its frame"
                )
            return
        width, height = _jpeg_frame_size(marker, payload, at)
        if marker == _DHP:
            if self.hierarchy is not None or self.count:
                raise _Malformed(f"JPEG has a hierarchical header (DHP) out of place at byte {at}")
            self.hierarchy = (width, height)
            return
        if self.hierarchy is None and self.count:
            raise _Malformed(f"JPEG has a second frame header at byte {at}")
        if self.hierarchy is not None and (width > self.hierarchy[0] or height > self.hierarchy[1]):
            raise _Malformed(
                f"JPEG frame at byte {at} ({width} x {height}) is larger than the image "
                f"({self.hierarchy[0]} x {self.hierarchy[1]}) its DHP declares"
            )
        self.count += 1
        self.lines = height


def _jpeg_frame_size(marker: int, payload: bytes, at: int) -> tuple[int, int]:
    """The width and height of a frame header (SOFn or DHP), checked; its length too."""
    what = f"JPEG frame header 0xFF{marker:02X} at byte {at}"
    components = payload[5] if len(payload) > _FRAME_FIXED else 0
    if not components or len(payload) != _FRAME_FIXED + 3 * components:
        raise _Malformed(f"{what} is too short or too long for its components")
    _, height, width = struct.unpack_from(">BHH", payload)
    _check_pixels(what, width, height)
    return width, height


def _jpeg_kept(marker: int, payload: bytes, *, first: bool) -> bytes:
    """The segment as it is copied, possibly rewritten; empty when it is dropped."""
    if marker in _FRAME or marker in _TABLES:
        kept = payload
    elif marker == _APP0 and first and payload.startswith(_JFIF) and len(payload) >= 14:  # noqa: PLR2004
        kept = payload[:_JFIF_FIELDS] + b"\x00\x00"  # no thumbnail
    elif marker == _APP14 and payload.startswith(_ADOBE) and len(payload) >= _ADOBE_LENGTH:
        kept = payload[:_ADOBE_LENGTH]
    elif marker == _APP2 and payload.startswith(_ICC) and len(payload) > len(_ICC) + 2:
        kept = payload
    else:
        return b""
    return bytes([0xFF, marker]) + struct.pack(">H", len(kept) + 2) + kept


def _jpeg_marker(data: bytes, pos: int) -> tuple[int, int]:
    """Read the marker at ``pos`` (fill bytes allowed); return it and the position after it."""
    fill = _FILL.match(data, pos)
    if fill is None:
        if pos >= len(data):
            raise _Malformed("JPEG is truncated: the end-of-image marker is missing")
        raise _Malformed(f"JPEG has no segment marker at byte {pos}")
    pos = fill.end()
    if pos >= len(data):
        raise _Malformed("JPEG is truncated: the end-of-image marker is missing")
    if data[pos] == 0:
        raise _Malformed(f"JPEG has an empty marker at byte {pos - 1}")
    return data[pos], pos + 1


def _jpeg_scan_end(data: bytes, pos: int) -> int:
    """The position of the marker ending the entropy-coded data that starts at ``pos``."""
    found = _SCAN_END.search(data, pos)
    if found is None:
        raise _Malformed("JPEG is truncated inside the image data")
    return found.start()


# -- PNG -------------------------------------------------------------------------------------

_PNG_MAGIC: Final = b"\x89PNG\r\n\x1a\n"
_PNG_CRITICAL: Final = frozenset({b"IHDR", b"PLTE", b"IDAT", b"IEND"})
_PNG_MAX_CHUNK: Final = 2**31 - 1
#: The ancillary chunks kept, each with the longest payload its format allows.
_PNG_ANCILLARY: Final = {
    b"tRNS": 256 * 2,
    b"gAMA": 4,
    b"cHRM": 32,
    b"sRGB": 1,
    b"iCCP": _PNG_MAX_CHUNK,
    b"sBIT": 4,
    b"bKGD": 6,
    b"pHYs": 9,
    b"cICP": 4,
    b"mDCv": 24,
    b"cLLi": 8,
}
_IHDR_LENGTH: Final = 13
#: The bit depths PNG defines for each colour type (grey, RGB, palette, grey+alpha, RGBA).
_PNG_DEPTHS: Final[Mapping[int, frozenset[int]]] = MappingProxyType(
    {
        0: frozenset({1, 2, 4, 8, 16}),
        2: frozenset({8, 16}),
        3: frozenset({1, 2, 4, 8}),
        4: frozenset({8, 16}),
        6: frozenset({8, 16}),
    }
)
_CRITICAL_BIT: Final = 0x20  # lower case first letter: ancillary


def _strip_png(data: bytes) -> bytes:  # noqa: C901 - one loop over the chunks reads best
    """Copy the chunks needed to show the image; check lengths, types, CRCs and chunk order."""
    out = bytearray(_PNG_MAGIC)
    pos = len(_PNG_MAGIC)
    chunks = 0
    seen_data = False
    while True:
        if pos + 8 > len(data):
            raise _Malformed(f"PNG is truncated in the chunk header at byte {pos}")
        length, kind = struct.unpack_from(">I4s", data, pos)
        if not kind.isalpha() or not kind.isascii():
            raise _Malformed(f"PNG has an invalid chunk type at byte {pos + 4}")
        name = kind.decode("ascii")
        chunks = _count(chunks, "PNG")
        end = pos + 12 + length
        if length > _PNG_MAX_CHUNK or end > len(data):
            raise _Malformed(f"PNG chunk {name} at byte {pos} is truncated")
        (crc,) = struct.unpack_from(">I", data, end - 4)
        if zlib.crc32(data[pos + 4 : end - 4]) != crc:
            raise _Malformed(f"PNG chunk {name} at byte {pos} has a bad CRC")
        if chunks == 1 or kind == b"IHDR":
            _png_header(kind, data[pos + 8 : end - 4], first=chunks == 1, at=pos)
        if kind in _PNG_CRITICAL:
            out += data[pos:end]
        elif not kind[0] & _CRITICAL_BIT:
            raise _Malformed(f"PNG has an unknown critical chunk {name} at byte {pos}")
        elif length <= _PNG_ANCILLARY.get(kind, -1):
            out += data[pos:end]
        seen_data = seen_data or kind == b"IDAT"
        pos = end
        if kind == b"IEND":
            if not seen_data:
                raise _Malformed("PNG has no image data (IDAT)")
            return bytes(out)


def _png_header(kind: bytes, payload: bytes, *, first: bool, at: int) -> None:
    """Check that the first chunk, and only it, is an image header with valid fields."""
    if not first:
        raise _Malformed(f"PNG has a second image header (IHDR) at byte {at}")
    if kind != b"IHDR" or len(payload) != _IHDR_LENGTH:
        raise _Malformed("PNG does not start with an image header (IHDR)")
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(
        ">IIBBBBB", payload
    )
    _check_pixels("PNG image header (IHDR)", width, height)
    if depth not in _PNG_DEPTHS.get(colour, frozenset()):
        raise _Malformed(
            f"PNG image header (IHDR) has colour type {colour} with bit depth {depth}, "
            "which PNG does not define"
        )
    if compression or filtering or interlace > 1:
        raise _Malformed(
            "PNG image header (IHDR) names an unknown compression, filter or interlace method"
        )


# -- WebP ------------------------------------------------------------------------------------

_WEBP_SIMPLE: Final = frozenset({b"VP8 ", b"VP8L"})
_WEBP_EXTENDED: Final = frozenset({b"ALPH", b"VP8 ", b"VP8L", b"ANIM", b"ANMF", b"ICCP"})
_WEBP_FRAME: Final = frozenset({b"ALPH", b"VP8 ", b"VP8L"})
_WEBP_DATA: Final = frozenset({b"VP8 ", b"VP8L", b"ANIM"})
_VP8X_ICC, _VP8X_ALPHA, _VP8X_ANIMATION = 0x20, 0x10, 0x02
_VP8X_LENGTH: Final = 10  # flags, 3 reserved bytes, canvas width and height
_ANMF_HEADER: Final = 16  # position, size, duration, flags
_ANIM_LENGTH: Final = 6  # background colour, loop count
_VP8_HEADER: Final = 10  # frame tag, start code, width and height
_VP8_START: Final = b"\x9d\x01\x2a"
_VP8_MAX_VERSION: Final = 3
_VP8L_HEADER: Final = 5  # signature, then width, height, alpha and version in 32 bits
_VP8L_SIGNATURE: Final = 0x2F
_14_BITS: Final = 0x3FFF


def _strip_webp(data: bytes) -> bytes:
    """Keep the image chunks, rebuild VP8X and the RIFF size; drop EXIF, XMP and the rest.

    The caller has seen ``RIFF`` and ``WEBP``: the 12-byte header is there.
    """
    (riff_size,) = struct.unpack_from("<I", data, 4)
    end = 8 + riff_size
    if end > len(data):
        raise _Malformed(f"WebP is truncated: RIFF says {end} bytes, there are {len(data)}")
    chunks = _webp_chunks(data, 12, end, MAX_SEGMENTS)
    if not chunks:
        raise _Malformed("WebP holds no image chunk")
    kind, _, payload = chunks[0]
    if kind in _WEBP_SIMPLE:
        _webp_image_size(kind, payload, 12)
        return _riff([_webp_chunk(kind, payload)])
    if kind != b"VP8X":
        raise _Malformed("WebP does not start with an image chunk (VP8, VP8L or VP8X)")
    return _webp_extended(data, payload, chunks[1:])


def _webp_extended(data: bytes, header: bytes, chunks: list[tuple[bytes, int, bytes]]) -> bytes:
    """An extended WebP: VP8X rebuilt from ``header``, then the kept ``chunks``."""
    canvas = _webp_canvas(header)
    budget = MAX_SEGMENTS - len(chunks) - 1
    kept: list[bytes] = []
    for kind, at, body in chunks:
        if kind == b"ANMF":
            frame, budget = _webp_frame(data, at, body, budget, canvas)
            kept.append(frame)
        elif kind == b"ANIM":
            if len(body) < _ANIM_LENGTH:
                raise _Malformed(f"WebP animation header (ANIM) at byte {at} is too short")
            kept.append(_webp_chunk(kind, body[:_ANIM_LENGTH]))
        elif kind in _WEBP_EXTENDED:
            if kind in _WEBP_SIMPLE:
                _webp_same_size(kind, body, at, canvas, "the canvas (VP8X)")
            kept.append(_webp_chunk(kind, body))
    kinds = {chunk[:4] for chunk in kept}
    if not kinds & _WEBP_DATA:
        raise _Malformed("WebP extended file holds no image data")
    flags = header[0] & _VP8X_ALPHA
    if b"ICCP" in kinds:
        flags |= header[0] & _VP8X_ICC
    if b"ANIM" in kinds:
        flags |= header[0] & _VP8X_ANIMATION
    vp8x = bytes([flags, 0, 0, 0]) + header[4:_VP8X_LENGTH]
    return _riff([_webp_chunk(b"VP8X", vp8x), *kept])


def _webp_canvas(header: bytes) -> tuple[int, int]:
    """The canvas width and height of a VP8X ``header``, checked (each is stored minus one)."""
    if len(header) < _VP8X_LENGTH:
        raise _Malformed("WebP extended header (VP8X) is too short")
    canvas = (_le24(header, 4) + 1, _le24(header, 7) + 1)
    _check_pixels("WebP canvas (VP8X)", *canvas)
    return canvas


def _webp_chunks(data: bytes, pos: int, end: int, budget: int) -> list[tuple[bytes, int, bytes]]:
    """The chunks from ``pos`` to ``end`` as ``(type, position, payload)``; at most ``budget``."""
    chunks: list[tuple[bytes, int, bytes]] = []
    while pos < end:
        if len(chunks) >= budget:
            raise _Malformed(f"WebP has more than {MAX_SEGMENTS} parts; real images have far fewer")
        if pos + 8 > end:
            raise _Malformed(f"WebP is truncated in the chunk header at byte {pos}")
        kind, size = struct.unpack_from("<4sI", data, pos)
        chunk_end = pos + 8 + size + (size & 1)
        if chunk_end > end:
            raise _Malformed(f"WebP chunk at byte {pos} is truncated")
        chunks.append((kind, pos, data[pos + 8 : pos + 8 + size]))
        pos = chunk_end
    return chunks


def _webp_frame(
    data: bytes, at: int, body: bytes, budget: int, canvas: tuple[int, int]
) -> tuple[bytes, int]:
    """An ANMF chunk with only its image chunks, and the budget of chunks left.

    The frame must lie inside the ``canvas`` (width, height), and its image be the frame's size.
    """
    if len(body) < _ANMF_HEADER:
        raise _Malformed(f"WebP animation frame (ANMF) at byte {at} is too short")
    left, top = 2 * _le24(body, 0), 2 * _le24(body, 3)  # offsets are stored halved
    size = (_le24(body, 6) + 1, _le24(body, 9) + 1)
    if left + size[0] > canvas[0] or top + size[1] > canvas[1]:
        raise _Malformed(
            f"WebP animation frame (ANMF) at byte {at} ({size[0]} x {size[1]} at {left}, {top}) "
            f"does not fit the {canvas[0]} x {canvas[1]} canvas"
        )
    start = at + 8 + _ANMF_HEADER
    inner = _webp_chunks(data, start, start + len(body) - _ANMF_HEADER, budget)
    for kind, inner_at, payload in inner:
        if kind in _WEBP_SIMPLE:
            _webp_same_size(kind, payload, inner_at, size, f"its frame (ANMF) at byte {at}")
    kept = [_webp_chunk(kind, payload) for kind, _, payload in inner if kind in _WEBP_FRAME]
    if not any(chunk[:4] in _WEBP_DATA for chunk in kept):
        raise _Malformed(f"WebP animation frame (ANMF) at byte {at} holds no image")
    return _webp_chunk(b"ANMF", body[:_ANMF_HEADER] + b"".join(kept)), budget - len(inner)


def _webp_image_size(kind: bytes, payload: bytes, at: int) -> tuple[int, int]:
    """The width and height a VP8 or VP8L bitstream declares, checked; its header too."""
    if kind == b"VP8L":
        what = f"WebP lossless image (VP8L) at byte {at}"
        if len(payload) < _VP8L_HEADER or payload[0] != _VP8L_SIGNATURE:
            raise _Malformed(f"{what} has no valid header")
        (bits,) = struct.unpack_from("<I", payload, 1)
        if bits >> 29:  # the top three bits are a version, and only version 0 exists
            raise _Malformed(f"{what} has an unknown version")
        width, height = (bits & _14_BITS) + 1, (bits >> 14 & _14_BITS) + 1
    else:
        what = f"WebP image (VP8) at byte {at}"
        if len(payload) < _VP8_HEADER:
            raise _Malformed(f"{what} is too short for its header")
        tag = _le24(payload, 0)
        key_frame, version, shown, first_part = not tag & 1, tag >> 1 & 7, tag >> 4 & 1, tag >> 5
        if not key_frame or version > _VP8_MAX_VERSION or not shown:
            raise _Malformed(f"{what} is not a shown key frame")
        if payload[3:6] != _VP8_START:
            raise _Malformed(f"{what} has no start code")
        if first_part > len(payload) - _VP8_HEADER:
            raise _Malformed(f"{what} declares more data than its chunk holds")
        width, height = struct.unpack_from("<HH", payload, 6)
        width, height = width & _14_BITS, height & _14_BITS  # the top two bits ask for scaling
    _check_pixels(what, width, height)
    return width, height


def _webp_same_size(
    kind: bytes, payload: bytes, at: int, expected: tuple[int, int], container: str
) -> None:
    """Check that the image chunk at byte ``at`` has the size its ``container`` declares."""
    width, height = _webp_image_size(kind, payload, at)
    if (width, height) != expected:
        name = kind.decode("ascii").strip()
        raise _Malformed(
            f"WebP image ({name}) at byte {at} is {width} x {height} pixels; "
            f"{container} says {expected[0]} x {expected[1]}"
        )


def _le24(data: bytes, pos: int) -> int:
    """The little-endian 24-bit number at ``pos``."""
    return int.from_bytes(data[pos : pos + 3], "little")


def _webp_chunk(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack("<I", len(payload)) + payload + b"\x00" * (len(payload) & 1)


def _riff(chunks: Sequence[bytes]) -> bytes:
    body = b"".join(chunks)
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body
