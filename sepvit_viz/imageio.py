"""Safe image loading for uploads: one function, one exception type, clear messages.

Every photo a user sends goes through :func:`load_image` before anything else sees it::

    from sepvit_viz.imageio import ImageInputError, load_image

    try:
        image = load_image(upload_path)          # PIL RGB image, upright, first frame
    except ImageInputError as err:               # a ValueError with a message meant for the user
        raise gr.Error(str(err)) from None

What it guarantees, for any input (path, bytes, PIL image or numpy array):

- the result is an ``RGB`` :class:`PIL.Image.Image`, fully decoded (no open file behind it), turned
  upright from its EXIF orientation, the first frame of an animation;
- every refusal is an :class:`ImageInputError` whose message says what was wrong and what to do:
  empty upload, file over the byte limit, not an image (text, ZIP, SVG/XML, PDF, HTML), an image
  format outside the allow-list, a truncated or damaged file, a declared size over the pixel bound
  (decompression bombs: checked from the header *before* decoding), too small, too elongated;
- only allow-listed decoders run (JPEG, PNG, GIF, WebP, BMP, TIFF): Pillow's EPS plugin would
  start Ghostscript, and the rarer plugins are more attack surface than use;
- Pillow's global settings (``Image.MAX_IMAGE_PIXELS``, ``ImageFile.LOAD_TRUNCATED_IMAGES``) are read,
  never written; a ``DecompressionBombWarning`` raised while decoding becomes an error locally.

Colour modes become RGB as follows: transparency (RGBA, LA, PA, and P, L, RGB or 16-bit grey with a
transparent colour) is composited on **white**; CMYK and YCbCr through Pillow's converters; 1-bit and L as grey; 16-bit
integer grey (I;16, I;16B, I;16L, I) divided by 257 (full 16-bit range -> 0..255; 32-bit ``I`` values
outside 0..65535 are scaled by their range); 32-bit float (F) scaled by its finite range.
"""

from __future__ import annotations

import io
import math
import os
import stat
import warnings
from pathlib import Path
from typing import Final

import numpy as np
from PIL import (  # importing a plugin registers its decoder; Image.open(formats=...) needs them registered
    BmpImagePlugin,  # noqa: F401
    ExifTags,
    GifImagePlugin,  # noqa: F401
    Image,
    ImageOps,
    JpegImagePlugin,  # noqa: F401
    PngImagePlugin,  # noqa: F401
    TiffImagePlugin,  # noqa: F401
    WebPImagePlugin,  # noqa: F401
)

from sepvit_viz import limits
from sepvit_viz.validation import UserInputError

__all__ = [
    "ALLOWED_FORMATS",
    "BACKGROUND",
    "MAX_ASPECT",
    "MAX_BYTES",
    "MAX_PIXELS",
    "MIN_SIDE",
    "ImageInputError",
    "check_dimensions",
    "load_image",
    "sniff",
    "to_rgb",
    "upright",
]

MAX_BYTES: Final[int] = limits.MAX_UPLOAD_BYTES
MAX_PIXELS: Final[int] = limits.MAX_PHOTO_PIXELS
MIN_SIDE: Final[int] = limits.MIN_PHOTO_SIDE
MAX_ASPECT: Final[float] = limits.MAX_PHOTO_ASPECT
#: Colour transparent pixels are composited on.
BACKGROUND: Final[tuple[int, int, int]] = (255, 255, 255)
#: Pillow format names whose decoders may run (multi-picture phone JPEGs, "MPO", open through JPEG).
ALLOWED_FORMATS: Final[tuple[str, ...]] = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")

_FORMAT_HINT = "Please use a JPEG, PNG, WebP, GIF, BMP or TIFF photo."


class ImageInputError(UserInputError):
    """An image the app refuses; ``str(err)`` is a message meant for the person who sent it."""


# ------------------------------------------------------------------------------------ sniffing
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a ZIP archive"),
    (b"PK\x05\x06", "a ZIP archive"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"Rar!", "a RAR archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7z archive"),
    (b"\x7fELF", "a program"),
    (b"MZ", "a Windows program"),
    (b"%!PS", "a PostScript file"),
)


_IMAGE_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF8", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


