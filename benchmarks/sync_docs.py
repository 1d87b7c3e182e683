"""Copy the tables of ``benchmarks/results.md`` into ``docs/performance.md``.

The doc keeps its own summary (the text between ``# Performance`` and ``## Model speed``) and takes
every table from ``results.md`` as it is: from ``## Model speed`` up to the doc's end marker, headings
at the level they have in ``results.md`` (both documents have one level-one title), and image links
made relative to ``docs/``. Run it after ``python -m benchmarks``:

    python -m benchmarks.sync_docs            # rewrite docs/performance.md in place
    python -m benchmarks.sync_docs --check    # exit 1 when docs/performance.md is out of date
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOC = HERE.parent / "docs" / "performance.md"
RESULTS = HERE / "results.md"
FIRST_TABLE = "## Model speed"
END = "<!-- /tables -->"


def tables_from_results(results: str) -> str:
    """``results.md`` text from ``## Model speed`` on, image links made relative to ``docs/``."""
    start = results.find(FIRST_TABLE)
    if start < 0:
        raise ValueError(f"results.md has no '{FIRST_TABLE}' heading")
    body = results[start:].strip()
    return re.sub(r"\]\((?!https?:|/|\.\./)([^)]+\.png)\)", r"](../benchmarks/\1)", body)


def sync(doc: str, results: str) -> str:
    """The doc with its tables (``## Model speed`` up to the end marker) replaced from ``results``."""
    start, end = doc.find(FIRST_TABLE), doc.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the performance doc needs '{FIRST_TABLE}' before '{END}'")
    return doc[:start] + tables_from_results(results) + "\n" + doc[end:]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="only report whether docs/performance.md is up to date")
    args = p.parse_args(argv)
    old = DOC.read_text()
    new = sync(old, RESULTS.read_text())
    if args.check:
        print("docs/performance.md tables are " + ("up to date" if new == old else "OUT OF DATE"))
        return 0 if new == old else 1
    DOC.write_text(new)
    print(f"docs/performance.md: tables {'unchanged' if new == old else 'rewritten'} from {RESULTS.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
