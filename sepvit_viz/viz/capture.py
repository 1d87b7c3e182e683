"""Per-call capture of SepViT's attention probabilities.

    with AttentionCapture(model) as cap:
        logits = model(x)
    records = cap.records          # one AttentionRecord per block and forward, in model order

The capture hooks every block's named taps (``attn.dwa_tap`` and ``attn.pwa_tap``) for the duration of
the ``with`` only; nothing is stored on the model. Attaching a hook makes the attention take its
explicit (watched) path instead of the fused ``scaled_dot_product_attention`` one, for as long as the
hooks exist; both paths agree. Hooks are removed on exit, also when the forward raises.

Thread safety: a forward hook registered by one thread also fires for another thread's concurrent
forward on the same model, so each capture keeps only what its own thread computed
(``threading.get_ident()`` at ``__enter__``). Run the forward in the thread that entered the capture.

Records hold numpy copies on the CPU (detached, float32):
    dwa: (B, n, h, L, L) with L = P + 1 (window token at index 0) or L = H * W for global blocks;
    pwa: (B, h, n, n) or None (global blocks).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np
import torch
from torch import nn

from sepvit_viz.model.windows import WindowGeometry
from sepvit_viz.viz.geometry import block_label
from sepvit_viz.viz.maps import BlockAttention

__all__ = [
    "AttentionCapture",
    "AttentionRecord",
    "CaptureError",
    "TapTensor",
    "capture_forward",
]


class CaptureError(RuntimeError):
    """The model exposes no attention taps, or none fired during the capture."""


@dataclass(frozen=True)
class AttentionRecord:
    """What one block's attention did in one forward.

    Attributes:
        name: module name of the block (``stages.1.blocks.1``).
        stage, index: 0-based stage and block index inside the stage.
        kind: ``"dssa" | "gsa" | "global"``.
        window_size: the block's nominal window (7 or 14).
        num_heads: attention heads.
        geometry: the tiling of this forward's feature map (window grid, padding, stride, token).
        dwa: (B, n, h, L, L) DWA probabilities (window token at index 0 when ``geometry.has_token``).
        pwa: (B, h, n, n) PWA probabilities, None for global blocks.
    """

    name: str
    stage: int
    index: int
    kind: str
    window_size: int
    num_heads: int
    geometry: WindowGeometry
    dwa: np.ndarray
    pwa: np.ndarray | None

    @property
    def grid(self) -> tuple[int, int]:
        return self.geometry.grid

    @property
    def pad(self) -> tuple[int, int]:
        return self.geometry.pad

    @property
    def feature_size(self) -> tuple[int, int]:
        return self.geometry.height, self.geometry.width

    @property
    def has_token(self) -> bool:
        return self.geometry.has_token

    @property
    def label(self) -> str:
        """e.g. ``stage 2 · block 2 · GSA (w=14, 2x2 groups)`` (:func:`sepvit_viz.viz.geometry.block_label`)."""
        return block_label(self.stage, self.index, self.kind, self.window_size, self.grid, self.feature_size)

    def image(self, i: int = 0) -> BlockAttention:
        """Image ``i`` of the batch as the per-image arrays that :mod:`sepvit_viz.viz.maps` takes."""
        return BlockAttention(
            self.dwa[i], None if self.pwa is None else self.pwa[i], self.geometry, self.stage, self.name, self.kind
        )


@dataclass
class _Pending:
    block: nn.Module
    name: str
    geometry: WindowGeometry
    dwa: np.ndarray
    pwa: np.ndarray | None = None


@dataclass(frozen=True)
class TapTensor:
    """One tap firing kept as a tensor (``keep_graph=True``): the probabilities stay in the autograd
    graph, so gradients with respect to them (or through them) can be taken.

    block: the block module; name: its module name; kind: ``"dwa" | "pwa"``; probs: DWA
    (B, n, heads, L, L) or PWA (B, heads, n, n), not detached; geometry: the block's tiling.
    """

    block: nn.Module
    name: str
    kind: str
    probs: torch.Tensor
    geometry: WindowGeometry


def _to_numpy(probs: torch.Tensor) -> np.ndarray:
    # clone: a later in-place op on the probabilities must not change what was captured
    return probs.detach().to("cpu", torch.float32, copy=True).numpy()


class AttentionCapture:
    """Context manager that records every attention tap firing in the calling thread.

    Args:
        model: a SepViT (anything whose blocks expose ``attn.dwa_tap`` / ``attn.pwa_tap``).
        blocks: optional block names to watch (default: all), or one name; fewer hooks, less memory.
        strict: raise :class:`CaptureError` on exit when no tap fired (e.g. no forward ran, or the
            forward never reached a tap).
        keep_graph: keep each firing as a :class:`TapTensor` in :attr:`tensors` (in the autograd
            graph, for gradient-based relevance) instead of numpy copies in :attr:`records` (which
            then stays empty): one hook manager for maps and for gradients.
    """

    def __init__(
        self, model: nn.Module, blocks: tuple[str, ...] | None = None, strict: bool = True, keep_graph: bool = False
    ) -> None:
        self.model = model
        # one name is one block, not a sequence of characters
        self.blocks = None if blocks is None else (blocks,) if isinstance(blocks, str) else tuple(blocks)
        self.strict = strict
        self.keep_graph = keep_graph
        self.tensors: list[TapTensor] = []
        self._handles: list[Any] = []
        self._pending: list[_Pending] = []
        self._thread: int | None = None
        self._lock = threading.Lock()

    def _taps(self) -> list[tuple[str, nn.Module, str, nn.Module]]:
        """(block name, block, "dwa"|"pwa", tap module) for every tap of the model."""
        found = []
        for name, module in self.model.named_modules():
            for kind in ("dwa", "pwa"):
                suffix = f".attn.{kind}_tap"
                if name.endswith(suffix):
                    block_name = name[: -len(suffix)]
                    if self.blocks is None or block_name in self.blocks:
                        found.append((block_name, self.model.get_submodule(block_name), kind, module))
        return found

    def __enter__(self) -> AttentionCapture:
        if self._handles:
            raise RuntimeError("this AttentionCapture is already active; create one per call")
        taps = self._taps()
        if not taps:
            what = "" if self.blocks is None else f" among blocks {list(self.blocks)}"
            raise CaptureError(
                f"{type(self.model).__name__} has no attention taps (modules named '*.attn.dwa_tap' / "
                f"'*.attn.pwa_tap'){what}: nothing to capture"
            )
        tapped = {t[0] for t in taps}
        missing = [] if self.blocks is None else [b for b in self.blocks if b not in tapped]
        if missing:  # a typo among several names would otherwise drop that block without a word
            raise CaptureError(f"no attention taps in blocks {missing} of {type(self.model).__name__}")
        self._pending = []
        self.tensors = []
        self._thread = threading.get_ident()
        try:
            for block_name, block, kind, tap in taps:
                self._handles.append(tap.register_forward_hook(self._hook(block_name, block, kind)))
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._remove()
        if exc_type is None and self.strict and not (self._pending or self.tensors):
            raise CaptureError(
                "no attention tap fired during the capture: run the model's forward inside the `with` "
                "block, in the same thread that entered it"
            )

    def _remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def _hook(self, block_name: str, block: nn.Module, kind: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:  # noqa: ARG001
            if threading.get_ident() != self._thread:
                return  # another thread's forward on the same model
            probs, geometry = args[0], args[1]
            with self._lock:
                if self.keep_graph:
                    self.tensors.append(TapTensor(block, block_name, kind, output, geometry))
                    return
                if kind == "dwa":
                    self._pending.append(_Pending(block, block_name, geometry, _to_numpy(probs)))
                    return
                for rec in reversed(self._pending):
                    if rec.name == block_name and rec.pwa is None:
                        rec.pwa = _to_numpy(probs)
                        return
                raise CaptureError(f"PWA of {block_name} fired before its DWA: unexpected model layout")

        return hook

    @property
    def records(self) -> list[AttentionRecord]:
        """All records in firing order (model order; several forwards follow one another)."""
        out = []
        for p in self._pending:
            b = p.block
            out.append(
                AttentionRecord(
                    name=p.name,
                    stage=int(getattr(b, "stage", -1)),
                    index=int(getattr(b, "index", -1)),
                    kind=str(getattr(b, "kind", "dssa" if p.geometry.has_token else "global")),
                    window_size=int(getattr(b, "window_size", p.geometry.window[0])),
                    num_heads=int(p.dwa.shape[2]),
                    geometry=p.geometry,
                    dwa=p.dwa,
                    pwa=p.pwa,
                )
            )
        return out


def capture_forward(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[AttentionRecord]]:
    """One forward of ``model`` on ``x`` (B, 3, H, W) under inference mode and capture: (logits
    (B, num_classes), one :class:`AttentionRecord` per block in model order)."""
    with torch.inference_mode(), AttentionCapture(model) as cap:
        out = model(x)
    return out, cap.records
