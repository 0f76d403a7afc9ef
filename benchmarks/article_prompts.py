"""The article's claim, counted: for each of its prompts, how many samples carry the prompted semantic radical.

Every prompt of the article grid ("gold; metal", "water", "tree; wood", ...) is sampled with `--samples`
seeds (0, 1, ...: the grid's columns are the first four) and the shipped radical judge reads each glyph.
A sample counts when the judge reads a radical the prompt's words ask for (`glyph_pipeline.evaluation.metrics.PROBES`:
"gold"/"metal" -> 金 167, "water" -> 水 85, ...). Several models side by side, same prompts and seeds:

    python benchmarks/article_prompts.py --model pretrained/tiny-32 --judge artifacts/judge-32 --samples 16
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from glyph_pipeline.app.core import expected_radicals
from glyph_pipeline.demo import ARTICLE_PROMPTS
from glyph_pipeline.evaluation.checks import generate_glyphs
from glyph_pipeline.evaluation.judge import load_judge
from glyph_pipeline.evaluation.metrics import judge_readings, radical_symbol
from glyph_pipeline.hub.pretrained import load_glyph_pipeline
from glyph_pipeline.schedulers import RECOMMENDED_GUIDANCE, RECOMMENDED_STEPS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, help="pipeline folder or Hub repo (repeatable)")
    parser.add_argument("--judge", type=Path, required=True, help="judge folder, e.g. artifacts/judge-32")
    parser.add_argument("--samples", type=int, default=16, help="seeds per prompt (default: 16)")
    parser.add_argument("--steps", type=int, default=RECOMMENDED_STEPS)
    parser.add_argument("--guidance", type=float, default=RECOMMENDED_GUIDANCE)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.samples < 1:
        parser.error("--samples must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    judge = load_judge(args.judge)
    prompts = [p for p in ARTICLE_PROMPTS for _ in range(args.samples)]
    seeds = [i for _ in ARTICLE_PROMPTS for i in range(args.samples)]
    print(f"| model | prompt | wanted | read as wanted | readings (seeds 0-{args.samples - 1}) |")
    print("|---|---|---|---|---|")
    for model in args.model:
        t0 = time.perf_counter()
        pipe = load_glyph_pipeline(model)
        pipe.set_progress_bar_config(disable=True)
        images = generate_glyphs(pipe, prompts, args.steps, args.guidance, seeds=seeds)
        _, read = judge_readings(judge, images)
        total = 0
        for k, prompt in enumerate(ARTICLE_PROMPTS):
            wanted = set(expected_radicals(prompt).values())
            got = read[k * args.samples : (k + 1) * args.samples]
            hits = int(sum(int(r) in wanted for r in got))
            total += hits
            print(
                f"| {model} | {prompt} | {' '.join(radical_symbol(r) for r in sorted(wanted))} | "
                f"{hits} / {len(got)} | {''.join(radical_symbol(int(r)) for r in got)} |"
            )
        print(
            f"| {model} | **all** | | **{total} / {len(prompts)}** | ({time.perf_counter() - t0:.0f}s, "
            f"{args.steps} steps, guidance {args.guidance:g}) |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
