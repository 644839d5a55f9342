"""Declared sizes: no pixels, too many pixels, and headers that disagree about the size.

Every image here is built by hand with the size under test written into its headers; the image
data itself stays the 1x1 (or 8x8) sample's, since validation never decodes it.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retouraanvraag import photos
from retouraanvraag.errors import InvalidPhoto
from retouraanvraag.photos import MAX_PHOTO_PIXELS, validate_photo, validate_photos
from retouraanvraag.testing.photo_contract import (
    WEBP_SIMPLE,
    sample_jpeg,
    sample_png,
    sample_webp,
)

LIMIT = 50_000_000
#: 10000 x 5000 is the limit exactly; 3561 x 14041 is one pixel more (3561 * 14041 = 50000001).
AT_LIMIT = (10_000, 5_000)
ONE_OVER = (3_561, 14_041)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def webp_chunk(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack("<I", len(payload)) + payload + b"\x00" * (len(payload) & 1)


def webp_of(*chunks: bytes) -> bytes:
    body = b"WEBP" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def le24(value: int) -> bytes:
    return value.to_bytes(3, "little")


# -- one builder per header that declares a size -------------------------------------------

SOF0_AT = sample_jpeg().index(b"\xff\xc0")


def jpeg(width: int, height: int, *, marker: int = 0xC0) -> bytes:
    """The sample JPEG with its frame header (``marker``, SOF0 by default) declaring the size."""
    plain = sample_jpeg()
    sof = bytes([0xFF, marker, 0, 11, 8]) + struct.pack(">HH", height, width) + b"\x01\x01\x11\x00"
    return plain[:SOF0_AT] + sof + plain[SOF0_AT + 13 :]


def ihdr(width: int, height: int, depth: int = 8, colour: int = 2, *rest: int) -> bytes:
    return struct.pack(">IIBB", width, height, depth, colour) + bytes(rest or (0, 0, 0))


def png(width: int, height: int) -> bytes:
    """The sample PNG with its IHDR declaring the size."""
    plain = sample_png()
    return plain[:8] + png_chunk(b"IHDR", ihdr(width, height)) + plain[33:]


VP8 = WEBP_SIMPLE[12:]  # a "VP8 " chunk: 8-byte chunk header, then the bitstream


def vp8_payload(width: int, height: int, *, scale: int = 0) -> bytes:
    payload = bytearray(VP8[8:])
    payload[6:10] = struct.pack("<HH", width | scale << 14, height | scale << 14)
    return bytes(payload)


def vp8l_payload(width: int, height: int, *, version: int = 0) -> bytes:
    bits = (width - 1) | (height - 1) << 14 | version << 29
    return b"\x2f" + struct.pack("<I", bits) + b"\x00\x00\x00"


def webp_vp8(width: int, height: int) -> bytes:
    """A simple lossy WebP whose VP8 bitstream declares the size."""
    return webp_of(webp_chunk(b"VP8 ", vp8_payload(width, height)))


def webp_vp8l(width: int, height: int) -> bytes:
    """A simple lossless WebP whose VP8L bitstream declares the size."""
    return webp_of(webp_chunk(b"VP8L", vp8l_payload(width, height)))


def vp8x(width: int, height: int, flags: int = 0) -> bytes:
    return webp_chunk(b"VP8X", bytes([flags, 0, 0, 0]) + le24(width - 1) + le24(height - 1))


def webp_extended(width: int, height: int) -> bytes:
    """An extended still WebP: canvas and VP8L image both of the size."""
    return webp_of(vp8x(width, height), webp_chunk(b"VP8L", vp8l_payload(width, height)))


ANIM = webp_chunk(b"ANIM", bytes(6))


def anmf(payload: bytes, *, left: int = 0, top: int = 0, width: int = 1, height: int = 1) -> bytes:
    header = le24(left // 2) + le24(top // 2) + le24(width - 1) + le24(height - 1) + bytes(4)
    return webp_chunk(b"ANMF", header + payload)


def webp_canvas(width: int, height: int) -> bytes:
    """An animated WebP with a canvas of the size and one 1x1 frame: only the canvas varies."""
    return webp_of(vp8x(width, height, 0x02), ANIM, anmf(VP8))


@attrs.frozen
class Format:
    """A header that declares a size, the range its fields can hold, and a builder."""

    name: str
    build: Callable[[int, int], bytes]
    smallest: int  # 0 where the format stores the size, 1 where it stores the size minus one
    largest: int


FORMATS = (
    Format("JPEG", jpeg, 0, 2**16 - 1),
    Format("PNG", png, 0, 2**32 - 1),
    Format("WebP VP8", webp_vp8, 0, 2**14 - 1),
    Format("WebP VP8L", webp_vp8l, 1, 2**14),
    Format("WebP VP8X+VP8L", webp_extended, 1, 2**14),
    Format("WebP VP8X canvas", webp_canvas, 1, 2**24),
)
ZERO_CAPABLE = [f for f in FORMATS if f.smallest == 0]
BY_NAME = {f.name: f for f in FORMATS}


def refusal(data: bytes) -> str:
    with pytest.raises(InvalidPhoto) as caught:
        validate_photo(data)
    return caught.value.problem


def test_the_limit_is_fifty_megapixels_and_public() -> None:
    assert MAX_PHOTO_PIXELS == LIMIT
    assert "MAX_PHOTO_PIXELS" in photos.__all__
    assert AT_LIMIT[0] * AT_LIMIT[1] == LIMIT
    assert ONE_OVER[0] * ONE_OVER[1] == LIMIT + 1


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_the_builders_make_valid_one_pixel_images(fmt: Format) -> None:
    data = fmt.build(1, 1)
    assert validate_photo(data).data == data


# -- zero sizes -----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(0, 1), (1, 0), (0, 0), (0, 5_000), (5_000, 0)])
@pytest.mark.parametrize("fmt", ZERO_CAPABLE, ids=lambda f: f.name)
def test_a_zero_width_or_height_is_refused(fmt: Format, size: tuple[int, int]) -> None:
    problem = refusal(fmt.build(*size))
    assert f"declares {size[0]} x {size[1]} pixels" in problem
    assert "at least 1" in problem


@pytest.mark.parametrize("marker", sorted(photos._FRAME - {0xDE}), ids=lambda m: f"{m:02X}")
@pytest.mark.parametrize("size", [(0, 8), (8, 0)])
def test_every_kind_of_jpeg_frame_header_refuses_a_zero_size(
    marker: int, size: tuple[int, int]
) -> None:
    assert validate_photo(jpeg(8, 8, marker=marker)).data == jpeg(8, 8, marker=marker)
    problem = refusal(jpeg(*size, marker=marker))
    assert problem.startswith(f"JPEG frame header 0xFF{marker:02X} at byte {SOF0_AT}")


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f.smallest == 1], ids=lambda f: f.name)
def test_webp_sizes_stored_minus_one_cannot_be_zero(fmt: Format) -> None:
    """VP8L and VP8X store width - 1 and height - 1: all-zero fields mean 1 x 1, not 0 x 0."""
    data = fmt.build(1, 1)
    assert b"\x2f\x00\x00\x00\x00" in data or le24(0) * 2 in data
    assert validate_photo(data).data == data


def test_a_vp8_scaling_request_is_not_part_of_the_size() -> None:
    scaled = webp_of(webp_chunk(b"VP8 ", vp8_payload(1, 1, scale=3)))
    assert validate_photo(scaled).data == scaled
    problem = refusal(webp_of(webp_chunk(b"VP8 ", vp8_payload(0, 1, scale=3))))
    assert "declares 0 x 1 pixels" in problem


# -- the limit ------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [AT_LIMIT, AT_LIMIT[::-1]])
@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_exactly_the_limit_is_accepted(fmt: Format, size: tuple[int, int]) -> None:
    data = fmt.build(*size)
    assert validate_photo(data).data == data


def test_a_png_one_pixel_high_and_fifty_million_wide_is_accepted() -> None:
    for size in ((LIMIT, 1), (1, LIMIT)):
        assert validate_photo(png(*size)).data == png(*size)
    assert "(50000001)" in refusal(png(LIMIT + 1, 1))


@pytest.mark.parametrize("size", [ONE_OVER, ONE_OVER[::-1]])
@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_one_pixel_over_the_limit_is_refused_naming_size_and_limit(
    fmt: Format, size: tuple[int, int]
) -> None:
    problem = refusal(fmt.build(*size))
    assert f"declares {size[0]} x {size[1]} pixels (50000001)" in problem
    assert "at most 50000000 pixels (50 megapixels) are allowed" in problem


HUGE = [
    ("JPEG", 65_535, 65_535),  # the largest a JPEG can declare
    ("PNG", 100_000, 100_000),
    ("PNG", 2**31 - 1, 2**31 - 1),  # the largest PNG allows
    ("PNG", 2**32 - 1, 2**32 - 1),  # beyond it
    ("WebP VP8", 16_383, 16_383),
    ("WebP VP8L", 16_384, 16_384),
    ("WebP VP8X+VP8L", 16_384, 16_384),
    ("WebP VP8X canvas", 100_000, 100_000),
    ("WebP VP8X canvas", 2**24, 2**24),
    ("WebP VP8X canvas", 2**24, 1_000),
]


@pytest.mark.parametrize(("name", "width", "height"), HUGE)
def test_a_decompression_bomb_is_refused(name: str, width: int, height: int) -> None:
    data = BY_NAME[name].build(width, height)
    assert len(data) < 200  # a few hundred bytes declaring gigapixels
    problem = refusal(data)
    assert f"declares {width} x {height} pixels ({width * height});" in problem


OVERFLOWS = [
    # Multiplied in 32 bits these wrap to 65536 or less, or turn negative, and would pass.
    ("PNG", 2**16, 2**16 + 1),
    ("PNG", 2**16, 2**16),
    ("PNG", 2**31, 2),
    ("PNG", 2**32 - 1, 2),
    ("WebP VP8X canvas", 2**16, 2**16 + 1),
    ("WebP VP8X canvas", 2**24, 2**8),
    ("JPEG", 65_535, 32_769),  # 2147516415: negative as a signed 32-bit number
]


@pytest.mark.parametrize(("name", "width", "height"), OVERFLOWS)
def test_a_size_whose_product_overflows_32_bits_is_refused(
    name: str, width: int, height: int
) -> None:
    product = width * height
    assert product > 2**31 - 1
    assert product % 2**32 <= LIMIT or product % 2**32 >= 2**31
    problem = refusal(BY_NAME[name].build(width, height))
    assert f"({product});" in problem


def sizes(fmt: Format) -> st.SearchStrategy[tuple[int, int]]:
    """Widths anywhere in the format's range; heights often right at ``limit // width``."""
    side = st.integers(fmt.smallest, fmt.largest)
    edges = st.sampled_from([fmt.smallest, 1, 2, fmt.largest])

    @st.composite
    def pair(draw: st.DrawFn) -> tuple[int, int]:
        width = draw(st.one_of(side, edges))
        near = LIMIT // max(width, 1) + draw(st.integers(-1, 1))
        height = draw(st.one_of(side, edges, st.just(near)))
        height = min(max(height, fmt.smallest), fmt.largest)
        return (width, height) if draw(st.booleans()) else (height, width)

    return pair()


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_a_declared_size_is_accepted_exactly_when_it_has_pixels_within_the_limit(
    fmt: Format,
) -> None:
    @settings(max_examples=300, deadline=None)
    @given(size=sizes(fmt))
    def check(size: tuple[int, int]) -> None:
        width, height = size
        data = fmt.build(width, height)
        if width >= 1 and height >= 1 and width * height <= LIMIT:
            assert validate_photo(data).data == data
        else:
            with pytest.raises(InvalidPhoto, match=f"declares {width} x {height} pixels"):
                validate_photo(data)

    check()


