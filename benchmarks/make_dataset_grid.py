"""Regenerate ``docs/dataset_grid.png``: a 4×8 grid of seeded random dataset rows with their captions.

    python benchmarks/make_dataset_grid.py                      # builds the dataset (~20 s on 2 cores)
    python benchmarks/make_dataset_grid.py --source data/glyphs # or reuse a built one (any load_glyph_dataset source)

A quick visual check of the data the model trains on: glyphs centred, nothing clipped, no tofu boxes,
captions in English.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from PIL import Image

from glyph_pipeline.data.dataset import build_glyph_dataset, load_glyph_dataset
from glyph_pipeline.figures.layout import labelled_grid


def make_grid(dataset, rows: int = 4, cols: int = 8, seed: int = 0, cell: int = 128) -> Image.Image:
    """Seeded random rows of ``dataset`` (a ``datasets.Dataset``), each glyph captioned with its definition's
    first sense."""
    picks = [dataset[int(i)] for i in random.Random(seed).sample(range(len(dataset)), rows * cols)]
    cells = [[row["image"] for row in picks[r * cols : (r + 1) * cols]] for r in range(rows)]
    captions = [[row["text"].split(";")[0].strip() for row in picks[r * cols : (r + 1) * cols]] for r in range(rows)]
    return labelled_grid(cells, cell, captions, caption_lines=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", help="a built dataset (folder, parquet, Hub name); default: build one")
    parser.add_argument("--split", default="train")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "dataset_grid.png"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    if args.source:
        dataset = load_glyph_dataset(args.source, split=args.split)
    else:
        dataset = build_glyph_dataset(progress=False)[args.split]
    grid = make_grid(dataset, seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(args.out, optimize=True)
    print(f"wrote {args.out} ({grid.width}x{grid.height}, {args.out.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
