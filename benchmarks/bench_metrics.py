"""Benchmark the glyph metrics: FGD, KID and radical adherence of glyph pipelines under several samplers.

Scores every `--model` (a saved pipeline folder or Hub repo) and, with `--random`, a random-weight
tiny-32 pipeline (offline MiniLM encoder): the "knows nothing" reference every trained model must beat.
Each setting is `scheduler:steps:guidance`. All models are scored on the same held-out prompts and the
same number of samples, so FGD values in one run are comparable.

    # judge first (once): glyffuser train-judge --dataset data/glyphs-32 --out artifacts/judge-32 --threads 1
    python benchmarks/bench_metrics.py --judge artifacts/judge-32 --dataset data/glyphs-32 --random \\
        --model runs/tiny-32 --setting dpmsolver++:20:1 --setting dpmsolver++:20:3 --out bench_metrics.json

`--threads 1` is much faster than two threads when other jobs share a 2-core CPU (OpenMP wake-ups).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from glyph_pipeline.evaluation.evaluate import evaluate_pipeline, format_report, write_json
from glyph_pipeline.evaluation.judge import load_judge, load_judge_metrics
from glyph_pipeline.hub.pretrained import load_glyph_pipeline
from glyph_pipeline.schedulers import RECOMMENDED_GUIDANCE, RECOMMENDED_STEPS

# guidance off vs the recommended setting
DEFAULT_SETTINGS = (f"dpmsolver++:{RECOMMENDED_STEPS}:1", f"dpmsolver++:{RECOMMENDED_STEPS}:{RECOMMENDED_GUIDANCE:g}")


def random_pipeline(preset: str = "tiny-32", encoder: str = "minilm", seed: int = 0):
    """An untrained pipeline: the scores of a model that has learnt nothing."""
    from glyph_pipeline import GlyphDiffusionPipeline, build_unet, load_text_encoder, sampling_scheduler
    from glyph_pipeline.text_encoders import hidden_size

    tokenizer, text_encoder = load_text_encoder(encoder)
    torch.manual_seed(seed)
    unet = build_unet(preset, hidden_size(text_encoder)).eval()
    return GlyphDiffusionPipeline(unet, sampling_scheduler(), text_encoder, tokenizer)


def parse_setting(text: str) -> tuple[str, int, float]:
    try:
        name, steps, guidance = text.split(":")
        return name, int(steps), float(guidance)
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"--setting wants scheduler:steps:guidance, e.g. dpmsolver++:20:3, got {text!r}"
        ) from err


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--judge", required=True, type=Path, help="judge folder (glyffuser train-judge)")
    parser.add_argument("--dataset", required=True, help="glyph dataset with train/test splits")
    parser.add_argument("--model", action="append", default=[], help="saved pipeline folder or Hub repo (repeatable)")
    parser.add_argument("--random", action="store_true", help="also score a random-weight tiny-32 pipeline (minilm)")
    parser.add_argument("--setting", action="append", type=parse_setting, help="scheduler:steps:guidance (repeatable)")
    parser.add_argument("--num-samples", type=int, default=256)
    parser.add_argument("--probe-samples", type=int, default=8)
    parser.add_argument("--train-prompt-samples", type=int, default=0, help="train-prompt adherence samples (0: skip)")
    parser.add_argument("--sensitivity-prompts", type=int, default=0, help="prompt-sensitivity grid prompts (0: skip)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--out", type=Path, help="JSON with every result")
    args = parser.parse_args(argv)
    if not args.model and not args.random:
        parser.error("nothing to score: pass --model DIR and/or --random")
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = args.setting or [parse_setting(s) for s in DEFAULT_SETTINGS]

    judge = load_judge(args.judge)
    judge_metrics = load_judge_metrics(args.judge)
    acc = judge_metrics.get("held_out_accuracy")
    print(f"judge {args.judge}: {judge.num_parameters():,} params, {judge.config.sample_size}px, held-out accuracy "
          f"{acc if acc is None else round(acc, 4)} on {judge_metrics.get('num_held_out')} glyphs", flush=True)

    models = [("random tiny-32 (minilm)", None)] * args.random + [(m, m) for m in args.model]
    results = []
    for label, source in models:
        pipe = random_pipeline() if source is None else load_glyph_pipeline(source)
        pipe.set_progress_bar_config(disable=True)
        for scheduler, steps, guidance in settings:
            print(f"\n=== {label}: {scheduler} x{steps}, guidance {guidance}", flush=True)
            t0 = time.perf_counter()
            result = evaluate_pipeline(
                pipe, judge, args.dataset, num_samples=args.num_samples, num_inference_steps=steps,
                guidance_scale=guidance, seed=args.seed, batch_size=args.batch_size, scheduler=scheduler,
                probe_samples=args.probe_samples, log=lambda m: print(m, file=sys.stderr, flush=True),
                train_prompt_samples=args.train_prompt_samples, sensitivity_prompts=args.sensitivity_prompts,
            )
            result["judge"].update(path=str(args.judge), held_out_accuracy=acc)
            result["model"] = label
            print(format_report(result), flush=True)
            print(f"({time.perf_counter() - t0:.0f}s)", flush=True)
            results.append(result)
            if args.out:  # rewrite after every setting: a long run keeps what it has
                write_json({"judge": str(args.judge), "judge_metrics": judge_metrics, "results": results}, args.out)

    print(
        "\n| model | sampler | FGD | real floor | KID | mean pixel (real) | adherence | judge on real | base rate "
        "| probes |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        s, floor = r["sampler"], r.get("real_floor", {})
        print(
            f"| {r['model']} | {s['scheduler']}×{s['num_inference_steps']}, cfg {s['guidance_scale']:g} | "
            f"{r['fgd']:.2f} | {floor.get('fgd', float('nan')):.2f} | {r['kid']:.3g} | "
            f"{r['ink']['generated']['mean_pixel']:.3f} ({r['ink']['real']['mean_pixel']:.3f}) | "
            f"{r['adherence']:.3f} | "
            f"{r['judge_accuracy_real']:.3f} | {r['base_rate']:.3f} | {r.get('probe_adherence', float('nan')):.3f} |"
        )
    if args.out:
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
