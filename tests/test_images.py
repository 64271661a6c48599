"""prepare_image: edit input images are checked and normalised, or refused with a clear reason.

Every image is generated here with Pillow (or crafted byte by byte), so nothing is read from disk.
The limits come from docs/dashscope.md §Input images: JPEG/PNG (no alpha)/BMP/WEBP, each side
384–5000 px, and our own 7.5 MB cap (under 10 MB whether DashScope counts raw or base64 bytes).
"""

from __future__ import annotations

import io
import os
import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

from bot.errors import InputRejected
from bot.media import inputs
from bot.media.inputs import PreparedImage, prepare_image
from bot.presenter import describe, utc_time
from tests.data_uri import data_uri_bytes

# --- helpers ----------------------------------------------------------------------------------


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def gradient(width: int, height: int) -> Image.Image:
    """An RGB picture with structure (so encoders do real work) that still compresses well."""
    down = Image.linear_gradient("L").resize((width, height))
    across = Image.linear_gradient("L").transpose(Image.Transpose.ROTATE_90).resize((width, height))
    return Image.merge("RGB", (down, across, Image.new("L", (width, height), 77)))


def noise(width: int, height: int) -> Image.Image:
    return Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))


def decode(prepared: PreparedImage) -> Image.Image:
    image = Image.open(io.BytesIO(data_uri_bytes(prepared.data_uri)))
    image.load()
    return image


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
    )


