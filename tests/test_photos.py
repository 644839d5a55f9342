from __future__ import annotations

import struct
import zlib
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retouraanvraag.errors import InvalidInput, InvalidPhoto
from retouraanvraag.photos import (
    MAX_PHOTO_BYTES,
    MAX_PHOTOS_PER_REQUEST,
    ValidatedPhoto,
    validate_photo,
    validate_photos,
)
from retouraanvraag.testing.photo_contract import (
    GPS_LATITUDE,
    TEXT_SECRET,
    WEBP_SIMPLE,
    XMP_SECRET,
    sample_jpeg,
    sample_png,
    sample_webp,
)

SECRETS = (b"Exif", b"II*\x00", GPS_LATITUDE, XMP_SECRET, TEXT_SECRET)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_chunk_types(data: bytes) -> list[bytes]:
    """The chunk types of a PNG, checking every length and CRC on the way."""
    kinds = []
    pos = 8
    while pos < len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        body = data[pos + 4 : pos + 8 + length]
        assert zlib.crc32(body) == struct.unpack_from(">I", data, pos + 8 + length)[0]
        kinds.append(body[:4])
        pos += 12 + length
    assert pos == len(data)
    return kinds


def jpeg_markers(data: bytes) -> list[int]:
    """The markers of a JPEG from SOI to SOS."""
    markers = [data[1]]
    pos = 2
    while True:
        marker = data[pos + 1]
        markers.append(marker)
        if marker == 0xDA:
            return markers
        pos += 2 + struct.unpack_from(">H", data, pos + 2)[0]


def webp_chunk_types(data: bytes) -> list[bytes]:
    """The chunk types of a WebP, checking the RIFF size and every chunk size."""
    assert data[:4] == b"RIFF"
    assert data[8:12] == b"WEBP"
    assert struct.unpack_from("<I", data, 4)[0] + 8 == len(data)
    kinds = []
    pos = 12
    while pos < len(data):
        kind, size = struct.unpack_from("<4sI", data, pos)
        kinds.append(kind)
        pos += 8 + size + (size & 1)
    assert pos == len(data)
    return kinds


# -- recognition ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "content_type", "extension"),
    [
        (sample_jpeg(), "image/jpeg", "jpg"),
        (sample_png(), "image/png", "png"),
        (sample_webp(), "image/webp", "webp"),
        (WEBP_SIMPLE, "image/webp", "webp"),
    ],
)
def test_formats_are_recognised_by_their_magic_bytes(
    data: bytes, content_type: str, extension: str
) -> None:
    photo = validate_photo(data)
    assert photo.content_type == content_type
    assert photo.extension == extension
    assert photo.size == len(photo.data)


def test_images_without_metadata_pass_unchanged() -> None:
    for data in (sample_jpeg(), sample_png(), sample_webp(), WEBP_SIMPLE):
        assert validate_photo(data).data == data


@pytest.mark.parametrize(
    "data",
    [
        b"GIF89a\x01\x00\x01\x00\x00\x00\x00;",
        b"%PDF-1.7\n",
        b"<svg xmlns='http://www.w3.org/2000/svg'/>",
        b"BM\x00\x00",
        b"RIFF\x04\x00\x00\x00WAVE",
        b"\x00" * 100,
    ],
)
def test_other_files_are_refused(data: bytes) -> None:
    with pytest.raises(InvalidPhoto, match="not a JPEG, PNG or WebP"):
        validate_photo(data)


def test_the_error_names_the_photo_by_its_index() -> None:
    with pytest.raises(InvalidPhoto) as caught:
        validate_photo(b"hello", index=3)
    assert caught.value.field == "photos[3]"
    assert str(caught.value).startswith("photos[3]: ")
    assert isinstance(caught.value, InvalidInput)


def test_empty_and_non_bytes_uploads_are_refused() -> None:
    with pytest.raises(InvalidPhoto, match="empty"):
        validate_photo(b"")
    with pytest.raises(InvalidPhoto, match="must be bytes"):
        validate_photo("\x89PNG")  # type: ignore[arg-type]


def test_bytearray_and_memoryview_are_accepted() -> None:
    data = sample_png()
    assert validate_photo(bytearray(data)).data == data
    assert validate_photo(memoryview(data)).data == data


# -- size and count -------------------------------------------------------------------------


def padded_png(total: int) -> bytes:
    """A valid PNG of exactly ``total`` bytes, padded with a private ancillary chunk."""
    base = len(sample_png())
    return sample_png(extra=png_chunk(b"zzZz", bytes(total - base - 12)))


