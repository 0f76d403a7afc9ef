"""Regenerate ``docs/dataset_grid.png``: a 4×8 grid of seeded random dataset rows with their captions.

    python benchmarks/make_dataset_grid.py                      # builds the dataset (~20 s on 2 cores)
    python benchmarks/make_dataset_grid.py --source data/glyphs # or reuse a built one (any load_glyph_dataset source)

A quick visual check of the data the model trains on: glyphs centred, nothing clipped, no tofu boxes,
captions in English.
"""

from __future__ import annotations

import argparse
import random
import textwrap
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from glyph_pipeline.dataset import build_glyph_dataset, load_glyph_dataset

DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


def caption_font(size: int = 11) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    if DEJAVU.is_file():
        return ImageFont.truetype(str(DEJAVU), size)
    return ImageFont.load_default(size=size)


def shorten(text: str, width: int, lines: int = 2) -> list[str]:
    """The definition's first sense, wrapped to ``lines`` lines of ``width`` characters."""
    first = text.split(";")[0].strip()
    return textwrap.wrap(first, width=width, max_lines=lines, placeholder="…") or [""]


def make_grid(dataset, rows: int = 4, cols: int = 8, seed: int = 0, cell: int = 128) -> Image.Image:
    """Seeded random rows of ``dataset`` (a ``datasets.Dataset``) with captions under each glyph."""
    picks = random.Random(seed).sample(range(len(dataset)), rows * cols)
    font = caption_font()
    pad, caption_h = 6, 34
    width = cols * (cell + pad) + pad
    height = rows * (cell + caption_h + pad) + pad
    grid = Image.new("L", (width, height), 235)
    draw = ImageDraw.Draw(grid)
    for k, i in enumerate(picks):
        row = dataset[int(i)]
        x = pad + (k % cols) * (cell + pad)
        y = pad + (k // cols) * (cell + caption_h + pad)
        glyph = row["image"].convert("L")
        if glyph.size != (cell, cell):
            glyph = glyph.resize((cell, cell), Image.Resampling.LANCZOS)
        grid.paste(glyph, (x, y))
        draw.rectangle([x, y + cell, x + cell - 1, y + cell + caption_h - 1], fill=255)
        for j, line in enumerate(shorten(row["text"], width=21)):
            draw.text((x + 3, y + cell + 3 + 14 * j), line, font=font, fill=40)
    return grid


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