# -- headers that disagree or lie -----------------------------------------------------------


def jpeg_with_frames(*frames: bytes, after_scan: bytes = b"") -> bytes:
    """The sample JPEG with ``frames`` in place of its SOF0, and segments after the scan."""
    plain = sample_jpeg()
    data = plain[:SOF0_AT] + b"".join(frames) + plain[SOF0_AT + 13 :]
    return data[:-2] + after_scan + data[-2:]


def frame(marker: int, width: int, height: int, components: bytes = b"\x01\x11\x00") -> bytes:
    payload = b"\x08" + struct.pack(">HH", height, width) + bytes([len(components) // 3])
    payload += components
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def dnl(lines: int) -> bytes:
    return b"\xff\xdc\x00\x04" + struct.pack(">H", lines)


def test_jpeg_frame_builder_matches_the_sample() -> None:
    assert jpeg_with_frames(frame(0xC0, 8, 8)) == sample_jpeg()


@pytest.mark.parametrize(
    ("frames", "problem"),
    [
        ([frame(0xC0, 8, 8), frame(0xC0, 8, 8)], "second frame header at byte"),
        ([frame(0xC0, 8, 8), frame(0xC2, 4000, 4000)], "second frame header"),
        ([frame(0xC0, 8, 8), frame(0xDE, 8, 8)], r"hierarchical header \(DHP\) out of place"),
        ([frame(0xDE, 8, 8), frame(0xDE, 8, 8), frame(0xC5, 8, 8)], "out of place"),
        ([frame(0xDE, 8, 8), frame(0xC5, 9, 8)], r"\(9 x 8\) is larger than the image \(8 x 8\)"),
        ([frame(0xDE, 8, 8), frame(0xC5, 8, 9)], "is larger than the image"),
        ([frame(0xDE, 8, 8)], "scan starts before a frame"),
        ([frame(0xC0, 8, 8, b"")], "too short or too long for its components"),
        ([frame(0xC0, 8, 8, b"\x01\x11\x00\x02")], "too short or too long"),
        ([b"\xff\xc0\x00\x0b\x08\x00\x08\x00\x08\x02\x01\x11\x00"], "too short or too"),
        ([b"\xff\xc0\x00\x07\x08\x00\x08\x00\x08"], "too short or too long"),
        ([b"\xff\xc0\x00\x02"], "too short or too long"),
        ([frame(0xDE, 0, 8), frame(0xC5, 0, 8)], "0xFFDE at byte .* declares 0 x 8 pixels"),
        ([frame(0xDE, *ONE_OVER), frame(0xC5, 8, 8)], "0xFFDE .*50000001"),
    ],
)
def test_jpeg_frame_headers_that_disagree_or_lie_are_refused(
    frames: list[bytes], problem: str
) -> None:
    with pytest.raises(InvalidPhoto, match=problem):
        validate_photo(jpeg_with_frames(*frames))


def test_jpeg_hierarchical_frames_within_the_dhp_size_are_accepted() -> None:
    data = jpeg_with_frames(frame(0xDE, 8, 8), frame(0xC5, 4, 4), frame(0xC5, 8, 8))
    assert validate_photo(data).data == data
    big = jpeg_with_frames(frame(0xDE, *AT_LIMIT), frame(0xC5, *AT_LIMIT))
    assert validate_photo(big).data == big


def test_jpeg_dnl_must_repeat_the_frame_height() -> None:
    same = jpeg_with_frames(frame(0xC0, 8, 8), after_scan=dnl(8))
    assert validate_photo(same).data == same
    for wrong in (dnl(9), dnl(0), dnl(8)[:-1], b"\xff\xdc\x00\x05\x00\x08\x00"):
        data = jpeg_with_frames(frame(0xC0, 8, 8), after_scan=wrong)
        assert "does not repeat the height 8 of its frame" in refusal(data)
    before_any_frame = jpeg_with_frames(dnl(0), frame(0xC0, 8, 8))
    assert "(DNL) at byte" in refusal(before_any_frame)


@pytest.mark.parametrize(
    ("depth", "colour"),
    [(d, 0) for d in (1, 2, 4, 8, 16)]
    + [(d, 2) for d in (8, 16)]
    + [(d, 3) for d in (1, 2, 4, 8)]
    + [(d, 4) for d in (8, 16)]
    + [(d, 6) for d in (8, 16)],
)
def test_png_accepts_every_bit_depth_and_colour_type_it_defines(depth: int, colour: int) -> None:
    data = sample_png()[:8] + png_chunk(b"IHDR", ihdr(3, 2, depth, colour)) + sample_png()[33:]
    assert validate_photo(data).data == data


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        (ihdr(1, 1, 4, 2), "colour type 2 with bit depth 4"),
        (ihdr(1, 1, 16, 3), "colour type 3 with bit depth 16"),
        (ihdr(1, 1, 8, 1), "colour type 1 with bit depth 8"),
        (ihdr(1, 1, 8, 7), "colour type 7"),
        (ihdr(1, 1, 0, 0), "bit depth 0"),
        (ihdr(1, 1, 8, 2, 1, 0, 0), "unknown compression, filter or interlace"),
        (ihdr(1, 1, 8, 2, 0, 1, 0), "unknown compression"),
        (ihdr(1, 1, 8, 2, 0, 0, 2), "unknown compression"),
    ],
)
def test_png_refuses_an_image_header_with_undefined_fields(header: bytes, problem: str) -> None:
    data = sample_png()[:8] + png_chunk(b"IHDR", header) + sample_png()[33:]
    with pytest.raises(InvalidPhoto, match=problem):
        validate_photo(data)


