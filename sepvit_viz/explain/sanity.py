"""Model-randomisation sanity check (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018).

An explanation of a model must depend on what the model learned. The cascading check re-initialises
the model's weights from the top down (the classifier head first, then stage 4, 3, 2, 1 of a
SepViT, each level on top of the previous ones), recomputes the explanation for the same photo and
class on each partly random model, and measures the Spearman rank correlation between the magnitudes
(absolute values) of the original map and the randomised one, as Adebayo et al. do: the sign of a
signed map (Integrated Gradients, Input x Gradient, GradientSHAP) on a random model is arbitrary, so
a signed correlation near 0 would hide a magnitude map that still follows the photo. A method whose
map stays correlated when every weight is random explains the photo (edges, colour), not the model:
it fails the check.

Verdict rule (see ``docs/attribution.md``): a method **passes** when the mean absolute rank
correlation with the fully randomised model's map is below :data:`PASS_BELOW` (0.3, "well below 0.5").
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = [
    "PASS_BELOW",
    "SanityResult",
    "cascade_levels",
    "cascading_randomisation",
    "fully_randomised",
    "rank_data",
    "spearman",
]

#: A method passes the sanity check when mean |Spearman rho| with the fully random model is below this.
PASS_BELOW: float = 0.3

Explain = Callable[[nn.Module, torch.Tensor, int], np.ndarray]
Progress = Callable[[float, str], None]


def rank_data(a: np.ndarray) -> np.ndarray:
    """Ranks 1..N of the flattened ``a`` with ties given their average rank (as ``scipy.stats.rankdata``)."""
    v = np.asarray(a, dtype=np.float64).ravel()
    order = np.argsort(v, kind="stable")
    sv = v[order]
    # tie groups: start of each run of equal sorted values
    starts = np.flatnonzero(np.r_[True, sv[1:] != sv[:-1]])
    ends = np.r_[starts[1:], len(sv)]
    avg = (starts + ends + 1) / 2.0  # mean of ranks start+1 .. end
    ranks = np.empty(len(v))
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two same-shape maps (Pearson of their average ranks).

    A constant map has no order: its correlation with anything is defined as 0 here.
    """
    if np.shape(a) != np.shape(b):
        raise ValueError(f"maps differ in shape: {np.shape(a)} vs {np.shape(b)}")
    ra, rb = rank_data(a), rank_data(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = float(np.sqrt((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / den) if den > 0 else 0.0


def cascade_levels(model: nn.Module) -> list[tuple[str, list[nn.Module]]]:
    """The model's levels from the output down: (name, modules re-initialised at that level).

    SepViT: ``head`` (head and final norm), then ``stage 4`` .. ``stage 1``. Any other model: its
    direct children with parameters, last first.
    """
    stages = getattr(model, "stages", None)
    if stages is not None and hasattr(model, "head"):
        top = [m for m in (model.head, getattr(model, "norm", None)) if m is not None]
        return [("head", top)] + [(f"stage {i + 1}", [stages[i]]) for i in reversed(range(len(stages)))]
    kids = [(name, [m]) for name, m in model.named_children() if any(True for _ in m.parameters())]
    return list(reversed(kids))


def _reinitialise(modules: Sequence[nn.Module], init: Callable[[nn.Module], None] | None, generator_seed: int) -> None:
    """Draw fresh weights for every parameter under ``modules`` (the model's own init when it has one)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(generator_seed)
        for top in modules:
            # what an init writes is told by the parameter's version counter (every in-place write
            # through torch.nn.init bumps it), not by its values: a LayerNorm gain that sits at exactly
            # 1 is re-initialised to 1, and must stay 1
            versions = [p._version for p in top.parameters()]
            for m in top.modules():
                if init is not None:
                    init(m)
                elif hasattr(m, "reset_parameters"):
                    m.reset_parameters()
            # parameters no init touched (SepViT's window tokens, which start at zero) are drawn
            # afresh, N(0, 0.02): adding noise to them would keep the trained values
            for p, before in zip(top.parameters(), versions):
                if p._version == before:
                    with torch.no_grad():
                        p.normal_(0.0, 0.02)


def _randomised(model: nn.Module, seed: int) -> Iterator[tuple[str, nn.Module]]:
    """Yield (level name, model copy with that level and every level above it re-initialised)."""
    rand = copy.deepcopy(model).eval()
    init = getattr(type(model), "_init_weights", None)
    for k, (name, _) in enumerate(cascade_levels(model)):
        # the copy's modules at the same position as the original's level
        _reinitialise(cascade_levels(rand)[k][1], init, seed + k)
        yield name, rand


def fully_randomised(model: nn.Module, seed: int = 0) -> nn.Module:
    """A copy of ``model`` with every level re-initialised: the cascade's last model, built once.

    The same weights as the last level :func:`cascading_randomisation` scores with the same ``seed``
    (the levels are drawn in the same order from the same seeds), so a caller scoring several methods
    on one model (the scorecard) builds it once and passes it as ``randomised=``.
    """
    last = None
    for _, rand in _randomised(model, seed):
        last = rand
    if last is None:
        raise ValueError("the model has no level to randomise")
    return last


@dataclass(frozen=True)
class SanityResult:
    """Cascading randomisation of one explanation on one photo.

    Attributes:
        levels: level names from the output down (``head``, ``stage 4``, ..., ``stage 1``).
        rho: Spearman rank correlation of the original map's magnitude (absolute values) with the
            magnitude of the map after randomising each level and all levels above it (same order
            as ``levels``).
        maps: the randomised maps (H, W), signed as the method gives them, same order.
    """

    levels: list[str]
    rho: list[float]
    maps: list[np.ndarray]

    @property
    def final_rho(self) -> float:
        """Correlation with the fully randomised model's map (the last level)."""
        return self.rho[-1]

    @property
    def passes(self) -> bool:
        """True when ``|final_rho| < PASS_BELOW``."""
        return abs(self.final_rho) < PASS_BELOW


def cascading_randomisation(
    model: nn.Module,
    x: torch.Tensor,
    target: int,
    explain: Explain,
    *,
    original: np.ndarray | None = None,
    seed: int = 0,
    full_only: bool = False,
    randomised: nn.Module | None = None,
    progress: Progress | None = None,
) -> SanityResult:
    """Run ``explain(model, x, target) -> (H, W) map`` on the trained model and on its cascade.

    model: in eval mode (a deep copy is randomised; ``model`` itself is never changed).
    x: the model input (1, 3, H, W), passed to ``explain`` as is; target: the class explained.
    original: the trained model's (H, W) map when the caller has it (saves one call).
    full_only: skip the intermediate levels and score only the fully randomised model (one call
        instead of one per level; ``levels`` then holds only the last name).
    randomised: with ``full_only``, the fully randomised model already built by
        :func:`fully_randomised` (same ``seed``): it is used instead of re-initialising a new copy.
    Returns a :class:`SanityResult` (maps (H, W) float32); raises ``ValueError`` for a model in
    training mode.
    """
    if model.training:
        raise ValueError("put the model in eval mode (model.eval()) first")
    ref = explain(model, x, target) if original is None else np.asarray(original)
    levels, rho, maps = [], [], []
    names = [n for n, _ in cascade_levels(model)]
    if full_only and randomised is not None:
        m = np.asarray(explain(randomised, x, target), dtype=np.float64)
        if progress is not None:
            progress(1.0, f"sanity check: randomised down to {names[-1]}")
        return SanityResult([names[-1]], [spearman(np.abs(ref), np.abs(m))], [m.astype(np.float32)])
    for k, (name, rand) in enumerate(_randomised(model, seed)):
        if full_only and k < len(names) - 1:
            continue
        m = np.asarray(explain(rand, x, target), dtype=np.float64)
        levels.append(name)
        rho.append(spearman(np.abs(ref), np.abs(m)))
        maps.append(m.astype(np.float32))
        if progress is not None:
            progress((k + 1) / len(names), f"sanity check: randomised down to {name}")
    return SanityResult(levels, rho, maps)