def _image_kind(head: bytes) -> str | None:
    """The image format the first bytes announce (None when none of ours)."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((kind for magic, kind in _IMAGE_MAGIC if head.startswith(magic)), None)


def sniff(head: bytes) -> str | None:
    """Name what a file is when its first bytes show it is not an image we decode, else None.

    ``head`` is the start of the file (a few hundred bytes is plenty).

    >>> sniff(b"PK\\x03\\x04...")
    'a ZIP archive'
    >>> sniff(b"\\xff\\xd8\\xff\\xe0") is None
    True
    """
    for magic, what in _SIGNATURES:
        if head.startswith(magic):
            return what
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()  # BOM and leading whitespace
    if text.startswith((b"<svg", b"<?xml", b"<!doctype svg")) or b"<svg" in text[:512]:
        return "an SVG/XML drawing (vector images are not supported: export it as PNG)"
    if text.startswith((b"<!doctype html", b"<html")):
        return "an HTML page"
    if b"\x00" not in head[:512] and head[:512].strip():
        try:
            head[:512].decode("utf-8")
        except UnicodeDecodeError:
            return None
        return "a text file"
    return None


# ------------------------------------------------------------------------------------ checks
def check_dimensions(
    width: int,
    height: int,
    *,
    max_pixels: int = MAX_PIXELS,
    min_side: int = MIN_SIDE,
    max_aspect: float = MAX_ASPECT,
) -> None:
    """Refuse a declared size before any pixel is decoded.

    Raises:
        ImageInputError: over ``max_pixels`` (a decompression bomb or simply too large), a side under
            ``min_side``, or long / short side over ``max_aspect``.
    """
    if width <= 0 or height <= 0:
        raise ImageInputError(f"This image declares an impossible size ({width} x {height} pixels).")
    if width * height > max_pixels:
        raise ImageInputError(
            f"This image is too large: {width} x {height} pixels ({width * height / 1e6:.0f} megapixels); "
            f"the limit is {max_pixels / 1e6:.0f} megapixels. Please use a smaller version."
        )
    if min(width, height) < min_side:
        raise ImageInputError(
            f"This image is too small: {width} x {height} pixels; each side needs at least {min_side} pixels."
        )
    if max(width, height) / min(width, height) > max_aspect:
        raise ImageInputError(
            f"This image is too elongated: {width} x {height} pixels (more than {max_aspect:g}:1). "
            "Please crop it closer to the subject."
        )


def _read_file(path: str | Path, max_bytes: int) -> bytes:
    """Read a regular file of at most ``max_bytes``; refuse directories, devices, pipes."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ImageInputError("The file could not be found; please choose it again.") from None
    except OSError as exc:
        raise ImageInputError("The file could not be read; please choose it again.") from exc
    if not stat.S_ISREG(st.st_mode):
        raise ImageInputError("This is not a regular file; please choose a photo.")
    _check_size(st.st_size, max_bytes)
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)  # bounded even if the file grows after the stat
    except OSError as exc:
        raise ImageInputError("The file could not be read; please choose it again.") from exc
    _check_size(len(data), max_bytes)
    return data


def _check_size(n: int, max_bytes: int) -> None:
    if n == 0:
        raise ImageInputError("The file is empty (0 bytes); please choose a photo.")
    if n > max_bytes:
        raise ImageInputError(f"The file is too large ({n / 2**20:.1f} MB); the limit is {max_bytes / 2**20:.0f} MB.")


# ------------------------------------------------------------------------------------ modes
def _composite(image: Image.Image) -> Image.Image:
    """RGBA -> RGB on :data:`BACKGROUND`."""
    background = Image.new("RGB", image.size, BACKGROUND)
    background.paste(image, mask=image.getchannel("A"))
    return background


def _grey_to_rgb(values: np.ndarray) -> Image.Image:
    """(H, W) float array already in 0..255 -> RGB image."""
    grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return Image.fromarray(grey, mode="L").convert("RGB")