def test_a_photo_of_exactly_ten_mebibytes_is_accepted() -> None:
    data = padded_png(MAX_PHOTO_BYTES)
    assert len(data) == MAX_PHOTO_BYTES == 10 * 1024 * 1024
    assert validate_photo(data).size == MAX_PHOTO_BYTES


def test_a_photo_one_byte_over_ten_mebibytes_is_refused() -> None:
    with pytest.raises(InvalidPhoto, match="at most 10485760 bytes"):
        validate_photo(padded_png(MAX_PHOTO_BYTES + 1))


def test_ten_photos_are_accepted_and_eleven_refused() -> None:
    assert MAX_PHOTOS_PER_REQUEST == 10
    photos = validate_photos([sample_png(metadata=True)] * 10)
    assert len(photos) == 10
    assert all(isinstance(p, ValidatedPhoto) for p in photos)
    with pytest.raises(InvalidPhoto, match="11 photos; at most 10") as caught:
        validate_photos([sample_png()] * 11)
    assert caught.value.field == "photos"


def test_validate_photos_names_the_bad_one() -> None:
    with pytest.raises(InvalidPhoto) as caught:
        validate_photos([sample_png(), sample_jpeg(), b"not an image"])
    assert caught.value.field == "photos[2]"


# -- metadata -------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [sample_jpeg, sample_png, sample_webp])
def test_gps_exif_xmp_and_text_are_removed(make: Callable[..., bytes]) -> None:
    original = make(metadata=True)
    present = [secret for secret in SECRETS if secret in original]
    assert GPS_LATITUDE in present
    assert XMP_SECRET in present
    cleaned = validate_photo(original).data
    for secret in SECRETS:
        assert secret not in cleaned
    assert cleaned == make(metadata=False)


def test_jpeg_keeps_app0_and_app14_and_drops_other_appn_and_comments() -> None:
    cleaned = validate_photo(sample_jpeg(metadata=True)).data
    assert jpeg_markers(cleaned) == [0xD8, 0xE0, 0xEE, 0xDB, 0xC0, 0xC4, 0xC4, 0xDA]
    assert cleaned.endswith(b"\xff\xd9")


def test_jpeg_drops_whatever_follows_the_end_of_image() -> None:
    preview = sample_jpeg(metadata=True)
    cleaned = validate_photo(sample_jpeg(trailer=preview)).data
    assert cleaned == sample_jpeg()


def test_jpeg_scan_with_stuffed_bytes_restart_markers_and_fill_bytes_is_copied() -> None:
    plain = sample_jpeg()
    scan_with_extras = b"\x3f\xff\x00\x12\xff\xd0\x34\xff\xff\xd9"
    data = plain[: plain.rindex(b"\x3f\xff\xd9")] + scan_with_extras
    assert validate_photo(data).data == data


def test_jpeg_progressive_scans_with_tables_between_them_are_kept() -> None:
    plain = sample_jpeg()
    sos_at = plain.index(b"\xff\xda")
    second = plain[sos_at:-2]
    comment = b"\xff\xfe\x00\x05abc"
    data = plain[:-2] + comment + second + b"\xff\xd9"
    assert validate_photo(data).data == plain[:-2] + second + b"\xff\xd9"


def test_png_drops_only_the_metadata_chunks_and_keeps_crcs_valid() -> None:
    cleaned = validate_photo(sample_png(metadata=True, extra=png_chunk(b"pHYs", bytes(9)))).data
    assert png_chunk_types(cleaned) == [b"IHDR", b"sRGB", b"pHYs", b"IDAT", b"IEND"]


def test_png_drops_what_follows_iend() -> None:
    assert validate_photo(sample_png() + b"trailing secret").data == sample_png()


def test_webp_clears_the_exif_and_xmp_flags_and_fixes_the_riff_size() -> None:
    original = sample_webp(metadata=True)
    assert original[20] & 0x0C == 0x0C
    cleaned = validate_photo(original).data
    assert webp_chunk_types(cleaned) == [b"VP8X", b"VP8 "]
    assert cleaned[20] & 0x0C == 0
    assert len(cleaned) < len(original)


def test_webp_keeps_other_flags_and_drops_bytes_after_the_riff() -> None:
    original = bytearray(sample_webp(metadata=True))
    original[20] |= 0x10  # alpha
    cleaned = validate_photo(bytes(original) + b"junk").data
    assert cleaned[20] == 0x10
    webp_chunk_types(cleaned)


