"""The serving layer of the app: thin, each concern in its own module.

* :mod:`.settings`: :class:`~.settings.Settings`, the one object of every control's value between
  ``app.py`` and the handlers (a new control is added there and in the layout, nowhere else).
* :mod:`.models`: the model pool (each model loaded once, a few replicas, one per running request).
* :mod:`.cache`: the result cache (bounded LRU under typed keys: :class:`~.cache.ForwardKey`,
  :class:`~.cache.AttributionKey`).
* :mod:`.photos`: undecoded uploads in, upright RGB photos out (clear messages for bad files).
* :mod:`.session`: a photo's forward (:class:`~.session.Forward`) and one user's analysis of it
  (:class:`~.session.Session`), held per request so the memory budget cannot release it mid-request.
* :mod:`.inputs`: pure checks of the raw values a page or API call sends.
* :mod:`.handlers`: the Gradio handlers; they draw through :mod:`sepvit_viz.viz.views`.
* :mod:`.downloads`: PNG and .npz files of the current views, pruned after an hour.
* :mod:`.model_tab`: the "Model" tab (model-level attention statistics, the current photo marked).
* :mod:`.errors`: errors meant for users (one log line, no traceback).
* :mod:`.page`: the CSS and the script the page is launched with (``page.LAUNCH_STYLE``).

Shared, module-level objects (the pool, the cache) hold no per-user data, with one exception: which
analysis is each browser tab's newest (``session._LATEST``, a number per tab, so a slow result for an
earlier photo is dropped); per user there is one :class:`~.session.Session` in a ``gr.State``.
"""
