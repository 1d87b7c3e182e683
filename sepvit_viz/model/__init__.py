"""The SepViT model and what it needs to run: nothing here knows about visualization.

- :mod:`.sepvit`: the network (``SepViT``, ``create_model``, the variant registry);
- :mod:`.config`: the variant table (``SepViTConfig``, ``VARIANTS``);
- :mod:`.attention`: DSSA (window-token depthwise + pointwise attention), GSA and global attention,
  whose probabilities pass through named ``dwa_tap`` / ``pwa_tap`` modules that hooks can catch;
- :mod:`.layers`: patch embedding, positional convolution, MLP, drop path;
- :mod:`.windows`: window partition and the window geometry of each block;
- :mod:`.weights`: checkpoints (safetensors with the config in metadata), the Hub, the model card;
- :mod:`.inference`, :mod:`.runtime`: compiled / bf16 inference helpers, allocator and CPU checks.
"""

from sepvit_viz.model.sepvit import BlockInfo, SepViT, create_model, feature_sizes, list_models

__all__ = ["BlockInfo", "SepViT", "create_model", "feature_sizes", "list_models"]
