"""The launched app in a real browser: headless Chromium (Debian's package) driven by Playwright.

Uploads a photo (the first tab, window tokens, comes with the analysis), switches every tab (each drawn
when shown), clicks a pixel and a window on the photo, changes the attribution
method, prepares the downloads, and saves a screenshot of each step under ``tmp_path``. Checks that
every picture shown has real content, that clicks land on the model pixel they were aimed at, and
that no error toast appears. Skip it locally with ``-m "not browser"``; CI runs it (``.ci/run``
installs ``chromium``). A missing browser is a failure, not a skip.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 180_000

# where a picture's pixels are drawn inside its <img> (object-fit: contain letterboxes it)
PICTURE_BOX = """(img) => {
    const r = img.getBoundingClientRect();
    const s = Math.min(r.width / img.naturalWidth, r.height / img.naturalHeight);
    const w = img.naturalWidth * s, h = img.naturalHeight * s;
    return {left: r.left + (r.width - w) / 2, top: r.top + (r.height - h) / 2, scale: s,
            nw: img.naturalWidth, nh: img.naturalHeight};
}"""


@pytest.fixture(scope="module")
def url(app_url):
    return app_url


@pytest.fixture(scope="module")
def browser():
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def shown(page, elem_id: str) -> np.ndarray:
    """The picture inside component ``elem_id`` as the browser paints it (element screenshot)."""
    img = page.locator(f"#{elem_id} img").first
    img.wait_for(state="visible", timeout=TIMEOUT_MS)
    page.wait_for_function("(el) => el.complete && el.naturalWidth > 0", arg=img.element_handle(), timeout=TIMEOUT_MS)
    with Image.open(io.BytesIO(img.screenshot())) as im:
        return np.asarray(im.convert("RGB"))


def _blank(pic: np.ndarray) -> bool:
    return not (pic.std() > 5 and len(np.unique(pic.reshape(-1, 3), axis=0)) > 50)


def painted(page, elem_id: str, seconds: float = 20.0) -> np.ndarray:
    """``shown`` once the browser has painted a picture there: right after a caption changes, the
    new image may still be loading (an empty element, or one replaced while it is looked at). A
    picture still blank after ``seconds`` is returned as it is, for the assertion to report."""
    from playwright.sync_api import Error as PlaywrightError

    deadline = time.monotonic() + seconds
    while True:
        try:
            pic = shown(page, elem_id)
        except PlaywrightError:  # the <img> was replaced while the new picture loaded: look again
            if time.monotonic() >= deadline:
                raise
            page.wait_for_timeout(250)
            continue
        if not _blank(pic) or time.monotonic() >= deadline:
            return pic
        page.wait_for_timeout(250)


def assert_not_blank(pic: np.ndarray, what: str) -> None:
    colours = len(np.unique(pic.reshape(-1, 3), axis=0))
    assert pic.std() > 5 and colours > 50, f"{what} looks blank (std {pic.std():.1f}, {colours} colours)"


def assert_no_error_toast(page) -> None:
    errors = page.locator('[data-testid="toast-body"].error')
    assert errors.count() == 0, f"error toast: {errors.first.inner_text()}"


def page_state(page, screenshot: Path, **extra: str) -> str:
    """What the page shows (status, captions, toasts) for a failure message; a screenshot saved too."""
    page.screenshot(path=screenshot, full_page=True)
    ids = ("status", "top5", "token_caption", "attribution_caption", "pwa_caption", "compare_caption")
    lines = [f"{k}: {v!r}" for k, v in extra.items()]
    # read at once (a tab never shown has no element, and a locator would wait for one)
    texts = page.evaluate(
        "(ids) => ids.map(i => { const e = document.getElementById(i); return e ? e.innerText : null; })", ids
    )
    lines += [f"#{i}: {(t or '(not on the page)')[:300]!r}" for i, t in zip(ids, texts)]
    toasts = page.locator('[data-testid="toast-body"]').all_inner_texts()
    lines += [f"toast: {t[:300]!r}" for t in toasts]
    return "the page did not get there; it shows\n" + "\n".join(lines) + f"\n(screenshot: {screenshot})"


# Watches a picture and its caption: ``window._emptied`` turns true when the picture leaves the page
# after it was shown with a caption that says ``needle`` (arguments: [picture id, caption id, needle]).
WATCH_EMPTIED = """([pic, cap, needle]) => {
    window._emptied = false;
    let drawn = false;
    const look = () => {
        const t = document.getElementById(cap).innerText;
        const img = document.querySelector('#' + pic + ' img');
        if (t.includes(needle) && img) drawn = true;
        if (drawn && !img) window._emptied = true;
    };
    new MutationObserver(look).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def text_of(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id}").inner_text()


def wait_text(page, elem_id: str, needle: str) -> None:
    page.wait_for_function(
        "([id, needle]) => { const el = document.getElementById(id); return el && el.innerText.includes(needle); }",
        arg=[elem_id, needle],
        timeout=TIMEOUT_MS,
    )


def click_model_pixel(page, elem_id: str, x: int, y: int) -> None:
    """Click the picture of ``elem_id`` where it shows model-input pixel (x, y).

    Pictures show the photo ``display_scale`` times larger, from the left edge below the title band.
    """
    from sepvit_viz import limits
    from sepvit_viz.viz import render, views

    k = views.display_scale(limits.DEFAULT_RESOLUTION)
    img = page.locator(f"#{elem_id} img").first
    box = img.evaluate(PICTURE_BOX)
    # aim at the centre of the k x k picture pixels of (x, y), below the title band: mouse positions
    # are whole CSS pixels
    top = box["top"] + render.TITLE_HEIGHT * box["scale"]
    page.mouse.click(box["left"] + (x + 0.5) * k * box["scale"], top + (y + 0.5) * k * box["scale"])


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()
    time.sleep(0.5)


def test_upload_switch_tabs_click_and_download(url, browser, tmp_path):
    from sepvit_viz.serving import photos

    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url, wait_until="load")
    page.locator("#photo input[type=file]").wait_for(state="attached")
    page.screenshot(path=tmp_path / "0_start.png", full_page=True)

    # upload: the photo is analysed at once, the first tab (window tokens) drawn with it
    page.locator("#photo input[type=file]").set_input_files(photos.example_photos()[2])
    wait_text(page, "status", "Model:")
    assert len(page.locator("#top5").inner_text().strip().splitlines()) >= 5
    wait_text(page, "token_caption", "window token")
    assert_not_blank(painted(page, "token_img"), "token map")
    assert_not_blank(painted(page, "pixel_img"), "pixel view")
    page.screenshot(path=tmp_path / "1_tokens.png", full_page=True)

    # the attribution is computed when its tab is shown
    open_tab(page, "Class attribution")
    wait_text(page, "attribution_caption", "for class")
    assert_not_blank(painted(page, "attribution_img"), "attribution")
    page.screenshot(path=tmp_path / "1_attribution.png", full_page=True)

    # another method: only the attribution runs again
    page.locator("#method input").click()
    page.locator("#method input").fill("Saliency")
    page.keyboard.press("Enter")
    wait_text(page, "attribution_caption", "Saliency")
    assert_not_blank(painted(page, "attribution_img"), "saliency")

    # window tokens: click a pixel, its window lights up in the right picture
    open_tab(page, "Window tokens")
    before = shown(page, "pixel_img")
    assert_not_blank(painted(page, "token_img"), "token map")
    assert_not_blank(before, "pixel view")
    click_model_pixel(page, "token_img", 30, 40)
    wait_text(page, "pixel_caption", "Pixel (x=30, y=40)")
    wait_text(page, "pixel_caption", "window 0")
    after = shown(page, "pixel_img")
    assert before.shape != after.shape or not np.array_equal(before, after)
    page.screenshot(path=tmp_path / "2_tokens_clicked.png", full_page=True)

    # cross-window attention: click the bottom-right window
    open_tab(page, "Cross-window attention")
    assert_not_blank(painted(page, "pwa_matrix_img"), "PWA matrix")
    assert_not_blank(painted(page, "pwa_row_img"), "PWA row map")
    click_model_pixel(page, "pwa_row_img", 220, 220)
    wait_text(page, "pwa_caption", "window 15 (outlined)")  # stage 2: 4 x 4 windows of 56 px
    page.screenshot(path=tmp_path / "3_cross_window.png", full_page=True)

    # compare DSSA vs GSA
    open_tab(page, "Compare DSSA vs GSA")
    wait_text(page, "compare_caption", "GSA")
    for elem in ("compare_a", "compare_b"):
        assert_not_blank(painted(page, elem), elem)
    assert page.locator("#compare_slider img").count() >= 2
    page.screenshot(path=tmp_path / "4_compare.png", full_page=True)

    # downloads
    open_tab(page, "Downloads")
    page.locator("#downloads_btn").click()
    page.locator('#downloads [aria-label="sepvit_analysis.npz"]').wait_for(state="visible")
    assert page.locator('#downloads [aria-label="window_tokens.png"]').count() == 1
    page.screenshot(path=tmp_path / "5_downloads.png", full_page=True)

    open_tab(page, "Class attribution")
    assert_not_blank(painted(page, "attribution_img"), "attribution after switching back")
    # a new photo while the attribution tab is shown: the event after the analysis draws this tab
    # (the caption's text includes the progress shown over it, so the new caption is known by its class)
    before = top1(page)
    page.locator("#photo input[type=file]").set_input_files(photos.example_photos()[0])
    wanted = f"for class {new_top1(page, before)}"
    page.evaluate(WATCH_EMPTIED, ["attribution_img", "attribution_caption", wanted])
    try:
        wait_text(page, "attribution_caption", wanted)
        pic = painted(page, "attribution_img")
    except Exception as e:  # say what the page showed instead (a timeout alone says nothing)
        raise AssertionError(page_state(page, tmp_path / "6_timed_out.png", wanted=wanted)) from e
    assert_not_blank(pic, "attribution of the new photo")
    # once drawn it stays: the upload's second change event (Gradio fires two when a photo is
    # replaced) ran a second analysis that emptied the tab, and at times left it empty
    page.wait_for_timeout(3000)
    assert not page.evaluate("() => window._emptied"), page_state(page, tmp_path / "6_emptied.png")
    page.screenshot(path=tmp_path / "6_new_photo_on_the_attribution_tab.png", full_page=True)
    assert_no_error_toast(page)
    page.close()


