"""The app under hostile or clumsy use: every bad upload or impossible setting gets a clear ``gr.Error``
(no traceback, no internals) and the app goes on answering good requests.

Two levels: the ``/analyze`` handler called directly (every case, fast), and the launched app driven
over loopback through ``gradio_client`` and raw HTTP (a bad file, an oversized upload, a path outside
the upload folder, then a good request).
"""

from __future__ import annotations

import inspect
import io
import struct
import zipfile
import zlib
from pathlib import Path

import gradio as gr
import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from sepvit_viz import limits
from sepvit_viz.serving import handlers, models
from sepvit_viz.serving.settings import Settings


def noop(*args, **kwargs):
    return None


# ------------------------------------------------------------------------------------ files
def encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def png_with_declared_size(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


def _photo() -> Image.Image:
    yy, xx = np.mgrid[0:120, 0:160]
    a = np.stack([xx * 255 / 160, yy * 255 / 120, np.full_like(xx, 90)], axis=-1)
    return Image.fromarray(a.astype(np.uint8))


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a.txt", "not a photo")
    return buf.getvalue()


def _corrupt_png() -> bytes:
    data = bytearray(encode(_photo(), "PNG"))
    data[len(data) // 2] ^= 0xFF
    return bytes(data)


BAD_FILES = {
    "truncated.jpg": (lambda: (lambda d: d[: len(d) // 2])(encode(_photo(), "JPEG")), "truncated or damaged"),
    "corrupt.png": (_corrupt_png, "truncated or damaged"),
    "text.jpg": (lambda: b"just some text, no pixels here\n" * 4, "text file"),
    "archive.jpg": (_zip, "ZIP archive"),
    "drawing.svg": (lambda: b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>', "SVG"),
    "bomb.png": (lambda: png_with_declared_size(100_000, 100_000), "too large"),
    "square20k.png": (lambda: png_with_declared_size(20_000, 20_000), "too large"),
    "dot.png": (lambda: encode(Image.new("RGB", (1, 1)), "PNG"), "too small"),
    "line.png": (lambda: encode(Image.new("RGB", (1, 5000)), "PNG"), "too small"),
    "empty.jpg": (lambda: b"", "empty"),
}


def _odd_modes() -> dict[str, bytes]:
    la = np.zeros((64, 64, 2), np.uint8)
    la[..., 0], la[:, 32:, 1] = 90, 255
    pal = Image.new("P", (64, 64), 1)
    pal.putpalette([0, 0, 0, 20, 200, 20] + [0, 0, 0] * 254)
    pal.paste(0, (0, 0, 32, 64))
    exif = Image.Exif()
    exif[0x0112] = 6
    frames = [Image.new("RGB", (64, 48), c) for c in ("red", "blue")]
    gif, webp = io.BytesIO(), io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:])
    frames[0].save(webp, "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    return {
        "cmyk.jpg": encode(_photo().convert("CMYK"), "JPEG"),
        "palette_transparent.png": encode(pal, "PNG", transparency=0),
        "la.png": encode(Image.fromarray(la, "LA"), "PNG"),
        "rgba.png": encode(_photo().convert("RGBA"), "PNG"),
        "grey16.png": encode(Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)), "PNG"),
        "float.tif": encode(
            Image.fromarray(np.linspace(-1, 7, 64 * 64, dtype=np.float32).reshape(64, 64), "F"), "TIFF"
        ),
        "bw.png": encode(_photo().convert("1"), "PNG"),
        "exif_rotated.jpg": encode(_photo(), "JPEG", exif=exif),
        "animated.gif": gif.getvalue(),
        "animated.webp": webp.getvalue(),
    }


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("uploads")
    for name, (make, _) in BAD_FILES.items():
        (root / name).write_bytes(make())
    for name, data in _odd_modes().items():
        (root / name).write_bytes(data)
    (root / "good.jpg").write_bytes(encode(_photo(), "JPEG", quality=92))
    return root


def analyze(photo, **settings):
    """The /analyze handler as the app calls it (no progress tracker)."""
    return handlers.analyze(photo, progress=noop, **settings)


def error_message(info: pytest.ExceptionInfo) -> str:
    return getattr(info.value, "message", None) or str(info.value)


# ------------------------------------------------------------------------------------ handler level
@pytest.mark.parametrize("name", list(BAD_FILES))
def test_bad_upload_gives_clear_error_and_app_still_serves(files, name):
    with pytest.raises(gr.Error) as info:
        analyze(str(files / name))
    msg = error_message(info)
    assert BAD_FILES[name][1].lower() in msg.lower()
    assert str(files) not in msg and "Traceback" not in msg
    out = analyze(str(files / "good.jpg"))
    assert isinstance(out[2], dict) and len(out[2]) == 5


def test_upload_over_the_size_limit(files):
    big = files / "big.jpg"
    with open(big, "wb") as f:
        f.write((files / "good.jpg").read_bytes())
        f.truncate(limits.MAX_UPLOAD_BYTES + 1)
    with pytest.raises(gr.Error) as info:
        analyze(str(big))
    assert "too large" in error_message(info)


@pytest.mark.parametrize("name", sorted(_odd_modes()))
def test_odd_but_valid_images_are_analysed(files, name):
    state, _, top5, tokens, _ = analyze(str(files / name))
    assert len(top5) == 5 and tokens.ndim == 3 and tokens.std() > 0
    attribution = handlers.show_tab(state, Settings(tab="attribution"))["attribution_img"]
    assert attribution.ndim == 3 and attribution.shape[2] == 3 and attribution.std() > 0
    # the app keeps the photo's aspect (as the photo is shown: EXIF orientation applied)
    from PIL import ImageOps

    from sepvit_viz.viz.pipeline import fit_size

    with Image.open(files / name) as im:
        w, h = ImageOps.exif_transpose(im).size
    assert state.forward.image.shape == (*fit_size((h, w), limits.DEFAULT_RESOLUTION, "aspect"), 3)


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"pwa_head": "-1"}, "does not exist"),
        ({"token_head": "head 2"}, "Unknown head"),
        ({"resolution": 20_000}, "between"),
        ({"resolution": -224}, "between"),
        ({"method": "telepathy"}, "Unknown attribution method"),
        ({"pixel_view": "telepathy"}, "Unknown pixel view"),
        ({"cmap": "rainbow-unicorn"}, "Unknown colormap"),
        ({"opacity": 7}, "between 0 and 1"),
        ({"target": "golden retreiver"}, "Did you mean 'golden retriever'"),
        ({"target": "#5000"}, "Class numbers go from 0 to 999"),
        # Gradio's dropdown lets a list of its choices through: a clear message, not an internal error
        ({"method": ["saliency"]}, "Unknown attribution method"),
        ({"model_choice": ["default"]}, "Unknown model choice"),
    ],
)
def test_impossible_settings(files, settings, match):
    with pytest.raises(gr.Error, match=match):
        analyze(str(files / "good.jpg"), **settings)


