"""``python -m sepvit_viz COMMAND ...``: a thin dispatcher to the subcommands' own ``main(argv)``.

Add a subcommand by adding ``name: (module, one-line help)`` to :data:`COMMANDS`; the module needs a
``main(argv: list[str]) -> int``. Modules are imported only when their command runs. Ctrl-C ends a
command with exit status 130 and an ``OSError`` from the machine (a full disk, a read-only folder)
with status 1, each as one line on stderr, not a traceback. A command module run on its own
(``python -m sepvit_viz.cli``, ``python -m sepvit_viz.stats.cli``) calls :func:`main` with its command
name first, so it gets the same handling.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "render": ("sepvit_viz.cli", "attention pictures of a photo or a folder of photos (PNGs + index.html)"),
    "stats": ("sepvit_viz.stats.cli", "per block and head statistics over many photos (CSV, plots, index.html)"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        lines = [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
        usage = "usage: python -m sepvit_viz COMMAND [options]\n\ncommands:\n" + "\n".join(lines)
        if argv[:1] in (["-h"], ["--help"]):  # asked for: to stdout, as argparse does
            print(usage)
            return 0
        unknown = f"error: unknown command {argv[0]!r}\n" if argv else ""
        print(unknown + usage, file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    try:
        return int(module.main(argv[1:]) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as e:
        # the machine, not the input: a full disk, a folder that became read-only, a vanished source
        where = f": {e.filename}" if e.filename else ""
        print(f"error: {e.strerror or e}{where}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