@pytest.mark.parametrize("size", [(1, 1), (2, 2), AT_LIMIT])
def test_png_refuses_a_second_image_header(size: tuple[int, int]) -> None:
    data = sample_png(extra=png_chunk(b"IHDR", ihdr(*size)))
    problem = refusal(data)
    assert problem.startswith("PNG has a second image header (IHDR) at byte")


def test_png_ihdr_checks_run_after_the_crc() -> None:
    data = bytearray(png(0, 0))
    data[29] ^= 1  # the CRC of the IHDR
    assert "bad CRC" in refusal(bytes(data))


def vp8_with(**changes: int) -> bytes:
    """The sample VP8 bitstream with its frame tag fields changed."""
    tag = int.from_bytes(VP8[8:11], "little")
    fields = {"key": tag & 1, "version": tag >> 1 & 7, "show": tag >> 4 & 1, "part": tag >> 5}
    fields.update(changes)
    tag = fields["key"] | fields["version"] << 1 | fields["show"] << 4 | fields["part"] << 5
    return tag.to_bytes(3, "little") + VP8[11:]


def test_the_vp8_tag_builder_matches_the_sample() -> None:
    assert vp8_with() == VP8[8:]
    assert vp8_with(version=3) != VP8[8:]


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (vp8_with(key=1), r"\(VP8\) at byte 12 is not a shown key frame"),
        (vp8_with(show=0), "not a shown key frame"),
        (vp8_with(version=4), "not a shown key frame"),
        (vp8_with(part=len(VP8) - 8 - 9), "declares more data than its chunk holds"),
        (VP8[8:11] + b"\x00\x01\x2a" + VP8[14:], "no start code"),
        (VP8[8:17], "too short for its header"),
        (b"", "too short for its header"),
    ],
)
def test_a_vp8_header_that_lies_is_refused(payload: bytes, problem: str) -> None:
    with pytest.raises(InvalidPhoto, match=problem):
        validate_photo(webp_of(webp_chunk(b"VP8 ", payload)))
    with pytest.raises(InvalidPhoto, match=problem.replace("12", r"\d+")):
        validate_photo(webp_of(vp8x(1, 1), webp_chunk(b"VP8 ", payload)))


