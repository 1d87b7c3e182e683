"""An exponential moving average of a model's weights (``distill --ema-decay``).

A run that starts again from a checkpoint made at the end of a cosine schedule (learning rate near
zero) leaves that low-noise point at once; an average of the weights along the way stands in for such
an end at every step, so that the model a run evaluates and exports is the average, while training
goes on with the weights themselves (docs/training.md, "A run").
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["WeightAverage"]


class WeightAverage:
    """``average <- decay * average + (1 - decay) * weights``, after every optimiser step.

    Kept for every floating-point entry of the model's ``state_dict`` (parameters and buffers), as
    float32 copies on the model's device; other entries (integer buffers) are the model's own. It
    starts at the model's weights when made. :meth:`swapped` holds the average in the model for a
    ``with`` block (evaluation, export) and puts the trained weights back after it.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the average's decay must lie in (0, 1), got {decay}")
        self.decay = decay
        self.average = {k: v.detach().float().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One step of the average towards ``model``'s current weights."""
        for k, v in model.state_dict().items():
            if k in self.average:
                self.average[k].lerp_(v.detach().float(), 1.0 - self.decay)

    @contextmanager
    def swapped(self, model: nn.Module) -> Iterator[nn.Module]:
        """``model`` holding the average inside the block; its own weights again after it (also on an error)."""
        state = model.state_dict()  # tensors that share the model's storage
        kept = {k: state[k].detach().clone() for k in self.average}
        with torch.no_grad():
            for k, avg in self.average.items():
                state[k].copy_(avg)
        try:
            yield model
        finally:
            with torch.no_grad():
                for k, v in kept.items():
                    state[k].copy_(v)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.average)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """The average saved by :meth:`state_dict` (the same model's entries, else a clear error)."""
        if set(state) != set(self.average):
            missing, extra = sorted(set(self.average) - set(state)), sorted(set(state) - set(self.average))
            raise ValueError(
                f"the saved weight average does not fit this model (missing {missing[:3]}, extra {extra[:3]})"
            )
        for k, v in state.items():
            self.average[k].copy_(v)
