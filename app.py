"""SepViT Attention Explorer: the Gradio app (Hugging Face Spaces runs ``python app.py``).

Layout and event wiring only; every handler lives in :mod:`sepvit_viz.serving.handlers`, every
bound and default in :mod:`sepvit_viz.limits`. Importing this module
builds ``demo`` without launching it (tests call ``demo.launch(prevent_thread_lock=True, ...)``).

Environment: ``GRADIO_SERVER_NAME`` (default 0.0.0.0, what Spaces expects), ``PORT`` or
``GRADIO_SERVER_PORT`` (default 7860), ``SEPVIT_CONCURRENCY`` (requests running the model at once,
default 2), ``SEPVIT_QUEUE_SIZE`` (waiting requests before "busy", default 32).
"""

from __future__ import annotations

import os

import gradio as gr

from sepvit_viz import limits
from sepvit_viz.serving import handlers, model_tab, models, photos, settings
from sepvit_viz.serving.page import FAITH_TABLE, LAUNCH_STYLE, MAP_CLASS, PHOTO_FORMAT, map_image

INTRO = """# SepViT Attention Explorer
Upload a photo (file, drag and drop, paste, webcam) or pick an example. **SepViT**, the Separable Vision
Transformer ([Li et al. 2022](https://arxiv.org/abs/2203.15380)), looks at it in windows: inside each
window (**DWA**, with a learned *window token*), then window to window (**PWA**), in alternating
**DSSA** (7x7 windows) and **GSA** (14x14 groups) blocks. Explore what each part saw.
"""

# events that run the model share one concurrency budget (one model replica each)
MODEL_WORK = dict(concurrency_id="model", concurrency_limit=limits.CONCURRENCY)
# events that only redraw from the cached analysis
DRAWING = dict(concurrency_id="draw", concurrency_limit=4, show_progress="minimal")
PRIVATE = dict(api_visibility="private")
# dropdowns whose choices depend on the analysis (blocks, heads, pairs): the page gets this model's
# choices after each analysis, but an API call sees only the choices made at start (two heads), so
# Gradio would refuse a head of stage 3 or 4, or a block of a variant with more blocks; the handlers
# check every value against the analysis instead
PER_ANALYSIS = dict(allow_custom_value=True)
# pictures of maps and plots: Gradio's image toolbar goes above them, not over their colour bars
MAP = [MAP_CLASS]

