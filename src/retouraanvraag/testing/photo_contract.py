"""The contract every :class:`~retouraanvraag.ports.PhotoStore` must keep, as a test suite.

Subclass :class:`PhotoStoreContract` in a test module, name the subclass ``Test…`` and implement
:meth:`~PhotoStoreContract.make_store`; pytest runs every check against your adapter::

    class TestMyPhotoStore(PhotoStoreContract):
        def make_store(self) -> PhotoStore:
            return MyPhotoStore(...)

The module also builds small, valid images by hand (:func:`sample_png`, :func:`sample_jpeg`,
:func:`sample_webp`), optionally carrying EXIF with GPS, XMP and text metadata, so that tests
need no imaging library.
"""

from __future__ import annotations

import abc
import base64
import struct
import zlib
from typing import Final

from retouraanvraag.errors import InvalidPhoto, NotFound
from retouraanvraag.ports import PhotoStore
from retouraanvraag.testing._threads import errors_of, run_at_once

__all__ = [
    "GPS_LATITUDE",
    "TEXT_SECRET",
    "XMP_SECRET",
    "PhotoStoreContract",
    "exif_tiff",
    "sample_jpeg",
    "sample_png",
    "sample_webp",
]

#: The latitude rational 52/1, 22/1, 1234/100 as it sits in the EXIF GPS IFD (little endian).
GPS_LATITUDE: Final = struct.pack("<6I", 52, 1, 22, 1, 1234, 100)
#: An XMP packet naming a place.
XMP_SECRET: Final = b"<x:xmpmeta><exif:GPSLatitude>52,22.2N</exif:GPSLatitude></x:xmpmeta>"
#: A home address, as a text comment would carry it.
TEXT_SECRET: Final = b"Kerkstraat 1, Amsterdam"

_GPS_IFD_OFFSET: Final = 26
_GPS_VALUE_OFFSET: Final = 56


def exif_tiff() -> bytes:
    """A TIFF structure as EXIF carries it: IFD0 pointing to a GPS IFD with a latitude."""
    header = b"II*\x00" + struct.pack("<I", 8)
    ifd0 = (
        struct.pack("<H", 1)
        + struct.pack("<HHII", 0x8825, 4, 1, _GPS_IFD_OFFSET)
        + struct.pack("<I", 0)
    )
    gps_ifd = (
        struct.pack("<H", 2)
        + struct.pack("<HHI4s", 1, 2, 2, b"N\x00\x00\x00")
        + struct.pack("<HHII", 2, 5, 3, _GPS_VALUE_OFFSET)
        + struct.pack("<I", 0)
    )
    return header + ifd0 + gps_ifd + GPS_LATITUDE


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data)
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def sample_png(*, metadata: bool = False, extra: bytes = b"") -> bytes:
    """A 1x1 RGB PNG.

    Args:
        metadata: add eXIf (with GPS), tEXt, zTXt, iTXt (XMP) and tIME chunks.
        extra: raw chunks inserted before the image data.
    """
    ihdr = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
    idat = _png_chunk(b"IDAT", zlib.compress(b"\x00\xff\x80\x00"))
    meta = b""
    if metadata:
        meta = (
            _png_chunk(b"eXIf", exif_tiff())
            + _png_chunk(b"tEXt", b"Comment\x00" + TEXT_SECRET)
            + _png_chunk(b"zTXt", b"Location\x00\x00" + zlib.compress(TEXT_SECRET))
            + _png_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + XMP_SECRET)
            + _png_chunk(b"tIME", struct.pack(">HBBBBB", 2025, 3, 1, 12, 0, 0))
        )
    srgb = _png_chunk(b"sRGB", b"\x00")
    iend = _png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + ihdr + meta + srgb + extra + idat + iend


