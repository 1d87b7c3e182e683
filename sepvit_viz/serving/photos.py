"""Uploads in, upright RGB photos out: the photo component and its decoding (sizes checked first)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from sepvit_viz import imageio
from sepvit_viz.limits import DECODE_SHORT_SIDE, MAX_UPLOAD_BYTES
from sepvit_viz.model.weights import ASSETS_DIR, DEFAULT_CHECKPOINT, card_path_for
from sepvit_viz.serving.errors import user_error

__all__ = ["EXAMPLES_DIR", "example_photos", "examples_caption", "load_photo", "photo_input"]

EXAMPLES_DIR = ASSETS_DIR / "examples"


def photo_input(**kwargs: Any) -> gr.Image:
    """A ``gr.Image`` whose preprocessing decodes nothing: handlers get the upload's path (or bytes).

    The stock component opens every upload with Pillow before the handler runs, outside any size
    check; here all decoding goes through :func:`load_photo` (size bounds checked before decoding,
    clear messages). Same frontend as ``gr.Image``: upload, drag and drop, clipboard, webcam.
    (An instance attribute rather than a subclass: Gradio writes a ``.pyi`` file next to the module
    of every Component subclass it sees.)
    """
    kwargs = {"type": "filepath", "image_mode": None, "sources": ["upload", "webcam", "clipboard"], **kwargs}
    image = gr.Image(**kwargs)
    image.preprocess = _raw_upload  # type: ignore[method-assign]
    return image


def _raw_upload(payload: Any) -> str | bytes | None:
    """``gr.Image`` payload -> the uploaded file's path (or the bytes of a data URL), undecoded."""
    if payload is None:
        return None
    url = getattr(payload, "url", None)
    if url and url.startswith("data:"):
        # bound the encoded size before decoding anything (base64 is 4/3 of the bytes)
        if len(url) > MAX_UPLOAD_BYTES * 4 // 3 + 1024:
            raise user_error(f"The photo is larger than {MAX_UPLOAD_BYTES // 2**20} MB.")
        try:
            return base64.b64decode(url.split(",", 1)[1], validate=False)
        except (ValueError, IndexError):
            raise user_error("The photo could not be read (bad data URL).") from None
    if getattr(payload, "path", None) is None:
        raise user_error("No photo received; please upload it again.")
    return str(payload.path)


def load_photo(source: str | bytes | Path | Image.Image | np.ndarray) -> Image.Image:
    """Decode an untrusted upload into an upright RGB image (:func:`sepvit_viz.imageio.load_image`,
    JPEGs at reduced scale down to 1024 px on the short side); raises its ``ImageInputError``."""
    return imageio.load_image(source, max_short_side=DECODE_SHORT_SIDE)


def example_photos() -> list[str]:
    """Paths of the bundled example photos (``assets/examples/*.jpg``), sorted."""
    return sorted(str(p) for p in EXAMPLES_DIR.glob("*.jpg"))


def examples_caption(checkpoint: str | Path = DEFAULT_CHECKPOINT) -> str:
    """One Markdown line under the example photos: which of them the checkpoint gets right, from its
    model card's ``examples`` entry (written by ``python -m sepvit_viz.training.evaluate --examples``);
    "" when the card has none or it lists other photos than the bundled ones."""
    import json

    try:
        entry = json.loads(card_path_for(checkpoint).read_text()).get("examples") or {}
        results = entry["results"]
        files = sorted(r["file"] for r in results)
        right = [r["class"] for r in results if r["student"]["right"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return ""
    if files != sorted(Path(p).name for p in example_photos()):
        return ""  # measured on another set of photos: says nothing about these
    names = f" ({', '.join(right)})" if right else ""
    return f"The shipped model names {len(right)} of these {len(results)} photos' classes right{names}."