def test_a_wide_photo_keeps_its_aspect_and_a_click_lands_on_its_pixel(url, browser, tmp_path):
    """Issue 19 item 5 as a person sees it: a 640 x 320 upload is analysed whole at 448 x 224 (the
    status says so, the token map is twice as wide as tall), and a click near its right end, which a
    square crop would have cut away, picks that model pixel."""
    from sepvit_viz.serving import photos
    from sepvit_viz.viz import render, views

    wide = tmp_path / "wide.png"
    Image.open(photos.example_photos()[0]).convert("RGB").resize((640, 320)).save(wide)
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url, wait_until="load")
    page.locator("#photo input[type=file]").set_input_files(str(wide))
    wait_text(page, "status", "448 x 224 px (the photo's aspect kept)")  # on the first tab, window tokens
    token = painted(page, "token_img")
    assert_not_blank(token, "token map of the wide photo")
    box = page.locator("#token_img img").first.evaluate(PICTURE_BOX)
    k = views.display_scale((224, 448))
    # the title band, then the whole input; the colour bar beside it
    assert (box["nh"], box["nw"]) == (render.TITLE_HEIGHT + 224 * k, 448 * k + 54)
    x, y = 430, 100
    top = box["top"] + render.TITLE_HEIGHT * box["scale"]
    page.mouse.click(box["left"] + (x + 0.5) * k * box["scale"], top + (y + 0.5) * k * box["scale"])
    wait_text(page, "pixel_caption", f"Pixel (x={x}, y={y})")
    wait_text(page, "pixel_caption", "window 15")  # stage 2 block 1: 4 x 8 windows of 56 px: row 1, column 7
    page.screenshot(path=tmp_path / "6_wide_photo.png", full_page=True)
    assert_no_error_toast(page)
    page.close()


