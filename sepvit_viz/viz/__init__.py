"""Watching the model: capture -> maps (pure functions on arrays) -> views (picture + caption).

- :mod:`.capture`: ``AttentionCapture``, the one hook manager (per call, never on the model);
- :mod:`.maps`: window-token, pixel, PWA, GSA, whole-block and rollout maps from captured arrays;
- :mod:`.geometry`: model-input pixels <-> tokens, windows and displayed pictures (torch-free);
- :mod:`.pipeline`: ``analyze``: one photo through the model under capture, maps memoised;
- :mod:`.views`: (analysis, settings) -> ``View`` (picture, caption, map), shared by the app and the CLI;
- :mod:`.render`: drawing (numpy + Pillow, matplotlib's Figure API on Agg; never pyplot).
"""
