"""Learning curves on CPU: train glyph models in stages and score each stage with `glyffuser evaluate`.

Each *arm* is a training recipe (flags of `training/train_glyph_diffusion.py`). An arm trains to
`--stage-steps`, 2x, 3x ... steps (resuming its own checkpoint each time, with a constant learning rate so
that a stage boundary changes nothing), snapshots the saved (EMA) pipeline as `<out>/<arm>/step-N/` and
scores it: FGD, KID, mean pixel / ink, held-out and train-prompt radical adherence, prompt sensitivity and
the probes. Arms are compared at equal CPU time: the x-axis is training CPU-minutes (training wall seconds
x threads, from the run's `training_config.json`; sampling for the scores is not counted).

    # two arms side by side on a 2-core machine, one thread each (run in two shells or with &):
    python benchmarks/learning_curves.py run --arm pooled --dataset data/glyphs-32 --judge artifacts/judge-32 \\
        --out runs/curves --stages 3 --stage-steps 750 --threads 1
    python benchmarks/learning_curves.py run --arm pooled-snr5 ...      # same flags
    # table (markdown) + one plot per metric against CPU-minutes:
    python benchmarks/learning_curves.py report --out runs/curves --plot docs/figures/learning-curves.png

A later invocation with a larger `--stages` continues an arm where it stopped (its checkpoint and the
scored stages are reused); `--threads` may differ between invocations.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from glyph_pipeline.atomic import atomic_output, write_text
from glyph_pipeline.schedulers import RECOMMENDED_GUIDANCE, RECOMMENDED_STEPS

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "training" / "train_glyph_diffusion.py"
CPU_CONFIG = REPO / "training" / "accelerate_configs" / "cpu.yaml"
POOLED_TEXT = {"class_embed_type": "projection", "addition_embed_type": None}

# Shared by every arm unless the arm overrides it (the model: tiny-32 + the offline MiniLM encoder, or --init):
# batch 16, constant LR after a short warm-up (a curve point must not depend on where the run will end).
COMMON = [
    "--train_batch_size", "16",
    "--lr_scheduler", "constant_with_warmup", "--lr_warmup_steps", "100", "--validation_steps", "0",
    "--report_to", "none", "--seed", "0",
]
RECIPE = ["--learning_rate", "5e-4", "--use_ema"]  # + v-prediction, cosine betas, pooled text (the defaults)
TEXT_POOLING = {"class_embed_type": None, "addition_embed_type": "text"}  # diffusers' pooling, padding included
ARMS: dict[str, dict] = {
    # The recommended recipe: v-prediction on the cosine schedule, the masked-mean sentence embedding as a class
    # embedding, plain v-loss (no min-SNR: it would leave the high-noise steps, where a layout and so the radical
    # is chosen, almost no weight), EMA, condition dropout 0.1.
    "pooled": dict(flags=RECIPE, unet=POOLED_TEXT),
    # The same with min-SNR 5 (the CPU recipe shipped before the GPU A/B showed its cost).
    "pooled-snr5": dict(flags=[*RECIPE, "--snr_gamma", "5"], unet=POOLED_TEXT),
    # diffusers' pooled text embedding (every position, padding included) instead of the sentence embedding.
    "text": dict(flags=RECIPE, unet=TEXT_POOLING),
    "text-snr5": dict(flags=[*RECIPE, "--snr_gamma", "5"], unet=TEXT_POOLING),
    # The original glyffuser's hyper-parameters: ε, linear betas, lr 1e-4, no min-SNR, no EMA, no dropout.
    "original": dict(
        flags=["--prediction_type", "epsilon", "--beta_schedule", "linear", "--learning_rate", "1e-4",
               "--cond_dropout", "0"],
        unet=TEXT_POOLING,
    ),
}
PIPELINE_ENTRIES = ("model_index.json", "unet", "scheduler", "text_encoder", "tokenizer",
                    "pipeline_glyph_diffusion.py", "validation", "training_config.json")  # fmt: skip


def _env(threads: int) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def _run_config(run: Path) -> dict | None:
    path = run / "training_config.json"
    return json.loads(path.read_text()) if path.is_file() else None


def snapshot(run: Path, dest: Path, extra: tuple[str, ...] = ()) -> None:
    """Copy the pipeline the run just saved into `dest` (atomically: a sibling folder, then a rename)."""
    with atomic_output(dest) as tmp:
        tmp.mkdir()
        for name in (*PIPELINE_ENTRIES, *extra):
            src = run / name
            if src.is_dir():
                shutil.copytree(src, tmp / name)
            elif src.is_file():
                shutil.copy2(src, tmp / name)


def run_arm(args: argparse.Namespace) -> int:
    arm = ARMS[args.arm]
    root = args.out / args.arm
    run = root / "run"
    root.mkdir(parents=True, exist_ok=True)
    model_flags = ["--unet_preset", "tiny-32", "--text_encoder_name_or_path", "minilm",
                   "--unet_config", json.dumps(arm["unet"])]  # fmt: skip
    prior = 0
    if args.init:
        # Continue the arm from saved weights (e.g. the shipped model): its own scores are the first point.
        record = _run_config(args.init)
        if record is None:
            print(f"--init {args.init} has no training_config.json; pass a folder saved by the training script.",
                  file=sys.stderr)  # fmt: skip
            return 2
        prior = int(record.get("total_steps", record["steps"]))
        # One run folder per starting point: its checkpoints never resume a continuation from other weights.
        run = root / f"run-from-{prior:06d}"
        if not (root / f"step-{prior:06d}").is_dir():
            snapshot(args.init, root / f"step-{prior:06d}", extra=("metrics.json",))
        model_flags = ["--pretrained_model_name_or_path", str(args.init)]
    for stage in range(1, args.stages + 1):
        steps = stage * args.stage_steps
        dest = root / f"step-{prior + steps:06d}"
        if not dest.is_dir():
            record = _run_config(run)
            if record is None or record["steps"] != steps:
                cmd = [
                    sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CPU_CONFIG), str(SCRIPT),
                    "--dataset", str(args.dataset), "--output_dir", str(run), *COMMON, *model_flags, *arm["flags"],
                    "--max_train_steps", str(steps),
                    "--checkpointing_steps", str(args.stage_steps), "--checkpoints_total_limit", "1",
                    "--resume_from_checkpoint", "latest",
                ]
                print(f"[{args.arm}] training to step {steps}", flush=True)
                subprocess.run(cmd, env=_env(args.threads), check=True)
            snapshot(run, dest)
        metrics = dest / "metrics.json"
        if not metrics.is_file():
            print(f"[{args.arm}] scoring step {steps}", flush=True)
            cmd = [
                sys.executable, "-m", "glyph_pipeline.cli", "evaluate",
                "--model", str(dest), "--judge", str(args.judge),
                "--dataset", str(args.dataset), "--num-samples", str(args.num_samples), "--scheduler", "dpmsolver++",
                "--steps", str(RECOMMENDED_STEPS), "--guidance", str(RECOMMENDED_GUIDANCE), "--probe-samples", "8",
                "--train-prompt-samples", str(args.train_prompt_samples), "--threads", str(args.threads),
                "--out", str(metrics),
            ]
            subprocess.run(cmd, env=_env(args.threads), check=True)
    return 0


# ------------------------------------------------------------------------------------------------ report
def collect(out: Path) -> dict[str, list[dict]]:
    """{arm: [point, ...]} with CPU-minutes and the headline metrics of every scored stage."""
    curves: dict[str, list[dict]] = {}
    for arm_dir in sorted(p for p in out.iterdir() if p.is_dir()):
        points, cpu_seconds, seconds_before = [], 0.0, 0.0
        for stage in sorted(arm_dir.glob("step-*")):
            if stage.name.endswith(".tmp") or not (stage / "metrics.json").is_file():
                continue
            m = json.loads((stage / "metrics.json").read_text())
            tc = json.loads((stage / "training_config.json").read_text())
            # Each stage may have run with another thread count: CPU time adds up stage by stage (the
            # training script records it as thread_seconds; older records only have train_seconds).
            threads = int(tc.get("hardware", {}).get("torch_threads") or 1)
            cpu_seconds += (tc["train_seconds"] - seconds_before) * threads
            seconds_before = tc["train_seconds"]
            cpu_seconds = tc.get("thread_seconds", cpu_seconds)
            points.append({
                "steps": tc.get("total_steps", tc["steps"]), "samples": tc["samples_seen"], "epochs": tc["epochs"],
                "cpu_minutes": cpu_seconds / 60, "fgd": m["fgd"], "fgd_floor": m["real_floor"]["fgd"],
                "kid": m["kid"], "mean_pixel": m["ink"]["generated"]["mean_pixel"],
                "real_mean_pixel": m["ink"]["real"]["mean_pixel"], "adherence": m["adherence"],
                "base_rate": m["base_rate"], "train_adherence": m["train_prompts"]["adherence"],
                "train_base_rate": m["train_prompts"]["base_rate"],
                "sensitivity": m["sensitivity"]["prompt_sensitivity"], "probes": m["probe_adherence"],
                "gold": m["probes"]["gold"]["adherence"],
            })
        if points:
            curves[arm_dir.name] = points
    return curves


COLUMNS = [
    ("arm", "{}"), ("steps", "{:,}"), ("epochs", "{:.2f}"), ("cpu_minutes", "{:.0f}"), ("fgd", "{:.1f}"),
    ("fgd_floor", "{:.1f}"), ("kid", "{:.2f}"), ("mean_pixel", "{:.3f}"), ("adherence", "{:.3f}"),
    ("train_adherence", "{:.3f}"), ("sensitivity", "{:.2f}"), ("probes", "{:.3f}"), ("gold", "{:.2f}"),
]


def merge_record(curves: dict[str, list[dict]], record: Path) -> dict[str, list[dict]]:
    """Add the scored stages to the committed `record` (JSON, {arm: [point, ...]}) and return the union.

    Training runs live in a scratch folder that may be gone by the next run; the record keeps every point
    measured so far, so a curve continued from the shipped weights is plotted with the stages before it.
    """
    merged = json.loads(record.read_text()) if record.is_file() else {}
    for arm, points in curves.items():
        by_steps = {p["steps"]: p for p in merged.get(arm, [])}
        by_steps.update({p["steps"]: p for p in points})
        merged[arm] = [by_steps[k] for k in sorted(by_steps)]
    write_text(record, json.dumps(merged, indent=1) + "\n")
    return merged


def report(args: argparse.Namespace) -> int:
    curves = collect(args.out) if args.out.is_dir() else {}
    if args.record:
        curves = merge_record(curves, args.record)
    if not curves:
        print(f"No scored stages under {args.out}; run `learning_curves.py run` first.", file=sys.stderr)
        return 2
    print("| " + " | ".join(name for name, _ in COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for arm, points in curves.items():
        for p in points:
            print("| " + " | ".join(fmt.format(arm if name == "arm" else p[name]) for name, fmt in COLUMNS) + " |")
    first = next(iter(curves.values()))[0]
    print(f"\nreal glyphs: mean pixel {first['real_mean_pixel']:.3f}; prompt-blind base rate held-out "
          f"{first['base_rate']:.3f}, train {first['train_base_rate']:.3f}; probes base rate 0.2")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        panels = [("fgd", "FGD (real floor dashed)"), ("mean_pixel", "mean pixel (real dashed)"),
                  ("adherence", "held-out adherence"), ("train_adherence", "train-prompt adherence"),
                  ("sensitivity", "prompt sensitivity"), ("probes", "probe adherence")]  # fmt: skip
        fig, axes = plt.subplots(2, 3, figsize=(13, 7))
        for ax, (key, title) in zip(axes.flat, panels):
            for arm, points in curves.items():
                ax.plot([p["cpu_minutes"] for p in points], [p[key] for p in points], marker="o", label=arm)
            ref = {"fgd": "fgd_floor", "mean_pixel": "real_mean_pixel", "adherence": "base_rate",
                   "train_adherence": "train_base_rate"}.get(key)  # fmt: skip
            if ref:
                ax.axhline(first[ref], color="grey", linestyle="--", linewidth=1)
            if key == "fgd":
                ax.set_yscale("log")
            ax.set_title(title)
            ax.set_xlabel("training CPU-minutes")
        axes.flat[0].legend()
        fig.tight_layout()
        with atomic_output(args.plot) as tmp:
            fig.savefig(tmp, dpi=90, format="png")
        print(f"plot: {args.plot}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="train one arm in stages and score every stage")
    r.add_argument("--arm", required=True, choices=list(ARMS))
    r.add_argument(
        "--dataset", type=Path, required=True, help="32 px glyph dataset (glyffuser build-dataset --size 32)"
    )
    r.add_argument("--judge", type=Path, required=True, help="judge folder, e.g. artifacts/judge-32")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--stages", type=int, default=3)
    r.add_argument("--stage-steps", type=int, default=750)
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--init", type=Path, default=None,
                   help="continue from this pipeline folder (saved by the training script), e.g. pretrained/tiny-32")
    r.add_argument("--num-samples", type=int, default=256)
    r.add_argument("--train-prompt-samples", type=int, default=128)
    p = sub.add_parser("report", help="markdown table and plots of every scored stage")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--plot", type=Path, default=None)
    p.add_argument("--record", type=Path, default=None,
                   help="JSON of every point measured so far (e.g. benchmarks/results/learning-curves.json): the "
                        "scored stages are merged into it, and the table and plot show all of it")  # fmt: skip
    args = parser.parse_args(argv)
    if args.command == "run":
        for name in ("dataset", "judge"):
            if not getattr(args, name).exists():
                parser.error(f"--{name} {getattr(args, name)} does not exist")
        if args.stages < 1 or args.stage_steps < 1 or args.threads < 1:
            parser.error("--stages, --stage-steps and --threads must be >= 1")
        return run_arm(args)
    return report(args)


if __name__ == "__main__":
    sys.exit(main())
