# Copyright 2026 The glyffuser developers. Licensed under the Apache License, Version 2.0.
"""`glyffuser build-dataset`: render a CJK font + Unihan definitions into a glyph dataset on disk or the Hub.

Every output is checked before any glyph is rendered (an existing folder or file is refused without
``--overwrite``); the build is `data.dataset.build_glyph_dataset`, and its report is printed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .dataset import (
    DEFAULT_SEED,
    DEFAULT_TEST_FRACTION,
    GlyphDatasetError,
    build_glyph_dataset,
    check_target,
    save_dataset,
    save_parquet,
)
from .render import DEFAULT_SCALE, DEFAULT_SIZE, FontError
from .unihan import ALL_BLOCKS, UnihanError


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Flags of ``glyffuser build-dataset``."""
    out = parser.add_argument_group("outputs (at least one)")
    out.add_argument("--out", type=Path, help="save_to_disk folder (written to a temp folder, then renamed)")
    out.add_argument("--parquet", type=Path, help="single parquet file with all rows and a 'split' column")
    out.add_argument("--push-to-hub", metavar="REPO", help="push the DatasetDict to this Hub dataset repo")
    out.add_argument(
        "--overwrite", action="store_true", help="replace an existing --out folder / --parquet file"
    )
    src = parser.add_argument_group("sources")
    src.add_argument("--font", type=Path, help="font file (default: Noto Sans CJK from noto-cjk-sans-otc)")
    src.add_argument(
        "--font-index", type=int, help="face in a .ttc collection (default: the ' SC' face if any, else 0)"
    )
    src.add_argument(
        "--unihan",
        type=Path,
        help="Unihan directory, Unihan.zip or Unihan_Readings.txt[.bz2] (default: unicode-data)",
    )
    sel = parser.add_argument_group("selection and rendering")
    sel.add_argument(
        "--blocks",
        default="default",
        help=f"comma-separated CJK blocks ({', '.join(ALL_BLOCKS)}), 'all', or 'default' (all but compat)",
    )
    sel.add_argument("--characters", help="only these characters (overrides --blocks), e.g. '永字八法'")
    sel.add_argument("--limit", type=int, help="keep only the first N usable characters (tests, demos)")
    sel.add_argument(
        "--num-chars", type=int,
        help="keep a seeded random choice (--seed) of N training characters: an adaptation set, e.g. 500 glyphs "
        "of a typeface for a LoRA; the test split is kept whole",
    )
    sel.add_argument(
        "--split-from", metavar="DATASET",
        help="take the test split's characters from this dataset (e.g. the base model's data/glyphs-32), so "
        "characters held out there stay held out here",
    )
    sel.add_argument("--size", type=int, default=DEFAULT_SIZE, help="image size in px (default: 128)")
    sel.add_argument(
        "--low-res-size", type=int,
        help="also render each glyph at this size into a 'low_res_image' column: super-resolution pairs for "
        "training an upscaler (e.g. --size 128 --low-res-size 32)",
    )
    sel.add_argument(
        "--scale", type=float, default=DEFAULT_SCALE, help="em size / image size (default: 100/128 = 0.78125)"
    )
    sel.add_argument(
        "--resolve-same-as",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="definitions that only say 'same as U+XXXX' borrow the target's definition (default: on)",
    )
    sel.add_argument(
        "--test-fraction", type=float, default=DEFAULT_TEST_FRACTION, help="test split size (0.02)"
    )
    sel.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help="seed of the train/test split (default: 0)"
    )
    sel.add_argument(
        "--num-workers", type=int, help="rendering processes (default: all CPUs; 0 = in-process)"
    )
    sel.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``glyffuser build-dataset``: validate outputs, build, save, print a summary."""
    prog = "glyffuser build-dataset"
    try:
        if not (args.out or args.parquet or args.push_to_hub):
            raise GlyphDatasetError(
                "nothing to write: pass --out DIR, --parquet FILE and/or --push-to-hub REPO."
            )
        # Refuse existing outputs before spending time on rendering.
        if args.out:
            check_target(args.out, args.overwrite, "Output folder")
        if args.parquet:
            check_target(args.parquet, args.overwrite, "Parquet file")
            if args.parquet.is_dir():
                raise GlyphDatasetError(f"--parquet {args.parquet} is a directory; give a file name.")
        dsd, report = build_glyph_dataset(
            font=args.font,
            font_index=args.font_index,
            unihan=args.unihan,
            size=args.size,
            scale=args.scale,
            blocks=args.blocks,
            characters=args.characters,
            resolve_same_as=args.resolve_same_as,
            test_fraction=args.test_fraction,
            seed=args.seed,
            num_workers=args.num_workers,
            limit=args.limit,
            num_chars=args.num_chars,
            split_from=args.split_from,
            low_res_size=args.low_res_size,
            progress=not args.no_progress,
            return_report=True,
        )
        print(report.format())
        t0 = time.perf_counter()
        if args.out:
            print(f"saved to {save_dataset(dsd, args.out, overwrite=args.overwrite)}")
        if args.parquet:
            print(f"wrote {save_parquet(dsd, args.parquet, overwrite=args.overwrite)}")
        if args.push_to_hub:
            dsd.push_to_hub(args.push_to_hub)
            print(f"pushed to the Hub: {args.push_to_hub}")
        print(f"done in {report.seconds['total'] + time.perf_counter() - t0:.1f}s")
    except (GlyphDatasetError, FontError, UnihanError, FileNotFoundError, FileExistsError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    return 0
