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
    MAX_SEGMENTS,
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


def jpeg_segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def webp_chunk(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack("<I", len(payload)) + payload + b"\x00" * (len(payload) & 1)


PNG_KEPT = {
    b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"sBIT",
    b"bKGD", b"pHYs", b"cICP", b"mDCv", b"cLLi",
}  # fmt: skip
WEBP_KEPT = {b"VP8 ", b"VP8L", b"VP8X", b"ALPH", b"ANIM", b"ANMF", b"ICCP"}
#: SOI, frames, tables, DRI, DNL, SOS, EOI and the three APPn kept (JFIF, ICC, Adobe).
JPEG_KEPT = (set(range(0xC0, 0xD0)) - {0xC8} | {0xD8, 0xD9, 0xDA, 0xDB, 0xDC, 0xDD, 0xDE, 0xDF}) | {
    0xE0,
    0xE2,
    0xEE,
}


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
    assert validate_photo(data).data == sample_png()  # the private padding chunk is dropped


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


def jpeg_with(*segments: bytes) -> bytes:
    """The sample JPEG with ``segments`` where its JFIF and Adobe segments were."""
    plain = sample_jpeg()
    return plain[:2] + b"".join(segments) + plain[plain.index(b"\xff\xdb") :]


JFIF_FIELDS = b"JFIF\x00\x01\x02\x01\x00\x48\x00\x48"
ADOBE = b"Adobe\x00\x64\x00\x00\x00\x00\x01"
ICC = b"ICC_PROFILE\x00\x01\x01" + b"profile bytes"


def test_jpeg_keeps_a_jfif_header_but_not_its_thumbnail() -> None:
    thumbnail = b"\x02\x01" + TEXT_SECRET[:6]  # 2x1 pixels, RGB
    cleaned = validate_photo(jpeg_with(jpeg_segment(0xE0, JFIF_FIELDS + thumbnail))).data
    assert cleaned == jpeg_with(jpeg_segment(0xE0, JFIF_FIELDS + b"\x00\x00"))
    assert TEXT_SECRET[:6] not in cleaned


@pytest.mark.parametrize(
    "segment",
    [
        jpeg_segment(0xE0, b"JFXX\x00\x10" + TEXT_SECRET),  # JFIF extension: a thumbnail
        jpeg_segment(0xE0, b"AVI1\x00" + TEXT_SECRET),
        jpeg_segment(0xE0, b"JFIF\x00\x01"),  # too short to be a JFIF header
        jpeg_segment(0xE2, b"MPF\x00" + TEXT_SECRET),  # multi-picture: points to previews
        jpeg_segment(0xE2, b"ICC_PROFILE\x00\x01"),  # no sequence count: not a profile
        jpeg_segment(0xEE, b"Ducky" + TEXT_SECRET),
        jpeg_segment(0xEE, b"Adobe\x00"),  # too short to say anything
        jpeg_segment(0xEB, b"JP" + TEXT_SECRET),  # APP11: JUMBF, where C2PA lives
        jpeg_segment(0xE1, b"Exif\x00\x00II*\x00"),
        jpeg_segment(0xFE, TEXT_SECRET),
        jpeg_segment(0xF7, TEXT_SECRET),  # JPEG-LS and other extensions
        jpeg_segment(0x02, TEXT_SECRET),  # reserved
        jpeg_segment(0xC8, TEXT_SECRET),  # JPG, reserved
    ],
)
def test_jpeg_drops_every_segment_decoding_does_not_need(segment: bytes) -> None:
    cleaned = validate_photo(jpeg_with(segment)).data
    assert cleaned == jpeg_with()
    assert TEXT_SECRET not in cleaned


def test_jpeg_keeps_the_colour_profile_and_rewrites_the_adobe_segment_to_its_fields() -> None:
    icc_parts = [jpeg_segment(0xE2, ICC), jpeg_segment(0xE2, ICC[:-1] + b"!")]
    adobe_with_tail = jpeg_segment(0xEE, ADOBE + TEXT_SECRET)
    jfif = jpeg_segment(0xE0, JFIF_FIELDS + b"\x00\x00")
    cleaned = validate_photo(jpeg_with(jfif, *icc_parts, adobe_with_tail)).data
    assert cleaned == jpeg_with(jfif, *icc_parts, jpeg_segment(0xEE, ADOBE))


def test_jpeg_keeps_a_jfif_header_only_as_the_first_segment() -> None:
    jfif = jpeg_segment(0xE0, JFIF_FIELDS + b"\x00\x00")
    icc = jpeg_segment(0xE2, ICC)
    assert validate_photo(jpeg_with(icc, jfif)).data == jpeg_with(icc)


def test_jpeg_keeps_restart_interval_and_arithmetic_coding_tables() -> None:
    plain = sample_jpeg()
    dri = jpeg_segment(0xDD, b"\x00\x04")
    dac = jpeg_segment(0xCC, b"\x00\x10")
    sos_at = plain.index(b"\xff\xda")
    data = plain[:sos_at] + dri + dac + plain[sos_at:]
    assert validate_photo(data).data == data


def test_jpeg_drops_whatever_follows_the_end_of_image() -> None:
    preview = sample_jpeg(metadata=True)
    cleaned = validate_photo(sample_jpeg(trailer=preview)).data
    assert cleaned == sample_jpeg()


def test_jpeg_scan_with_stuffed_bytes_restart_markers_and_fill_bytes_is_copied() -> None:
    plain = sample_jpeg()
    scan_with_extras = b"\x3f\xff\x00\x12\xff\xd0\x34\xff\xff\xd9"
    data = plain[: plain.rindex(b"\x3f\xff\xd9")] + scan_with_extras
    assert validate_photo(data).data == data


def test_jpeg_fill_bytes_between_segments_are_dropped() -> None:
    plain = sample_jpeg()
    dqt_at = plain.index(b"\xff\xdb")
    data = plain[:dqt_at] + b"\xff\xff\xff" + plain[dqt_at:]
    assert validate_photo(data).data == plain


def test_jpeg_progressive_scans_with_tables_between_them_are_kept() -> None:
    plain = sample_jpeg()
    sos_at = plain.index(b"\xff\xda")
    second = plain[sos_at:-2]
    comment = b"\xff\xfe\x00\x05abc"
    data = plain[:-2] + comment + second + b"\xff\xd9"
    assert validate_photo(data).data == plain[:-2] + second + b"\xff\xd9"


def png_with(*chunks: bytes) -> bytes:
    """The sample PNG with ``chunks`` between its sRGB and IDAT chunks."""
    return sample_png(extra=b"".join(chunks))


def test_png_keeps_exactly_the_chunks_needed_to_show_the_image() -> None:
    kept = [
        png_chunk(b"PLTE", bytes(6)),
        png_chunk(b"tRNS", b"\x00\x01"),
        png_chunk(b"gAMA", struct.pack(">I", 45455)),
        png_chunk(b"cHRM", bytes(32)),
        png_chunk(b"iCCP", b"Display P3\x00\x00" + zlib.compress(b"profile")),
        png_chunk(b"sBIT", b"\x08\x08\x08"),
        png_chunk(b"bKGD", bytes(6)),
        png_chunk(b"pHYs", bytes(9)),
        png_chunk(b"cICP", b"\x01\x0d\x00\x01"),
        png_chunk(b"mDCv", bytes(24)),
        png_chunk(b"cLLi", bytes(8)),
    ]
    dropped = [
        png_chunk(b"caBX", b"jumb" + TEXT_SECRET),  # C2PA content credentials
        png_chunk(b"acTL", struct.pack(">II", 1, 0)),  # APNG: kept as its still image
        png_chunk(b"fcTL", bytes(26)),
        png_chunk(b"fdAT", b"\x00\x00\x00\x01" + TEXT_SECRET),
        png_chunk(b"vpAg", TEXT_SECRET),  # a private chunk
        png_chunk(b"gAMA", bytes(4) + TEXT_SECRET),  # longer than a gamma can be
        png_chunk(b"dSIG", TEXT_SECRET),
    ]
    cleaned = validate_photo(png_with(*kept[:6], *dropped, *kept[6:])).data
    assert cleaned == png_with(*kept)
    assert TEXT_SECRET not in cleaned


def test_png_drops_the_metadata_chunks_and_keeps_crcs_valid() -> None:
    cleaned = validate_photo(sample_png(metadata=True, extra=png_chunk(b"pHYs", bytes(9)))).data
    assert png_chunk_types(cleaned) == [b"IHDR", b"sRGB", b"pHYs", b"IDAT", b"IEND"]


@pytest.mark.parametrize("kind", [b"CgBI", b"ABCD", b"IDAX"])
def test_png_with_an_unknown_critical_chunk_is_refused(kind: bytes) -> None:
    with pytest.raises(InvalidPhoto, match=f"unknown critical chunk {kind.decode()} at byte"):
        validate_photo(png_with(png_chunk(kind, b"")))


def test_png_drops_what_follows_iend() -> None:
    assert validate_photo(sample_png() + b"trailing secret").data == sample_png()


VP8 = WEBP_SIMPLE[12:]


def vp8x(flags: int) -> bytes:
    return webp_chunk(b"VP8X", bytes([flags, 0, 0, 0]) + bytes(6))


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


def test_webp_keeps_the_colour_profile_and_alpha_and_drops_unknown_chunks() -> None:
    iccp = webp_chunk(b"ICCP", b"profile")
    alph = webp_chunk(b"ALPH", b"\x00\xff")
    unknown = webp_chunk(b"C2PA", TEXT_SECRET)
    header = webp_chunk(b"VP8X", bytes([0x3F, 1, 2, 3]) + bytes(6) + TEXT_SECRET)
    cleaned = validate_photo(webp_of(header, iccp, unknown, alph, VP8)).data
    assert cleaned == webp_of(vp8x(0x30), iccp, alph, VP8)  # ICC and alpha; no reserved bits


def test_webp_clears_the_animation_flag_without_an_animation() -> None:
    cleaned = validate_photo(webp_of(vp8x(0x12), VP8)).data
    assert cleaned == webp_of(vp8x(0x10), VP8)


def test_webp_clears_the_icc_flag_when_there_is_no_profile() -> None:
    cleaned = validate_photo(webp_of(vp8x(0x20), VP8)).data
    assert cleaned == webp_of(vp8x(0), VP8)


def test_animated_webp_keeps_its_frames_without_foreign_chunks() -> None:
    anim = webp_chunk(b"ANIM", bytes(6))
    frame_header = bytes(16)
    frame = webp_chunk(b"ANMF", frame_header + webp_chunk(b"XMP ", XMP_SECRET) + VP8)
    long_anim = webp_chunk(b"ANIM", bytes(6) + TEXT_SECRET)
    cleaned = validate_photo(webp_of(vp8x(0x02), long_anim, frame, frame)).data
    clean_frame = webp_chunk(b"ANMF", frame_header + VP8)
    assert cleaned == webp_of(vp8x(0x02), anim, clean_frame, clean_frame)
    assert XMP_SECRET not in cleaned


def test_a_simple_webp_keeps_only_its_image_chunk() -> None:
    data = webp_of(VP8, webp_chunk(b"EXIF", b"II*\x00" + GPS_LATITUDE))
    assert validate_photo(data).data == WEBP_SIMPLE


def test_webp_padding_bytes_are_zeroed() -> None:
    odd = webp_chunk(b"ICCP", b"abc")[:-1] + b"S"  # the pad byte could carry data
    cleaned = validate_photo(webp_of(vp8x(0x20), odd, VP8)).data
    assert cleaned == webp_of(vp8x(0x20), webp_chunk(b"ICCP", b"abc"), VP8)


# -- hostile sizes --------------------------------------------------------------------------


def jpeg_with_scan(scan: bytes) -> bytes:
    plain = sample_jpeg()
    return plain[: plain.rindex(b"\x3f\xff\xd9")] + scan + b"\xff\xd9"


def room_in_jpeg() -> int:
    return MAX_PHOTO_BYTES - len(jpeg_with_scan(b""))


@pytest.mark.parametrize("unit", [b"\xff\x00", b"\xff", b"\xff\xd3\x00"])
def test_a_ten_mebibyte_scan_full_of_escapes_is_accepted_unchanged(unit: bytes) -> None:
    data = jpeg_with_scan(unit * (room_in_jpeg() // len(unit)))
    assert len(data) > MAX_PHOTO_BYTES - 3
    assert validate_photo(data).data == data


def test_a_long_run_of_fill_bytes_between_segments_is_dropped() -> None:
    plain = sample_jpeg()
    dqt_at = plain.index(b"\xff\xdb")
    data = plain[:dqt_at] + b"\xff" * (MAX_PHOTO_BYTES - len(plain)) + plain[dqt_at:]
    assert validate_photo(data).data == plain


def test_a_png_with_as_many_chunks_as_allowed_is_accepted_and_one_more_refused() -> None:
    base = png_chunk_types(sample_png())
    fill = png_chunk(b"IDAT", b"")
    allowed = png_with(fill * (MAX_SEGMENTS - len(base)))
    assert len(png_chunk_types(validate_photo(allowed).data)) == MAX_SEGMENTS
    with pytest.raises(InvalidPhoto, match=f"PNG has more than {MAX_SEGMENTS} parts"):
        validate_photo(png_with(fill * (MAX_SEGMENTS - len(base) + 1)))


def test_a_ten_mebibyte_png_of_empty_chunks_is_refused() -> None:
    chunks = png_chunk(b"zzZz", b"") * ((MAX_PHOTO_BYTES - len(sample_png())) // 12)
    with pytest.raises(InvalidPhoto, match="more than 10000 parts"):
        validate_photo(png_with(chunks))


def test_a_jpeg_with_too_many_segments_is_refused() -> None:
    comments = jpeg_segment(0xFE, b"") * MAX_SEGMENTS
    with pytest.raises(InvalidPhoto, match=f"JPEG has more than {MAX_SEGMENTS} parts"):
        validate_photo(jpeg_with(comments))


def test_a_webp_with_too_many_chunks_is_refused() -> None:
    empty = webp_chunk(b"JUNK", b"")
    with pytest.raises(InvalidPhoto, match=f"WebP has more than {MAX_SEGMENTS} parts"):
        validate_photo(webp_of(vp8x(0), VP8, empty * MAX_SEGMENTS))
    frame = webp_chunk(b"ANMF", bytes(16) + VP8 + empty * (MAX_SEGMENTS - 3))
    with pytest.raises(InvalidPhoto, match="more than"):
        validate_photo(webp_of(vp8x(2), webp_chunk(b"ANIM", bytes(6)), frame))
    fits = webp_chunk(b"ANMF", bytes(16) + VP8 + empty * (MAX_SEGMENTS - 4))
    cleaned = validate_photo(webp_of(vp8x(2), webp_chunk(b"ANIM", bytes(6)), fits)).data
    assert webp_chunk_types(cleaned) == [b"VP8X", b"ANIM", b"ANMF"]


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
        (b"\xff\xd8\xff\xe0\x00\x02", "end-of-image marker is missing"),
        (b"\xff\xd8\xff\xe0\x00\x02\x00\xff\xd9", "no segment marker"),
        (b"\xff\xd8\xff\xda\x00\x02\x00\xff\xd9", "scan starts before a frame"),
        (b"\xff\xd8\xff\xff\xff", "end-of-image marker is missing"),
    ],
)
def test_broken_jpegs_are_refused_with_the_problem_named(data: bytes, problem: str) -> None:
    with pytest.raises(InvalidPhoto, match=problem):
        validate_photo(data)


#: A valid image header: 1 x 1 pixels, 8-bit RGB.
ONE_PIXEL_IHDR = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)


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
        (
            b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ONE_PIXEL_IHDR) + png_chunk(b"IEND", b""),
            "IDAT",
        ),
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
        (webp_of(vp8x(2), webp_chunk(b"ANIM", bytes(5))), r"\(ANIM\) at byte 30 is too short"),
        (webp_of(vp8x(2), webp_chunk(b"ANMF", bytes(15))), r"\(ANMF\) at byte 30 is too short"),
        (webp_of(vp8x(2), webp_chunk(b"ANMF", bytes(16))), r"at byte 30 holds no image"),
        (
            webp_of(vp8x(2), webp_chunk(b"ANMF", bytes(16) + webp_chunk(b"ALPH", b"a"))),
            r"at byte 30 holds no image",
        ),
        (webp_of(vp8x(2), webp_chunk(b"ANMF", bytes(16) + VP8[:-2])), "chunk at byte 54"),
    ],
)
def test_broken_webps_are_refused_with_the_problem_named(data: bytes, problem: str) -> None:
    with pytest.raises(InvalidPhoto, match=problem):
        validate_photo(data)


