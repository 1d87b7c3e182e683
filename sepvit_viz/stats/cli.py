"""``python -m sepvit_viz stats``: what every block and head does across a folder of photos.

    python -m sepvit_viz stats FOLDER_OR_PHOTO... --out DIR [--model sepvit_lite] [--checkpoint PATH]
        [--compare PATH|random] [--size 224] [--batch-size 8] [--limit N] [--threads N]

Writes ``DIR/stats.csv`` (one row per checkpoint, block and head: mean and 5/25/50/75/95th
percentiles over photos of every measure), ``DIR/values.npz`` (every photo's values),
``DIR/depth_<measure>.png`` (each measure against depth, one dot per head, coloured by kind),
``DIR/kinds.png`` (GSA against DSSA in each stage) and ``DIR/index.html``. Folders are searched
recursively. ``--compare`` puts a second checkpoint on the same plots (``random``: the same
architecture with random initial weights, seed 0). A tqdm bar counts photos on stderr; stdout is
the single ``wrote ...`` line. Photos that cannot be read are skipped and listed. Bad input (a
setting, a source, a checkpoint that does not load, a ``--compare`` of another architecture, no
readable photo) is one ``error: ...`` line on stderr and exit status 2, and ``DIR`` is not made: it
is checked first and made only when the report is written.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from sepvit_viz.cliargs import add_out_and_model_arguments, checkpoint_problem, model_mismatch, threads_problem
from sepvit_viz.limits import MAX_BATCH_SIZE, MAX_RESOLUTION, MAX_THREADS, MIN_RESOLUTION, RESOLUTION_MULTIPLE
from sepvit_viz.outdir import check_out_dir, prepare_out_dir
from sepvit_viz.stats.measures import StatsInputError, compute_stats, list_photos

__all__ = ["add_stats_arguments", "load_for_stats", "main", "run_stats"]


def add_stats_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("sources", type=Path, nargs="+", help="folders (searched recursively) and/or photos")
    add_out_and_model_arguments(p)
    p.add_argument(
        "--compare",
        default=None,
        metavar="PATH|random",
        help="a second checkpoint on the same plots; 'random' = random initial weights of the same model",
    )
    p.add_argument(
        "--size",
        type=int,
        default=224,
        help=f"square input side in pixels, {MIN_RESOLUTION}..{MAX_RESOLUTION} and a multiple of "
        f"{RESOLUTION_MULTIPLE} (default 224)",
    )
    p.add_argument("--batch-size", type=int, default=8, help=f"photos per forward, 1..{MAX_BATCH_SIZE} (default 8)")
    p.add_argument(
        "--limit",
        type=int,
        default=None,
        help="use only the first N photos (in the order of the sources, each folder sorted by path)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help=f"torch CPU threads, 1..{MAX_THREADS} (default: torch's choice; on a busy machine 1 can be faster than 2)",
    )
    return p


def _label(spec: str | None, default: str) -> str:
    if spec is None:
        return default
    if spec == "random":
        return "random init"
    return Path(spec).name.removesuffix(".safetensors")


def _origin(spec: str | None, warning: str | None = None) -> str:
    """Where a label's weights came from, for the report: the checkpoint path as given, or its kind
    (``warning``: the one :func:`load_for_stats` returned for it)."""
    if spec is None:
        return "random initial weights (no trained weights)" if warning else "the project's trained weights"
    if spec == "random":
        return "random initial weights (seed 0)"
    return f"checkpoint {spec}"


def load_for_stats(name: str, checkpoint: str | None, like: object | None = None) -> tuple[object, str | None]:
    """(eval-mode model, warning or None) for a variant name and a checkpoint spec.

    ``checkpoint``: None (the project's weights for ``name``; random with a warning when it has none),
    ``"random"`` (random initial weights, seed 0, of the architecture of ``like`` when given, so that
    a checkpoint with its own config is compared with its own architecture, else of ``name``), or a
    file (:func:`sepvit_viz.model.weights.load_checkpoint_file`: a project checkpoint rebuilds its own
    architecture; any other state dict is loaded strictly into ``name``).

    Raises:
        StatsInputError: an unknown variant, or a checkpoint that is empty, missing, a folder,
            unreadable or does not fit (the message says which).
    """
    import torch

    import sepvit_viz
    from sepvit_viz.model.weights import CheckpointError, load_checkpoint_file

    if name not in sepvit_viz.list_models():
        raise StatsInputError(f"unknown model {name!r}; choose one of {', '.join(sepvit_viz.list_models())}")
    if checkpoint == "random":
        with torch.random.fork_rng(devices=[]):  # seeded, without touching the caller's generator
            torch.manual_seed(0)
            if like is not None:
                return sepvit_viz.SepViT(like.config).eval(), None  # type: ignore[attr-defined]
            return sepvit_viz.create_model(name).eval(), None
    if checkpoint is None:
        try:
            return sepvit_viz.create_model(name, pretrained=True).eval(), None
        except (CheckpointError, FileNotFoundError, OSError):
            msg = f"no trained weights for {name}: statistics of RANDOM weights"
            return sepvit_viz.create_model(name).eval(), msg
    try:  # a project checkpoint rebuilds its own architecture, any other state dict loads into `name`
        return load_checkpoint_file(checkpoint, name), None
    except CheckpointError as e:
        raise StatsInputError(str(e)) from None


def run_stats(args: argparse.Namespace) -> int:
    """Measure what ``args`` (from :func:`add_stats_arguments`) asks for and write the report; 0 when
    written, 2 for bad input (one ``error: ...`` line, nothing written: ``--out`` is checked at once
    but made only after the models have loaded and the photos were measured), 130 on Ctrl-C (nothing
    written either)."""
    try:
        from sepvit_viz.validation import SettingsError, validate_resolution

        try:
            size = validate_resolution(args.size)
        except SettingsError as e:
            raise StatsInputError(str(e)) from None
        if not 1 <= args.batch_size <= MAX_BATCH_SIZE:
            raise StatsInputError(f"--batch-size must be 1 to {MAX_BATCH_SIZE}, got {args.batch_size}")
        problems = (
            threads_problem(args.threads),
            checkpoint_problem("--checkpoint", args.checkpoint),
            checkpoint_problem("--compare", args.compare),
        )
        for problem in problems:
            if problem:
                raise StatsInputError(problem)
        if args.threads is not None:
            import torch

            torch.set_num_threads(args.threads)
        # --out is checked, not made: bad input (a source, a checkpoint, --compare) leaves no empty folder
        photos = list_photos(args.sources, args.limit, exclude=args.out or None)
        try:
            args.out = check_out_dir(args.out)
        except ValueError as e:
            raise StatsInputError(str(e)) from None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a checkpoint's warnings are printed once below instead
            model, warning = load_for_stats(args.model, args.checkpoint)
            mismatch = model_mismatch(model.config, args.model, getattr(args, "model_given", False), args.checkpoint)
            models = {_label(args.checkpoint, getattr(model.config, "name", args.model)): model}
            origins = [f"{next(iter(models))} = {_origin(args.checkpoint, warning)}"]
            if args.compare is not None:
                other, other_warning = load_for_stats(args.model, args.compare, like=model)
                label = _label(args.compare, "compare")
                if label in models:
                    label += " (compare)"
                models[label] = other
                origins.append(f"{label} = {_origin(args.compare, other_warning)}")
                warning = warning or other_warning
        if warning:
            print(f"WARNING: {warning}", file=sys.stderr)
        if mismatch:
            print(f"WARNING: {mismatch}", file=sys.stderr)
        skipped = []
        with tqdm(total=len(photos), unit="photo", desc="stats", file=sys.stderr) as bar:

            def on_skip(path: Path, reason: str) -> None:
                skipped.append(path)
                tqdm.write(f"skipped {path}: {reason}", file=sys.stderr)

            results = compute_stats(
                models, photos, size=size, batch_size=args.batch_size, progress=bar.update, on_skip=on_skip
            )
        try:
            prepare_out_dir(args.out)
        except ValueError as e:
            raise StatsInputError(str(e)) from None
    except StatsInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing written (1,000 photos take a few minutes: rerun, or use --limit)", file=sys.stderr)
        return 130
    from sepvit_viz.stats.plots import write_report

    notes = [f"WARNING: {w}" for w in (warning, mismatch) if w]
    # the model measured: a checkpoint with its own architecture overrides --model
    notes.append(f"Sources: {', '.join(str(s) for s in args.sources)}; model {model.config.name}.")
    notes.append(f"Weights: {'; '.join(origins)}.")
    index = write_report(results, args.out, notes=notes)
    n = results[0].num_photos
    rate = results[0].seconds / max(n, 1)
    print(f"wrote {index} ({n} photo(s), {len(skipped)} skipped, {rate * 1000:.0f} ms per photo)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``stats`` subcommand: ``main(["FOLDER", "--out", "DIR", ...])``."""
    parser = add_stats_arguments(
        argparse.ArgumentParser(prog="python -m sepvit_viz stats", description=__doc__.split("\n\n")[0])
    )
    return run_stats(parser.parse_args(argv))


if __name__ == "__main__":  # through the dispatcher: its Ctrl-C (130) and OSError (1) handling
    from sepvit_viz.__main__ import main as dispatch

    raise SystemExit(dispatch(["stats", *sys.argv[1:]]))