def _jpeg_segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def sample_jpeg(*, metadata: bool = False, trailer: bytes = b"") -> bytes:
    """An 8x8 grey baseline JPEG (one block: DC 0, end of block) with JFIF and Adobe segments.

    Args:
        metadata: add APP1 EXIF (with GPS), APP1 XMP, APP13 (IPTC) and a comment.
        trailer: bytes after the end-of-image marker.
    """
    jfif = _jpeg_segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
    adobe = _jpeg_segment(0xEE, b"Adobe\x00\x64\x00\x00\x00\x00\x01")
    meta = b""
    if metadata:
        meta = (
            _jpeg_segment(0xE1, b"Exif\x00\x00" + exif_tiff())
            + _jpeg_segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00" + XMP_SECRET)
            + _jpeg_segment(0xED, b"Photoshop 3.0\x00" + TEXT_SECRET)
            + _jpeg_segment(0xFE, TEXT_SECRET)
        )
    dqt = _jpeg_segment(0xDB, b"\x00" + bytes([1] * 64))
    sof0 = _jpeg_segment(0xC0, b"\x08\x00\x08\x00\x08\x01\x01\x11\x00")
    one_code = bytes([1] + [0] * 15)
    dht_dc = _jpeg_segment(0xC4, b"\x00" + one_code + b"\x00")
    dht_ac = _jpeg_segment(0xC4, b"\x10" + one_code + b"\x00")
    sos = _jpeg_segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")
    scan = b"\x3f"  # DC category 0 ("0"), end of block ("0"), padded with ones
    return (
        b"\xff\xd8"
        + jfif
        + meta
        + adobe
        + dqt
        + sof0
        + dht_dc
        + dht_ac
        + sos
        + scan
        + b"\xff\xd9"
        + trailer
    )


#: A 1x1 lossy WebP in the simple format (VP8 only).
WEBP_SIMPLE: Final = base64.b64decode("UklGRiIAAABXRUJQVlA4IBYAAAAwAQCdASoBAAEADsD+JaQAA3AAAAAA")


def _webp_chunk(kind: bytes, data: bytes) -> bytes:
    return kind + struct.pack("<I", len(data)) + data + (b"\x00" if len(data) % 2 else b"")


def sample_webp(*, metadata: bool = False) -> bytes:
    """A 1x1 extended WebP (VP8X) around a lossy image.

    Args:
        metadata: add EXIF (with GPS) and XMP chunks and set their VP8X flags.
    """
    flags = 0x0C if metadata else 0x00
    vp8x = _webp_chunk(b"VP8X", bytes([flags, 0, 0, 0]) + bytes(6))
    vp8 = WEBP_SIMPLE[12:]
    meta = b""
    if metadata:
        meta = _webp_chunk(b"EXIF", exif_tiff()) + _webp_chunk(b"XMP ", XMP_SECRET + b"!")
    body = b"WEBP" + vp8x + vp8 + meta
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


