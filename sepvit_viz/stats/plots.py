"""Plots and files of the model-level statistics (:mod:`sepvit_viz.stats.measures`).

Pure functions of :class:`~sepvit_viz.stats.measures.ModelStats`: figures are built with matplotlib's ``Figure``
API on the Agg canvas (pyplot is never used: no figure enters its global registry, safe in a server).

* :func:`depth_figure`: one measure against depth, one dot per head (its median over photos) with
  its spread over photos (25-75% thick, 5-95% thin), coloured by block kind (DSSA / GSA / global);
  several checkpoints share the axes (filled, then hollow markers of other shapes); ``marks`` puts one
  photo's own values on the same axes as black stars.
* :func:`kinds_figure`: the kinds side by side within each stage (GSA against DSSA).
* :func:`depth_image` / :func:`kinds_image`: the same as RGB uint8 arrays (for the app);
  :func:`model_tab_view`: (picture, caption) of an app's "Model" tab with the current photo marked.
* :func:`write_csv`, :func:`write_report`: the CSV (one row per checkpoint, block and head), the PNGs,
  the per-photo values (``values.npz``) and an ``index.html`` that holds them.
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from sepvit_viz.stats.measures import MEASURE_NAMES, MEASURES, PERCENTILES, ModelStats

__all__ = [
    "CSV_STATS",
    "KIND_COLOURS",
    "KIND_MEASURES",
    "csv_header",
    "depth_figure",
    "depth_image",
    "figure_png",
    "kinds_figure",
    "kinds_image",
    "model_tab_view",
    "write_csv",
    "write_report",
]

KIND_COLOURS = {"dssa": "#1f77b4", "gsa": "#e6550d", "global": "#2ca02c"}
_KIND_ORDER = ("dssa", "gsa", "global")
_MARKERS = ("o", "^", "s", "D", "v")
#: Statistics over photos in the CSV, per measure, in column order.
CSV_STATS: tuple[str, ...] = ("mean", *(f"p{q}" for q in PERCENTILES))
#: Measures of the side-by-side kinds figure.
KIND_MEASURES: tuple[str, ...] = ("dwa_distance", "pwa_distance", "pwa_entropy_norm", "pixel_to_token")
_BY_NAME = {m.name: m for m in MEASURES}
_UNIT_AXIS = {
    "px": "pixels of the input image",
    "share": "share of the attention",
    "nats": "entropy (nats)",
    "0..1": "normalised entropy (0..1)",
}


def _as_list(stats: ModelStats | Sequence[ModelStats]) -> list[ModelStats]:
    out = [stats] if isinstance(stats, ModelStats) else list(stats)
    if not out:
        raise ValueError("no statistics to plot")
    return out


def _measure(name: str) -> int:
    if name not in _BY_NAME:
        raise ValueError(f"unknown measure {name!r}; choose one of {', '.join(MEASURE_NAMES)}")
    return MEASURE_NAMES.index(name)


def _new_figure(width: float, height: float, dpi: int) -> Figure:
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig: Figure) -> bytes:
    """PNG bytes of a figure; the figure is cleared afterwards."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    fig.clear()
    return buf.getvalue()


def _figure_rgb(fig: Figure) -> np.ndarray:
    from sepvit_viz.viz.render import figure_to_rgb

    return figure_to_rgb(fig)


def _head_x(stats: ModelStats, k: int, of: int) -> np.ndarray:
    """x of every row: its block's depth, shifted into checkpoint k's band and spread over heads."""
    heads = {}
    for r in stats.rows:
        heads[r.block] = max(heads.get(r.block, 0), r.head + 1)
    band = 0.8 / of
    x = np.empty(len(stats.rows))
    for i, r in enumerate(stats.rows):
        centre = r.block - 0.4 + band * (k + 0.5)
        h = heads[r.block]
        x[i] = centre + (0.0 if h == 1 else (r.head / (h - 1) - 0.5) * band * 0.7)
    return x


def _checkpoint_style(k: int, colour: str) -> dict:
    """Filled markers for the first checkpoint, hollow ones of other shapes for the others."""
    marker = _MARKERS[k % len(_MARKERS)]
    if k == 0:
        return dict(marker=marker, color=colour, edgecolors="white", linewidths=0.4)
    return dict(marker=marker, facecolors="none", edgecolors=colour, linewidths=1.2)