def test_vp8_versions_up_to_3_and_the_longest_first_partition_are_accepted() -> None:
    for payload in (vp8_with(version=3), vp8_with(part=len(VP8) - 8 - 10)):
        data = webp_of(webp_chunk(b"VP8 ", payload))
        assert validate_photo(data).data == data


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (b"\x2e" + vp8l_payload(1, 1)[1:], "has no valid header"),
        (vp8l_payload(1, 1)[:4], "has no valid header"),
        (vp8l_payload(1, 1, version=1), "has an unknown version"),
        (vp8l_payload(1, 1, version=4), "has an unknown version"),
    ],
)
def test_a_vp8l_header_that_lies_is_refused(payload: bytes, problem: str) -> None:
    with pytest.raises(InvalidPhoto, match=rf"\(VP8L\) at byte 12 {problem}"):
        validate_photo(webp_of(webp_chunk(b"VP8L", payload)))


@pytest.mark.parametrize(
    ("canvas", "image"),
    [((2, 2), (1, 1)), ((1, 1), (2, 2)), ((3, 2), (2, 3)), ((16_384, 1), (16_384, 2))],
)
def test_a_still_webp_image_must_be_the_size_of_its_canvas(
    canvas: tuple[int, int], image: tuple[int, int]
) -> None:
    lossless = webp_of(vp8x(*canvas), webp_chunk(b"VP8L", vp8l_payload(*image)))
    problem = refusal(lossless)
    assert f"(VP8L) at byte 30 is {image[0]} x {image[1]} pixels" in problem
    assert f"the canvas (VP8X) says {canvas[0]} x {canvas[1]}" in problem
    lossy = webp_of(vp8x(*canvas), webp_chunk(b"VP8 ", vp8_payload(*image)))
    assert "(VP8) at byte 30" in refusal(lossy)


