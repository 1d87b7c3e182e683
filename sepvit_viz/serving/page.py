"""What the page needs beyond its components: a little CSS and one script, given to ``launch``.

* :data:`MAP_CLASS`: the class of every picture that shows a map or a plot. Gradio floats an
  image's toolbar (fullscreen, download, share) over the picture's top right corner, where the
  colour bars write their largest value and the curves their titles. :data:`CSS` gives the toolbar a
  row of its own above the picture, so it covers nothing.
* :data:`SEARCH_BOXES`: dropdowns whose text is a search box (the class to explain). Gradio keeps
  the chosen label in the box, so typing after a click appends to it ("Top predictioniguana") and
  matches nothing. :data:`JS` selects the whole text when such a box is clicked or focused: typing
  then replaces it and filters the list, and leaving the box without typing keeps the choice.

* :data:`FAITH_TABLE`: the faithfulness table, whose headers :data:`CSS` sets a little smaller and
  breaks between words only, so that every column fits a 1400 px wide window whole.

* :data:`PHOTO_FORMAT` / :data:`PLOT_FORMAT`: how Gradio encodes the pictures it sends. Maps drawn
  over the photo are sent as JPEG (fast to encode; colour bars and titles stay legible); plots and
  the PWA matrix as PNG; the Downloads tab writes PNG (timings: ``docs/app.md``). :func:`map_image`
  builds such a picture.

``app.main()`` and the tests launch with :data:`LAUNCH_STYLE` (``demo.launch(**LAUNCH_STYLE)``).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CSS",
    "FAITH_TABLE",
    "JS",
    "LAUNCH_STYLE",
    "MAP_CLASS",
    "PHOTO_FORMAT",
    "PLOT_FORMAT",
    "SEARCH_BOXES",
    "map_image",
]

MAP_CLASS = "sepvit-map"
SEARCH_BOXES = ("target",)
#: The faithfulness table (its headers wrap in fixed column widths, ``handlers.FAITH_WIDTHS``).
FAITH_TABLE = "faith_table"

CSS = f"""
/* the toolbar takes a row above the picture instead of floating over its top right corner */
.{MAP_CLASS} .image-container > .icon-button-wrapper.top-panel {{
    position: static;
    width: fit-content;
    margin: 0 0 2px auto;
}}
/* the faithfulness table's headers: smaller, broken between words only (not "deleti-on") */
#{FAITH_TABLE} th .cell-wrap {{
    padding: 4px;
}}
#{FAITH_TABLE} th .wrap, #{FAITH_TABLE} th span {{
    font-size: 11px;
    word-break: normal;
    overflow-wrap: normal;
}}
"""

_SELECTORS = ", ".join(f"#{box} input" for box in SEARCH_BOXES)

JS = f"""
() => {{
    // a click or focus on a search box selects its text: typing replaces it (and searches)
    const select = (event) => {{
        const el = event.target;
        if (el instanceof HTMLInputElement && el.matches({_SELECTORS!r})) {{
            setTimeout(() => el.select(), 0);
        }}
    }};
    document.addEventListener("focusin", select, true);
    document.addEventListener("click", select, true);
}}
"""

#: Keyword arguments of ``demo.launch`` that style the page.
LAUNCH_STYLE: dict[str, Any] = {"css": CSS, "js": JS}

#: Gradio's encoding of the maps drawn over the photo (lossy, fast to encode).
PHOTO_FORMAT = "jpeg"
#: Gradio's encoding of plots and matrices (flat colours and text: lossless, and small anyway).
PLOT_FORMAT = "png"


def map_image(elem_id: str, label: str, *, photo: bool = True, show_label: bool = False, **kwargs: Any) -> Any:
    """An output picture of a map or plot: not editable, the toolbar in its own row (:data:`MAP_CLASS`),
    encoded as :data:`PHOTO_FORMAT` when it is drawn over the photo, else :data:`PLOT_FORMAT`."""
    import gradio as gr  # only the page needs Gradio; the CSS and script above are plain strings

    fmt = PHOTO_FORMAT if photo else PLOT_FORMAT
    return gr.Image(
        label=label,
        format=fmt,
        interactive=False,
        show_label=show_label,
        elem_id=elem_id,
        elem_classes=[MAP_CLASS],
        **kwargs,
    )
