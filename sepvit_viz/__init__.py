"""sepvit-viz: SepViT (Separable Vision Transformer) and tools to watch its attention.

Importable without Gradio::

    import sepvit_viz
    model = sepvit_viz.create_model("sepvit_lite", pretrained=True).eval()
"""

from sepvit_viz.model.config import VARIANTS, SepViTConfig
from sepvit_viz.model.sepvit import BlockInfo, SepViT, create_model, feature_sizes, list_models
from sepvit_viz.model.weights import (
    CheckpointError,
    checkpoint_filter_fn,
    from_official,
    load_checkpoint,
    load_from_hub,
    save_checkpoint,
)
from sepvit_viz.model.windows import WindowGeometry

__version__ = "0.1.0"

__all__ = [
    "VARIANTS",
    "BlockInfo",
    "CheckpointError",
    "SepViT",
    "SepViTConfig",
    "WindowGeometry",
    "checkpoint_filter_fn",
    "create_model",
    "feature_sizes",
    "from_official",
    "list_models",
    "load_checkpoint",
    "load_from_hub",
    "save_checkpoint",
]