def _scale_by_range(values: np.ndarray) -> np.ndarray:
    """Map the finite range of ``values`` to 0..255 (non-finite -> 0, a constant image -> 0)."""
    values = values.astype(np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(values.shape)
    lo, hi = float(values[finite].min()), float(values[finite].max())
    out = np.where(finite, values, lo) - lo
    return out * (255.0 / (hi - lo)) if hi > lo else np.zeros(values.shape)


def _keyed_to_background(rgb: Image.Image, keyed: np.ndarray) -> Image.Image:
    """``rgb`` with the pixels where ``keyed`` (H, W) bool is True set to :data:`BACKGROUND`."""
    if not keyed.any():
        return rgb
    out = np.asarray(rgb).copy()
    out[keyed] = BACKGROUND
    return Image.fromarray(out, mode="RGB")


def to_rgb(image: Image.Image) -> Image.Image:
    """Any decoded Pillow mode -> RGB (see the module docstring for the rules)."""
    mode = image.mode
    key = image.info.get("transparency")  # a PNG tRNS colour: pixels of exactly this value are transparent
    if mode == "RGB":
        if isinstance(key, tuple) and len(key) == 3:
            return _keyed_to_background(image, np.all(np.asarray(image) == np.asarray(key, np.uint8), axis=-1))
        return image
    if mode == "P":
        has_alpha = "transparency" in image.info or (image.palette is not None and image.palette.mode == "RGBA")
        return _composite(image.convert("RGBA")) if has_alpha else image.convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return _composite(image.convert("RGBA"))
    if mode in ("L", "1", "CMYK", "YCbCr", "RGBX"):
        if mode == "L" and "transparency" in image.info:
            return _composite(image.convert("RGBA"))
        return image.convert("RGB")
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(image).astype(np.float64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            rgb = _grey_to_rgb(_scale_by_range(values))
        else:
            rgb = _grey_to_rgb(values / 257.0)
        return _keyed_to_background(rgb, values == key) if isinstance(key, int) else rgb
    if mode == "F":
        return _grey_to_rgb(_scale_by_range(np.asarray(image)))
    try:
        return image.convert("RGB")
    except (ValueError, OSError) as exc:
        raise ImageInputError(f"Images in the {mode} colour mode are not supported; please save it as RGB.") from exc


def upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation. An image stored upright is returned as it is, not copied; a damaged
    EXIF block leaves the image as stored (it still decodes)."""
    try:
        # asked first: exif_transpose copies the whole image even when there is nothing to turn
        # (a 50 MP upload: 150 MB per request)
        if image.getexif().get(ExifTags.Base.Orientation, 1) == 1:
            return image
        return ImageOps.exif_transpose(image)
    except (ValueError, TypeError, KeyError, OSError, SyntaxError):
        return image


# ------------------------------------------------------------------------------------ entry point
def _from_array(a: np.ndarray, limits: dict) -> Image.Image:
    """(H, W), (H, W, 1|3|4) array -> RGB image (dtype rules in :func:`load_image`)."""
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ImageInputError(f"An image array must be (H, W), (H, W, 3) or (H, W, 4); got shape {a.shape}.")
    check_dimensions(a.shape[1], a.shape[0], **limits)
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif a.dtype == np.uint16:
        a = np.rint(a / 257.0).astype(np.uint8)
    elif np.issubdtype(a.dtype, np.floating):
        finite = a[np.isfinite(a)]
        in_unit = finite.size > 0 and finite.min() >= 0.0 and finite.max() <= 1.0
        scaled = np.nan_to_num(a, nan=0.0, posinf=1.0, neginf=0.0) * 255.0 if in_unit else _scale_by_range(a)
        a = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    elif a.dtype != np.uint8:
        if np.issubdtype(a.dtype, np.integer) and a.size and a.min() >= 0 and a.max() <= 255:
            a = a.astype(np.uint8)
        elif np.issubdtype(a.dtype, np.integer):
            a = np.clip(np.rint(_scale_by_range(a)), 0, 255).astype(np.uint8)
        else:
            raise ImageInputError(f"Image arrays of dtype {a.dtype} are not supported.")
    image = Image.fromarray(np.ascontiguousarray(a))
    return to_rgb(image)


def load_image(
    source: str | Path | bytes | bytearray | Image.Image | np.ndarray,
    *,
    max_pixels: int = MAX_PIXELS,
    max_bytes: int = MAX_BYTES,
    min_side: int = MIN_SIDE,
    max_aspect: float = MAX_ASPECT,
    max_short_side: int | None = None,
) -> Image.Image:
    """Load an untrusted image as an upright RGB PIL image, or raise :class:`ImageInputError`.

    Args:
        source: a file path (the app passes Gradio's temporary upload path), the file's bytes, an
            already opened PIL image, or a numpy array (H, W), (H, W, 1|3|4) of uint8, uint16, bool or
            float (floats in 0..1 are taken as such, other ranges are scaled by their range).
        max_pixels: largest declared width * height, checked from the header before decoding.
        max_bytes: largest file size (paths and bytes only).
        min_side: shortest side accepted.
        max_aspect: largest long side / short side.
        max_short_side: when given, a larger path, bytes or PIL image is shrunk (bicubic, aspect kept)
            so that its short side is this (a numpy array is returned at its own size); JPEGs are then
            decoded at a reduced scale first (``Image.draft``), so a 50 MP photo costs a few MB instead
            of 150 MB. The model's centre crop needs a short side of ``resolution / CROP_PCT`` at most
            (512 px at 448), so the app can pass 1024 and lose nothing.

    Returns:
        A fully loaded ``RGB`` image: EXIF orientation applied, first frame of an animation,
        transparency composited on white, no file handle kept open.

    Raises:
        ImageInputError: with a message meant for the user (see the module docstring for the cases).
    """
    limits = dict(max_pixels=max_pixels, min_side=min_side, max_aspect=max_aspect)
    if isinstance(source, np.ndarray):
        return _from_array(source, limits)
    if isinstance(source, Image.Image):
        check_dimensions(*source.size, **limits)
        return _decode(source, max_short_side)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        _check_size(len(data), max_bytes)
    elif isinstance(source, (str, os.PathLike)):
        data = _read_file(source, max_bytes)
    else:
        raise ImageInputError(f"Expected an image file, got {type(source).__name__}.")

    what = sniff(data[:1024])
    if what is not None:
        raise ImageInputError(f"This file is {what}, not a photo. {_FORMAT_HINT}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageInputError(
            f"This image is too large: its declared size is over the limit of {max_pixels / 1e6:.0f} megapixels. "
            "Please use a smaller version."
        ) from None
    except Exception as exc:  # unidentified, or any parser failure on a hostile header: the file's fault
        kind = _image_kind(data)
        if kind is not None:
            raise ImageInputError(f"This {kind} file is damaged and could not be read.") from exc
        raise ImageInputError(f"This file is not an image we can read. {_FORMAT_HINT}") from exc
    with image:
        check_dimensions(*image.size, **limits)
        if image.format == "PNG":
            _verify_png(data)
        if max_short_side is not None and image.format in ("JPEG", "MPO") and min(image.size) > max_short_side:
            scale = max_short_side / min(image.size)
            image.draft(None, (math.ceil(image.width * scale), math.ceil(image.height * scale)))
        return _decode(image, max_short_side)


def _verify_png(data: bytes) -> None:
    """Check every PNG chunk's CRC (Pillow's decoder does not check image-data CRCs, so a damaged
    file could otherwise decode into wrong pixels). Reads the chunks, decompresses nothing."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            Image.open(io.BytesIO(data), formats=("PNG",)).verify()
    except Exception as exc:
        raise ImageInputError(
            "This PNG file is truncated or damaged (a checksum does not match) and could not be decoded. "
            "Please try it again or save it again from an image editor."
        ) from exc


def _decode(image: Image.Image, max_short_side: int | None = None) -> Image.Image:
    """Decode the first frame of ``image`` (size already checked) and normalise it to upright RGB."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "Corrupt EXIF data" etc.: the user's file, not ours
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            if getattr(image, "n_frames", 1) > 1:
                image.seek(0)
            image.load()
            upright_image = upright(image)
            rgb = to_rgb(upright_image)
            rgb.load()
            if max_short_side is not None and min(rgb.size) > max_short_side:
                scale = max_short_side / min(rgb.size)
                size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
                rgb = rgb.resize(size, Image.Resampling.BICUBIC)
    except ImageInputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageInputError("This image is too large: its declared size is over the pixel limit.") from None
    except MemoryError:
        raise ImageInputError("This image needs too much memory to decode.") from None
    except Exception as exc:  # truncated data, bad CRC, broken Huffman tables, ...
        raise ImageInputError(
            "This image file is truncated or damaged and could not be decoded. Please try it again "
            "or save it again from an image editor."
        ) from exc
    # a fresh image that owns its pixels (copy() keeps no reference to the source file or frames)
    return rgb.copy() if rgb is image else rgb