def top1(page) -> str | None:
    """The first class of the top-5 list ("name (index)"), None while there is none."""
    import re

    found = re.search(r"^(.+ \(\d+\))$", page.locator("#top5").inner_text(), re.M)
    return found.group(1) if found else None


def new_top1(page, old: str | None) -> str:
    """Wait until the top-5 list's first class is another than ``old``; that class ("name (index)")."""
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while (now := top1(page)) in (None, old):
        assert time.monotonic() < deadline, f"the top-5 list still shows {now!r}"
        page.wait_for_timeout(50)
    return now


def pick_method(page, label: str) -> None:
    """Choose an attribution method in the dropdown by typing its label."""
    page.locator("#method input").click()
    page.locator("#method input").fill(label)
    page.keyboard.press("Enter")


def test_a_photo_sent_while_the_last_one_is_attributed_gets_its_own_attribution(url, browser, tmp_path):
    """On the attribution tab with a slow method, a photo sent while the last photo's attribution is
    still running is attributed once that one ends: its caption names the new photo's top class
    (a dropped event would leave the tab empty)."""
    from sepvit_viz.serving import photos

    church, reef, elephant = (photos.example_photos()[i] for i in (1, 3, 0))
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url, wait_until="load")
    page.locator("#photo input[type=file]").set_input_files(church)
    wait_text(page, "status", "Model:")
    open_tab(page, "Class attribution")
    wait_text(page, "attribution_caption", "for class")
    pick_method(page, "Integrated Gradients")
    wait_text(page, "attribution_caption", "Integrated Gradients")
    page.locator("#photo input[type=file]").set_input_files(reef)
    reef_class = new_top1(page, top1(page))
    # the reef's analysis is on the page and its attribution starts: send the next photo now
    page.locator("#photo input[type=file]").set_input_files(elephant)
    wanted = f"for class {new_top1(page, reef_class)}"
    try:
        page.wait_for_function(
            "([id, needle]) => document.getElementById(id).innerText.includes(needle)",
            arg=["attribution_caption", wanted],
            timeout=60_000,
        )
    except Exception as e:  # say what the page showed instead
        raise AssertionError(page_state(page, tmp_path / "timed_out.png", wanted=wanted)) from e
    assert "Integrated Gradients" in text_of(page, "attribution_caption")
    assert_not_blank(painted(page, "attribution_img"), "attribution of the last photo")
    assert_no_error_toast(page)
    page.close()