def crafted_png(width: int, height: int, bit_depth: int = 1, colour_type: int = 0) -> bytes:
    """A tiny PNG whose header claims WIDTH×HEIGHT; its pixel data is a few bytes of zeros."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + png_chunk(b"IEND", b"")
    )


def rejected(data: bytes, index: int = 1) -> InputRejected:
    with pytest.raises(InputRejected) as caught:
        prepare_image(data, index)
    assert len(caught.value.problems) == 1
    return caught.value


def assert_data_uri(prepared: PreparedImage, mime: str) -> bytes:
    assert prepared.mime == mime
    assert prepared.data_uri.startswith(f"data:{mime};base64,")
    raw = data_uri_bytes(prepared.data_uri)
    assert prepared.byte_size == len(raw)
    return raw


# --- accepted as they are -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "mime", "options"),
    [
        ("JPEG", "image/jpeg", {"quality": 90}),
        ("PNG", "image/png", {}),
        ("WEBP", "image/webp", {"quality": 80}),
        ("WEBP", "image/webp", {"lossless": True}),
        ("BMP", "image/bmp", {}),
    ],
)
def test_acceptable_images_pass_through_byte_for_byte(fmt, mime, options):
    original = encode(gradient(640, 480), fmt, **options)
    prepared = prepare_image(original)
    assert assert_data_uri(prepared, mime) == original
    assert (prepared.width, prepared.height) == (640, 480)
    assert prepared.changes == ()


def test_exif_orientation_1_is_not_a_change():
    """An EXIF block that says "upright" must not stop the image passing through untouched."""
    exif = Image.Exif()
    exif[0x0112] = 1
    original = encode(gradient(500, 400), "JPEG", exif=exif)
    prepared = prepare_image(original)
    assert prepared.changes == ()
    assert data_uri_bytes(prepared.data_uri) == original


def test_boundary_sides_pass_through():
    for size in [(384, 384), (384, 5000), (5000, 384)]:
        original = encode(Image.new("RGB", size, (1, 2, 3)), "PNG")
        prepared = prepare_image(original)
        assert (prepared.width, prepared.height) == size
        assert data_uri_bytes(prepared.data_uri) == original


# --- fixed, and the user is told --------------------------------------------------------------


def test_rgba_png_is_flattened_onto_white():
    image = Image.new("RGBA", (400, 400), (0, 0, 0, 0))  # fully transparent black
    image.paste((200, 0, 0, 255), (200, 0, 400, 400))  # right half opaque red
    image.paste((0, 0, 200, 128), (0, 300, 100, 400))  # a half-transparent blue corner
    prepared = prepare_image(encode(image, "PNG"))
    assert_data_uri(prepared, "image/png")
    assert prepared.changes == ("flattened transparency onto white",)
    result = decode(prepared)
    assert result.mode == "RGB"
    assert result.getpixel((10, 10)) == (255, 255, 255)  # was transparent
    assert result.getpixel((390, 10)) == (200, 0, 0)
    red, green, blue = result.getpixel((50, 350))  # blended half-way towards white
    assert 120 <= red <= 135 and 120 <= green <= 135 and 220 <= blue <= 235


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_with_transparency_is_flattened(fmt):
    image = Image.new("P", (400, 400), 0)
    image.putpalette([0, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 6))
    image.paste(1, (200, 0, 400, 400))
    data = encode(image, fmt, transparency=0)
    assert Image.open(io.BytesIO(data)).info.get("transparency") == 0
    prepared = prepare_image(data)
    assert "flattened transparency onto white" in prepared.changes
    result = decode(prepared)
    assert result.mode == "RGB"
    assert result.getpixel((10, 10)) == (255, 255, 255)
    assert result.getpixel((390, 10)) == (0, 0, 255)


def test_cmyk_jpeg_becomes_rgb():
    image = Image.new("CMYK", (400, 400), (0, 255, 255, 0))  # red in CMYK
    data = encode(image, "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    prepared = prepare_image(data)
    assert prepared.changes == ("converted to RGB colour",)
    result = decode(prepared)
    assert result.mode == "RGB"
    red, green, blue = result.getpixel((200, 200))
    assert red > 240 and green < 15 and blue < 15


def _grey16(mode: str) -> Image.Image:
    """Left third black, middle third mid-grey, right third white, in 16 bits per pixel."""
    order = ">" if mode.endswith("B") else "<"
    row = struct.pack(f"{order}600H", *([0] * 200 + [32768] * 200 + [65535] * 200))
    return Image.frombytes(mode, (600, 400), row * 400)


@pytest.mark.parametrize(
    ("mode", "fmt", "opened_mode"),
    [("I;16", "PNG", "I;16"), ("I;16", "TIFF", "I;16"), ("I;16B", "TIFF", "I;16B")],
)
def test_16_bit_greyscale_is_scaled_into_8_bits(mode, fmt, opened_mode):
    data = encode(_grey16(mode), fmt)
    assert Image.open(io.BytesIO(data)).mode == opened_mode
    prepared = prepare_image(data)
    assert prepared.changes == ("converted to 8-bit colour",)
    result = decode(prepared)
    assert result.mode == "RGB"
    assert result.getpixel((100, 100)) == (0, 0, 0)
    assert result.getpixel((300, 100)) in {(127, 127, 127), (128, 128, 128)}  # not clipped to 255
    assert result.getpixel((500, 100)) == (255, 255, 255)


def test_single_frame_gif_becomes_rgb():
    image = Image.new("RGB", (400, 400), (255, 0, 0)).convert("P")
    prepared = prepare_image(encode(image, "GIF"))
    assert prepared.mime == "image/png"
    assert prepared.changes == ("converted to RGB colour",)
    assert decode(prepared).getpixel((0, 0)) == (255, 0, 0)


@pytest.mark.parametrize(("fmt", "options"), [("GIF", {}), ("WEBP", {"lossless": True})])
def test_animated_images_use_the_first_frame(fmt, options):
    frames = [Image.new("RGB", (400, 400), colour) for colour in [(255, 0, 0), (0, 255, 0)]]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, **options)
    opened = Image.open(io.BytesIO(data))
    assert opened.is_animated and opened.n_frames == 2
    prepared = prepare_image(data)
    assert prepared.changes[0] == "used the first frame"
    assert decode(prepared).getpixel((200, 200)) == (255, 0, 0)


def test_exif_rotation_is_applied():
    image = Image.new("RGB", (600, 400), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 100, 100))  # a red mark at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    prepared = prepare_image(encode(image, "JPEG", quality=95, exif=exif))
    assert prepared.changes == ("applied EXIF rotation",)
    assert (prepared.width, prepared.height) == (400, 600)
    result = decode(prepared)
    assert result.size == (400, 600)
    # Rotating clockwise carries the stored top-left corner to the top-right.
    red, _, blue = result.getpixel((380, 20))
    assert red > 200 and blue < 60
    red, _, blue = result.getpixel((20, 20))
    assert blue > 200 and red < 60


def test_oversized_image_is_scaled_down():
    prepared = prepare_image(encode(Image.new("RGB", (6000, 1000), (9, 99, 199)), "PNG"))
    assert (prepared.width, prepared.height) == (5000, 833)
    assert prepared.changes == ("scaled down to 5000×833",)
    result = decode(prepared)
    assert result.size == (5000, 833)
    assert result.getpixel((2500, 400)) == (9, 99, 199)


def test_tiff_is_accepted_and_converted_to_png():
    image = gradient(500, 400)
    prepared = prepare_image(encode(image, "TIFF"))
    assert_data_uri(prepared, "image/png")
    result = decode(prepared)
    assert result.format == "PNG" and result.mode == "RGB"
    assert result.tobytes() == image.tobytes()  # lossless


def test_big_noisy_png_is_reencoded_as_jpeg_under_the_cap():
    data = encode(noise(1800, 1600), "PNG", compress_level=1)
    assert len(data) > inputs.INPUT_MAX_BYTES
    prepared = prepare_image(data)
    raw = assert_data_uri(prepared, "image/jpeg")
    assert len(raw) <= 7_500_000
    assert "re-encoded as JPEG to fit the 7.5 MB limit" in prepared.changes
    result = decode(prepared)
    assert result.format == "JPEG"
    assert min(result.size) >= 384 and max(result.size) <= 5000


def test_small_bmp_over_the_byte_cap_is_reencoded():
    """Uncompressed BMP over 7.5 MB: same pixels, smaller container."""
    image = Image.new("RGB", (2000, 1500), (30, 60, 90))
    data = encode(image, "BMP")
    assert len(data) > inputs.INPUT_MAX_BYTES
    prepared = prepare_image(data)
    assert prepared.mime == "image/png"
    assert prepared.byte_size <= inputs.INPUT_MAX_BYTES
    assert decode(prepared).getpixel((1000, 700)) == (30, 60, 90)


# --- refused, saying what to change ---------------------------------------------------------------


def check_message(error: InputRejected, key: str, en: str, zh: str) -> None:
    assert [problem.key for problem in error.problems] == [key]
    assert describe(error, "en", moment=utc_time) == en
    assert describe(error, "zh", moment=utc_time) == zh
    assert str(error) == key  # the log line names the check; the words are the member's


def test_empty_file():
    check_message(
        rejected(b""),
        "image.empty",
        "Image 1 is an empty file.",
        "第 1 张图片是空文件。",
    )


def test_index_is_named_in_the_message():
    error = rejected(b"", index=3)
    assert describe(error, "en", moment=utc_time) == "Image 3 is an empty file."
    assert describe(error, "zh", moment=utc_time) == "第 3 张图片是空文件。"


UNREADABLE_EN = "Image 1 is not a readable image. Use a JPEG, PNG, WEBP, BMP or GIF file."
UNREADABLE_ZH = "第 1 张图片无法识别，请使用 JPEG、PNG、WEBP、BMP 或 GIF 文件。"


def _truncated(fmt: str) -> bytes:
    data = encode(noise(500, 500), fmt)
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(os.urandom(4096), id="random-bytes"),
        pytest.param(b"\x89PNG\r\n\x1a\n", id="png-signature-only"),
        pytest.param(b"hello, this is a text file that someone named photo.png\n" * 20, id="text"),
        pytest.param(_truncated("PNG"), id="truncated-png"),
        pytest.param(_truncated("JPEG"), id="truncated-jpeg"),
        pytest.param(encode(gradient(500, 500), "PNG")[:-30], id="png-without-end"),
    ],
)
def test_unreadable(data):
    check_message(rejected(data), "image.unreadable", UNREADABLE_EN, UNREADABLE_ZH)


def test_too_small():
    check_message(
        rejected(encode(gradient(200, 200), "PNG")),
        "image.too_small",
        "Image 1 is 200×200 px; each side must be at least 384 px. Use a larger image.",
        "第 1 张图片为 200×200 像素，每边至少需要 384 像素，请换一张更大的图片。",
    )


@pytest.mark.parametrize(
    ("size", "key"),
    [
        ((383, 383), "image.too_small"),
        ((383, 4000), "image.too_small"),  # could be enlarged to 384×4010
        ((300, 3906), "image.too_small"),  # 3906 * 384 / 300 = 4999.7
        ((300, 3907), "image.too_thin"),  # 5001 once the short side reaches 384
        ((4000, 300), "image.too_thin"),
        ((20000, 10), "image.too_thin"),
        ((10, 20000), "image.too_thin"),
        ((6000, 400), "image.too_thin"),  # scaling to 5000 wide leaves 333 px
        ((6000, 460), "image.too_thin"),  # leaves 383.3 px
    ],
)
def test_shapes_that_cannot_fit(size, key):
    error = rejected(encode(Image.new("1", size, 1), "PNG"))
    assert [problem.key for problem in error.problems] == [key]


def test_long_thin_but_fixable_is_scaled():
    """6000×461 scaled to 5000 wide keeps 384.17 px: just enough."""
    prepared = prepare_image(encode(Image.new("1", (6000, 461), 1), "PNG"))
    assert (prepared.width, prepared.height) == (5000, 384)


def test_too_thin_message():
    check_message(
        rejected(encode(Image.new("1", (20000, 10), 1), "PNG")),
        "image.too_thin",
        "Image 1 is 20000×10 px: too long and thin to fit 384–5000 px per side. "
        "Crop it closer to a square.",
        "第 1 张图片为 20000×10 像素，过于细长，无法让每边都在 384–5000 像素之间，请裁剪得接近方形。",
    )


@pytest.fixture
def no_pixel_loading(monkeypatch):
    """Fail the test if Pillow starts decoding pixel data."""

    def refuse(self, *args, **kwargs):
        raise AssertionError(f"pixels of a {self.size} image were loaded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)
    monkeypatch.setattr(Image.Image, "load", refuse)


@pytest.mark.parametrize(
    ("width", "height"),
    [
        (7000, 7000),  # 49 MP: over our 40 MP limit, under Pillow's own warning
        (12000, 10000),  # 120 MP: Pillow warns (we turn the warning into a refusal)
        (20000, 20000),  # 400 MP: Pillow refuses outright
        (100000, 100000),
    ],
)
def test_decompression_bomb_is_refused_without_decoding(no_pixel_loading, width, height):
    data = crafted_png(width, height)
    assert len(data) < 200
    error = rejected(data)
    assert [problem.key for problem in error.problems] == ["image.bomb"]
    assert "too many to open safely" in describe(error, "en", moment=utc_time)
    assert "过大无法安全打开" in describe(error, "zh", moment=utc_time)


def test_bomb_message_names_the_pixel_count():
    check_message(
        rejected(crafted_png(7000, 7000)),
        "image.bomb",
        "Image 1 claims 49,000,000 pixels, too many to open safely. "
        "Use an image under 40 megapixels.",
        "第 1 张图片声称有 49,000,000 像素，过大无法安全打开，请使用 4000 万像素以下的图片。",
    )


def test_crafted_header_within_limits_but_no_data_is_unreadable():
    error = rejected(crafted_png(1000, 1000, bit_depth=8, colour_type=2))
    assert [problem.key for problem in error.problems] == ["image.unreadable"]


def test_unsupported_format_is_named():
    data = encode(gradient(400, 400), "PPM")
    check_message(
        rejected(data),
        "image.format",
        "Image 1 is PPM, which is not supported. Use JPEG, PNG, WEBP, BMP or GIF.",
        "第 1 张图片是 PPM 格式，不受支持，请使用 JPEG、PNG、WEBP、BMP 或 GIF。",
    )


def test_upload_byte_cap_is_checked_before_opening(monkeypatch):
    def must_not_open(*args, **kwargs):
        raise AssertionError("opened a file over the upload cap")

    monkeypatch.setattr(Image, "open", must_not_open)
    check_message(
        rejected(b"\x00" * (inputs.MAX_UPLOAD_BYTES + 1)),
        "image.too_many_bytes",
        "Image 1 is 52.4 MB; the limit is 52 MB. Use a smaller file.",
        "第 1 张图片有 52.4 MB，上限为 52 MB，请换一个更小的文件。",
    )


# --- property: InputRejected or a valid image, nothing else ---------------------------------------

_BASES = {
    "PNG": encode(gradient(400, 390), "PNG"),
    "BMP": encode(gradient(400, 390), "BMP"),
    "GIF": encode(gradient(400, 390).convert("P"), "GIF"),
    "JPEG": encode(gradient(400, 390), "JPEG", quality=70),
    "TIFF": encode(gradient(400, 390), "TIFF"),
}


def check_outcome(data: bytes) -> None:
    try:
        prepared = prepare_image(data)
    except InputRejected as error:
        assert error.problems
        assert describe(error, "en", moment=utc_time) and describe(error, "zh", moment=utc_time)
        return
    raw = data_uri_bytes(prepared.data_uri)
    assert len(raw) <= inputs.INPUT_MAX_BYTES
    result = Image.open(io.BytesIO(raw))
    result.load()
    assert result.format in {"JPEG", "PNG", "WEBP", "BMP"}
    assert result.mode in {"RGB", "L"}
    assert result.size == (prepared.width, prepared.height)
    assert all(384 <= side <= 5000 for side in result.size)


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow grumbles about broken TIFFs
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_random_bytes_are_refused_or_prepared(data):
    check_outcome(data)


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow grumbles about broken TIFFs
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=st.sampled_from(sorted(_BASES)),
    edits=st.lists(
        st.tuples(st.integers(min_value=0, max_value=2000), st.integers(0, 255)),
        min_size=1,
        max_size=6,
    ),
    cut=st.none() | st.integers(min_value=0, max_value=600_000),
)
def test_mutated_images_are_refused_or_prepared(base, edits, cut):
    data = bytearray(_BASES[base])
    for position, value in edits:  # mostly headers: the first 2000 bytes
        data[position % len(data)] = value
    if cut is not None:
        data = data[:cut]
    check_outcome(bytes(data))