@pytest.mark.parametrize(
    ("settings", "note", "same_tokens"),
    [
        # left on the page by another variant (sepvit_small has 14 blocks in stage 3) ...
        ({"token_block": "stages.2.blocks.10"}, "token block 'stages.2.blocks.10' → stages.1.blocks.0", True),
        ({"token_block": "stages.9.blocks.0"}, "token block 'stages.9.blocks.0' → stages.1.blocks.0", True),
        # ... or by a block with more heads (stage 2 has 2)
        ({"token_head": "3"}, "head 3 → mean (the block has 2)", True),
        ({"pwa_block": "stages.3.blocks.0"}, "cross-window block 'stages.3.blocks.0' → stages.0.blocks.0", False),
        ({"pair": "stages.0.blocks.0|stages.9.blocks.1"}, "DSSA/GSA pair", False),
        # ... or by a model with more classes (the class dropdown holds class numbers)
        ({"target": "1500"}, "class 1500 → top prediction (the model has 1000 classes)", True),
    ],
)
def test_settings_this_model_lacks_fall_back_and_the_status_says_so(files, settings, note, same_tokens):
    """The page's dropdowns keep their values across analyses; a block, head or pair that this model at
    this input lacks is replaced by the default, the status line says by what, and the view drawn is the
    default's. A malformed value is still refused (test_impossible_settings)."""
    _, status, _, tokens, _ = analyze(str(files / "good.jpg"), **settings)
    _, plain_status, _, plain_tokens, _ = analyze(str(files / "good.jpg"))
    assert "Not in this model at this input, so shown instead: " + note in status
    assert "Not in this model" not in plain_status
    if same_tokens:
        assert np.array_equal(tokens, plain_tokens)