def test_the_sample_extended_webp_agrees_with_its_canvas() -> None:
    assert validate_photo(sample_webp()).data == sample_webp()
    two = webp_of(vp8x(2, 3), webp_chunk(b"VP8 ", vp8_payload(2, 3)))
    assert validate_photo(two).data == two


def animation(canvas: tuple[int, int], *frames: bytes) -> bytes:
    return webp_of(vp8x(*canvas, 0x02), ANIM, *frames)


def lossless_frame(left: int, top: int, width: int, height: int) -> bytes:
    payload = webp_chunk(b"VP8L", vp8l_payload(width, height))
    return anmf(payload, left=left, top=top, width=width, height=height)


@settings(max_examples=300, deadline=None)
@given(
    canvas=st.tuples(st.integers(1, 40), st.integers(1, 40)),
    place=st.tuples(st.integers(0, 20), st.integers(0, 20)),
    size=st.tuples(st.integers(1, 40), st.integers(1, 40)),
)
def test_an_animation_frame_is_accepted_exactly_when_it_fits_the_canvas(
    canvas: tuple[int, int], place: tuple[int, int], size: tuple[int, int]
) -> None:
    left, top = 2 * place[0], 2 * place[1]  # ANMF offsets are even
    data = animation(canvas, lossless_frame(left, top, *size))
    if left + size[0] <= canvas[0] and top + size[1] <= canvas[1]:
        assert validate_photo(data).data == data
    else:
        with pytest.raises(
            InvalidPhoto, match=f"does not fit the {canvas[0]} x {canvas[1]} canvas"
        ):
            validate_photo(data)