def test_a_method_picked_while_another_is_attributed_is_drawn(url, browser, tmp_path):
    """A method picked while the last method's attribution is still running is drawn once that one
    ends: the caption and picture end on the method the dropdown shows."""
    from sepvit_viz.serving import photos

    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url, wait_until="load")
    page.locator("#photo input[type=file]").set_input_files(photos.example_photos()[4])
    wait_text(page, "status", "Model:")
    open_tab(page, "Class attribution")
    wait_text(page, "attribution_caption", "for class")
    pick_method(page, "Integrated Gradients")
    page.wait_for_timeout(200)  # its attribution (about a second) is running
    pick_method(page, "Saliency")
    try:
        page.wait_for_function(
            "([id, needle]) => document.getElementById(id).innerText.startsWith(needle)",
            arg=["attribution_caption", "Saliency for class"],
            timeout=60_000,
        )
    except Exception as e:  # say what the page showed instead
        raise AssertionError(page_state(page, tmp_path / "timed_out.png", wanted="Saliency")) from e
    assert_not_blank(painted(page, "attribution_img"), "saliency")
    assert_no_error_toast(page)
    page.close()


# ------------------------------------------------------------------------------------ issue 19
# what a first-time user tripped over, looked at as a person would at 1400 x 1000

#: Boxes (CSS pixels) of a picture as painted and of Gradio's toolbar over its component.
TOOLBAR_AND_PICTURE = """(id) => {
    const c = document.getElementById(id);
    const img = c.querySelector('img');
    const r = img.getBoundingClientRect();
    const s = Math.min(r.width / img.naturalWidth, r.height / img.naturalHeight);
    const w = img.naturalWidth * s, h = img.naturalHeight * s;
    const t = c.querySelector('.icon-button-wrapper');
    const tb = t ? t.getBoundingClientRect() : null;
    return {picture: {left: r.left + (r.width - w) / 2, top: r.top + (r.height - h) / 2, width: w, height: h,
                      scale: s, nw: img.naturalWidth},
            toolbar: tb && tb.width > 0 ? {left: tb.left, top: tb.top, width: tb.width, height: tb.height} : null};
}"""

