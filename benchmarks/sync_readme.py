"""Copy the tables of ``benchmarks/results.md`` into the README's performance section.

The README keeps its own summary (the text between ``## Performance`` and ``### Model speed``) and
takes every table from ``results.md`` as it is: from ``## Model speed`` to the end, each heading one
level down (the README's section is a level-two heading), and image links made relative to the
repository root. Run it after ``python -m benchmarks``:

    python -m benchmarks.sync_readme            # rewrite README.md in place
    python -m benchmarks.sync_readme --check    # exit 1 when README.md is out of date
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
README = HERE.parent / "README.md"
RESULTS = HERE / "results.md"
FIRST_TABLE = "## Model speed"
END = "<!-- /section:performance -->"


def tables_from_results(results: str) -> str:
    """``results.md`` text from ``## Model speed`` on, headings pushed down one level, links fixed."""
    start = results.find(FIRST_TABLE)
    if start < 0:
        raise ValueError(f"results.md has no '{FIRST_TABLE}' heading")
    body = results[start:].strip()
    body = re.sub(r"^(#+) ", lambda m: "#" + m.group(1) + " ", body, flags=re.MULTILINE)
    return re.sub(r"\]\((?!https?:|/|benchmarks/)([^)]+\.png)\)", r"](benchmarks/\1)", body)


def sync(readme: str, results: str) -> str:
    """The README with its performance tables (``### Model speed`` up to the section end) replaced."""
    start, end = readme.find("#" + FIRST_TABLE), readme.find(END)
    if start < 0 or end < start:
        raise ValueError(f"README needs '#{FIRST_TABLE}' before '{END}'")
    return readme[:start] + tables_from_results(results) + "\n" + readme[end:]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="only report whether README.md is up to date")
    args = p.parse_args(argv)
    old = README.read_text()
    new = sync(old, RESULTS.read_text())
    if args.check:
        print("README performance tables are " + ("up to date" if new == old else "OUT OF DATE"))
        return 0 if new == old else 1
    README.write_text(new)
    print(f"README.md: performance tables {'unchanged' if new == old else 'rewritten'} from {RESULTS.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
