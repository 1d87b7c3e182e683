"""Run every benchmark script and collect one markdown report.

Usage::

    python -m benchmarks            # full mode -> benchmarks/results.md (what docs/performance.md shows)
    python -m benchmarks --quick    # CI smoke mode -> benchmarks/results-quick.md
    python -m benchmarks --only model attribution --out /tmp/r.md
    python -m benchmarks --only accuracy --merge   # rerun one area, keep the others in results.md

Contract for a benchmark script (follow it to be picked up automatically)
-------------------------------------------------------------------------
* It is a module ``benchmarks/bench_<area>.py``; the runner imports every such module, ``bench_model``
  first and the rest in alphabetical order (``--only <area>`` selects some).
* It defines ``run(quick: bool) -> str`` returning markdown: one ``### <area>`` heading per area,
  each followed by a conditions line (``benchmarks.common.conditions(...)`` gives CPU, threads,
  torch version and load; add input size, batch and repetitions) and a table of medians with
  same-run ratios (``benchmarks.common.time_interleaved`` times both sides interleaved,
  ``benchmarks.common.md_table`` prints the table).
* Optionally ``run(quick, out_dir=...)``: when ``run`` accepts an ``out_dir`` keyword, files it makes
  (plots) go there; the runner passes the folder of the results file.
* Optionally ``TITLE = "..."``: the ``## `` heading of its section (default: the module name).
* ``quick=True`` is the CI smoke mode: the same code paths with tiny inputs and repetitions, a few
  seconds on one core. Quick mode must never depend on timings (it must finish, not meet numbers).
* Set torch threads with ``benchmarks.common.num_threads(n)`` (restores the setting); the runner
  also restores torch's thread count after each module.
* A module that fails to import or raises is reported in the results (its error and the last lines
  of its traceback); the other modules still run. ``--strict`` makes the exit status 1 then.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import importlib.util
import inspect
import pkgutil
import re
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
FIRST = ("bench_model",)


@dataclass
class Outcome:
    name: str
    title: str
    markdown: str
    seconds: float
    ok: bool
    finished: str = ""  # UTC time the module finished


def discover(directory: Path | None = None) -> list[str]:
    """Names of the ``bench_*`` modules in ``directory``, ``bench_model`` first, then alphabetical."""
    directory = directory or HERE
    names = sorted(m.name for m in pkgutil.iter_modules([str(directory)]) if m.name.startswith("bench_"))
    return [n for n in FIRST if n in names] + [n for n in names if n not in FIRST]


def _import(name: str, directory: Path) -> ModuleType:
    if directory.resolve() == HERE:
        return importlib.import_module(f"benchmarks.{name}")
    spec = importlib.util.spec_from_file_location(f"_bench_ext_{name}", directory / f"{name}.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {directory / name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _error_block(exc: BaseException) -> str:
    tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
    tail = "".join(tb).strip().splitlines()[-12:]
    return "**FAILED**: `{}: {}`\n\n```\n{}\n```".format(
        type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "", "\n".join(tail)
    )


def run_one(name: str, quick: bool, out_dir: Path, directory: Path | None = None) -> Outcome:
    """Import and run one benchmark module; never raises (errors become the section's text)."""
    import torch

    threads = torch.get_num_threads()
    t0 = time.perf_counter()
    title = name
    try:
        module = _import(name, directory or HERE)
        title = getattr(module, "TITLE", name)
        run = module.run
        kwargs = {"out_dir": out_dir} if "out_dir" in inspect.signature(run).parameters else {}
        text = run(quick, **kwargs)
        if not isinstance(text, str):
            raise TypeError(f"{name}.run() returned {type(text).__name__}, not markdown text")
        ok = True
    except Exception as exc:  # a broken benchmark must not take the others down
        text, ok = _error_block(exc), False
    finally:
        torch.set_num_threads(threads)
    return Outcome(name, title, text.strip(), time.perf_counter() - t0, ok, _now())


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def header(quick: bool) -> str:
    import torch

    from benchmarks.common import cpu_model, load_average

    now = _now()
    return "\n".join(
        [
            f"# sepvit-viz benchmarks ({'quick smoke run: tiny sizes, numbers mean nothing' if quick else 'full run'})",
            "",
            f"Generated {now} by `python -m benchmarks{' --quick' if quick else ''}`. Machine: {cpu_model()}, "
            f"torch {torch.__version__}, Python {sys.version.split()[0]}, 1-min load average at start "
            f"{load_average()}. Figures are medians; ratios compare sides timed in the same run, interleaved. "
            "Each table names its own conditions.",
        ]
    )


def render_section(o: Outcome) -> str:
    stamp = f", finished {o.finished}" if o.finished else ""
    return f"## {o.title}\n\n_`benchmarks/{o.name}.py`, {o.seconds:.0f} s{stamp}_\n\n{o.markdown}"


def render(
    outcomes: list[Outcome], quick: bool, keep: dict[str, str] | None = None, order: list[str] | None = None
) -> str:
    """The report: header, then each module's section in ``order`` (default: run order). ``keep``:
    sections of an earlier report (module name -> section text) for modules not rerun (``--merge``)."""
    parts = [header(quick)]
    if keep:
        parts[0] += " Sections rerun separately (`--merge`) carry their own finishing time."
    new = {o.name: render_section(o) for o in outcomes}
    names = [n for n in (order or []) if n in new or n in (keep or {})]
    names += [n for n in [*new, *(keep or {})] if n not in names]
    for name in names:
        parts.append(new.get(name) or (keep or {})[name])
    return "\n\n".join(parts) + "\n"


_SECTION_MARK = re.compile(r"^_`benchmarks/(bench_\w+)\.py`", re.M)


def split_sections(report: str) -> dict[str, str]:
    """An earlier report's sections by module name (the header is dropped)."""
    chunks = re.split(r"(?m)^(?=## )", report)
    out: dict[str, str] = {}
    last = None
    for chunk in chunks[1:]:
        m = _SECTION_MARK.search(chunk)
        if m:
            last = m.group(1)
            out[last] = chunk.strip()
        elif last is not None:  # a '## ' line inside a module's own markdown: still that module's text
            out[last] += "\n\n" + chunk.strip()
    return out


def run_all(
    quick: bool,
    out: Path,
    only: list[str] | None = None,
    directory: Path | None = None,
    echo: bool = True,
    merge: bool = False,
) -> list[Outcome]:
    """Run the selected modules, print each section as it finishes, write ``out``; return outcomes.

    ``merge``: keep the sections of the existing ``out`` for the modules not run now."""
    names = all_names = discover(directory)
    if only:
        wanted = [n if n.startswith("bench_") else f"bench_{n}" for n in only]
        missing = [w for w in wanted if w not in names]
        if missing:
            raise SystemExit(f"no such benchmark: {', '.join(missing)} (found: {', '.join(names) or 'none'})")
        names = [n for n in names if n in wanted]
    out.parent.mkdir(parents=True, exist_ok=True)
    keep = split_sections(out.read_text(encoding="utf-8")) if merge and out.exists() else {}
    keep = {k: v for k, v in keep.items() if k not in names}
    outcomes = []
    for name in names:
        if echo:
            print(f"[benchmarks] running {name} ({'quick' if quick else 'full'}) ...", file=sys.stderr, flush=True)
        o = run_one(name, quick, out.parent, directory)
        outcomes.append(o)
        if echo:
            print(f"\n## {o.title}\n\n{o.markdown}\n", flush=True)
        out.write_text(render(outcomes, quick, keep, all_names), encoding="utf-8")  # partial results survive a crash
    out.write_text(render(outcomes, quick, keep, all_names), encoding="utf-8")
    return outcomes


def main(argv: list[str] | None = None, directory: Path | None = None) -> int:
    """Command line entry point; ``directory`` (tests) looks for ``bench_*.py`` elsewhere."""
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="CI smoke mode: tiny sizes and repetitions")
    mode.add_argument("--full", action="store_true", help="full mode (default)")
    p.add_argument("--only", nargs="+", metavar="NAME", help="run only these (e.g. model or bench_model)")
    p.add_argument("--out", type=Path, help="results file (default benchmarks/results.md, quick: results-quick.md)")
    p.add_argument("--merge", action="store_true", help="keep the other modules' sections of the results file")
    p.add_argument("--strict", action="store_true", help="exit with status 1 when a benchmark fails")
    args = p.parse_args(argv)
    out = args.out or HERE / ("results-quick.md" if args.quick else "results.md")
    outcomes = run_all(args.quick, out, args.only, directory, merge=args.merge)
    failed = [o.name for o in outcomes if not o.ok]
    print(f"[benchmarks] wrote {out}" + (f"; FAILED: {', '.join(failed)}" if failed else ""), file=sys.stderr)
    return 1 if (failed and args.strict) else 0


if __name__ == "__main__":
    if __package__ in (None, ""):
        sys.path.insert(0, str(REPO))
    sys.exit(main())