# -- broken structure -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (sample_jpeg()[:-2], "truncated inside the image data"),
        (sample_jpeg()[:-1], "truncated inside the image data"),
        (sample_jpeg()[:30], "truncated"),
        (sample_jpeg()[:3], "end-of-image marker is missing"),
        (b"\xff\xd8\xff\xd9", "no image"),
        (b"\xff\xd8\xff\xd8\xff\xd9", "stray marker"),
        (b"\xff\xd8\xff\xd0\xff\xd9", "stray marker"),
        (b"\xff\xd8\xff\x00\x00", "empty marker"),
        (b"\xff\xd8\xff\xe0\x00\x01", "truncated"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "truncated"),
        (b"\xff\xd8\xff\xe0", "segment header"),
        (b"\xff\xd8\xff\xe0\x00\x02\x00\xff\xd9", "no segment marker"),
        (b"\xff\xd8\xff\xda\x00\x02\x00\xff\xd9", "scan starts before a frame"),
        (b"\xff\xd8\xff\xff\xff", "end-of-image marker is missing"),
    ],
)
def test_broken_jpegs_are_refused_with_the_problem_named(data: bytes, problem: str) -> None:
    with pytest.raises(InvalidPhoto, match=problem):
        validate_photo(data)


def corrupt_crc(data: bytes, at: int) -> bytes:
    mutable = bytearray(data)
    mutable[at] ^= 0xFF
    return bytes(mutable)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (sample_png()[:-12], "truncated in the chunk header"),
        (sample_png()[:-6], "truncated in the chunk header"),
        (sample_png()[:20], "chunk IHDR at byte 8 is truncated"),
        (corrupt_crc(sample_png(), 20), "chunk IHDR at byte 8 has a bad CRC"),
        (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IDAT", b"x") + png_chunk(b"IEND", b""), "IHDR"),
        (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", bytes(13)) + png_chunk(b"IEND", b""), "IDAT"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\x00I1DR\x00\x00\x00\x00", "invalid chunk type"),
    ],
)
def test_broken_pngs_are_refused_with_the_problem_named(data: bytes, problem: str) -> None:
    with pytest.raises(InvalidPhoto, match=problem):
        validate_photo(data)


def webp_of(*chunks: bytes) -> bytes:
    body = b"WEBP" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (sample_webp()[:-4], "RIFF says"),
        (b"RIFF\x04\x00\x00\x00WEBP", "no image chunk"),
        (webp_of(b"VP8 \x02\x00"), "chunk header"),
        (webp_of(b"VP8 \x10\x00\x00\x00abc"), "chunk at byte 12 is truncated"),
        (webp_of(b"ICCP\x00\x00\x00\x00" + WEBP_SIMPLE[12:]), "does not start with an image"),
        (webp_of(b"VP8X\x02\x00\x00\x00\x00\x00"), "too short"),
        (webp_of(b"VP8X\x0a\x00\x00\x00" + bytes(10)), "holds no image data"),
    ],
)
def test_broken_webps_are_refused_with_the_problem_named(data: bytes, problem: str) -> None:
    with pytest.raises(InvalidPhoto, match=problem):
        validate_photo(data)


# -- fuzzing --------------------------------------------------------------------------------

SAMPLES = (
    sample_jpeg(metadata=True),
    sample_png(metadata=True),
    sample_webp(metadata=True),
    WEBP_SIMPLE,
)


def check_only_invalid_photo_or_a_fixpoint(data: bytes) -> None:
    try:
        photo = validate_photo(data)
    except InvalidPhoto:
        return
    again = validate_photo(photo.data)
    assert again == photo


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    sample=st.sampled_from(SAMPLES),
    edits=st.lists(
        st.tuples(
            st.sampled_from(["flip", "cut", "insert", "delete"]),
            st.integers(0, 10**4),
            st.binary(min_size=1, max_size=8),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_mutated_images_give_invalid_photo_or_a_clean_image(
    sample: bytes, edits: list[tuple[str, int, bytes]]
) -> None:
    data = bytearray(sample)
    for op, where, blob in edits:
        at = where % (len(data) + 1)
        if op == "flip" and data:
            data[at % len(data)] ^= blob[0] or 1
        elif op == "cut":
            del data[at:]
        elif op == "insert":
            data[at:at] = blob
        else:
            del data[at : at + len(blob)]
    check_only_invalid_photo_or_a_fixpoint(bytes(data))


@settings(max_examples=300)
@given(
    prefix=st.sampled_from(
        [b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"RIFF\x10\x00\x00\x00WEBP"]
    ),
    tail=st.binary(max_size=200),
)
def test_random_bytes_give_invalid_photo_or_a_clean_image(prefix: bytes, tail: bytes) -> None:
    check_only_invalid_photo_or_a_fixpoint(prefix + tail)