with gr.Blocks(title="SepViT Attention Explorer", analytics_enabled=False, delete_cache=(1800, 3600)) as demo:
    analysis = gr.State(None, time_to_live=limits.STATE_TTL_S)
    shown_tab = gr.State(handlers.TABS[0])  # the tab the page shows: a new analysis draws it
    gr.Markdown(INTRO)
    banner = gr.Markdown(elem_id="banner")

    with gr.Row(equal_height=False):
        # ------------------------------------------------------------------ inputs
        with gr.Column(scale=2, min_width=300):
            photo = photos.photo_input(label="Photo", height=300, elem_id="photo")
            gr.Examples(
                examples=photos.example_photos(),
                inputs=photo,
                label="Example photos (CC BY 2.0, see assets/examples/ATTRIBUTION.md)",
                examples_per_page=9,
            )
            gr.Markdown(photos.examples_caption(), elem_id="examples_caption")
            analyze_btn = gr.Button("Analyze", variant="primary", elem_id="analyze")
            with gr.Accordion("Display", open=True):
                cmap = gr.Dropdown(list(limits.COLORMAPS), value=limits.COLORMAPS[0], label="Colormap", elem_id="cmap")
                opacity = gr.Slider(
                    0.0, 1.0, value=limits.DEFAULT_OPACITY, step=0.05, label="Heat-map opacity", elem_id="opacity"
                )
            with gr.Accordion("Model and input size", open=False):
                model = gr.Dropdown(models.model_choices(), value=models.MODEL_DEFAULT, label="Model")
                hub_repo = gr.Textbox(
                    value="",
                    label="Hub repo id",
                    placeholder="owner/name (a model.safetensors saved by sepvit_viz)",
                    visible=False,
                )
                hub_revision = gr.Textbox(value="", label="Revision (branch, tag or commit; optional)", visible=False)
                resolution = gr.Slider(
                    limits.MIN_RESOLUTION,
                    limits.MAX_RESOLUTION,
                    value=limits.DEFAULT_RESOLUTION,
                    step=limits.RESOLUTION_MULTIPLE,
                    label="Input resolution (px; the shorter side when keeping the aspect): larger = more windows",
                )
                fit = gr.Radio(
                    [("keep the photo's aspect", "aspect"), ("crop to a square", "crop")],
                    value=limits.DEFAULT_FIT,
                    label="Photo shape",
                    elem_id="fit",
                )

        # ------------------------------------------------------------------ outputs
        with gr.Column(scale=5):
            status = gr.Markdown(elem_id="status")
            top5 = gr.Label(num_top_classes=5, label="Top-5 classes", elem_id="top5")
            # the first tab is what /analyze returns; every other tab is drawn when it is shown
            with gr.Tabs(selected=handlers.TABS[0]):
                with gr.Tab("Window tokens", id="tokens") as tokens_tab:
                    with gr.Row():
                        token_block = gr.Dropdown(
                            handlers.block_choices(handlers.default_block_table()),
                            value=settings.DEFAULT_TOKEN_BLOCK,
                            label="Stage and block",
                            elem_id="token_block",
                            **PER_ANALYSIS,
                        )
                        token_head = gr.Dropdown(handlers.head_choices(2), value="mean", label="Head", **PER_ANALYSIS)
                    with gr.Row():
                        token_img = map_image("token_img", "Window tokens over their windows (click a pixel)")
                        pixel_img = map_image("pixel_img", "The clicked pixel's attention in its window")
                    pixel_view = gr.Radio(
                        [
                            ("this pixel's attention in its window (DWA)", "dwa"),
                            ("through the whole block (DWA, then PWA)", "block"),
                        ],
                        value="dwa",
                        label="Right picture",
                    )
                    token_caption = gr.Markdown(elem_id="token_caption")
                    pixel_caption = gr.Markdown(elem_id="pixel_caption")
                    point_x = gr.Number(value=-1, visible=False, label="x", precision=0)
                    point_y = gr.Number(value=-1, visible=False, label="y", precision=0)

                with gr.Tab("Class attribution", id="attribution") as attribution_tab:
                    with gr.Row():
                        target = gr.Dropdown(
                            handlers.target_choices(),
                            value=settings.TOP_PREDICTION,
                            label="Class to explain",
                            info="click, then type to search (names or indices)",
                            elem_id="target",
                            filterable=True,
                            allow_custom_value=True,
                        )
                        method = gr.Dropdown(
                            handlers.method_choices(),
                            value=settings.DEFAULT_METHOD,
                            label="Attribution method",
                            elem_id="method",
                        )
                    smooth = gr.Checkbox(
                        value=False,
                        label="Smooth the stride-4 stripes (display only)",
                        info="a 7 px tent filter; the scores and downloaded arrays use the raw map",
                        elem_id="smooth",
                    )
                    attribution_img = map_image("attribution_img", "Attribution")
                    attribution_caption = gr.Markdown(elem_id="attribution_caption")
                    with gr.Accordion("Faithfulness: deletion / insertion, ROAD and a verdict", open=False):
                        with gr.Row():
                            scope = gr.Radio(list(handlers.FAITH_SCOPES), value="this method", label="Score")
                            steps = gr.Slider(4, 64, value=handlers.FAITH_STEPS, step=4, label="Steps")
                            sanity = gr.Checkbox(False, label="Sanity check (one more attribution per method)")
                            faith_btn = gr.Button("Compute scores")
                        faith_table = gr.Dataframe(
                            headers=handlers.FAITH_HEADERS,
                            column_widths=handlers.FAITH_WIDTHS,
                            wrap=True,
                            interactive=False,
                            label=handlers.FAITH_LABEL,
                            elem_id=FAITH_TABLE,
                        )
                        faith_plot = map_image("faith_plot", "Curves", photo=False, show_label=True)

                with gr.Tab("Cross-window attention", id="pwa") as pwa_tab:
                    with gr.Row():
                        pwa_block = gr.Dropdown(
                            handlers.block_choices(handlers.default_block_table(), pwa_only=True),
                            value=settings.DEFAULT_PWA_BLOCK,
                            label="Stage and block",
                            elem_id="pwa_block",
                            **PER_ANALYSIS,
                        )
                        pwa_head = gr.Dropdown(handlers.head_choices(2), value="mean", label="Head", **PER_ANALYSIS)
                    with gr.Row():
                        pwa_row_img = map_image(
                            "pwa_row_img", "One window's attention over all windows (click a window)"
                        )
                        pwa_matrix_img = map_image("pwa_matrix_img", "PWA matrix", photo=False)
                    pwa_caption = gr.Markdown(elem_id="pwa_caption")
                    window = gr.Number(value=-1, visible=False, label="window", precision=0)

                with gr.Tab("Compare DSSA vs GSA", id="compare") as compare_tab:
                    pair = gr.Dropdown(
                        handlers.pair_choices(handlers.default_block_table()),
                        label="Block pair",
                        elem_id="pair",
                        **PER_ANALYSIS,
                    )
                    with gr.Row():
                        with gr.Column(scale=3):
                            compare_slider = gr.ImageSlider(
                                label="Swipe: DSSA | GSA",
                                format=PHOTO_FORMAT,
                                interactive=False,
                                show_label=False,
                                max_height=640,
                                buttons=[],  # download and fullscreen are on the two panels below
                                elem_id="compare_slider",
                                elem_classes=MAP,  # its reset button gets a row above the picture
                            )
                        with gr.Column(scale=2):
                            compare_caption = gr.Markdown(elem_id="compare_caption")
                    with gr.Row():
                        compare_a = map_image("compare_a", "DSSA")
                        compare_b = map_image("compare_b", "GSA")

                with gr.Tab("Model", id="model") as model_tab_:
                    gr.Markdown(
                        "What every head of every block does over the bundled example photos (median, 25-75% and "
                        "5-95% of the photos), with the current photo's own values as black stars: is it typical?"
                    )
                    measure = gr.Dropdown(
                        model_tab.MEASURE_CHOICES, value=model_tab.DEFAULT_MEASURE, label="Measure", elem_id="measure"
                    )
                    depth_img = map_image("depth_img", "Measure against depth", photo=False, show_label=True)
                    depth_caption = gr.Markdown(elem_id="depth_caption")
                    kinds_img = map_image(
                        "kinds_img", "DSSA, GSA and global blocks by stage", photo=False, show_label=True
                    )

                with gr.Tab("Downloads", id="downloads") as downloads_tab:
                    gr.Markdown(
                        "PNG files of the current views and `sepvit_analysis.npz` with the raw arrays "
                        "(probabilities, every block's DWA / PWA attention, the attribution maps)."
                    )
                    downloads_btn = gr.Button("Prepare downloads", elem_id="downloads_btn")
                    downloads = gr.File(label="Files", file_count="multiple", interactive=False, elem_id="downloads")

    # ---------------------------------------------------------------------- events
    # fmt: off
    # events that redraw keep their last trigger: Gradio's default (outside .change) drops a trigger
    # that arrives while the same event is still pending, so a second photo sent while the first
    # one's attribution was drawn would leave that tab empty, and a method picked during another
    # method's attribution would never be drawn (buttons keep the default: a double click runs once)
    last = dict(trigger_mode="always_last")
    analyze_inputs = [photo, model, hub_repo, hub_revision, resolution, target, method, cmap, opacity,
                      token_block, token_head, pwa_block, pwa_head, pair, fit, smooth, pixel_view]
    # the first tab's pictures only (handlers.TABS[0]); the other tabs are drawn when shown
    analyze_outputs = [analysis, status, top5, token_img, pixel_img]
    # everything else a new analysis changes (dropdown choices, captions, the other tabs emptied), no
    # model run: one Settings object in, values by name out (a new control is bound here once)
    page = settings.Binding(
        model=model, hub_repo=hub_repo, hub_revision=hub_revision, resolution=resolution, target=target,
        method=method, cmap=cmap, opacity=opacity, token_block=token_block, token_head=token_head,
        pixel_view=pixel_view, x=point_x, y=point_y, pwa_block=pwa_block, pwa_head=pwa_head, window=window,
        pair=pair, fit=fit, smooth=smooth, tab=shown_tab, faith_table=faith_table, faith_plot=faith_plot,
        token_img=token_img, token_caption=token_caption, pixel_img=pixel_img, pixel_caption=pixel_caption,
        attribution_img=attribution_img, attribution_caption=attribution_caption,
        pwa_matrix_img=pwa_matrix_img, pwa_row_img=pwa_row_img, pwa_caption=pwa_caption,
        compare_slider=compare_slider, compare_a=compare_a, compare_b=compare_b, compare_caption=compare_caption,
        downloads=downloads,
    )
    after_fn, after_inputs, after_outputs = page.handler(handlers.after_analysis, analysis, handlers.AFTER_ANALYSIS)
    after = dict(fn=after_fn, inputs=after_inputs, outputs=after_outputs, **PRIVATE)
    # the shown tab's views (drawn from the analysis; the attribution tab may run its attribution)
    tab_views = [name for names in handlers.TAB_VIEWS.values() for name in names]
    show_fn, show_inputs, show_outputs = page.handler(handlers.show_tab, analysis, tab_views, progress=True)
    show = dict(fn=show_fn, inputs=show_inputs, outputs=show_outputs, **PRIVATE, **last)
    shown_fn, _, _ = page.handler(handlers.show_tab_after_analysis, analysis, tab_views, progress=True)
    show_after = dict(show, fn=shown_fn, show_progress_on=attribution_img, **MODEL_WORK)
    # the Model tab: statistics of the chosen model (computed once per model), this photo marked
    stats_args = dict(fn=model_tab.model_tab, inputs=[analysis, measure, model, hub_repo, hub_revision],
                      outputs=[depth_img, depth_caption, kinds_img], **MODEL_WORK, **last)
    measure.input(api_name="model_stats", **stats_args)  # the public endpoint first, then the private events
    # after a new analysis, only while the Model tab is shown
    stats_after = dict(stats_args, fn=model_tab.model_tab_if_shown, inputs=[shown_tab, *stats_args["inputs"]],
                       **PRIVATE)
    # the model is loaded first, by an event without outputs: a model that cannot be loaded (an
    # unreachable Hub repo) says so once and leaves the last analysis on the page untouched
    # (a model not loaded yet says so in a notice: a progress mark on an output would be marked failed
    # when the load fails, and the page's last analysis must stay as it is)
    load_args = dict(fn=handlers.load_model, inputs=[model, hub_repo, hub_revision], outputs=None,
                     show_progress="hidden", **PRIVATE, **MODEL_WORK)
    analyze_btn.click(**load_args).success(handlers.analyze, analyze_inputs, analyze_outputs, api_name="analyze",
                                           **MODEL_WORK, **last).success(**after, **last).success(
        **show_after).success(**stats_after)
    # a new photo (upload, paste, webcam or example) is analysed at once
    # (a refused photo, or its model, leaves the last analysis on the page: the status says whose it is)
    refused = dict(fn=handlers.photo_refused, inputs=[analysis], outputs=[status], **PRIVATE, queue=False)
    load_new = photo.change(**load_args, **last)
    load_new.failure(**refused)
    new_photo = load_new.success(
        handlers.analyze_new_photo, [*analyze_inputs, analysis], analyze_outputs, **PRIVATE, **MODEL_WORK, **last)
    new_photo.failure(**refused)
    new_photo.success(**after, **last).success(**show_after).success(**stats_after)
    # a tab that is selected is drawn from the analysis (never a forward); the page remembers it
    for tab_id, tab in (("tokens", tokens_tab), ("pwa", pwa_tab), ("compare", compare_tab)):
        tab.select(handlers.tab_marker(tab_id), None, shown_tab, **PRIVATE, queue=False).then(**show, **DRAWING)
    attribution_tab.select(handlers.tab_marker("attribution"), None, shown_tab, **PRIVATE, queue=False).then(
        **show, show_progress_on=attribution_img, **MODEL_WORK)
    model_tab_.select(handlers.tab_marker("model"), None, shown_tab, **PRIVATE, queue=False).then(
        **stats_args, **PRIVATE)
    downloads_tab.select(handlers.tab_marker("downloads"), None, shown_tab, **PRIVATE, queue=False)
    demo.load(handlers.model_banner, None, banner, **PRIVATE, queue=False)  # checked on every visit
    model.input(handlers.model_fields, model, [hub_repo, hub_revision, banner], **PRIVATE, queue=False).then(
        **stats_after)

    # class attribution: a new class or method runs the attribution only (the forward is cached)
    # (progress on the picture only: over the caption its text would overlap the old caption)
    explain_args = dict(fn=handlers.explain, inputs=[analysis, target, method, cmap, opacity, smooth],
                        outputs=[attribution_img, attribution_caption], show_progress_on=attribution_img,
                        **MODEL_WORK, **last)
    method.input(api_name="explain", **explain_args)
    target.input(**explain_args, **PRIVATE)
    smooth.input(**explain_args, **PRIVATE)
    faith_btn.click(handlers.faithfulness, [analysis, target, method, scope, steps, sanity], [faith_table, faith_plot],
                    api_name="faithfulness", **MODEL_WORK).success(
        handlers.attribution_caption_after_scores, [analysis, target, method, cmap, opacity, smooth],
        attribution_caption, **PRIVATE, **DRAWING, **last)

    # window tokens: block / head / view redraw; a click on the token map picks a pixel
    # (public endpoints are registered before the private events that share their function)
    tokens_args = dict(fn=handlers.window_tokens,
                       inputs=[analysis, token_block, token_head, cmap, opacity, point_x, point_y, pixel_view],
                       outputs=[token_img, token_caption, pixel_img, pixel_caption], **DRAWING, **last)
    token_head.input(api_name="window_tokens", **tokens_args)
    token_block.input(handlers.head_update, [analysis, token_block, token_head], token_head,
                      **PRIVATE, queue=False).then(**tokens_args, **PRIVATE)
    pixel_view.input(**tokens_args, **PRIVATE)
    token_img.select(handlers.point_from_select, [analysis], [point_x, point_y], **PRIVATE, queue=False).then(
        handlers.pixel_query, [analysis, token_block, token_head, point_x, point_y, cmap, opacity, pixel_view],
        [token_img, pixel_img, pixel_caption], api_name="pixel_query", **DRAWING, **last)

    # cross-window attention: a click on the photo picks a window; block / head redraw
    pwa_args = dict(fn=handlers.cross_window, inputs=[analysis, pwa_block, pwa_head, window, cmap, opacity],
                    outputs=[pwa_matrix_img, pwa_row_img, pwa_caption], **DRAWING, **last)
    pwa_row_img.select(handlers.window_from_select, [analysis, pwa_block], [window], **PRIVATE, queue=False).then(
        api_name="cross_window", **pwa_args)
    pwa_block.input(handlers.head_update, [analysis, pwa_block, pwa_head], pwa_head,
                    **PRIVATE, queue=False).then(handlers.reset_window, None, window, **PRIVATE, queue=False).then(
        **pwa_args, **PRIVATE)
    pwa_head.input(**pwa_args, **PRIVATE)

    # compare DSSA vs GSA
    compare_args = dict(fn=handlers.compare, inputs=[analysis, pair, token_head, cmap, opacity],
                        outputs=[compare_slider, compare_a, compare_b, compare_caption], **DRAWING, **last)
    pair.input(api_name="compare", **compare_args)

    # colormap / opacity: redraw every view from the cached analysis (no model run)
    render_args = dict(
        fn=handlers.rerender,
        inputs=[analysis, target, method, cmap, opacity, token_block, token_head, point_x, point_y, pwa_block,
                pwa_head, window, pair, pixel_view, smooth],
        outputs=[attribution_img, token_img, pixel_img, pwa_matrix_img, pwa_row_img, compare_slider, compare_a,
                 compare_b],
        **DRAWING,
        **last,
    )
    cmap.input(api_name="render", **render_args)
    opacity.input(**render_args, **PRIVATE)  # not only release: a change by keyboard redraws too

    downloads_btn.click(
        handlers.prepare_downloads,
        [analysis, target, method, cmap, opacity, token_block, token_head, point_x, point_y, pwa_block, pwa_head,
         window, pair, pixel_view, smooth],
        downloads, api_name="downloads", **DRAWING)
    # fmt: on

demo.queue(default_concurrency_limit=limits.CONCURRENCY, max_size=limits.QUEUE_SIZE)


def main() -> None:
    """Start the server where Spaces (or the environment) says."""
    handlers.warm_up()
    demo.launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"),
        server_port=int(os.environ.get("PORT") or os.environ.get("GRADIO_SERVER_PORT") or 7860),
        max_file_size=limits.MAX_UPLOAD_BYTES,
        show_error=False,
        state_session_capacity=limits.STATE_SESSIONS,  # Gradio keeps up to 10,000 sessions' state by default
        theme=gr.themes.Soft(),
        **LAUNCH_STYLE,  # the toolbar above the pictures, the class box's search
    )


if __name__ == "__main__":
    main()