def test_an_animation_frame_image_must_be_the_frame_size() -> None:
    wrong = anmf(webp_chunk(b"VP8L", vp8l_payload(1, 1)), width=2, height=2)
    problem = refusal(animation((2, 2), wrong))
    assert "(VP8L) at byte 68 is 1 x 1 pixels; its frame (ANMF) at byte 44 says 2 x 2" in problem
    lossy = anmf(VP8, width=1, height=2)
    assert "(VP8) at byte 68 is 1 x 1 pixels" in refusal(animation((2, 2), lossy))
    broken = anmf(webp_chunk(b"VP8 ", vp8_with(key=1)))
    assert "not a shown key frame" in refusal(animation((1, 1), broken))


def test_an_animation_on_the_largest_allowed_canvas_is_accepted() -> None:
    data = animation(AT_LIMIT, lossless_frame(9_998, 4_998, 2, 2), anmf(VP8, left=0, top=0))
    assert validate_photo(data).data == data
    over = animation(AT_LIMIT, lossless_frame(10_000, 0, 1, 1))
    assert "(1 x 1 at 10000, 0) does not fit the 10000 x 5000 canvas" in refusal(over)


# -- naming the photo -----------------------------------------------------------------------

ITEM_FIELDS = ["items[0].photos[0]", "items[0].photos[1]", "items[1].photos[0]"]