def depth_figure(
    stats: ModelStats | Sequence[ModelStats],
    measure: str,
    *,
    marks: np.ndarray | None = None,
    mark_label: str = "this photo",
    dpi: int = 100,
) -> Figure:
    """One measure against depth for one or more checkpoints (same architecture), as a Figure.

    Args:
        stats: one :class:`ModelStats`, or several (e.g. trained and random weights) on one plot.
        measure: a name of :data:`sepvit_viz.stats.measures.MEASURE_NAMES`.
        marks: one photo's values, (rows, M) from :func:`sepvit_viz.stats.measures.photo_values` or (rows,)
            for this measure, rows as the first checkpoint's; drawn as black stars on its heads.
        mark_label: the legend entry of the marks.

    Every scatter of head medians carries the label ``"<checkpoint> · <KIND>"``; the spread lines
    carry ``"_spread"`` labels (kept out of the legend).
    """
    items = _as_list(stats)
    j = _measure(measure)
    m = _BY_NAME[measure]
    first = items[0]
    nblocks = len(first.blocks)
    width = max(6.0, 0.55 * nblocks + 2.6)
    fig = _new_figure(width, 4.0, dpi)
    # fixed margins in inches: 0.7 left for the y axis, 1.5 right for the legend
    ax = fig.add_axes((0.7 / width, 0.22, (width - 2.2) / width, 0.66))
    any_value = False
    kinds_seen: list[str] = []
    for k, st in enumerate(items):
        summ = st.summary()
        med, p5, p25, p75, p95 = (summ[key][:, j] for key in ("p50", "p5", "p25", "p75", "p95"))
        x = _head_x(st, k, len(items))
        kinds = np.array([r.kind for r in st.rows])
        for kind in _KIND_ORDER:
            sel = (kinds == kind) & np.isfinite(med)
            if not sel.any():
                continue
            any_value = True
            if kind not in kinds_seen:
                kinds_seen.append(kind)
            colour = KIND_COLOURS[kind]
            ax.vlines(x[sel], p5[sel], p95[sel], colors=colour, lw=0.8, alpha=0.35, label="_spread")
            ax.vlines(x[sel], p25[sel], p75[sel], colors=colour, lw=2.4, alpha=0.45, label="_spread")
            ax.scatter(
                x[sel], med[sel], s=34, zorder=3, label=f"{st.label} · {kind.upper()}", **_checkpoint_style(k, colour)
            )
    if marks is not None:
        values = np.asarray(marks, dtype=np.float64)
        values = values[:, j] if values.ndim == 2 else values
        if values.shape != (len(first.rows),):
            raise ValueError(f"marks hold {values.shape[0]} rows but the statistics have {len(first.rows)} heads")
        sel = np.isfinite(values)
        ax.scatter(
            _head_x(first, 0, len(items))[sel],
            values[sel],
            marker="*",
            s=90,
            color="black",
            edgecolors="white",
            linewidths=0.5,
            zorder=5,
            label=mark_label,
        )
    blocks = first.blocks
    ax.set_xticks(range(nblocks))
    ax.set_xticklabels([b.block_label for b in blocks], rotation=60, fontsize=7, ha="right")
    for i in range(1, nblocks):  # faint separators between stages
        if blocks[i].stage != blocks[i - 1].stage:
            ax.axvline(i - 0.5, color="#999999", lw=0.6, ls=":")
    ax.set_xlim(-0.6, nblocks - 0.4)
    ax.set_xlabel("block (stage.block, kind), input to output", fontsize=8)
    ax.set_ylabel(_UNIT_AXIS.get(m.unit, m.unit), fontsize=8)
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(axis="y", alpha=0.25)
    counts = ", ".join(f"{st.label}: {st.num_photos}" for st in items)
    ax.set_title(f"{m.label}\none dot per head: median over photos ({counts}); bars 25-75% and 5-95%", fontsize=8)
    if not any_value:
        ax.text(
            0.5,
            0.5,
            "no block of this model has this measure",
            transform=ax.transAxes,
            ha="center",
            va="center",
            fontsize=9,
            color="#666666",
        )
    handles = [Line2D([], [], ls="", marker="o", color=KIND_COLOURS[k], label=k.upper()) for k in kinds_seen]
    if len(items) > 1:
        for k, st in enumerate(items):
            style = _checkpoint_style(k, "#555555")
            handles.append(
                Line2D(
                    [],
                    [],
                    ls="",
                    marker=style["marker"],
                    markersize=7,
                    label=st.label,
                    markerfacecolor="#555555" if k == 0 else "none",
                    markeredgecolor="#555555",
                )
            )
    if marks is not None:
        handles.append(Line2D([], [], ls="", marker="*", markersize=10, color="black", label=mark_label))
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    return fig


