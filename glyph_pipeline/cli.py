"""`glyffuser` command line: one subcommand per step of the data flow.

Each subcommand lives in the module that owns its step; that module exposes
``configure_parser(parser)`` and ``run(args) -> int``. Modules are imported lazily so
``glyffuser --help`` stays fast and optional extras are only needed by the commands that use them.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "build-dataset": ("glyph_pipeline.dataset", "Render a CJK font + Unihan definitions into a 🤗 dataset"),
    "demo": ("glyph_pipeline.demo", "Offline end-to-end demo: dataset -> tiny model -> samples"),
}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glyffuser", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = None
    if argv:
        wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        # Only import the module whose command runs (or all of them for --help listings of one command).
        if wanted is None or wanted == name:
            module = importlib.import_module(module_name)
            module.configure_parser(p)
            p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if getattr(args, "_module", None) is None:
        parser.print_help()
        return 2
    return int(args._module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
