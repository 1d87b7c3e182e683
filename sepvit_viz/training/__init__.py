"""Making the weights: distillation from an ImageNet teacher, and held-out evaluation.

- :mod:`.teacher`: the EfficientNet-Lite0 teacher;
- :mod:`.data`: photo folders, the per-size photo cache, augmentation;
- :mod:`.distill`: ``python -m sepvit_viz.training.distill`` (resumable, writes the model card);
- :mod:`.evaluate`: ``python -m sepvit_viz.training.evaluate`` (held-out folders, the card's figures).
"""