def kinds_figure(
    stats: ModelStats | Sequence[ModelStats], measures: Sequence[str] = KIND_MEASURES, *, dpi: int = 100
) -> Figure:
    """The block kinds side by side within each stage (GSA against DSSA, and the global blocks):
    one panel per measure; per stage, one group per kind present; one dot per head of every block
    of that kind (median over photos), checkpoints as in :func:`depth_figure`."""
    items = _as_list(stats)
    idx = [_measure(m) for m in measures]
    fig = _new_figure(3.3 * len(measures) + 0.6, 3.6, dpi)
    axes = fig.subplots(1, len(measures), squeeze=False)[0]
    first = items[0]
    stages = sorted({r.stage for r in first.rows})
    groups = [
        (s, kind) for s in stages for kind in _KIND_ORDER if any(r.stage == s and r.kind == kind for r in first.rows)
    ]
    for ax, j, name in zip(axes, idx, measures):
        for k, st in enumerate(items):
            med = st.summary()["p50"][:, j]
            for g, (s, kind) in enumerate(groups):
                sel = np.array([r.stage == s and r.kind == kind for r in st.rows]) & np.isfinite(med)
                if not sel.any():
                    continue
                band = 0.8 / len(items)
                x0 = g - 0.4 + band * (k + 0.5)
                spread = np.linspace(-0.3, 0.3, int(sel.sum())) * band if sel.sum() > 1 else np.zeros(1)
                ax.scatter(
                    x0 + spread,
                    med[sel],
                    s=22,
                    zorder=3,
                    label=f"{st.label} · {kind.upper()}",
                    **_checkpoint_style(k, KIND_COLOURS[kind]),
                )
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels([f"stage {s + 1}\n{kind.upper()}" for s, kind in groups], fontsize=7)
        for g in range(1, len(groups)):
            if groups[g][0] != groups[g - 1][0]:
                ax.axvline(g - 0.5, color="#999999", lw=0.6, ls=":")
        ax.set_xlim(-0.6, len(groups) - 0.4)
        ax.set_title(f"{_BY_NAME[name].label} ({_BY_NAME[name].unit})", fontsize=8, wrap=True)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(axis="y", alpha=0.25)
    if len(items) > 1:
        handles = [
            Line2D(
                [],
                [],
                ls="",
                marker=_MARKERS[k % len(_MARKERS)],
                markersize=6,
                label=st.label,
                markerfacecolor="#555555" if k == 0 else "none",
                markeredgecolor="#555555",
            )
            for k, st in enumerate(items)
        ]
        fig.legend(handles=handles, loc="upper right", fontsize=7, frameon=False)
    fig.suptitle("block kinds side by side in each stage: one dot per head (median over photos)", fontsize=9)
    fig.subplots_adjust(left=0.05, right=0.98, bottom=0.17, top=0.8, wspace=0.3)
    return fig


def depth_image(
    stats: ModelStats | Sequence[ModelStats],
    measure: str,
    *,
    marks: np.ndarray | None = None,
    mark_label: str = "this photo",
    dpi: int = 100,
) -> np.ndarray:
    """:func:`depth_figure` as an (H, W, 3) uint8 picture (the app's Model tab)."""
    return _figure_rgb(depth_figure(stats, measure, marks=marks, mark_label=mark_label, dpi=dpi))


def kinds_image(
    stats: ModelStats | Sequence[ModelStats], measures: Sequence[str] = KIND_MEASURES, *, dpi: int = 100
) -> np.ndarray:
    """:func:`kinds_figure` as an (H, W, 3) uint8 picture."""
    return _figure_rgb(kinds_figure(stats, measures, dpi=dpi))


