"""Per-method scorecard: untuned faithfulness measures, the sanity check and a verdict a person can read.

The measures (every one "how fast does the class go when the top-ranked pixels go"; none was used
to choose any method option, see ``docs/attribution.md``):

=============  ===========================================================  ==========
key            measure                                                      better
=============  ===========================================================  ==========
del_mean       deletion area, removed pixels set to the image's mean colour lower
ins_mean       insertion area, starting from the mean-colour image          higher
del_noise      deletion area, removed pixels set to uniform noise           lower
ins_noise      insertion area, starting from uniform noise                  higher
road_morf      ROAD, most relevant first (noisy linear imputation)          lower
road_lerf      ROAD, least relevant first                                   higher
=============  ===========================================================  ==========

The deletion / insertion curves with the **blurred** fill (``del_blur``, ``ins_blur``) are the
measure the SepViT relevance's step 7 was tuned on; they can be computed (``tuned=True``) but never
count in a verdict.

Verdicts:

* **faithful on a measure** when the method's mean beats the random map's (the floor) by more than
  two standard errors of the per-photo paired difference (one photo: simply beats it);
* **passes the sanity check** when the mean absolute Spearman correlation between its map and the
  map on the fully randomised model is below :data:`sepvit_viz.explain.sanity.PASS_BELOW` (0.3).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from sepvit_viz.explain.faithfulness import Curves, deletion_insertion_fills, road
from sepvit_viz.explain.sanity import PASS_BELOW, SanityResult, cascading_randomisation, fully_randomised

__all__ = [
    "MEASURES",
    "NO_RANKING",
    "TUNED_MEASURES",
    "Measure",
    "MethodScores",
    "Scorecard",
    "Verdict",
    "faithfulness_table",
    "score_method",
    "verdict",
]

Progress = Callable[[float, str], None]

#: The verdict of a map that ranks no pixel above another (e.g. the SepViT relevance of a class no
#: token argues for): deleting "most attributed first" would only follow the raster order.
NO_RANKING = "not scored: the map is constant (empty for this class), so it ranks no pixel above another"


@dataclass(frozen=True)
class Measure:
    """One faithfulness measure: its key, a display label and whether lower or higher is better."""

    key: str
    label: str
    lower_is_better: bool


MEASURES: tuple[Measure, ...] = (
    Measure("del_mean", "deletion, mean fill", True),
    Measure("ins_mean", "insertion, mean fill", False),
    Measure("del_noise", "deletion, noise fill", True),
    Measure("ins_noise", "insertion, noise fill", False),
    Measure("road_morf", "ROAD most relevant first", True),
    Measure("road_lerf", "ROAD least relevant first", False),
)

#: The tuning measure of the SepViT relevance's step 7: shown on request, never in a verdict.
TUNED_MEASURES: tuple[Measure, ...] = (
    Measure("del_blur", "deletion, blurred fill (tuning measure)", True),
    Measure("ins_blur", "insertion, blurred fill (tuning measure)", False),
)


@dataclass
class MethodScores:
    """One method's scores on one photo.

    Attributes:
        method: attribution method name; label: its display label.
        scores: measure key -> value (areas for deletion / insertion, mean class probability for ROAD).
        sanity: the cascading randomisation result, or None when not run.
        seconds: wall time of the attribution itself (not of the measures).
        map_hw: the (H, W) map scored.
        curves: fill name (``"mean"``, ``"noise"``, ``"blurred"``) -> the deletion / insertion
            :class:`~sepvit_viz.explain.faithfulness.Curves` behind the areas (the app plots the mean
            fill's without computing them again); empty when the map is not ``ranked``.
        ranked: False when the map is constant (or not finite): it ranks no pixel above another, so
            its scores are NaN, no sanity check is run and the verdict is :data:`NO_RANKING`.
    """

    method: str
    label: str
    scores: dict[str, float]
    sanity: SanityResult | None
    seconds: float
    map_hw: np.ndarray = field(repr=False)
    curves: dict[str, Curves] = field(default_factory=dict, repr=False)
    ranked: bool = True


def _ranks_pixels(map_hw: np.ndarray) -> bool:
    m = np.asarray(map_hw)
    return bool(np.isfinite(m).all() and m.size and np.ptp(m) > 0)


@dataclass(frozen=True)
class Verdict:
    """What a person reads: ``text`` such as "faithful on 5 of 6 measures; passes the sanity check"."""

    faithful_on: tuple[str, ...]
    measures: int
    sanity_rho: float | None
    passes_sanity: bool | None
    text: str


def _better(m: Measure, a: float, b: float) -> bool:
    return a < b if m.lower_is_better else a > b


def verdict(
    method_scores: Mapping[str, Sequence[float]],
    floor_scores: Mapping[str, Sequence[float]],
    sanity_rhos: Sequence[float] | None = None,
    measures: Sequence[Measure] = MEASURES,
) -> Verdict:
    """The readable verdict of one method over one or more photos.

    method_scores, floor_scores: measure key -> per-photo values (same photos, same order) of the
    method and of the random map. sanity_rhos: per-photo Spearman correlations with the fully
    randomised model's map (None: not checked). A measure counts when the method's mean beats the
    floor's by more than two standard errors of the paired differences (one photo: beats it).
    """
    faithful = []
    for m in measures:
        a = np.asarray(method_scores[m.key], dtype=np.float64)
        f = np.asarray(floor_scores[m.key], dtype=np.float64)
        if a.shape != f.shape or a.size == 0:
            raise ValueError(f"{m.key}: need the same photos for the method and the floor")
        diff = (f - a) if m.lower_is_better else (a - f)  # > 0: better than the floor
        margin = 2.0 * diff.std(ddof=1) / np.sqrt(diff.size) if diff.size > 1 else 0.0
        if diff.mean() > margin:
            faithful.append(m.key)
    text = f"faithful on {len(faithful)} of {len(measures)} measures"
    rho = passes = None
    if sanity_rhos is not None and len(sanity_rhos):
        rho = float(np.mean(np.abs(sanity_rhos)))
        passes = rho < PASS_BELOW
        text += (
            f"; {'passes' if passes else 'FAILS'} the sanity check "
            f"(|rank corr.| with the random-weight map {rho:.2f}, pass < {PASS_BELOW})"
        )
    return Verdict(tuple(faithful), len(measures), rho, passes, text)


def score_method(
    model: nn.Module,
    x: torch.Tensor,
    target: int,
    method: str,
    *,
    options: Mapping[str, Any] | None = None,
    attribution: Any | None = None,
    steps: int = 16,
    road_fractions: tuple[float, ...] | None = None,
    sanity: str | None = "full",
    tuned: bool = False,
    batch_size: int = 16,
    shared: dict[Any, Any] | None = None,
    progress: Progress | None = None,
) -> MethodScores:
    """Every measure of :data:`MEASURES` (and the sanity check) for one method on one photo.

    Args:
        model: classifier in eval mode; x: (1, 3, H, W) preprocessed photo; target: class index.
        method, options: as :func:`sepvit_viz.explain.attribution.attribute`.
        attribution: an already computed :class:`~sepvit_viz.explain.attribution.Attribution` of this method
            and target on ``x`` (skips recomputing it); one of another method or class, or made with
            other ``options`` than those given, raises ``ValueError``. The sanity check recomputes it on
            the randomised model with its own options and smoothing.
        steps: deletion / insertion steps; road_fractions: ROAD's removal shares (None: defaults).
        sanity: ``"full"`` (fully randomised model only: one more attribution), ``"cascade"`` (head,
            then every stage: one per level) or None.
        tuned: also compute the blurred-fill curves (:data:`TUNED_MEASURES`), for reference.
        batch_size: images per forward pass of the measures.
        shared: a dict kept by the caller across the methods of **one** (model, x, target): the
            curves' end points (``x``, the fills) are scored once for all of them, and with
            ``sanity="full"`` the fully randomised model is built once (key ``"randomised"``).
        progress: optional ``progress(fraction, desc)``, called after the attribution and after each
            measure.

    Cost (forwards, besides the attribution): ``F (2 steps - 2)`` for the ``F`` fills' curves (plus
    ``1 + F`` end points when not already in ``shared``), ``2 K`` imputations and forwards for ROAD's
    ``K`` shares, in batches of ``batch_size``; the sanity check is one more attribution (``"full"``)
    or five (``"cascade"``).
    """
    from sepvit_viz.explain.attribution import METHODS, attribute, method_options

    opts = dict(options or {})
    smooth = None  # the method's default, as attribute() applies it
    shared = {} if shared is None else shared

    def report(frac: float, desc: str) -> None:
        if progress is not None:
            progress(frac, f"{METHODS[method].label}: {desc}")

    if attribution is None:
        attribution = attribute(model, x, target, method, **opts)
    else:
        if (attribution.method, int(attribution.target)) != (method, int(target)):
            raise ValueError(
                f"the attribution given is {attribution.method} for class {attribution.target}, "
                f"but {method} for class {target} is to be scored"
            )
        # the sanity check recomputes the map on a randomised model: with the given map's own options
        # and smoothing, so that like is compared with like
        given = dict(attribution.extras.get("options", {}))
        if options is not None and given and method_options(method) | opts != given:
            raise ValueError(
                f"the attribution given was made with options {given}, not {method_options(method) | opts}"
            )
        opts = given or opts
        smooth = bool(attribution.extras.get("smoothed", False))
    map_hw = attribution.map_hw
    if not _ranks_pixels(map_hw):  # nothing to delete "most attributed first": NaN, not raster-order scores
        keys = [m.key for m in MEASURES] + ([m.key for m in TUNED_MEASURES] if tuned else [])
        report(1.0, "constant map, not scored")
        return MethodScores(
            method,
            METHODS[method].label,
            dict.fromkeys(keys, float("nan")),
            None,
            float(attribution.seconds),
            map_hw,
            ranked=False,
        )
    last = 0.6 if sanity is not None else 1.0  # the share of this method's progress before the sanity check
    report(0.2 * last, "attribution")
    scores: dict[str, float] = {}
    fills = [("mean", "del_mean", "ins_mean"), ("noise", "del_noise", "ins_noise")]
    if tuned:
        fills.append(("blurred", "del_blur", "ins_blur"))
    # every fill's curves in shared batches; the end points shared with the other methods
    curves = deletion_insertion_fills(
        model,
        x,
        map_hw,
        target,
        fills=[f for f, _, _ in fills],
        steps=steps,
        batch_size=batch_size,
        shared=shared.setdefault("curves", {}),
    )
    for (_, dkey, ikey), c in zip(fills, curves):
        scores[dkey], scores[ikey] = c.deletion_auc, c.insertion_auc
    report(0.75 * last, "deletion / insertion (" + ", ".join(f for f, _, _ in fills) + " fills)")
    kw = {} if road_fractions is None else {"fractions": road_fractions}
    r = road(model, x, map_hw, target, batch_size=batch_size, **kw)
    scores["road_morf"], scores["road_lerf"] = r.morf_mean, r.lerf_mean
    report(last, "ROAD")
    result = None
    if sanity is not None:
        if sanity not in ("full", "cascade"):
            raise ValueError(f"sanity must be 'full', 'cascade' or None, got {sanity!r}")

        def explain(m: nn.Module, xx: torch.Tensor, t: int) -> np.ndarray:
            return attribute(m, xx, t, method, smooth=smooth, **opts).map_hw

        rand = None
        if sanity == "full":
            if "randomised" not in shared:
                shared["randomised"] = fully_randomised(model)
            rand = shared["randomised"]
        result = cascading_randomisation(
            model, x, target, explain, original=map_hw, full_only=sanity == "full", randomised=rand
        )
        report(1.0, "sanity check")
    return MethodScores(
        method,
        METHODS[method].label,
        scores,
        result,
        float(attribution.seconds),
        map_hw,
        {f: c for (f, _, _), c in zip(fills, curves)},
    )


@dataclass
class Scorecard:
    """The faithfulness table of several methods on one photo (what the app's panel shows).

    Attributes:
        target: class explained; rows: one :class:`MethodScores` per method, in the order asked;
        verdicts: method -> :class:`Verdict` (against the ``random`` row, which is always scored).
    """

    target: int
    rows: list[MethodScores]
    verdicts: dict[str, Verdict]
    seconds: float

    def headers(self) -> list[str]:
        """Column names of :meth:`table`."""
        keys = [m.label + (" (lower = better)" if m.lower_is_better else " (higher = better)") for m in MEASURES]
        return ["method", *keys, "sanity |rank corr.|", "verdict", "seconds"]

    def table(self, digits: int = 3) -> list[list[Any]]:
        """Rows for a table widget: label, the measures, sanity correlation, verdict, seconds.

        The measures keep ``digits`` significant digits, not decimals: for a class the model gives
        little probability every area is below 0.001, and decimals would show them all as 0.0 while
        the verdict, which reads the full values, says some beat the random map.
        """
        out = []
        for r in self.rows:
            v = self.verdicts[r.method]
            rho = None if r.sanity is None else round(abs(r.sanity.final_rho), 2)
            values = [_significant(r.scores[m.key], digits) if r.ranked else None for m in MEASURES]
            out.append([r.label, *values, rho, v.text, round(r.seconds, 2)])
        return out


def _significant(value: float, digits: int) -> float:
    """``value`` rounded to ``digits`` significant digits (0.000123456 -> 0.000123 for 3)."""
    return float(f"{float(value):.{digits}g}")


def faithfulness_table(
    model: nn.Module,
    x: torch.Tensor,
    target: int,
    methods: Sequence[str] | None = None,
    *,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    attributions: Mapping[str, Any] | None = None,
    steps: int = 16,
    road_fractions: tuple[float, ...] | None = None,
    sanity: str | None = "full",
    progress: Progress | None = None,
) -> Scorecard:
    """Score ``methods`` (default: every method) on one photo, with a verdict per method.

    The app's faithfulness panel calls this. ``options``: method -> attribution options;
    ``attributions``: method -> an :class:`~sepvit_viz.explain.attribution.Attribution` already computed for
    this photo and ``target`` (reused, not recomputed). The ``random`` map is always scored (the
    floor of every verdict). ``progress(fraction, desc)`` is called as each method advances.
    One photo gives indicative verdicts only: the benchmark's are over many photos.

    Cost: the attributions not given in ``attributions``, then per method the measures of
    :func:`score_method` (the curves' end points and the randomised model are shared by all the
    methods); ``sanity=None`` skips the one cost that grows with the attribution (a second
    attribution per method, on the randomised model).
    """
    from sepvit_viz.explain.attribution import list_methods

    t0 = time.perf_counter()
    names = list(methods or list_methods())
    if "random" not in names:
        names.append("random")
    rows = []
    shared: dict[Any, Any] = {}  # one photo, one target: end points and the randomised model, built once
    for i, name in enumerate(names):
        lo, hi = i / len(names), (i + 1) / len(names)

        def sub(frac: float, desc: str, lo: float = lo, hi: float = hi) -> None:
            if progress is not None:
                progress(lo + frac * (hi - lo), desc)

        rows.append(
            score_method(
                model,
                x,
                target,
                name,
                options=(options or {}).get(name),
                attribution=(attributions or {}).get(name),
                steps=steps,
                road_fractions=road_fractions,
                sanity=sanity,
                shared=shared,
                progress=sub,
            )
        )
    floor = next(r for r in rows if r.method == "random")
    fs = {m.key: [floor.scores[m.key]] for m in MEASURES}
    verdicts = {
        r.method: verdict(
            {m.key: [r.scores[m.key]] for m in MEASURES}, fs, None if r.sanity is None else [r.sanity.final_rho]
        )
        if r.ranked
        else Verdict((), len(MEASURES), None, None, NO_RANKING)
        for r in rows
    }
    return Scorecard(int(target), rows, verdicts, time.perf_counter() - t0)
