"""Benchmark: build the full glyph dataset (≈21k rows at 128 px) from the real font and Unihan.

    python benchmarks/bench_dataset.py [--size 128] [--num-workers N] [--compress-level 1] [--out DIR]

Prints wall time, rows and rendering-only throughput. Acceptance goal: <= 30 s wall on a 2-core CPU.
Also prints CPU seconds (this process + rendering workers) and the load average: on a shared machine
wall time depends on what else runs, CPU time much less.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

t_start = time.perf_counter()
from glyph_pipeline.data.dataset import build_glyph_dataset, save_dataset, save_parquet  # noqa: E402
from glyph_pipeline.data.render import DEFAULT_PNG_COMPRESS_LEVEL, available_cpus  # noqa: E402

t_import = time.perf_counter() - t_start


def _cpu_seconds() -> float:
    """User + system CPU of this process and of its finished children (the rendering workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--num-workers", type=int, default=None)
    parser.add_argument("--compress-level", type=int, default=DEFAULT_PNG_COMPRESS_LEVEL)
    parser.add_argument(
        "--out", type=Path, help="also time save_to_disk + parquet here (default: a temp dir)"
    )
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    cpu0 = _cpu_seconds()
    t0 = time.perf_counter()
    dsd, report = build_glyph_dataset(
        size=args.size,
        num_workers=args.num_workers,
        png_compress_level=args.compress_level,
        progress=args.progress,
        return_report=True,
    )
    t_build = time.perf_counter() - t0
    cpu_build = _cpu_seconds() - cpu0
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        t1 = time.perf_counter()
        save_dataset(dsd, out / "glyphs", overwrite=True)
        t_save = time.perf_counter() - t1
        t2 = time.perf_counter()
        parquet = save_parquet(dsd, out / "glyphs.parquet", overwrite=True)
        t_parquet = time.perf_counter() - t2
        parquet_mib = parquet.stat().st_size / 2**20

    print(report.format())
    rows = report.rows
    render_s = report.seconds["render"]
    workers = args.num_workers if args.num_workers is not None else available_cpus()
    print()
    print(f"size={args.size}px  workers={workers}  png compress_level={args.compress_level}")
    print(f"import glyph_pipeline:        {t_import:6.1f} s")
    print(f"build_glyph_dataset (wall):   {t_build:6.1f} s  for {rows:,} rows")
    print(
        f"  CPU (main + workers):       {cpu_build:6.1f} s  (load average before/after: "
        f"{load_before:.1f}/{os.getloadavg()[0]:.1f} on {available_cpus()} CPUs)"
    )
    print(f"  rendering + PNG only:       {render_s:6.1f} s  = {rows / render_s:,.0f} glyphs/s")
    print(f"save_to_disk:                 {t_save:6.1f} s")
    print(f"to_parquet:                   {t_parquet:6.1f} s  ({parquet_mib:.1f} MiB)")
    total = t_build + t_save
    verdict = "OK" if total <= 30 else "SLOWER than"
    print(f"build + save_to_disk:         {total:6.1f} s  ({verdict} the 30 s goal)")


if __name__ == "__main__":
    main()