#: Every header cell of a table and every box that scrolls or clips it sideways.
TABLE_FIT = """(id) => {
    const root = document.getElementById(id);
    const outer = root.getBoundingClientRect();
    const clipped = [];
    for (const el of root.querySelectorAll('*')) {
        // Gradio's hidden sizing rows measure unwrapped text: not seen, not clipped
        if (!el.checkVisibility({visibilityProperty: true}) || el.closest('.sizing-body')) continue;
        const ox = getComputedStyle(el).overflowX;
        if (['auto', 'scroll', 'hidden', 'clip'].includes(ox) && el.scrollWidth > el.clientWidth + 1) {
            clipped.push(el.className + ' ' + el.scrollWidth + '>' + el.clientWidth);
        }
    }
    const cells = [...root.querySelectorAll('thead th')].map(th => {
        const b = th.getBoundingClientRect();
        const range = document.createRange();
        range.selectNodeContents(th);
        const t = range.getBoundingClientRect();
        return {text: th.innerText.trim(), left: b.left, right: b.right, text_left: t.left, text_right: t.right,
                width: b.width};
    });
    return {left: outer.left, right: outer.right, clipped, cells};
}"""


def overlap(a: dict, b: dict) -> bool:
    return not (
        a["left"] + a["width"] <= b["left"]
        or b["left"] + b["width"] <= a["left"]
        or a["top"] + a["height"] <= b["top"]
        or b["top"] + b["height"] <= a["top"]
    )


def assert_toolbar_clear(page, elem_id: str, colour_bar: bool = True) -> None:
    """Gradio's toolbar covers nothing of the picture: not the top value of its colour bar, which
    :func:`sepvit_viz.viz.render.colorbar_strip` writes at the picture's top right, nor a plot's title."""
    painted(page, elem_id)
    boxes = page.evaluate(TOOLBAR_AND_PICTURE, elem_id)
    pic, tool = boxes["picture"], boxes["toolbar"]
    assert tool is not None, f"#{elem_id}: no toolbar found (did Gradio rename its buttons' wrapper?)"
    if colour_bar:  # its top label: the strip's right 54 - 17 picture pixels, 14 high under the title band
        from sepvit_viz.viz import render

        k = pic["scale"]
        label = {
            "left": pic["left"] + (pic["nw"] - 54 + 17) * k,
            "top": pic["top"] + render.TITLE_HEIGHT * k,
            "width": 37 * k,
            "height": 14 * k,
        }
        assert not overlap(tool, label), f"{elem_id}: the toolbar {tool} covers the colour bar's top value {label}"
    assert not overlap(tool, pic), f"{elem_id}: the toolbar {tool} lies over the picture {pic}"


