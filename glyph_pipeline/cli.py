"""`glyffuser` command line: one subcommand per step of the data flow.

Each subcommand lives in the module that owns its step. A module with one command exposes
``configure_parser(parser)`` and ``run(args) -> int``; a module with several exposes
``configure_<name>(parser)`` and ``run_<name>(args)`` (name with dashes as underscores). Modules are
imported only for the command that runs, so optional extras are needed only by the commands using them.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "build-dataset": ("glyph_pipeline.data.commands", "Render a CJK font + Unihan definitions into a 🤗 dataset"),
    "demo": (
        "glyph_pipeline.demo", "Offline demo: the article's figures from the shipped model (--train: train one first)"
    ),
    "generate": ("glyph_pipeline.figures.commands", "Sample glyphs for prompts into a captioned PNG grid"),
    "animate": (
        "glyph_pipeline.figures.commands", "GIF of the denoising trajectory x_t beside the predicted clean glyph"
    ),
    "steps-grid": ("glyph_pipeline.figures.commands", "One prompt and seed sampled with 1, 2, 3, 5, 10, 20... steps"),
    "noising": ("glyph_pipeline.figures.commands", "A real glyph noised from t=0 to T, labelled by t and SNR"),
    "single-step": ("glyph_pipeline.figures.commands", "The model's one-step prediction from pure noise, over seeds"),
    "dataset-map": ("glyph_pipeline.figures.dataset_map", "UMAP of the glyph dataset (PNG + interactive HTML)"),
    "train-judge": ("glyph_pipeline.evaluation.judge", "Train the radical-classifier CNN used by the glyph metrics"),
    "train-typeface-judge": (
        "glyph_pipeline.evaluation.typeface",
        "Train the typeface classifier (Noto Sans / UKai / UMing) behind --typeface",
    ),
    "evaluate": ("glyph_pipeline.evaluation.evaluate", "Fréchet glyph distance, KID and radical adherence of a model"),
    "export": (
        "glyph_pipeline.hub.pretrained",
        "Write a trained pipeline as a slim shipped model (fp16 UNet, encoder by name, card)",
    ),
    "push": ("glyph_pipeline.hub.push", "Upload a saved glyph pipeline folder to the Hub (retry a failed push)"),
    "app": ("glyph_pipeline.app.ui", "A Gradio page to play with a model in the browser (needs the [app] extra)"),
}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glyffuser", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = None
    if argv:
        wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if wanted == name:  # import only the module whose command runs
            module = importlib.import_module(module_name)
            snake = name.replace("-", "_")
            configure = getattr(module, f"configure_{snake}", None) or module.configure_parser
            runner = getattr(module, f"run_{snake}", None) or module.run
            configure(p)
            p.set_defaults(_run=runner)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 2
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
