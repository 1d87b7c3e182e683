"""One home for the bounds and defaults every entry point shares (library, CLI, app).

Pure constants, no imports beyond the standard library; :mod:`sepvit_viz.validation`,
:mod:`sepvit_viz.imageio`, :mod:`sepvit_viz.viz.pipeline` and the serving layer read them from here.
The app's process-level knobs read the environment once, at import:
``SEPVIT_CONCURRENCY`` (default 2), ``SEPVIT_QUEUE_SIZE`` (32), ``SEPVIT_RESULT_CACHE_MB`` (256),
``SEPVIT_SESSIONS`` (64), ``SEPVIT_SESSIONS_MB`` (1024).
"""

from __future__ import annotations

import os
from typing import Final

# ------------------------------------------------------------------ model input (pixels)
#: Input resolution the model was trained at (the app's and the CLI's default).
DEFAULT_RESOLUTION: Final[int] = 224
#: Smallest / largest resolution an app request may ask for (448: 4x the windows of 224).
MIN_RESOLUTION: Final[int] = 64
MAX_RESOLUTION: Final[int] = 448
#: App resolutions are a multiple of the last stage's stride, so every stage's map is whole.
RESOLUTION_MULTIPLE: Final[int] = 32
#: How the app fits a photo to the model input by default: ``"aspect"`` (an input of the photo's own
#: shape, the shorter side at the resolution; :func:`sepvit_viz.viz.pipeline.fit_size`) or ``"crop"``
#: (the centre square). A square photo gets the same input either way.
DEFAULT_FIT: Final[str] = "aspect"
#: Sides the library's :func:`sepvit_viz.viz.pipeline.analyze` accepts (above 512 a global block's
#: L x L attention grows past ~10^7 entries per head).
INPUT_MIN_SIDE: Final[int] = 32
INPUT_MAX_SIDE: Final[int] = 512

# ------------------------------------------------------------------ uploaded photos
#: Largest upload in bytes (also the app's ``launch(max_file_size=...)``).
MAX_UPLOAD_BYTES: Final[int] = 20 * 1024 * 1024
#: Largest declared width * height accepted (50 MP).
MAX_PHOTO_PIXELS: Final[int] = 50_000_000
#: Shortest photo side accepted, in pixels.
MIN_PHOTO_SIDE: Final[int] = 16
#: Largest long side / short side ratio accepted.
MAX_PHOTO_ASPECT: Final[float] = 20.0
#: Photos are decoded at most this large on the short side before the analysis (JPEG draft mode).
DECODE_SHORT_SIDE: Final[int] = 1024

# ------------------------------------------------------------------ settings
#: Most interpolation / noise steps an attribution request may ask for.
MAX_STEPS: Final[int] = 256
#: Most deletion / insertion steps the app's faithfulness scores may use.
MAX_FAITHFULNESS_STEPS: Final[int] = 64
#: Default heat-map opacity.
DEFAULT_OPACITY: Final[float] = 0.6
#: Colormaps the app offers (the CLI takes any matplotlib name).
COLORMAPS: Final[tuple[str, ...]] = ("inferno", "viridis", "magma", "plasma", "turbo", "jet", "gray")
#: Pictures upscale the model input by the integer factor DISPLAY_SIDE // (longer side), at least 1:
#: a 224 px input is shown at 448 px, a 300 px input at 300 px.
DISPLAY_SIDE: Final[int] = 448

# ------------------------------------------------------------------ serving
#: Requests that may run the model at the same time (one model replica each).
CONCURRENCY: Final[int] = max(1, int(os.environ.get("SEPVIT_CONCURRENCY", "2")))
#: Requests allowed to wait in the queue before new ones are told the app is busy.
QUEUE_SIZE: Final[int] = max(1, int(os.environ.get("SEPVIT_QUEUE_SIZE", "32")))
#: Seconds a user's analysis is kept after it was made (Gradio's time to live counts from the last
#: write of the state, which only a new analysis does; API clients send no heartbeat). Memory is
#: bounded by the budget below, not by this.
STATE_TTL_S: Final[int] = 3600
#: Sessions whose state Gradio keeps at most (Gradio's default is 10,000); the oldest goes first.
STATE_SESSIONS: Final[int] = max(1, int(os.environ.get("SEPVIT_SESSIONS", "64")))
#: Bytes of arrays the users' kept analyses may hold together (one analysis is about 5 MB at 224 px,
#: 45 MB at 448 px); past it the least recently used analysis is released (its user presses Analyze
#: again).
SESSION_BYTES: Final[int] = max(0, int(os.environ.get("SEPVIT_SESSIONS_MB", "1024"))) * 2**20
#: Bytes of arrays the result cache may hold, and how many results at most.
RESULT_CACHE_BYTES: Final[int] = max(0, int(os.environ.get("SEPVIT_RESULT_CACHE_MB", "256"))) * 2**20
RESULT_CACHE_ENTRIES: Final[int] = 24  # 9 examples x (forward + attribution) stay warm, with room
#: Models kept loaded at once (each a pool of CONCURRENCY replicas).
MODEL_CACHE_ENTRIES: Final[int] = 4
#: Seconds to wait for the Hugging Face Hub before saying it cannot be reached (one request, no
#: retries: huggingface_hub's own backoff waits about 24 s for a file that is not cached).
HUB_TIMEOUT_S: Final[float] = 5.0
#: Largest checkpoint file fetched from the Hub: SepViT-Base in float32 is about 330 MB; anything
#: bigger is not a SepViT checkpoint and would fill a Space's disk and memory before being refused.
MAX_HUB_CHECKPOINT_BYTES: Final[int] = 400 * 2**20
#: Seconds prepared download files are kept.
DOWNLOAD_TTL_S: Final[int] = 3600
#: Prepared download folders kept at most (the newest; Gradio copies the files into its own cache as
#: the answer goes out, so older folders are only a convenience). About 45 MB each at 448 px.
DOWNLOAD_FOLDERS_MAX: Final[int] = 8

# ------------------------------------------------------------------ command lines
#: Most torch CPU threads ``--threads`` accepts (render, stats, distill, evaluate): room for the
#: largest servers (384 cores and more), while a number such as 2**31 gives a clear refusal instead
#: of torch's overflow error.
MAX_THREADS: Final[int] = 1024
#: Most photos per forward ``stats --batch-size`` accepts: 256 photos at 448 px under attention
#: capture need several GB; a larger value would end in an out-of-memory kill, not an answer.
MAX_BATCH_SIZE: Final[int] = 256
