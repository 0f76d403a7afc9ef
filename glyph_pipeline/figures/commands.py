# Copyright 2026 The glyffuser developers. Licensed under the Apache License, Version 2.0.
"""The figure commands: `glyffuser generate`, `animate`, `steps-grid`, `noising` and `single-step`.

Each command checks every argument before the model is loaded (a bad flag costs no time), then calls the
figure function of the same name in `figures.diffusion`, `figures.animation` or `figures.noising` and writes
its output atomically. Bad input is a one-line error and exit code 2, not a traceback.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ..hub.pretrained import add_lora_args, load_glyph_pipeline
from ..schedulers import RECOMMENDED_GUIDANCE, RECOMMENDED_SAMPLER, RECOMMENDED_STEPS, SCHEDULERS
from ..upscale import add_upscaler_args, check_upscaler_settings, with_upscaler
from .animation import check_mp4, denoising_frames, save_animation
from .diffusion import (
    DEFAULT_SEEDS,
    DEFAULT_STEPS_LIST,
    check_guidance,
    check_prompts,
    check_scheduler_name,
    generate_grid,
    single_step_grid,
    steps_grid,
)
from .layout import IMAGE_SUFFIXES, FigureError, check_output, check_positive, save_image
from .noising import load_glyph_image, noising_strip


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.replace(",", " ").split()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected integers, got {text!r}") from err


def _flat(groups: Sequence[Sequence[int]] | None) -> list[int] | None:
    """`--seeds 0 1 2`, `--seeds '0 1 2'` and `--seeds 0,1,2` all mean [0, 1, 2]."""
    return None if groups is None else [x for group in groups for x in group]


def _add_model_args(parser: argparse.ArgumentParser, steps: bool = True, scheduler_nargs: str | None = None) -> None:
    parser.add_argument(
        "--model", default=None,
        help="saved glyph pipeline folder or Hub repo id (default: the shipped pretrained/tiny-32)",
    )
    parser.add_argument(
        "--scheduler", default=[RECOMMENDED_SAMPLER] if scheduler_nargs else RECOMMENDED_SAMPLER,
        nargs=scheduler_nargs, metavar="NAME",
        help=f"sampler{'(s), one row each' if scheduler_nargs else ''}: {', '.join(SCHEDULERS)} "
        f"(default: {RECOMMENDED_SAMPLER})",
    )
    if steps:
        parser.add_argument(
            "--steps", type=int, default=RECOMMENDED_STEPS, help=f"denoising steps (default: {RECOMMENDED_STEPS})"
        )
    parser.add_argument(
        "--guidance", type=float, default=RECOMMENDED_GUIDANCE,
        help=f"classifier-free guidance scale (default: {RECOMMENDED_GUIDANCE:g})",
    )
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    add_lora_args(parser)


def _report_errors(prog: str) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]:
    """CLI runners print a one-line error (exit code 2) instead of a traceback for bad input."""

    def wrap(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        @functools.wraps(run)
        def runner(args: argparse.Namespace) -> int:
            try:
                return run(args)
            except (ValueError, FileNotFoundError, ImportError) as err:
                print(f"glyffuser {prog}: error: {err}", file=sys.stderr)
                return 2

        return runner

    return wrap


def configure_generate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", nargs="+", help="English definitions, one glyph row each, e.g. 'gold; metal'")
    _add_model_args(parser)
    parser.add_argument("--seed", type=int, default=0, help="image j of every prompt uses seed+j (default: 0)")
    parser.add_argument("--num-images", type=int, default=1, help="images per prompt (default: 1)")
    parser.add_argument("--cell-size", type=int, default=128, help="px per glyph in the grid (default: 128)")
    parser.add_argument("--cols", type=int, help="grid columns with --num-images 1 (default: up to 6 prompts a row)")
    parser.add_argument("-o", "--output", type=Path, default=Path("glyphs.png"), help="PNG to write")
    add_upscaler_args(parser)


@_report_errors("generate")
def run_generate(args: argparse.Namespace) -> int:
    output = check_output(args.output, IMAGE_SUFFIXES)
    prompts = check_prompts(args.prompt)
    check_positive("--num-images", args.num_images)
    check_positive("--steps", args.steps)
    check_positive("--cell-size", args.cell_size, 8)
    check_guidance(args.guidance)
    check_scheduler_name(args.scheduler)
    check_upscaler_settings(args.upscaler, args.upscale_steps, args.upscale_noise_level)
    pipe = load_glyph_pipeline(args.model, args.scheduler, args.device, args.lora, args.lora_scale, args.lora_start)
    pipe = with_upscaler(pipe, args)
    grid = generate_grid(
        pipe, prompts, args.num_images, args.steps, args.guidance, args.seed, args.cell_size, args.cols
    )
    print(f"wrote {save_image(grid, output)} ({grid.width}x{grid.height})")
    return 0


def configure_animate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", help="English definition to draw")
    _add_model_args(parser)
    parser.add_argument("--seed", type=int, default=0, help="seed of the starting noise (default: 0)")
    parser.add_argument(
        "--frame-size", type=int, default=256, help="px of each panel, NEAREST-upscaled (default: 256)"
    )
    parser.add_argument("--fps", type=float, default=8, help="frames per second (default: 8)")
    parser.add_argument("--hold-last", type=float, default=1.5, help="seconds to show the final frame (default: 1.5)")
    parser.add_argument(
        "-o", "--output", type=Path, default=Path("denoising.gif"), help=".gif, or .mp4 with imageio-ffmpeg installed"
    )


@_report_errors("animate")
def run_animate(args: argparse.Namespace) -> int:
    output = check_output(args.output, (".gif", ".mp4"))
    if output.suffix.lower() == ".mp4":
        check_mp4()
    check_prompts(args.prompt)
    check_positive("--steps", args.steps)
    check_positive("--frame-size", args.frame_size, 16)
    check_guidance(args.guidance)
    if args.fps <= 0:
        raise FigureError(f"--fps must be > 0, got {args.fps}.")
    check_scheduler_name(args.scheduler)
    pipe = load_glyph_pipeline(args.model, args.scheduler, args.device, args.lora, args.lora_scale, args.lora_start)
    frames = denoising_frames(pipe, args.prompt, args.steps, args.guidance, args.seed, args.frame_size)
    save_animation(frames, output, args.fps, args.hold_last)
    print(f"wrote {output} ({len(frames)} frames of {frames[0].width}x{frames[0].height})")
    return 0


def configure_steps_grid(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", help="English definition to draw")
    _add_model_args(parser, steps=False, scheduler_nargs="+")
    parser.add_argument(
        "--steps-list", type=_int_list, nargs="+", default=[list(DEFAULT_STEPS_LIST)], metavar="N",
        help="step counts, e.g. 1 2 3 5 10 20 (default: 1 2 3 5 10 20 50)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the shared starting noise (default: 0)")
    parser.add_argument("--cell-size", type=int, default=96, help="px per glyph (default: 96)")
    parser.add_argument("-o", "--output", type=Path, default=Path("steps-grid.png"), help="PNG to write")


@_report_errors("steps-grid")
def run_steps_grid(args: argparse.Namespace) -> int:
    output = check_output(args.output, IMAGE_SUFFIXES)
    check_prompts(args.prompt)
    for name in args.scheduler:
        check_scheduler_name(name)
    steps_list = _flat(args.steps_list)
    for n in steps_list:
        check_positive("--steps-list entries", n)
    check_positive("--cell-size", args.cell_size, 8)
    check_guidance(args.guidance)
    pipe = load_glyph_pipeline(args.model, None, args.device, args.lora, args.lora_scale, args.lora_start)
    result = steps_grid(pipe, args.prompt, steps_list, args.scheduler, args.guidance, args.seed, args.cell_size)
    for name, n, why in result.skipped:
        print(f"glyffuser steps-grid: skipped {name} with {n} step(s): {why}", file=sys.stderr)
    print(f"wrote {save_image(result.image, output)} ({result.image.width}x{result.image.height})")
    return 0


def configure_noising(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("glyph (one of --character or --image)")
    src.add_argument("--character", help="the glyph to noise, e.g. 永 (from --dataset, else rendered with the font)")
    src.add_argument("--dataset", help="glyph dataset (save_to_disk folder, parquet file or Hub name)")
    src.add_argument("--split", help="dataset split to search (default: all)")
    src.add_argument("--image", type=Path, help="an image file instead of a character")
    src.add_argument("--size", type=int, default=64, help="px when rendering --character without --dataset (64)")
    parser.add_argument(
        "--beta-schedules", nargs="+", default=["linear"], metavar="SCHEDULE",
        help="one row each: linear, scaled_linear, squaredcos_cap_v2 (alias: cosine). Default: linear",
    )
    parser.add_argument(
        "--timesteps", type=_int_list, nargs="+", metavar="T",
        help="t values, e.g. 0 100 250 500 999 (default: evenly spaced)",
    )
    parser.add_argument("--num-columns", type=int, default=9, help="evenly spaced t values when --timesteps is unset")
    parser.add_argument("--num-train-timesteps", type=int, default=1000, help="T (default: 1000)")
    parser.add_argument("--beta-start", type=float, default=0.0001, help="first beta (linear schedules)")
    parser.add_argument("--beta-end", type=float, default=0.02, help="last beta (linear schedules)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise ε (default: 0)")
    parser.add_argument("--cell-size", type=int, default=96, help="px per cell (default: 96)")
    parser.add_argument("-o", "--output", type=Path, default=Path("noising.png"), help="PNG to write")


@_report_errors("noising")
def run_noising(args: argparse.Namespace) -> int:
    output = check_output(args.output, IMAGE_SUFFIXES)
    check_positive("--cell-size", args.cell_size, 8)
    check_positive("--size", args.size, 8)
    image, label = load_glyph_image(args.character, args.dataset, args.image, args.size, args.split)
    title = f"Forward noising q(xₜ | x₀) of {label} · same ε in every cell"
    strip = noising_strip(
        image, args.beta_schedules, _flat(args.timesteps), args.num_columns, args.num_train_timesteps, args.beta_start,
        args.beta_end, args.seed, args.cell_size, title,
    )
    print(f"wrote {save_image(strip, output)} ({strip.width}x{strip.height})")
    return 0


def configure_single_step(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", help="English definition, e.g. 'gold'")
    _add_model_args(parser, steps=False)
    parser.add_argument(
        "--seeds", type=_int_list, nargs="+", default=[list(DEFAULT_SEEDS)], metavar="S",
        help="e.g. 0 1 2 3 (default: 0..7)",
    )
    parser.add_argument(
        "--compare-steps", type=int, default=0,
        help="add a row sampled with this many steps by --scheduler (default: off)",
    )
    parser.add_argument("--cell-size", type=int, default=96, help="px per glyph (default: 96)")
    parser.add_argument("-o", "--output", type=Path, default=Path("single-step.png"), help="PNG to write")


@_report_errors("single-step")
def run_single_step(args: argparse.Namespace) -> int:
    output = check_output(args.output, IMAGE_SUFFIXES)
    check_prompts(args.prompt)
    check_positive("--cell-size", args.cell_size, 8)
    check_positive("--compare-steps", args.compare_steps, 0)
    check_guidance(args.guidance)
    seeds = _flat(args.seeds)
    if not seeds:
        raise FigureError("--seeds is empty; e.g. --seeds 0 1 2 3.")
    check_scheduler_name(args.scheduler)
    pipe = load_glyph_pipeline(args.model, args.scheduler, args.device, args.lora, args.lora_scale, args.lora_start)
    grid = single_step_grid(pipe, args.prompt, seeds, args.guidance, args.cell_size, args.compare_steps)
    print(f"wrote {save_image(grid, output)} ({grid.width}x{grid.height})")
    return 0