class PhotoStoreContract(abc.ABC):
    """Checks of the :class:`~retouraanvraag.ports.PhotoStore` contract; subclass to run them."""

    shop: str = "shop-1"
    other_shop: str = "shop-2"

    @abc.abstractmethod
    def make_store(self) -> PhotoStore:
        """A fresh, empty store for one test."""

    def test_put_returns_a_reference_with_type_and_size(self) -> None:
        """Put returns a reference carrying the content type and the size."""
        store = self.make_store()
        data = sample_png()
        ref = store.put(self.shop, data, "image/png")
        _check(ref.content_type == "image/png", f"content type is {ref.content_type!r}")
        _check(ref.size == len(data), f"size is {ref.size}, expected {len(data)}")
        _check(bool(ref.key), "the key is empty")

    def test_get_returns_the_stored_bytes(self) -> None:
        """Get returns exactly the bytes put, for each image type."""
        store = self.make_store()
        for data, content_type in (
            (sample_png(), "image/png"),
            (sample_jpeg(), "image/jpeg"),
            (sample_webp(), "image/webp"),
        ):
            ref = store.put(self.shop, data, content_type)
            _check(store.get(self.shop, ref.key) == data, f"{content_type}: bytes differ")

    def test_keys_are_generated_and_unique_for_the_same_image(self) -> None:
        """The same image put twice gets two keys, neither a path."""
        store = self.make_store()
        data = sample_jpeg()
        keys = {store.put(self.shop, data, "image/jpeg").key for _ in range(5)}
        _check(len(keys) == 5, f"five puts gave {len(keys)} distinct keys")  # noqa: PLR2004
        for key in keys:
            _check("/" not in key and "\\" not in key, f"key {key!r} holds a path separator")

    def test_get_of_an_unknown_key_is_not_found(self) -> None:
        """An unknown key raises NotFound."""
        store = self.make_store()
        store.put(self.shop, sample_png(), "image/png")
        self._expect_not_found(store, self.shop, "no-such-photo.png")

    def test_another_shops_photo_is_not_found(self) -> None:
        """Another shop's key raises NotFound; the owner still has it."""
        store = self.make_store()
        ref = store.put(self.shop, sample_png(), "image/png")
        self._expect_not_found(store, self.other_shop, ref.key)
        _check(store.get(self.shop, ref.key) == sample_png(), "the owner lost the photo")

    def test_path_like_keys_are_not_found(self) -> None:
        """Keys that look like paths reach nothing: NotFound."""
        store = self.make_store()
        ref = store.put(self.shop, sample_png(), "image/png")
        keys = ("", ".", "..", "/", f"../{self.shop}/{ref.key}", f"{self.shop}/{ref.key}")
        for shop_id in (self.shop, self.other_shop):
            for key in keys:
                self._expect_not_found(store, shop_id, key)

    def test_an_unsupported_content_type_is_refused(self) -> None:
        """Only JPEG, PNG and WebP are stored; any other declared type raises InvalidPhoto."""
        store = self.make_store()
        for content_type in ("image/gif", "application/octet-stream", "image/jpg", "IMAGE/PNG", ""):
            try:
                store.put(self.shop, sample_png(), content_type)
            except InvalidPhoto:
                continue
            raise AssertionError(f"put with content type {content_type!r} did not raise")

    def test_a_deleted_photo_is_not_found(self) -> None:
        """Put, delete, get: NotFound; the shop's other photos stay."""
        store = self.make_store()
        gone = store.put(self.shop, sample_png(), "image/png")
        kept = store.put(self.shop, sample_jpeg(), "image/jpeg")
        store.delete(self.shop, gone.key)
        self._expect_not_found(store, self.shop, gone.key)
        _check(store.get(self.shop, kept.key) == sample_jpeg(), "delete removed another photo")

    def test_deleting_twice_or_what_is_not_there_is_fine(self) -> None:
        """Delete is a no-op for a photo already gone, an unknown key and a fresh store."""
        store = self.make_store()
        store.delete(self.shop, "0" * 32 + ".png")
        ref = store.put(self.shop, sample_webp(), "image/webp")
        store.delete(self.shop, ref.key)
        store.delete(self.shop, ref.key)
        store.delete(self.shop, "no-such-photo.png")
        self._expect_not_found(store, self.shop, ref.key)

    def test_deleting_another_shops_key_leaves_the_photo(self) -> None:
        """Delete with another shop's key, or a path-like key, removes nothing."""
        store = self.make_store()
        ref = store.put(self.shop, sample_png(), "image/png")
        for shop_id, key in (
            (self.other_shop, ref.key),
            (self.other_shop, f"../{self.shop}/{ref.key}"),
            (self.shop, f"../{self.shop}/{ref.key}"),
            (self.shop, f"{ref.key[:2]}/{ref.key}"),
            (self.shop, ""),
            (self.shop, ".."),
        ):
            store.delete(shop_id, key)
        _check(store.get(self.shop, ref.key) == sample_png(), "another shop's delete removed it")

    def test_concurrent_puts_all_land_under_distinct_keys(self) -> None:
        """Puts from several threads at once all land, each under its own key."""
        store = self.make_store()
        threads = 8

        def put(i: int) -> str:
            extra = _png_chunk(b"zzZz", bytes([i]))
            return store.put(self.shop, sample_png(extra=extra), "image/png").key

        results = run_at_once(threads, put)
        errors = errors_of(results)
        _check(not errors, f"puts failed: {errors!r}")
        keys = [key for key in results if isinstance(key, str)]
        _check(len(set(keys)) == threads, f"{threads} puts gave {len(set(keys))} keys")
        stored = {store.get(self.shop, key) for key in keys}
        _check(len(stored) == threads, "some photos were overwritten")

    @staticmethod
    def _expect_not_found(store: PhotoStore, shop_id: str, key: str) -> None:
        try:
            store.get(shop_id, key)
        except NotFound:
            return
        raise AssertionError(f"get({shop_id!r}, {key!r}) did not raise NotFound")
