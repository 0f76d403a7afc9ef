"""`glyffuser demo`: the article's figures from the shipped model in about a minute, or the whole loop offline.

Default (`glyffuser demo`, what `bash run.sh demo` runs): load the shipped `pretrained/tiny-32` model the
way a user would, ``DiffusionPipeline.from_pretrained(dir, trust_remote_code=True)`` (its text encoder,
all-MiniLM-L6-v2, comes from the PyPI package named in the pipeline config), and write the article's
figures for its prompts ("gold; metal", "water", "tree; wood", ...): a labelled grid, the denoising GIF
(x_t beside x̂0), the single-step x̂0 for "gold" and a steps grid.

`glyffuser demo --train` runs the whole loop from nothing instead (minutes):

1. Build a 32 px glyph dataset from a spread of CJK Unified Ideographs (Noto Sans CJK SC + Unihan).
2. Train the `tiny-32` UNet briefly with the offline MiniLM text encoder, by running the real training
   script: ``accelerate launch --config_file training/accelerate_configs/cpu.yaml
   training/train_glyph_diffusion.py ...`` (re-running the demo resumes from its last checkpoint).
3. Reload the saved model like a user and sample with DDPM and with DPMSolverSDE (one-line scheduler swaps).
4. Write a labelled grid, one row per prompt: the font's glyph (when the prompt is a real definition), then
   one column per sampler.

A couple of hundred steps teach a tiny model rough ink placement, not real characters: `--train` shows the
machinery end to end; the shipped model is what training longer gives (its card says how long).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_OUT = Path("demo-output")
NOVEL_PROMPTS = ["a robot", "rain on a window"]
# The article's prompts: each asks for a glyph whose semantic radical the model should draw.
ARTICLE_PROMPTS = ["gold; metal", "water", "tree; wood", "fire", "speech; words", "woman", "hand", "heart", "grass"]


def idle_cores() -> int:
    """Cores not already busy (load average), at least one."""
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return cores
    return max(1, min(cores, round(cores - load)))


def find_training_script() -> Path:
    """training/train_glyph_diffusion.py of this source tree (or $GLYFFUSER_TRAIN_SCRIPT)."""
    env = os.environ.get("GLYFFUSER_TRAIN_SCRIPT")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[1] / "training" / "train_glyph_diffusion.py")
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        "The demo runs training/train_glyph_diffusion.py from a source checkout of glyffuser "
        f"(looked at {', '.join(map(str, candidates))}). Install with `pip install -e .` from the repository, "
        "or point GLYFFUSER_TRAIN_SCRIPT at the script."
    )


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from .schedulers import RECOMMENDED_STEPS
    from .upscale import add_upscaler_args

    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: demo-output/)")
    parser.add_argument(
        "--model", default=None,
        help="pipeline folder or Hub repo for the figures (default: the shipped pretrained/tiny-32)",
    )
    parser.add_argument("--images-per-prompt", type=int, default=4, help="grid rows (default: 4)")
    add_upscaler_args(parser)
    parser.add_argument(
        "--train", action="store_true",
        help="instead of the shipped model: build a dataset, train a tiny model from scratch and sample it (minutes)",
    )
    parser.add_argument("--steps", type=int, default=200, help="--train: training steps (default: 200)")
    parser.add_argument("--num-chars", type=int, default=2000, help="glyphs in the demo dataset (default: 2000)")
    parser.add_argument("--batch-size", type=int, default=16, help="training batch size (default: 16)")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="default: 1e-3 (tiny model, short run)")
    parser.add_argument("--text-encoder", default="minilm", help="default: minilm (offline all-MiniLM-L6-v2)")
    parser.add_argument("--ddpm-steps", type=int, default=50, help="DDPM sampling steps (default: 50)")
    parser.add_argument(
        "--sde-steps", type=int, default=RECOMMENDED_STEPS,
        help=f"DPMSolverSDE sampling steps (default: {RECOMMENDED_STEPS})",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=None,
        help="CPU threads for training and sampling (default: the idle cores, i.e. cores minus the load average, "
        "at least 1: oversubscribed threads on a busy machine are many times slower)",
    )
    parser.add_argument(
        "--fresh", action="store_true", help="delete --out first (default: reuse dataset, resume model)"
    )


# ------------------------------------------------------------------------------------------ steps
def build_dataset(out: Path, num_chars: int, seed: int) -> Path:
    """A spread of `num_chars` URO characters (every k-th code point with a definition), 32 px."""
    from .data.dataset import build_glyph_dataset, save_dataset
    from .data.unihan import block_of, load_unihan

    target = out / "dataset"
    if (target / "dataset_dict.json").exists():
        print(f"[1/4] dataset: reusing {target}")
        return target
    t0 = time.perf_counter()
    unihan = load_unihan()
    codepoints = sorted(cp for cp in unihan.definitions if block_of(cp) == "uro")
    step = max(1, len(codepoints) // max(1, num_chars))
    chosen = "".join(chr(cp) for cp in codepoints[::step][:num_chars])
    dsd, report = build_glyph_dataset(
        unihan=unihan, characters=chosen, size=32, seed=seed, progress=False, return_report=True
    )
    save_dataset(dsd, target, overwrite=True)
    sizes = ", ".join(f"{k} {len(v):,}" for k, v in dsd.items())
    print(f"[1/4] dataset: {report.rows:,} glyphs at 32 px ({sizes}) -> {target} ({time.perf_counter() - t0:.1f}s)")
    return target


def train(out: Path, dataset: Path, args: argparse.Namespace) -> Path:
    from .schedulers import RECOMMENDED_STEPS

    script = find_training_script()
    config = script.parent / "accelerate_configs" / "cpu.yaml"
    model = out / "model"
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), str(script),
        "--dataset", str(dataset), "--text_encoder_name_or_path", args.text_encoder, "--unet_preset", "tiny-32",
        "--max_text_length", "32", "--train_batch_size", str(args.batch_size), "--max_train_steps", str(args.steps),
        "--learning_rate", str(args.learning_rate), "--lr_scheduler", "cosine", "--lr_warmup_steps",
        str(min(50, args.steps // 10)), "--use_ema", "--ema_decay", "0.995", "--seed", str(args.seed),
        "--checkpointing_steps", str(max(50, args.steps // 2)), "--checkpoints_total_limit", "1",
        "--validation_steps", "0", "--num_validation_images", "1",
        "--validation_inference_steps", str(RECOMMENDED_STEPS),
        "--embedding_cache_dir", str(out / "text-embedding-cache"),
        "--resume_from_checkpoint", "latest", "--output_dir", str(model),
    ]
    env = {
        **os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": str(args.threads)
    }
    print("[2/4] training:", " ".join(cmd[2:]), flush=True)
    t0 = time.perf_counter()
    result = subprocess.run(cmd, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"training failed (exit code {result.returncode}); see the output above")
    print(f"[2/4] training: done in {time.perf_counter() - t0:.0f}s -> {model}")
    return model


def sample(model: Path, prompts: list[str], args: argparse.Namespace):
    """Reload like a user (remote code) and sample with DDPM and DPMSolverSDE; returns {label: [PIL images]}."""
    import torch
    from diffusers import DDPMScheduler, DiffusionPipeline, DPMSolverSDEScheduler

    from .schedulers import RECOMMENDED_GUIDANCE

    t0 = time.perf_counter()
    pipe = DiffusionPipeline.from_pretrained(str(model), trust_remote_code=True)
    pipe.set_progress_bar_config(disable=True)
    print(
        f"[3/4] reloaded {type(pipe).__name__} from {model} "
        "with DiffusionPipeline.from_pretrained(trust_remote_code=True)"
    )
    rows = {}
    base = pipe.scheduler.config  # explicit betas: swaps keep the training noise schedule
    for label, scheduler, steps in (
        (f"DDPM, {args.ddpm_steps} steps", DDPMScheduler.from_config(base), args.ddpm_steps),
        (f"DPMSolverSDE, {args.sde_steps} steps", DPMSolverSDEScheduler.from_config(base), args.sde_steps),
    ):
        pipe.scheduler = scheduler
        generators = [torch.Generator().manual_seed(args.seed + i) for i in range(len(prompts))]
        t = time.perf_counter()
        rows[label] = pipe(prompts, num_inference_steps=steps, guidance_scale=RECOMMENDED_GUIDANCE,
                          generator=generators).images
        print(f"[3/4] sampled {len(prompts)} prompts with {label} in {time.perf_counter() - t:.1f}s")
    print(f"[3/4] sampling: {time.perf_counter() - t0:.1f}s")
    return rows


def demo_grid(columns: list[dict], rows: dict[str, list], title: str):
    """One row per prompt (labelled with it): the font's glyph, then the sample of each sampler in `rows`."""
    from .figures.layout import labelled_grid

    names = ["font glyph (truth)", *rows]
    cells = [[col["truth"], *(images[j] for images in rows.values())] for j, col in enumerate(columns)]
    labels = [f"“{col['prompt']}” ({col['note']})" for col in columns]
    return labelled_grid(cells, 96, [names] * len(columns), caption_lines=2, row_labels=labels, title=title)


