"""Hugging Face Spaces entry point: the glyffuser Gradio app (same as `glyffuser app`).

    python app.py [--model PATH_OR_REPO] [--port N]     # default model: the shipped pretrained/tiny-32

Needs `pip install -e ".[app]"` (or `glyph-pipeline[app]`); see glyph_pipeline/app/ui.py.
"""

import sys

from glyph_pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(["app", *sys.argv[1:]]))