def test_the_pixel_view_is_read_case_insensitively_everywhere(files):
    """/analyze accepted "Block" (case-insensitive check), then the view refused it."""
    state, _, _, _, pixel = analyze(str(files / "good.jpg"), pixel_view="Block")
    _, _, _, _, plain = analyze(str(files / "good.jpg"), pixel_view="block")
    assert np.array_equal(pixel, plain)
    shown = handlers.window_tokens(state, "stages.1.blocks.1", "mean", "inferno", 0.6, 10, 10, "BLOCK")
    again = handlers.window_tokens(state, "stages.1.blocks.1", "mean", "inferno", 0.6, 10, 10, "block")
    assert np.array_equal(shown[2], again[2]) and shown[3] == again[3]


def test_negative_steps_and_unknown_class_after_an_analysis(files):
    state = analyze(str(files / "good.jpg"))[0]
    with pytest.raises(gr.Error, match="steps"):
        handlers.faithfulness(state, "top", "gradcam", steps=-3, progress=noop)
    with pytest.raises(gr.Error, match="no class named 'unicorn'"):
        handlers.explain(state, "unicorn", "gradcam", "inferno", 0.6, progress=noop)
    assert handlers.explain(state, "golden retriever", "gradcam", "inferno", 0.6, progress=noop)[0].ndim == 3


def _unique_photo(path: Path, seed: int) -> str:
    """A photo no earlier test analysed (the result cache cannot answer it without the model)."""
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(path, quality=90)
    return str(path)


SECRET = "shape (7, 3) != (9, 3) in /srv/app/secret_module.py"


@pytest.mark.parametrize(
    ("target", "exc"),
    [
        ("sepvit_viz.viz.pipeline.analyze", ValueError),  # a library's internal argument check
        ("sepvit_viz.serving.handlers.attribute", ValueError),
        ("sepvit_viz.imageio.load_image", ValueError),  # a bug in the decoder path, not a bad file
        ("sepvit_viz.serving.handlers.attribute", RuntimeError),
    ],
)
def test_internal_errors_do_not_leak_their_text(files, tmp_path, monkeypatch, caplog, target, exc):
    def broken(*args, **kwargs):
        raise exc(SECRET)

    monkeypatch.setattr(target, broken)
    with caplog.at_level("ERROR", logger="sepvit_viz.serving.handlers"), pytest.raises(gr.Error) as info:
        state = analyze(_unique_photo(tmp_path / "fresh.jpg", seed=zlib.crc32(f"{target}{exc}".encode())))[0]
        handlers.show_tab(state, Settings(tab="attribution"))  # the attribution runs when its tab is shown
    msg = error_message(info)
    assert "Something went wrong on the server" in msg
    for leak in ("secret_module", "(7, 3)", exc.__name__, "Traceback"):
        assert leak not in msg, msg
    # the details go to the server's log, under the reference the user was given
    ref = msg.split("reference ", 1)[1].split(")", 1)[0]
    logged = [r for r in caplog.records if ref in r.getMessage()]
    assert logged and logged[0].exc_info and SECRET in str(logged[0].exc_info[1])
    monkeypatch.undo()
    out = analyze(str(files / "good.jpg"))
    assert isinstance(out[2], dict) and len(out[2]) == 5


@pytest.mark.parametrize(
    ("exc_name", "shown"),
    [("SettingsError", "bad setting x"), ("CheckpointError", "Could not load the model: missing key k")],
)
def test_user_facing_errors_keep_their_text(files, monkeypatch, exc_name, shown):
    """The narrowing keeps the messages written for users (settings, images, checkpoints)."""
    from sepvit_viz import validation
    from sepvit_viz.model import weights

    exc = getattr(validation, exc_name, None) or getattr(weights, exc_name)

    def broken(*args, **kwargs):
        raise exc(shown.split(": ")[-1])

    monkeypatch.setattr(models.MODELS, "get", broken)
    with pytest.raises(gr.Error, match=shown):
        analyze(str(files / "good.jpg"))