def test_first_time_user(url, browser, tmp_path, monkeypatch):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url, wait_until="load")
    page.locator("#photo input[type=file]").wait_for(state="attached")
    from sepvit_viz.serving import photos

    page.locator("#photo input[type=file]").set_input_files(photos.example_photos()[2])
    wait_text(page, "status", "Model:")
    open_tab(page, "Class attribution")  # the page opens on the window tokens
    wait_text(page, "attribution_caption", "for class")

    # 1. typing in the class box searches (it replaced "Top prediction"), picking explains that class
    box = page.locator("#target input")
    box.click()
    page.wait_for_timeout(300)
    page.keyboard.type("iguana")
    assert box.input_value() == "iguana"
    options = page.locator('[data-testid="dropdown-option"]')
    options.first.wait_for(state="visible")
    assert "common iguana" in options.all_inner_texts()[0]
    page.screenshot(path=tmp_path / "19_1_class_search.png")
    options.first.click()
    wait_text(page, "attribution_caption", "common iguana")
    assert_no_error_toast(page)

    # 9. while Integrated Gradients runs, its progress shows on the picture, not over the caption
    page.locator("#method input").click()
    page.locator("#method input").fill("Integrated")
    page.keyboard.press("Enter")
    states = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and "Integrated Gradients" not in text_of(page, "attribution_caption"):
        states.append(
            page.evaluate(
                """() => ['attribution_img', 'attribution_caption'].map(id => {
                    const t = document.querySelector('#' + id + ' [data-testid="status-tracker"]');
                    return !!t && !t.classList.contains('hide') && t.innerText.trim().length > 0;
                })"""
            )
        )
        if states[-1][0] and len(states) % 5 == 1:
            page.screenshot(path=tmp_path / "19_9_progress.png")
        page.wait_for_timeout(100)
    assert any(img for img, _ in states), "no progress seen on the picture"
    assert not any(caption for _, caption in states), "progress drawn over the caption"

    # 2. the toolbar covers no number of a map (nor the curves' titles)
    assert_toolbar_clear(page, "attribution_img")

    # 6. the faithfulness table fits: every header whole, nothing clipped sideways; the curves' legend
    # is below them (tested on the figure in test_app.py) and the toolbar off the picture
    page.get_by_text("Faithfulness: deletion").click()
    page.get_by_role("button", name="Compute scores").click()
    wait_text(page, "faith_table", "faithful on")
    page.locator("#faith_plot").scroll_into_view_if_needed()
    page.screenshot(path=tmp_path / "19_6_faithfulness.png", full_page=True)
    fit = page.evaluate(TABLE_FIT, "faith_table")
    from sepvit_viz.serving import handlers

    assert [c["text"] for c in fit["cells"]] == handlers.FAITH_HEADERS
    assert not fit["clipped"], fit["clipped"]
    for c in fit["cells"]:
        assert fit["left"] - 0.5 <= c["left"] and c["right"] <= fit["right"] + 0.5, c
        assert c["left"] - 0.5 <= c["text_left"] and c["text_right"] <= c["right"] + 0.5, c
    assert_toolbar_clear(page, "faith_plot", colour_bar=False)  # the insertion curve's title

    for tab, pictures in (
        ("Window tokens", ("token_img", "pixel_img")),
        ("Cross-window attention", ("pwa_row_img", "pwa_matrix_img")),
    ):
        open_tab(page, tab)
        for elem in pictures:
            assert_toolbar_clear(page, elem)
        page.screenshot(path=tmp_path / f"19_2_{pictures[0]}.png")
    open_tab(page, "Compare DSSA vs GSA")
    for elem in ("compare_a", "compare_b"):
        assert_toolbar_clear(page, elem)
    assert_toolbar_clear(page, "compare_slider")  # its one button (reset the swipe) above the picture too
    page.screenshot(path=tmp_path / "19_2_compare.png")

    # 7. an unreachable Hub repo: one clear message at once; the last analysis stays, nothing marked failed
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    asked = []

    def unreachable(*args, **kwargs):
        asked.append(kwargs)
        raise LocalEntryNotFoundError("An error happened while trying to locate the file on the Hub")

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", unreachable)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", unreachable)
    open_tab(page, "Class attribution")
    # shown again, the tab is redrawn: wait for it (its caption then carries the AUCs scored above)
    page.wait_for_function("() => document.querySelector('#attribution_caption').innerText.includes('Deletion AUC')")
    status_before, caption_before = text_of(page, "status"), text_of(page, "attribution_caption")
    page.get_by_text("Model and input size").click()
    page.get_by_label("Model").click()
    page.get_by_role("option", name="Hugging Face Hub checkpoint…").click()
    page.get_by_label("Hub repo id").fill("someone/unreachable-model")
    page.locator("#analyze").click()
    toast = page.locator('[data-testid="toast-body"]').filter(has_text="cannot be reached")
    toast.first.wait_for(state="visible", timeout=30_000)
    assert len(asked) == 1, asked  # one bounded request, no retries
    message = toast.first.inner_text()
    assert "LocalEntryNotFoundError" not in message, message
    # while it was tried, a notice said the Hub checkpoint was loading (the load step has no output to mark)
    said = page.locator('[data-testid="toast-body"]').filter(has_text="checkpoint from the Hugging Face Hub")
    assert said.count() >= 1
    page.wait_for_timeout(1000)
    page.screenshot(path=tmp_path / "19_7_hub.png")
    for elem in ("status", "top5", "attribution_img", "token_img", "pwa_row_img"):
        badges = page.locator(f'#{elem} [data-testid="status-tracker"] .error')
        assert badges.count() == 0, f"{elem} is marked as failed"
    assert text_of(page, "status") == status_before and text_of(page, "attribution_caption") == caption_before
    page.close()