# -- fuzzing --------------------------------------------------------------------------------

SAMPLES = (
    sample_jpeg(metadata=True),
    jpeg_with(jpeg_segment(0xE0, JFIF_FIELDS + b"\x01\x01abc"), jpeg_segment(0xE2, ICC)),
    sample_png(metadata=True),
    png_with(png_chunk(b"iCCP", b"p\x00\x00x"), png_chunk(b"acTL", bytes(8))),
    sample_webp(metadata=True),
    webp_of(
        vp8x(0x3E),
        webp_chunk(b"ICCP", b"icc"),
        webp_chunk(b"ANIM", bytes(6)),
        webp_chunk(b"ANMF", bytes(16) + webp_chunk(b"ALPH", b"a") + VP8),
        webp_chunk(b"EXIF", b"II*\x00"),
    ),
    WEBP_SIMPLE,
)


def jpeg_all_markers(data: bytes) -> list[int]:
    """Every marker of a JPEG outside its scans, from SOI to EOI, walking byte by byte."""
    markers = [data[1]]
    pos = 2
    while True:
        while data[pos + 1] == 0xFF:
            pos += 1
        marker = data[pos + 1]
        markers.append(marker)
        if marker == 0xD9:
            assert pos + 2 == len(data)
            return markers
        pos += 2 + struct.unpack_from(">H", data, pos + 2)[0]
        if marker == 0xDA:
            while not (data[pos] == 0xFF and data[pos + 1] not in {0, *range(0xD0, 0xD8), 0xFF}):
                pos += 1


def check_only_invalid_photo_or_a_fixpoint(data: bytes) -> None:
    """Valid input gives a clean image that validates to itself, with only allowed parts."""
    try:
        photo = validate_photo(data)
    except InvalidPhoto:
        return
    again = validate_photo(photo.data)
    assert again == photo
    if photo.content_type == "image/png":
        assert set(png_chunk_types(photo.data)) <= PNG_KEPT
    elif photo.content_type == "image/webp":
        assert set(webp_chunk_types(photo.data)) <= WEBP_KEPT
    else:
        assert set(jpeg_all_markers(photo.data)) <= JPEG_KEPT


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


@pytest.mark.parametrize("sample", SAMPLES)
def test_the_fuzzing_samples_are_valid_and_lose_their_metadata(sample: bytes) -> None:
    cleaned = validate_photo(sample).data
    assert len(cleaned) < len(sample) or sample == WEBP_SIMPLE
    check_only_invalid_photo_or_a_fixpoint(sample)