def model_tab_view(
    stats: ModelStats | Sequence[ModelStats],
    measure: str,
    records: Sequence[Any] | None = None,
    *,
    input_size: tuple[int, int] | None = None,
    dpi: int = 100,
) -> tuple[np.ndarray, str]:
    """(picture, caption) for an app's "Model" tab: ``measure`` against depth for the loaded checkpoint
    (first of ``stats``; others share the axes), with the current photo's own values as black stars.

    ``records``: the current photo's capture records (e.g. ``Analysis.records``; batch image 0) or None
    for no photo. The caption says on how many heads the photo lies within the 5-95% range of the
    reference photos, and warns when the records come from an input of another size than theirs
    (distances are in input pixels, so they are then not comparable). ``input_size``: (H, W) of the
    input the records come from (e.g. ``Analysis.image.shape[:2]``); None reads it from the records'
    first feature map, exact for sizes that are multiples of its stride.

    Raises:
        ValueError: an unknown measure, or records of a model with other blocks or heads.
    """
    from sepvit_viz.stats.measures import head_rows, photo_values, typicality_caption

    items = _as_list(stats)
    first = items[0]
    m = _BY_NAME[MEASURE_NAMES[_measure(measure)]]
    caption = f"{m.label} ({m.unit}) of every head, over {first.num_photos} reference photo(s)."
    marks = None
    if records:
        if head_rows(records) != first.rows:
            raise ValueError("the photo's attention comes from another model than the statistics")
        marks = photo_values(records)
        caption += " " + typicality_caption(first, marks, measure)
        if input_size is None:
            g = records[0].geometry
            input_size = (g.height * g.stride, g.width * g.stride)
        side = (int(input_size[0]), int(input_size[1]))
        if side != (first.size, first.size):
            caption += (
                f" Note: the values marked come from a {side[1]} x {side[0]} px input (width x height), the "
                f"reference photos' from {first.size} x {first.size}; distances are in input pixels and "
                "windows differ, so compare with care."
            )
    return _figure_rgb(depth_figure(items, measure, marks=marks, dpi=dpi)), caption


# ----------------------------------------------------------------------------- files
def csv_header() -> list[str]:
    """Columns of :func:`write_csv`."""
    ids = ["checkpoint", "depth", "name", "stage", "block_in_stage", "kind", "window", "head", "photos"]
    return ids + [f"{m}_{s}" for m in MEASURE_NAMES for s in CSV_STATS]


def _cell(v: float) -> str:
    return "" if not np.isfinite(v) else f"{v:.6g}"


def write_csv(stats: ModelStats | Sequence[ModelStats], path: str | Path) -> Path:
    """One row per checkpoint, block and head (model order): ids, then for every measure its mean and
    percentiles over photos (empty where a block lacks the measure). ``depth``, ``stage`` and
    ``block_in_stage`` count from 1 (as the plots' labels), ``head`` from 0 (as head indices do)."""
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(csv_header())
        for st in _as_list(stats):
            summ = st.summary()
            for i, r in enumerate(st.rows):
                photos = int(summ["count"][i].max()) if summ["count"].size else 0
                row = [st.label, r.block + 1, r.name, r.stage + 1, r.index + 1, r.kind, r.window, r.head, photos]
                row += [_cell(summ[s][i, j]) for j in range(len(MEASURES)) for s in CSV_STATS]
                w.writerow(row)
    return path


def _kind_table(items: list[ModelStats]) -> str:
    """HTML table: per stage and kind, the mean over heads and blocks of the heads' medians."""
    e = html.escape
    head = "".join(f"<th>{e(_BY_NAME[m].label)} ({e(_BY_NAME[m].unit)})</th>" for m in KIND_MEASURES)
    lines = [f"<table><tr><th>checkpoint</th><th>stage</th><th>kind</th><th>heads</th>{head}</tr>"]
    for st in items:
        med = st.summary()["p50"]
        for s in sorted({r.stage for r in st.rows}):
            for kind in _KIND_ORDER:
                sel = np.array([r.stage == s and r.kind == kind for r in st.rows])
                if not sel.any():
                    continue
                cells = []
                for m in KIND_MEASURES:
                    v = med[sel, MEASURE_NAMES.index(m)]
                    v = v[np.isfinite(v)]
                    cells.append(f"<td>{v.mean():.3g}</td>" if v.size else "<td>–</td>")
                lines.append(
                    f"<tr><td>{e(st.label)}</td><td>{s + 1}</td><td>{kind.upper()}</td>"
                    f"<td>{int(sel.sum())}</td>{''.join(cells)}</tr>"
                )
    lines.append("</table>")
    return "\n".join(lines)


