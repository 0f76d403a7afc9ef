"""A typeface LoRA against its base model, side by side: style taken, meaning kept, nothing traced.

The base pipeline and the same pipeline with the LoRA at each `--scales` value are scored by `evaluate_pipeline`
on the same held-out prompts and seeds (the test split of the typeface's dataset, characters neither model
trained on): the share of samples the typeface judge reads as `--typeface`, radical adherence (held-out
prompts and the article's probe words), FGD/KID against the typeface's real held-out glyphs, and the copy
rate against the LoRA's training glyphs (the dataset's train split). `--starts` adds the LoRA at scale 1
switched on only after that share of the steps (`lora_start`: the base model lays the glyph out, the LoRA draws
the strokes). Also checks that scale 0 draws the base model's glyphs bit for bit, and writes the article's
prompts drawn by both (`--grid`, the LoRA at scale 1 and `--grid-start`).

    python benchmarks/lora_typeface.py --model pretrained/tiny-32 --lora pretrained/tiny-32-kai-lora \
        --dataset data/ukai-32 --judge artifacts/judge-32 --typeface-judge artifacts/typeface-judge-32 \
        --typeface ukai --out docs/results/kai-lora/lora-vs-base.json --grid docs/results/kai-lora/article.png
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from glyph_pipeline.demo import ARTICLE_PROMPTS
from glyph_pipeline.evaluation.evaluate import evaluate_pipeline
from glyph_pipeline.evaluation.judge import load_judge
from glyph_pipeline.evaluation.typeface import load_typeface_judge
from glyph_pipeline.figures.diffusion import generate_grid
from glyph_pipeline.hub.pretrained import CallDefaults, load_glyph_pipeline
from glyph_pipeline.lora import apply_lora
from glyph_pipeline.schedulers import RECOMMENDED_GUIDANCE, RECOMMENDED_STEPS

ADAPTER = "lora"


def side_by_side(left: Image.Image, right: Image.Image, gap: int = 24) -> Image.Image:
    out = Image.new("RGB", (left.width + gap + right.width, max(left.height, right.height)), "white")
    out.paste(left, (0, 0))
    out.paste(right, (left.width + gap, 0))
    x = left.width + gap // 2
    ImageDraw.Draw(out).line([(x, 0), (x, out.height)], fill=(160, 160, 160))
    return out


def summary_row(name: str, r: dict) -> dict:
    copies = r.get("copies", {})
    return {
        "model": name,
        "typeface_share": r["typeface"]["share"],
        "typeface_shares": r["typeface"]["shares"],
        "real_typeface_share": r["typeface"]["real_share"],
        "held_out_adherence": r["adherence"],
        "probe_adherence": r.get("probe_adherence"),
        "train_prompt_adherence": r.get("train_prompts", {}).get("adherence"),
        "fgd": r["fgd"],
        "kid": r["kid"],
        "copy_rate": copies.get("held_out_prompts", {}).get("copy_rate"),
        "copy_rate_train_prompts": copies.get("train_prompts", {}).get("copy_rate"),
        "mean_pixel": r["ink"]["generated"]["mean_pixel"],
        "real_mean_pixel": r["ink"]["real"]["mean_pixel"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="base pipeline folder or Hub repo")
    parser.add_argument("--lora", required=True, help="LoRA folder, file or Hub repo")
    parser.add_argument("--scales", type=float, nargs="*", default=[0.5, 1.0], help="LoRA scales scored")
    parser.add_argument(
        "--starts", type=float, nargs="*", default=[], help="lora_start values scored (LoRA at scale 1)"
    )
    parser.add_argument("--grid-start", type=float, default=0.0, help="lora_start of the grid's LoRA panel")
    parser.add_argument(
        "--dataset", required=True, help="the typeface's glyph dataset (test: held out; train: the LoRA's glyphs)"
    )
    parser.add_argument("--judge", required=True, help="radical judge folder")
    parser.add_argument("--typeface-judge", required=True, help="typeface judge folder")
    parser.add_argument("--typeface", required=True, help="the LoRA's typeface, e.g. ukai")
    parser.add_argument("--num-samples", type=int, default=256)
    parser.add_argument("--probe-samples", type=int, default=8)
    parser.add_argument("--train-prompt-samples", type=int, default=128)
    parser.add_argument("--steps", type=int, default=RECOMMENDED_STEPS)
    parser.add_argument("--guidance", type=float, default=RECOMMENDED_GUIDANCE)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--out", type=Path, help="JSON with every result")
    parser.add_argument("--grid", type=Path, help="PNG: the article's prompts, base model | LoRA, 4 seeds each")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    judge = load_judge(args.judge)
    typeface_judge = load_typeface_judge(args.typeface_judge, args.typeface)
    pipe = load_glyph_pipeline(args.model, device="cpu")
    pipe.set_progress_bar_config(disable=True)

    def log(msg: str) -> None:
        print(f"  [{time.perf_counter() - t0:6.0f}s] {msg}", file=sys.stderr, flush=True)

    def score(name: str, lora_start: float = 0.0) -> dict:
        log(f"scoring {name}")
        result = evaluate_pipeline(
            CallDefaults(pipe, lora_start=lora_start) if lora_start else pipe, judge, args.dataset,
            num_samples=args.num_samples, num_inference_steps=args.steps,
            guidance_scale=args.guidance, probe_samples=args.probe_samples,
            train_prompt_samples=args.train_prompt_samples, typeface=args.typeface, typeface_judge=typeface_judge,
        )
        result["model"] = name
        return result

    results = {"base": score("base model")}
    base_grid = generate_grid(pipe, ARTICLE_PROMPTS, num_images=4, title=f"{args.model} (base model)")
    apply_lora(pipe, args.lora, 1.0, adapter_name=ADAPTER)
    pipe.set_adapters([ADAPTER], [0.0])
    zero_grid = generate_grid(pipe, ARTICLE_PROMPTS, num_images=4, title=f"{args.model} (base model)")
    scale0_exact = np.array_equal(np.asarray(base_grid), np.asarray(zero_grid))
    for scale in args.scales:
        pipe.set_adapters([ADAPTER], [scale])
        results[f"lora@{scale:g}"] = score(f"LoRA at scale {scale:g}")
    pipe.set_adapters([ADAPTER], [1.0])
    for start in args.starts:
        results[f"lora@1 start {start:g}"] = score(f"LoRA at scale 1 from {start:.0%} of the steps", start)
    if args.grid:
        title = f"+ LoRA {Path(args.lora).name}" + (f", lora_start {args.grid_start:g}" if args.grid_start else "")
        grid_pipe = CallDefaults(pipe, lora_start=args.grid_start) if args.grid_start else pipe
        lora_grid = generate_grid(grid_pipe, ARTICLE_PROMPTS, num_images=4, title=title)
        args.grid.parent.mkdir(parents=True, exist_ok=True)
        side_by_side(base_grid, lora_grid).save(args.grid)

    rows = [summary_row(name, r) for name, r in results.items()]
    base = rows[0]
    print(
        f"\nTypeface LoRA vs base: n = {args.num_samples} held-out prompts of {args.dataset} (characters neither "
        f"model trained on), {args.steps} steps, guidance {args.guidance:g}; same prompts and seeds in every row.\n"
    )
    header = (
        f"{'model':<20}{'read as ' + args.typeface:>13}{'held-out adh.':>15}{'× base':>8}{'probes':>8}{'× base':>8}"
        f"{'FGD':>8}{'copy rate':>11}{'mean px':>9}"
    )
    print(header)
    for row in rows:
        print(
            f"{row['model']:<20}{row['typeface_share']:>13.3f}{row['held_out_adherence']:>15.3f}"
            f"{row['held_out_adherence'] / base['held_out_adherence']:>8.2f}{row['probe_adherence']:>8.3f}"
            f"{row['probe_adherence'] / base['probe_adherence']:>8.2f}{row['fgd']:>8.2f}{row['copy_rate']:>11.3f}"
            f"{row['mean_pixel']:>9.3f}"
        )
    print(
        f"{'real glyphs':<20}{base['real_typeface_share']:>13.3f}{results['base']['judge_accuracy_real']:>15.3f}"
        f"{'':>8}{'':>8}{'':>8}{'':>8}{'':>11}{base['real_mean_pixel']:>9.3f}"
    )
    print(f"\nscale 0 draws the base model's glyphs bit for bit: {scale0_exact}")
    print(f"total {time.perf_counter() - t0:.0f}s")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        record = {"command": " ".join(sys.argv), "summary": rows, "scale0_exact": scale0_exact, "results": results}
        args.out.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