def pick_columns(dataset: Path, seed: int) -> list[dict]:
    """3 training definitions, 3 held-out (test split) definitions, and 2 prompts no glyph has."""
    from .data.dataset import load_glyph_dataset

    dsd = load_glyph_dataset(str(dataset))
    columns = []
    for split, count, note in (("train", 3, "seen in training"), ("test", 3, "held out")):
        if split not in dsd or len(dsd[split]) == 0:
            continue
        part = dsd[split].shuffle(seed=seed).select(range(min(count, len(dsd[split]))))
        for row in part:
            columns.append(
                {"prompt": row["text"], "note": f"{note}, U+{row['codepoint']:04X}", "truth": row["image"]}
            )
    columns += [{"prompt": p, "note": "new prompt", "truth": None} for p in NOVEL_PROMPTS]
    return columns


def article_figures(args: argparse.Namespace) -> int:
    """The article's figures from a trained model (default: the shipped one), with the pipeline's own sampler."""
    import torch
    from diffusers import DiffusionPipeline

    from .figures.animation import denoising_frames, save_animation
    from .figures.diffusion import generate_grid, single_step_grid, steps_grid
    from .figures.layout import check_positive, save_image
    from .hub.pretrained import check_model, resolve_model
    from .upscale import check_upscaler_settings, with_upscaler

    t0 = time.perf_counter()
    out: Path = args.out
    check_positive("--images-per-prompt", args.images_per_prompt)
    model = check_model(resolve_model(args.model))
    check_upscaler_settings(args.upscaler, args.upscale_steps, args.upscale_noise_level)  # before anything loads
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads or idle_cores())
    # As a user without our package would: plain diffusers, the folder's own pipeline file as remote code.
    pipe = DiffusionPipeline.from_pretrained(model, trust_remote_code=True, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    print(f"[1/5] loaded {type(pipe).__name__} from {model} ({time.perf_counter() - t0:.1f}s; "
          f"text encoder {pipe.config.text_encoder_source or type(pipe.text_encoder).__name__})")
    t = time.perf_counter()
    # The article's grid at 128 px (the base model, then the upscaler); the figures of the diffusion itself below
    # stay at the base model's resolution.
    glyphs = with_upscaler(pipe, argparse.Namespace(**{**vars(args), "device": "cpu"}))
    size = glyphs.upscaler.output_size if glyphs is not pipe else pipe.unet.config.sample_size
    glyphs.set_progress_bar_config(disable=True)
    grid = generate_grid(glyphs, ARTICLE_PROMPTS, args.images_per_prompt, seed=args.seed, cell_size=max(96, size),
                         title=f"glyffuser tiny-32 at {size} px: the article's prompts (rows), one seed per column")
    written = [save_image(grid, out / "article-grid.png")]
    print(f"[2/5] grid of {len(ARTICLE_PROMPTS)} prompts x {args.images_per_prompt} at {size} px"
          f"{' (upscaled)' if glyphs is not pipe else ''}: {time.perf_counter() - t:.1f}s")
    t = time.perf_counter()
    frames = denoising_frames(pipe, ARTICLE_PROMPTS[0], seed=args.seed, frame_size=192)
    written.append(save_animation(frames, out / "denoising-gold.gif"))
    print(f"[3/5] denoising animation (x_t beside x̂0): {time.perf_counter() - t:.1f}s")
    t = time.perf_counter()
    written.append(save_image(single_step_grid(pipe, "gold", cell_size=96), out / "single-step-gold.png"))
    print(f"[4/5] single-step x̂0 for 'gold': {time.perf_counter() - t:.1f}s")
    t = time.perf_counter()
    steps = steps_grid(pipe, ARTICLE_PROMPTS[0], (1, 2, 3, 5, 10, 20), ["dpmsolver++", "ddpm"],
                       seed=args.seed, progress=False)
    written.append(save_image(steps.image, out / "steps-grid-gold.png"))
    print(f"[5/5] steps grid (DPM-Solver++ and DDPM at 1-20 steps): {time.perf_counter() - t:.1f}s")
    print(f"\ndemo finished in {time.perf_counter() - t0:.0f}s")
    for path in written:
        print(f"  {path}")
    return 0


def run(args: argparse.Namespace) -> int:
    if not args.train:
        try:
            return article_figures(args)
        except (FileNotFoundError, ValueError) as err:
            print(f"glyffuser demo: error: {err}", file=sys.stderr)
            return 2
    t0 = time.perf_counter()
    out: Path = args.out
    if args.steps < 1 or args.num_chars < 16:
        print("glyffuser demo: error: --steps must be >= 1 and --num-chars >= 16", file=sys.stderr)
        return 2
    if args.fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.threads:
        args.threads = idle_cores()
    import torch

    torch.set_num_threads(args.threads)
    print(f"glyffuser demo: {args.threads} CPU thread(s) ({os.cpu_count()} cores); output in {out}")
    try:
        find_training_script()
        dataset = build_dataset(out, args.num_chars, args.seed)
        model = train(out, dataset, args)
        columns = pick_columns(dataset, args.seed)
        rows = sample(model, [c["prompt"] for c in columns], args)
    except (FileNotFoundError, RuntimeError) as err:
        print(f"glyffuser demo: error: {err}", file=sys.stderr)
        return 1
    from .figures.layout import save_image

    title = f"glyffuser demo: the font's glyph and samples of {model} ({args.steps} training steps)"
    grid_path = save_image(demo_grid(columns, rows, title), out / "demo-grid.png")
    print(f"[4/4] grid: {grid_path}")
    print()
    print(f"demo finished in {time.perf_counter() - t0:.0f}s")
    print(f"  dataset          {out / 'dataset'}")
    print(
        f"  model            {model}   "
        "(GlyphDiffusionPipeline; DiffusionPipeline.from_pretrained(..., trust_remote_code=True))"
    )
    print(f"  run record       {model / 'training_config.json'}")
    print(f"  training samples {model / 'validation' / 'final.png'}")
    print(f"  tensorboard      tensorboard --logdir {model / 'logs'}")
    print(f"  grid             {grid_path}")
    return 0
