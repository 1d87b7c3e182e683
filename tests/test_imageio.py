"""Every kind of bad upload gets a clear ImageInputError; every odd-but-valid one becomes upright RGB.

All files are generated here (Pillow / numpy / hand-written PNG chunks) in ``tmp_path``.
"""

from __future__ import annotations

import io
import struct
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, JpegImagePlugin

from sepvit_viz import imageio
from sepvit_viz.imageio import MAX_BYTES, MAX_PIXELS, ImageInputError, load_image
from sepvit_viz.validation import UserInputError

PILLOW_GLOBALS = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)


@pytest.fixture(autouse=True)
def pillow_globals_unchanged():
    """After every test (bad inputs included) Pillow's process-wide settings are as they were."""
    yield
    assert (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES) == PILLOW_GLOBALS
    assert Image.MAX_IMAGE_PIXELS is not None and ImageFile.LOAD_TRUNCATED_IMAGES is False


# ------------------------------------------------------------------------------------ helpers
def encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def photo(w: int = 96, h: int = 64, seed: int = 0) -> Image.Image:
    """A smooth RGB picture (so JPEG keeps it recognisable) with some noise."""
    yy, xx = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(seed)
    a = np.stack([xx * 255 / w, yy * 255 / h, np.full_like(xx, 128)], axis=-1) + rng.normal(0, 8, (h, w, 3))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def png_with_declared_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width x height`` (1-bit grey) over a few bytes of data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def refused(source, match: str, **kw) -> ImageInputError:
    with pytest.raises(ImageInputError, match=match) as info:
        load_image(source, **kw)
    return info.value


# ------------------------------------------------------------------------------------ refusals
def test_error_type_is_a_user_facing_value_error():
    assert issubclass(ImageInputError, UserInputError) and issubclass(ImageInputError, ValueError)


def test_empty_upload(tmp_path):
    refused(write(tmp_path, "empty.jpg", b""), "empty")
    refused(b"", "empty")


def test_over_the_byte_limit(tmp_path):
    data = encode(photo(), "PNG")
    refused(write(tmp_path, "big.png", data), "too large", max_bytes=len(data) - 1)
    assert load_image(write(tmp_path, "ok.png", data), max_bytes=len(data)).size == (96, 64)
    # the default limit, with a sparse file (no 20 MB written to disk)
    big = tmp_path / "huge.jpg"
    with open(big, "wb") as f:
        f.write(encode(photo(), "JPEG"))
        f.truncate(MAX_BYTES + 1)
    err = refused(big, "limit is 20 MB")
    assert "MB" in str(err)


def test_text_file_named_jpg(tmp_path):
    refused(write(tmp_path, "notes.jpg", b"hello, this is not a photo\n" * 10), "text file")