# ------------------------------------------------------------------------------------ launched app
@pytest.fixture(scope="module")
def served(app_url):
    yield app_url, Client(app_url, verbose=False, analytics_enabled=False, httpx_kwargs={"timeout": 300})


@pytest.mark.slow
def test_launched_app_refuses_bad_files_then_answers(served, files):
    _, client = served
    for name in ("truncated.jpg", "archive.jpg", "bomb.png"):
        with pytest.raises(Exception) as info:  # gradio_client's AppError carries the gr.Error message
            client.predict(photo=handle_file(str(files / name)), api_name="/analyze")
        msg = str(info.value)
        assert BAD_FILES[name][1].lower() in msg.lower(), msg
        assert "Traceback" not in msg and 'File "' not in msg
    status, top5, *_ = client.predict(photo=handle_file(str(files / "good.jpg")), api_name="/analyze")
    assert "Model:" in status and len(top5["confidences"]) == 5


@pytest.mark.slow
def test_launched_app_refuses_oversized_upload(served, tmp_path):
    url, _ = served
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff\xd8\xff" + b"\0" * (limits.MAX_UPLOAD_BYTES + 1024))
    with open(big, "rb") as f:
        r = httpx.post(url + "gradio_api/upload", files={"files": ("big.jpg", f, "image/jpeg")}, timeout=60)
    assert r.status_code == 413, r.text[:200]


def _raw_analyze(url: str, server_path: str) -> str:
    """Call /analyze over plain HTTP with a FileData pointing at ``server_path``: the event stream."""
    params = list(inspect.signature(handlers.analyze).parameters.values())[1:]
    rest = [p.default for p in params if p.name != "progress"]
    payload = {"data": [{"path": server_path, "meta": {"_type": "gradio.FileData"}}, *rest]}
    r = httpx.post(url + "gradio_api/call/analyze", json=payload, timeout=30)
    if r.status_code != 200:
        return f"event: error\nstatus {r.status_code}"
    return httpx.get(url + f"gradio_api/call/analyze/{r.json()['event_id']}", timeout=120).text


@pytest.mark.slow
def test_launched_app_will_not_read_a_path_outside_its_uploads(served, tmp_path):
    url, _ = served
    secret = tmp_path / "secret.png"
    secret.write_bytes(encode(_photo(), "PNG"))
    # control: the same request with the path the upload route gave us is analysed
    with open(secret, "rb") as f:
        uploaded = httpx.post(url + "gradio_api/upload", files={"files": ("s.png", f, "image/png")}, timeout=30).json()[
            0
        ]
    assert "Model:" in _raw_analyze(url, uploaded)
    # a path that was never uploaded is refused, not read
    stream = _raw_analyze(url, str(secret))
    assert "event: error" in stream and "Model:" not in stream, stream[:500]
    # the file route does not hand it out either
    assert httpx.get(url + f"gradio_api/file={secret}", timeout=30).status_code in (403, 404)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda s: handlers.window_tokens(s, None, "mean", "inferno", 0.6, float("inf"), 3), "two numbers"),
        (lambda s: handlers.pixel_query(s, None, "mean", 3, float("-inf"), "inferno", 0.6), "two numbers"),
        (lambda s: handlers.window_tokens(s, None, "mean", "inferno", 0.6, True, False), "two numbers"),
        (lambda s: handlers.faithfulness(s, "top", "gradcam", "every method", 2, progress=noop), "Unknown score"),
        (lambda s: handlers.faithfulness(s, "top", "gradcam", "this method", 2, "yes", progress=noop), "sanity"),
        (lambda s: handlers.explain(s, "top", ["saliency"], "inferno", 0.6, progress=noop), "Unknown attribution"),
        (lambda s: handlers.faithfulness(s, "top", ["gradcam"], progress=noop), "Unknown attribution method"),
    ],
)
def test_impossible_api_values_after_an_analysis_get_a_clear_message(files, call, match):
    """An infinite or boolean click coordinate and an unknown score scope or sanity value, sent through
    the API, are refused with a message (an infinite coordinate was an internal error; an unknown
    scope was silently scored as "this method", a non-boolean sanity value as true)."""
    state = analyze(str(files / "good.jpg"))[0]
    with pytest.raises(gr.Error, match=match) as info:
        call(state)
    assert "Something went wrong" not in error_message(info)