@pytest.mark.parametrize("bad", [0, 1, 2])
def test_validate_photos_names_the_bad_upload_by_the_field_given(bad: int) -> None:
    uploads = [sample_png(), sample_jpeg(), sample_webp()]
    uploads[bad] = png(0, 1)
    with pytest.raises(InvalidPhoto) as caught:
        validate_photos(uploads, fields=ITEM_FIELDS)
    assert caught.value.field == ITEM_FIELDS[bad]
    assert str(caught.value) == (
        f"{ITEM_FIELDS[bad]}: PNG image header (IHDR) declares 0 x 1 pixels; "
        "width and height must be at least 1"
    )


def test_validate_photos_names_the_first_bad_upload_when_several_are() -> None:
    uploads = [sample_png(), png(*ONE_OVER), b"not an image"]
    with pytest.raises(InvalidPhoto) as caught:
        validate_photos(uploads, fields=("items[0].photos[0]", "items[1].photos[0]", "x"))
    assert caught.value.field == "items[1].photos[0]"
    assert "50000001" in caught.value.problem


def test_validate_photos_without_fields_numbers_the_uploads() -> None:
    with pytest.raises(InvalidPhoto) as caught:
        validate_photos([sample_png(), webp_vp8(0, 0)])
    assert caught.value.field == "photos[1]"
    with pytest.raises(InvalidPhoto) as caught:
        validate_photos([sample_png(), webp_vp8(0, 0)], fields=None)
    assert caught.value.field == "photos[1]"


def test_validate_photos_with_fields_returns_the_photos_in_order() -> None:
    uploads = [sample_webp(), sample_png(metadata=True), sample_jpeg()]
    result = validate_photos(uploads, fields=ITEM_FIELDS)
    assert [p.content_type for p in result] == ["image/webp", "image/png", "image/jpeg"]
    assert result[1].data == sample_png()
    assert validate_photos([], fields=[]) == []


@pytest.mark.parametrize(
    ("count", "fields"),
    [(3, ITEM_FIELDS[:2]), (2, ITEM_FIELDS), (0, ["photos[0]"]), (2, "ab")],
)
def test_validate_photos_refuses_fields_that_do_not_name_each_upload(
    count: int, fields: list[str] | str
) -> None:
    with pytest.raises(ValueError, match=f"must name each of the {count} uploads") as caught:
        validate_photos([sample_png()] * count, fields=fields)
    assert not isinstance(caught.value, InvalidPhoto)


def test_too_many_photos_is_still_named_photos_with_fields() -> None:
    fields = [f"items[{i}].photos[0]" for i in range(11)]
    with pytest.raises(InvalidPhoto, match="11 photos; at most 10") as caught:
        validate_photos([sample_png()] * 11, fields=fields)
    assert caught.value.field == "photos"


def test_an_error_about_a_size_carries_nothing_but_the_size() -> None:
    data = png(*ONE_OVER)
    problem = refusal(data)
    assert problem == (
        "PNG image header (IHDR) declares 3561 x 14041 pixels (50000001); "
        "at most 50000000 pixels (50 megapixels) are allowed"
    )