def test_zip_named_jpg(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("photo.jpg", encode(photo(), "JPEG"))
    refused(write(tmp_path, "archive.jpg", buf.getvalue()), "ZIP archive")


@pytest.mark.parametrize(
    "text",
    [
        b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>',
        b'<?xml version="1.0"?>\n<!DOCTYPE svg><svg xmlns="http://www.w3.org/2000/svg"></svg>',
        b'\xef\xbb\xbf  <?xml version="1.0" encoding="UTF-8"?><svg><image href="file:///etc/passwd"/></svg>',
    ],
    ids=["svg", "xml-svg", "bom-xml-external-ref"],
)
def test_svg_is_refused_without_being_parsed(tmp_path, text):
    refused(write(tmp_path, "drawing.png", text), "SVG")


def test_truncated_jpeg(tmp_path):
    data = encode(photo(), "JPEG", quality=90)
    assert load_image(data).size == (96, 64)  # the whole file is fine
    refused(write(tmp_path, "half.jpg", data[: len(data) // 2]), "truncated or damaged")


def test_corrupt_jpeg_header(tmp_path):
    data = encode(photo(), "JPEG")
    garbage = np.random.default_rng(1).integers(0, 256, 2000, dtype=np.uint8).tobytes()
    refused(write(tmp_path, "corrupt.jpg", data[:20] + garbage), "JPEG file is damaged")


def test_truncated_png(tmp_path):
    data = encode(photo(), "PNG")
    refused(write(tmp_path, "half.png", data[: len(data) // 2]), "truncated or damaged")


def test_corrupt_png_data(tmp_path):
    data = bytearray(encode(photo(), "PNG"))
    data[len(data) // 2] ^= 0xFF  # inside IDAT: bad CRC / broken zlib stream
    refused(write(tmp_path, "corrupt.png", bytes(data)), "truncated or damaged")


def test_decompression_bomb_refused_from_header_before_decoding(tmp_path, monkeypatch):
    bomb = write(tmp_path, "bomb.png", png_with_declared_size(100_000, 100_000))
    assert bomb.stat().st_size < 200
    refused(bomb, "too large|over the limit")

    # below Pillow's own bomb threshold but above ours: only our header check can stop it, and it
    # must do so without decoding a single pixel
    w, h = 10_000, 6_000
    assert MAX_PIXELS < w * h < Image.MAX_IMAGE_PIXELS

    def no_decoding(self, *args, **kwargs):
        raise AssertionError("pixels were decoded before the size check")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    err = refused(write(tmp_path, "big.png", png_with_declared_size(w, h)), "too large")
    assert "10000 x 6000" in str(err)


def test_pillow_bomb_warning_becomes_our_error(tmp_path, monkeypatch):
    # Pillow warns between MAX_IMAGE_PIXELS and twice that; shrink it for this test only (monkeypatch
    # restores it; the autouse fixture then checks it is back)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)
    path = write(tmp_path, "warn.png", encode(photo(64, 64), "PNG"))  # 4096 px: warning, not error
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # what a server might have set: we must still refuse
        refused(path, "over the limit")


def test_one_by_one(tmp_path):
    refused(write(tmp_path, "dot.png", encode(Image.new("RGB", (1, 1)), "PNG")), "too small")


def test_one_by_five_thousand(tmp_path):
    refused(write(tmp_path, "line.png", encode(Image.new("RGB", (1, 5000)), "PNG")), "too small")


def test_extreme_aspect_ratio(tmp_path):
    refused(write(tmp_path, "strip.png", encode(Image.new("RGB", (4000, 40)), "PNG")), "elongated")
    assert load_image(write(tmp_path, "pano.png", encode(Image.new("RGB", (800, 100)), "PNG"))).size == (800, 100)


def test_twenty_thousand_square(tmp_path):
    refused(write(tmp_path, "square.png", png_with_declared_size(20_000, 20_000)), "too large")


@pytest.mark.parametrize("kind", ["directory", "missing"])
def test_not_a_regular_file(tmp_path, kind):
    path = tmp_path if kind == "directory" else tmp_path / "gone.jpg"
    refused(path, "not a regular file|could not be found")


def test_unsupported_source_type():
    refused(12345, "Expected an image")


def test_format_outside_the_allow_list_is_refused(tmp_path):
    # ICO is a format Pillow decodes but the app does not accept
    refused(write(tmp_path, "icon.jpg", encode(Image.new("RGB", (32, 32), "red"), "ICO")), "not an image we can read")


# ------------------------------------------------------------------------------------ modes
def test_cmyk_jpeg(tmp_path):
    cmyk = Image.new("CMYK", (40, 30), (0, 255, 255, 0))  # pure red in CMYK
    out = load_image(write(tmp_path, "cmyk.jpg", encode(cmyk, "JPEG", quality=95)))
    assert out.mode == "RGB" and out.size == (40, 30)
    r, g, b = np.asarray(out).reshape(-1, 3).mean(axis=0)
    assert r > 200 and g < 60 and b < 60


def test_palette_with_transparency_on_white(tmp_path):
    pal = Image.new("P", (20, 20), 1)
    pal.putpalette([0, 0, 0] + [0, 0, 255] + [0, 0, 0] * 254)
    pal.paste(0, (0, 0, 10, 20))  # left half index 0 = transparent black
    out = np.asarray(load_image(write(tmp_path, "pal.png", encode(pal, "PNG", transparency=0))))
    assert (out[:, :10] == 255).all()  # transparent -> white, not black
    assert (out[:, 10:] == [0, 0, 255]).all()


def test_rgb_with_a_transparent_colour_on_white(tmp_path):
    a = np.zeros((20, 20, 3), dtype=np.uint8)  # left half the key colour (black), right half red
    a[:, 10:, 0] = 200
    out = np.asarray(
        load_image(write(tmp_path, "key.png", encode(Image.fromarray(a, "RGB"), "PNG", transparency=(0, 0, 0))))
    )
    assert (out[:, :10] == 255).all()
    assert (out[:, 10:] == [200, 0, 0]).all()  # only the exact key colour is transparent


def test_16_bit_grey_with_a_transparent_value_on_white(tmp_path):
    a = np.full((20, 20), 5140, dtype=np.uint16)  # 5140 / 257 = 20
    a[:, :10] = 7
    img = Image.fromarray(a.astype(np.int32), "I").convert("I;16")
    path = write(tmp_path, "g16.png", encode(img, "PNG", transparency=7))
    assert Image.open(path).info.get("transparency") == 7  # the file really carries the key
    out = np.asarray(load_image(path))
    assert (out[:, :10] == 255).all() and (out[:, 10:] == 20).all()


def test_la_on_white(tmp_path):
    a = np.zeros((20, 20, 2), dtype=np.uint8)
    a[..., 0] = 50
    a[:, 10:, 1] = 255  # right half opaque dark grey, left half transparent
    out = np.asarray(load_image(write(tmp_path, "la.png", encode(Image.fromarray(a, "LA"), "PNG"))))
    assert (out[:, :10] == 255).all() and (out[:, 10:] == 50).all()


def test_rgba_on_white(tmp_path):
    a = np.zeros((20, 20, 4), dtype=np.uint8)
    a[..., 1] = 200
    a[:, 10:, 3] = 255
    a[:, :10, 3] = 0
    out = np.asarray(load_image(write(tmp_path, "rgba.png", encode(Image.fromarray(a, "RGBA"), "PNG"))))
    assert (out[:, :10] == 255).all()
    assert (out[:, 10:] == [0, 200, 0]).all()
    assert imageio.BACKGROUND == (255, 255, 255)


def _ramp16() -> np.ndarray:
    return (np.arange(32 * 32, dtype=np.uint32).reshape(32, 32) * 64).astype(np.uint16)  # 0 .. 65472


def test_sixteen_bit_grey_png(tmp_path):
    ramp = _ramp16()
    path = write(tmp_path, "grey16.png", encode(Image.fromarray(ramp), "PNG"))
    assert Image.open(path).mode.startswith("I")
    out = np.asarray(load_image(path))
    assert out.dtype == np.uint8 and out.shape == (32, 32, 3)
    np.testing.assert_array_equal(out[..., 0], np.rint(ramp / 257.0).astype(np.uint8))
    assert out[-1, -1, 0] == 255 and out[0, 0, 0] == 0  # full 16-bit range -> full 8-bit range


def test_sixteen_bit_big_endian_tiff(tmp_path):
    ramp = _ramp16()
    img = Image.frombytes("I;16B", (32, 32), ramp.astype(">u2").tobytes())
    path = write(tmp_path, "grey16b.tif", encode(img, "TIFF"))
    assert Image.open(path).mode == "I;16B"
    out = np.asarray(load_image(path))
    np.testing.assert_array_equal(out[..., 0], np.rint(ramp / 257.0).astype(np.uint8))


def test_float_tiff_scaled_by_range(tmp_path):
    values = np.linspace(-3.5, 12.0, 32 * 32, dtype=np.float32).reshape(32, 32)
    path = write(tmp_path, "float.tif", encode(Image.fromarray(values, "F"), "TIFF"))
    assert Image.open(path).mode == "F"
    out = np.asarray(load_image(path))[..., 0]
    assert out[0, 0] == 0 and out[-1, -1] == 255
    expected = np.rint((values - values.min()) / (values.max() - values.min()) * 255)
    assert np.abs(out.astype(int) - expected).max() <= 1


def test_one_bit(tmp_path):
    a = np.zeros((20, 20), dtype=bool)
    a[:, 10:] = True
    out = np.asarray(load_image(write(tmp_path, "bw.png", encode(Image.fromarray(a).convert("1"), "PNG"))))
    assert (out[:, :10] == 0).all() and (out[:, 10:] == 255).all()


# ------------------------------------------------------------------------------------ orientation, frames
@pytest.mark.parametrize("orientation", [6, 8, 3])
def test_exif_rotated_photo_comes_out_upright(tmp_path, orientation):
    # stored sideways: left half red, right half blue, 40 wide x 20 high
    stored = np.zeros((20, 40, 3), dtype=np.uint8)
    stored[:, :20] = (255, 0, 0)
    stored[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = write(tmp_path, "phone.jpg", encode(Image.fromarray(stored), "JPEG", quality=95, exif=exif))
    out = np.asarray(load_image(path)).astype(int)
    red, blue = np.array([255, 0, 0]), np.array([0, 0, 255])

    def near(pixel, colour):
        return np.abs(pixel - colour).max() < 40

    if orientation == 6:  # rotate 90 degrees clockwise to view: left (red) goes to the top
        assert out.shape == (40, 20, 3)
        assert near(out[5, 10], red) and near(out[35, 10], blue)
    elif orientation == 8:  # 90 counter-clockwise: left (red) goes to the bottom
        assert out.shape == (40, 20, 3)
        assert near(out[35, 10], red) and near(out[5, 10], blue)
    else:  # 180 degrees: red on the right
        assert out.shape == (20, 40, 3)
        assert near(out[10, 35], red) and near(out[10, 5], blue)


def test_damaged_exif_still_loads(tmp_path):
    data = bytearray(encode(photo(), "JPEG", exif=Image.Exif()))
    # an APP1 "Exif" segment holding garbage
    app1 = b"Exif\x00\x00" + b"MM\x00*\x00\x00\x00\x08\xff\xff\xff"
    data[2:2] = b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1
    assert load_image(bytes(data)).size == (96, 64)


def _frames() -> list[Image.Image]:
    return [Image.new("RGB", (32, 24), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]


def test_animated_gif_gives_first_frame(tmp_path):
    first, *rest = _frames()
    path = tmp_path / "anim.gif"
    first.save(path, save_all=True, append_images=rest, duration=100, loop=0)
    assert Image.open(path).n_frames == 3
    out = load_image(path)
    assert out.mode == "RGB" and out.size == (32, 24)
    assert (np.asarray(out) == [255, 0, 0]).all()


def test_animated_webp_gives_first_frame(tmp_path):
    first, *rest = _frames()
    path = tmp_path / "anim.webp"
    first.save(path, save_all=True, append_images=rest, duration=100, loop=0, lossless=True)
    assert Image.open(path).n_frames == 3
    out = load_image(path)
    assert out.size == (32, 24)
    assert (np.asarray(out) == [255, 0, 0]).all()


# ------------------------------------------------------------------------------------ other sources
def test_good_jpeg_from_path_bytes_and_misleading_name(tmp_path):
    img = photo()
    jpeg = encode(img, "JPEG", quality=95)
    a = load_image(write(tmp_path, "photo.jpg", jpeg))
    b = load_image(jpeg)
    c = load_image(str(write(tmp_path, "named-as.png", jpeg)))  # content decides, not the name
    assert a.mode == b.mode == c.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(c))
    assert np.abs(np.asarray(a).astype(int) - np.asarray(img).astype(int)).mean() < 6


def test_result_keeps_no_file_open(tmp_path):
    path = write(tmp_path, "photo.png", encode(photo(), "PNG"))
    out = load_image(path)
    path.unlink()  # the result owns its pixels
    assert np.asarray(out).shape == (64, 96, 3)
    assert getattr(out, "fp", None) is None


def test_pil_image_source_is_checked_too():
    refused(Image.new("RGB", (1, 1)), "too small")
    out = load_image(Image.new("RGBA", (20, 20), (0, 0, 0, 0)))
    assert out.mode == "RGB" and (np.asarray(out) == 255).all()


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.full((20, 30), 7, dtype=np.uint8), 7),
        (np.full((20, 30, 1), 7, dtype=np.uint8), 7),
        (np.full((20, 30, 3), 0.5, dtype=np.float32), 128),
        (np.full((20, 30), 65535, dtype=np.uint16), 255),
        (np.ones((20, 30), dtype=bool), 255),
    ],
    ids=["grey", "grey1", "float01", "uint16", "bool"],
)
def test_numpy_sources(array, expected):
    out = np.asarray(load_image(array))
    assert out.shape == (20, 30, 3) and (out == expected).all()


def test_numpy_bad_shapes():
    refused(np.zeros((20, 30, 2), dtype=np.uint8), "must be")
    refused(np.zeros((5, 20, 30, 3), dtype=np.uint8), "must be")
    refused(np.zeros((1, 5000, 3), dtype=np.uint8), "too small")


def test_messages_carry_no_internals(tmp_path):
    """Messages are for users: no paths, no exception class names, no Pillow wording; and they fit the
    command line as well as the app (the CLI reads files it was named: nothing asks to upload again)."""
    bad = [
        write(tmp_path, "a.jpg", b""),
        write(tmp_path, "b.jpg", b"plain text"),
        write(tmp_path, "c.jpg", encode(photo(), "JPEG")[:300]),
        write(tmp_path, "d.png", png_with_declared_size(50_000, 50_000)),
        tmp_path / "missing.jpg",
        tmp_path,  # a folder
    ]
    for path in bad:
        with pytest.raises(ImageInputError) as info:
            load_image(path)
        msg = str(info.value)
        assert str(tmp_path) not in msg and "Error" not in msg and "PIL" not in msg
        assert msg.endswith((".", "?")) and "upload" not in msg.lower(), msg


def test_warning_filters_untouched():
    before = list(warnings.filters)
    load_image(encode(photo(), "PNG"))
    with pytest.raises(ImageInputError):
        load_image(png_with_declared_size(30_000, 30_000))
    assert list(warnings.filters) == before


def test_max_short_side_shrinks_and_decodes_jpeg_at_reduced_scale(tmp_path, monkeypatch):
    big = photo(1600, 1200)
    jpeg = write(tmp_path, "big.jpg", encode(big, "JPEG", quality=90))
    png = write(tmp_path, "big.png", encode(big, "PNG"))
    assert load_image(jpeg).size == (1600, 1200)  # no bound: untouched
    drafts = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        drafts.append(size)
        return original(self, mode, size)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    small = load_image(jpeg, max_short_side=300)
    assert small.size == (400, 300) and drafts == [(400, 300)]
    assert load_image(png, max_short_side=300).size == (400, 300)
    ref = np.asarray(big.resize((400, 300), Image.Resampling.BICUBIC)).astype(int)
    assert np.abs(np.asarray(small).astype(int) - ref).mean() < 8  # same picture, not a crop
    assert load_image(jpeg, max_short_side=2000).size == (1600, 1200)
    # a panorama keeps its short side: the model's centre crop still has its pixels
    pano = write(tmp_path, "pano.png", encode(photo(2000, 200), "PNG"))
    assert load_image(pano, max_short_side=100).size == (1000, 100)