def write_report(
    stats: ModelStats | Sequence[ModelStats],
    out: str | Path,
    *,
    title: str = "SepViT attention statistics",
    notes: Sequence[str] = (),
    measures: Sequence[str] = MEASURE_NAMES,
) -> Path:
    """Write ``stats.csv``, ``values.npz`` (every photo's values), one ``depth_<measure>.png`` per
    measure, ``kinds.png`` and ``index.html`` holding them into folder ``out`` (created).

    Returns the path of ``index.html``.
    """
    items = _as_list(stats)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(items, out / "stats.csv")
    arrays: dict[str, np.ndarray] = {"measures": np.array(MEASURE_NAMES)}
    for k, st in enumerate(items):
        arrays[f"values_{k}"] = st.values
        arrays[f"photos_{k}"] = np.array(st.photos)
        arrays[f"label_{k}"] = np.array(st.label)
        arrays[f"rows_{k}"] = np.array([f"{r.name}.head{r.head}" for r in st.rows])
    np.savez_compressed(out / "values.npz", **arrays)
    pictures = []
    for m in measures:
        name = f"depth_{m}.png"
        (out / name).write_bytes(figure_png(depth_figure(items, m)))
        pictures.append((name, _BY_NAME[m].label))
    (out / "kinds.png").write_bytes(figure_png(kinds_figure(items)))
    e = html.escape
    parts = [
        "<!doctype html><meta charset='utf-8'>",
        f"<title>{e(title)}</title>",
        "<style>body{font-family:sans-serif;margin:1.5em;max-width:1400px}img{max-width:100%}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:2px 6px}"
        "figure{margin:1em 0}figcaption{font-size:13px;color:#444}.warn{background:#fee;border:1px solid #c00;"
        "padding:.5em}</style>",
        f"<h1>{e(title)}</h1>",
        "<ul>",
    ]
    for st in items:
        parts.append(
            f"<li><b>{e(st.label)}</b>: {st.num_photos} photo(s) at {st.size}x{st.size}, "
            f"{len(st.blocks)} blocks, {len(st.rows)} heads, computed in {st.seconds:.1f} s</li>"
        )
    parts.append("</ul>")
    parts += [f"<p>{e(n)}</p>" for n in notes]
    skipped = items[0].skipped
    if skipped:
        rows = "".join(f"<li>{e(p)}: {e(why)}</li>" for p, why in skipped[:50])
        more = f"<li>... and {len(skipped) - 50} more</li>" if len(skipped) > 50 else ""
        parts.append(
            f"<div class='warn'>{len(skipped)} file(s) could not be read and were left out:<ul>{rows}{more}</ul></div>"
        )
    parts.append(
        "<p>Data: <a href='stats.csv'>stats.csv</a> (one row per checkpoint, block and head: mean and "
        "percentiles over photos), <a href='values.npz'>values.npz</a> (every photo's values). "
        "Distances are in pixels of the model's input image. Definitions: <code>docs/stats.md</code>.</p>"
    )
    parts.append("<h2>Block kinds side by side (GSA against DSSA)</h2>")
    parts.append(
        "<p>Each cell: the mean, over the stage's heads of that kind, of each head's median over photos. "
        "A block whose map holds a single window at the model's reference size (224) is global attention "
        "(no window token, no PWA), as in the official code: for Lite that includes the 14x14 "
        "&quot;GSA&quot; blocks of stage 3.</p>"
    )
    parts.append(_kind_table(items))
    parts.append("<figure><img src='kinds.png' alt='kinds'></figure>")
    parts.append("<h2>Against depth</h2>")
    for name, label in pictures:
        parts.append(f"<figure><img src='{e(name)}' alt='{e(label)}'><figcaption>{e(label)}</figcaption></figure>")
    index = out / "index.html"
    index.write_text("\n".join(parts), encoding="utf-8")
    return index
