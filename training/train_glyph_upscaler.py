#!/usr/bin/env python
# Copyright 2026 The glyffuser developers. Licensed under the Apache License, Version 2.0.
"""Train a glyph super-resolution stage (GlyphUpscalePipeline: 32 px -> 128 px) with 🤗 accelerate.

    glyffuser build-dataset --out data/pairs-noto-sans --size 128 --low-res-size 32 --split-from data/glyphs-32
    accelerate launch --config_file training/accelerate_configs/cpu.yaml training/train_glyph_upscaler.py \
        --dataset data/pairs-noto-sans data/pairs-ukai --output_dir glyph-upscaler-128 \
        --max_train_steps 8000 --learning_rate 1e-3 --use_ema

The recipe of IF's stage II, for glyphs: the UNet sees the noisy 128 px glyph and, as a second channel, the font's
own 32 px render upsampled (`GlyphUpscalePipeline.upsample`) and noised at a level drawn uniformly from
[0, --max_noise_level) (the level is its `class_labels`): that noise teaches it to redraw strokes rather than copy
pixels, so it also takes a model's 32 px samples. Strokes are local and the UNet is fully convolutional, so it
trains on random crops (`--crop_size` of the target with the aligned part of the condition): a CPU can train it.

The loop, checkpoints (exact resume), EMA, progress and NaN guard are the shared ones (`glyph_pipeline.training`);
this file only says how a batch of rows becomes a loss and draws its validation grid. Every input is checked
before anything is written.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate.logging import get_logger
from accelerate.utils import set_seed
from diffusers.utils import make_image_grid
from torch.profiler import record_function

from glyph_pipeline.atomic import atomic_output, write_text
from glyph_pipeline.data.dataset import LOW_RES_COLUMN, load_glyph_dataset
from glyph_pipeline.model_card import TRAINING_CONFIG_FILE
from glyph_pipeline.pipeline_glyph_upscale import DEFAULT_NOISE_LEVEL, DEFAULT_UPSCALE_STEPS, GlyphUpscalePipeline
from glyph_pipeline.presets import UPSCALER_PRESETS, build_upscaler_unet
from glyph_pipeline.schedulers import RECOMMENDED_SAMPLER, noise_schedule, sampling_scheduler, training_scheduler
from glyph_pipeline.training.arguments import (
    HelpFormatter,
    add_checkpoint_arguments,
    add_hub_arguments,
    add_optimisation_arguments,
    add_output_arguments,
    check_arguments,
)
from glyph_pipeline.training.batches import batch_generator, decode_images, row_loader
from glyph_pipeline.training.checkpoints import (
    create_ema,
    remove_interrupted_saves,
    resolve_resume,
    unet_for_inference,
    write_weight_hashes,
)
from glyph_pipeline.training.inputs import TrainingSetupError, check_output_dir
from glyph_pipeline.training.loop import debug_hooks, train_loop
from glyph_pipeline.training.loss import DiffusionObjective, to_model_pixels
from glyph_pipeline.training.progress import TrainingDiverged, TrainingProgress
from glyph_pipeline.training.records import command_line, hardware_summary
from glyph_pipeline.training.runtime import make_accelerator, prepare_optimisation, resume_from
from glyph_pipeline.training.sharing import check_hub_repo, push_run

logger = get_logger(__name__, log_level="INFO")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train a GlyphUpscalePipeline (32 -> 128 px glyph super-resolution) with accelerate.",
        formatter_class=HelpFormatter,
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--dataset", nargs="+", required=True,
        help="one or more pair datasets (`glyffuser build-dataset --size 128 --low-res-size 32`), e.g. one per "
        "typeface: the stage keeps the style it is given",
    )
    data.add_argument("--dataset_split", default="train", help="split to train on")
    data.add_argument("--validation_split", default="test", help="split the validation grid is drawn from")
    data.add_argument("--image_column", default="image", help="the target (high-resolution) glyphs")
    data.add_argument("--low_res_column", default=LOW_RES_COLUMN, help="the condition (low-resolution) glyphs")
    data.add_argument("--crop_size", type=int, default=64, help="train on random crops of this size (0: whole glyphs)")
    data.add_argument(
        "--max_train_samples", type=int, default=None, help="a seeded random subset of this many rows per --dataset"
    )
    model = parser.add_argument_group("model")
    model.add_argument("--unet_preset", default="upscaler-128", help=f"one of: {', '.join(UPSCALER_PRESETS)}")
    model.add_argument("--unet_config", default=None, help="UNet2DModel config values over the preset (inline JSON)")
    model.add_argument("--low_res_size", type=int, default=32, help="side of the condition glyphs")
    diffusion = parser.add_argument_group("diffusion")
    diffusion.add_argument(
        "--prediction_type", default="v_prediction", choices=["epsilon", "v_prediction"], help="(cosine schedule)"
    )
    diffusion.add_argument(
        "--objective", default="diffusion", choices=["diffusion", "regression"],
        help="'regression': the same UNet trained with L2 to predict the 128 px glyph in one call (SR3's baseline; "
        "saves the UNet only, for benchmarks/bench_upscale.py)",
    )
    diffusion.add_argument(
        "--max_noise_level", type=int, default=1000,
        help="the condition's noise level is drawn uniformly from [0, N) (IF: the whole schedule)",
    )
    add_optimisation_arguments(parser)
    add_checkpoint_arguments(parser)
    val = parser.add_argument_group("validation")
    val.add_argument("--validation_steps", type=int, default=1000, help="draw a grid every N steps (0: at the end)")
    val.add_argument(
        "--num_validation_images", type=int, default=8, help="held-out glyphs in the grid, spread over the datasets"
    )
    val.add_argument("--validation_inference_steps", type=int, default=DEFAULT_UPSCALE_STEPS)
    val.add_argument("--validation_noise_level", type=int, default=DEFAULT_NOISE_LEVEL)
    add_output_arguments(parser)
    add_hub_arguments(parser)
    parser.set_defaults(
        learning_rate=1e-3, lr_warmup_steps=200, ema_decay=0.999, checkpointing_steps=1000,
        output_dir="glyph-upscaler-128", num_train_epochs=10,
    )
    args = parser.parse_args(argv)
    args._argv = list(sys.argv[1:] if argv is None else argv)
    return args


# =========================================================================================== inputs
def load_pairs(args: argparse.Namespace, split: str, size: int, required: bool = True):
    """(target uint8 (N, 1, size, size), condition uint8 (N, 1, low, low)) of `split` of every --dataset, checked:
    the columns exist and every image has the size its column needs (nothing is resized behind the user's back)."""
    targets, conditions = [], []
    for source in args.dataset:
        try:
            splits = load_glyph_dataset(source)
        except Exception as err:
            raise TrainingSetupError(
                f"Could not load --dataset {source} ({str(err).splitlines()[0] if str(err) else type(err).__name__}). "
                "Build pairs with `glyffuser build-dataset --out DIR --size 128 --low-res-size 32`."
            ) from err
        if split not in splits:
            if required:
                raise TrainingSetupError(f"--dataset {source} has no split {split!r}; available: {', '.join(splits)}.")
            continue
        ds = splits[split]
        for flag, column in (("--image_column", args.image_column), ("--low_res_column", args.low_res_column)):
            if column not in ds.column_names:
                raise TrainingSetupError(
                    f"{flag} {column!r} is not a column of {source}; columns: {', '.join(ds.column_names)}. Pair "
                    "datasets come from `glyffuser build-dataset --size 128 --low-res-size 32`."
                )
        if len(ds) == 0:
            raise TrainingSetupError(f"The {split!r} split of --dataset {source} is empty.")
        if args.max_train_samples is not None and split == args.dataset_split and args.max_train_samples < len(ds):
            ds = ds.shuffle(seed=args.seed).select(range(args.max_train_samples))
        for column, side, into in ((args.image_column, size, targets), (args.low_res_column, args.low_res_size,
                                                                         conditions)):
            try:  # every image exactly its column's size: pairs are never resized behind the user's back
                into.append(decode_images(ds, column, side, progress=False, resize=False))
            except ValueError as err:
                raise TrainingSetupError(
                    f"{source}: {column!r} holds {err}; this run needs {side} px (the UNet's sample_size {size}, "
                    f"--low_res_size {args.low_res_size})."
                ) from err
    if not targets:
        return None
    return torch.cat(targets), torch.cat(conditions)


def check_inputs(args: argparse.Namespace) -> dict[str, Any]:
    """Everything that can be wrong, checked before anything is written or trained."""
    check_arguments(args)
    check_output_dir(args.output_dir)
    hub_repo = check_hub_repo(args)
    resume_path = resolve_resume(args.resume_from_checkpoint, args.output_dir)
    try:
        overrides = json.loads(args.unet_config) if args.unet_config else {}
        set_seed(args.seed)  # before the UNet is initialised: same flags, same weights
        unet = build_upscaler_unet(args.unet_preset, **overrides)
    except (ValueError, TypeError) as err:
        raise TrainingSetupError(f"--unet_preset/--unet_config: {err}") from err
    size = unet.config.sample_size
    factor, rest = divmod(size, args.low_res_size) if args.low_res_size > 0 else (0, 0)
    if factor < 2 or rest:
        raise TrainingSetupError(
            f"--low_res_size {args.low_res_size} must divide the UNet's sample_size {size} at least twice (e.g. 32)."
        )
    crop = args.crop_size or size
    down = 2 ** (len(unet.config.block_out_channels) - 1)
    if not 0 < crop <= size or crop % down or crop % factor:
        raise TrainingSetupError(
            f"--crop_size {args.crop_size} must be at most {size} and a multiple of {np.lcm(down, factor)} (the UNet "
            f"halves it {len(unet.config.block_out_channels) - 1} times; crops align to the {factor}x grid)."
        )
    levels = training_scheduler(**noise_schedule()).config.num_train_timesteps  # the condition's noising schedule
    if not 0 < args.max_noise_level <= levels:
        raise TrainingSetupError(f"--max_noise_level must be in (0, {levels}] (the noising schedule's levels).")
    if not 0 <= args.validation_noise_level < levels:
        raise TrainingSetupError(f"--validation_noise_level must be in [0, {levels}).")
    if args.compile:
        raise TrainingSetupError("--compile is not supported by the upscaler recipe yet; drop it.")
    if args.objective == "regression" and args.push_to_hub:
        raise TrainingSetupError("--objective regression saves a bare UNet (a baseline): drop --push_to_hub.")
    train = load_pairs(args, args.dataset_split, size)
    validation = load_pairs(args, args.validation_split, size, required=False)
    return dict(unet=unet, size=size, factor=factor, crop=crop, train=train, validation=validation,
                resume_path=resume_path, hub_repo=hub_repo)


# =========================================================================================== batches
def crops(
    target: torch.Tensor, condition: torch.Tensor, crop: int, factor: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Aligned random crops: `crop` px of each target and the same area of its upsampled condition."""
    n, size = target.shape[0], target.shape[-1]
    cond = GlyphUpscalePipeline.upsample(to_model_pixels(condition), size)
    x0 = to_model_pixels(target)
    if crop == size:
        return x0, cond
    cells = (size - crop) // factor + 1  # crop origins on the low-resolution grid
    origin = torch.randint(0, cells, (2, n), generator=generator, device=generator.device).to(x0.device) * factor
    span = torch.arange(crop, device=x0.device)
    ys, xs = (origin[0, :, None] + span)[:, :, None], (origin[1, :, None] + span)[:, None, :]
    batch = torch.arange(n, device=x0.device)[:, None, None]
    return x0[batch, 0, ys, xs][:, None], cond[batch, 0, ys, xs][:, None]


# =========================================================================================== validation
def upscaler_pipeline(unet, args: argparse.Namespace) -> GlyphUpscalePipeline:
    schedule = noise_schedule(prediction_type=args.prediction_type)
    pipe = GlyphUpscalePipeline(
        unet=unet, scheduler=sampling_scheduler(RECOMMENDED_SAMPLER, base_config=schedule),
        image_noising_scheduler=training_scheduler(**noise_schedule()), low_res_size=args.low_res_size,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def log_validation(pipe: GlyphUpscalePipeline, validation, args: argparse.Namespace, tag: str) -> Path | None:
    """Rows of (32 px input, upscaled, real 128 px) for held-out glyphs spread over the datasets."""
    if validation is None or args.objective == "regression":  # a regression UNet is no diffusion model
        return None
    targets, conditions = validation
    n = min(args.num_validation_images, len(targets))
    pick = torch.linspace(0, len(targets) - 1, n).long()
    generators = [torch.Generator().manual_seed(args.seed + i) for i in range(n)]
    low = conditions[pick].float() / 255.0
    images = pipe(
        low, num_inference_steps=args.validation_inference_steps, noise_level=args.validation_noise_level,
        generator=generators,
    ).images
    size = images[0].size[0]
    from PIL import Image

    inputs = [Image.fromarray(c[0].numpy()).resize((size, size), Image.Resampling.NEAREST) for c in conditions[pick]]
    reals = [Image.fromarray(t[0].numpy()) for t in targets[pick]]
    grid = make_image_grid([*inputs, *images, *reals], rows=3, cols=n)
    path = Path(args.output_dir) / "validation" / f"{tag}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        grid.save(tmp)
    logger.info(f"Validation grid (rows: 32 px input, upscaled, real) -> {path}")
    return path


# =========================================================================================== main
def main(args: argparse.Namespace) -> dict[str, Any]:
    t_start = time.perf_counter()
    debug = debug_hooks()
    # ---- 1. everything that can be wrong is checked before anything is written or trained
    inputs = check_inputs(args)
    unet, crop, factor = inputs["unet"], inputs["crop"], inputs["factor"]
    targets, conditions = inputs["train"]
    output_dir = Path(args.output_dir)

    # ---- 2. accelerate, model, data on the device
    accelerator = make_accelerator(args)
    device, main_process = accelerator.device, accelerator.is_main_process
    if main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        remove_interrupted_saves(output_dir)
    accelerator.wait_for_everyone()
    unet.train()
    if args.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    trainable = list(unet.parameters())
    ema = create_ema(trainable, unet, args.ema_decay, device) if args.use_ema else None
    targets, conditions = targets.to(device), conditions.to(device)
    objective = DiffusionObjective(
        training_scheduler(**noise_schedule(prediction_type=args.prediction_type)), None, None, 0.0
    )
    condition_noising = training_scheduler(**noise_schedule())
    train_dataloader, sampler = row_loader(len(targets), args.train_batch_size, args.seed, args.dataloader_num_workers)

    # ---- 3. optimiser, schedule, accelerate.prepare, resume
    unet, optimizer, train_dataloader, lr_scheduler, plan = prepare_optimisation(
        args, accelerator, unet, trainable, train_dataloader
    )
    progress = TrainingProgress()
    if ema is not None:
        accelerator.register_for_checkpointing(ema)
    accelerator.register_for_checkpointing(progress)
    global_batch = args.train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps
    if main_process:
        hparams = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in vars(args).items()}
        accelerator.init_trackers(args.tracker_project_name, config=hparams)
    resumed_from = None
    if inputs["resume_path"] is not None:
        resumed_from = resume_from(accelerator, inputs["resume_path"], ema, progress, global_batch)
    progress.world_size, progress.global_batch = accelerator.num_processes, global_batch
    n_params = sum(p.numel() for p in trainable)
    logger.info(
        f"***** Training the upscaler: {len(targets):,} pairs, {crop} px crops, UNet {args.unet_preset} "
        f"{n_params / 1e6:.2f}M parameters, {plan.max_train_steps} steps of global batch {global_batch} *****"
    )

    # ---- 4. train
    def compute_loss(rows: torch.Tensor, epoch: int, batch_index: int) -> tuple[torch.Tensor, int]:
        with record_function("glyffuser/data"):
            g = batch_generator(args.seed, epoch, batch_index, accelerator.process_index, device)
            rows = rows.to(device)
            x0, cond = crops(targets[rows], conditions[rows], crop, factor, g)
            n = x0.shape[0]
            noise = torch.randn(x0.shape, generator=g, device=g.device).to(device)
            timesteps = torch.randint(0, objective.num_timesteps, (n,), generator=g, device=g.device).to(device)
            levels = torch.randint(0, args.max_noise_level, (n,), generator=g, device=g.device).to(device)
            cond_noise = torch.randn(cond.shape, generator=g, device=g.device).to(device)
            cond_clean, cond = cond, condition_noising.add_noise(cond, cond_noise, levels)
            noisy, target = objective.noised_with(x0, noise, timesteps)
            if args.objective == "regression":  # one call from the clean condition straight to the glyph
                noisy, target, cond = torch.zeros_like(x0), x0, cond_clean
                timesteps, levels = torch.zeros_like(timesteps), torch.zeros_like(levels)
        with record_function("glyffuser/forward"):
            pred = unet(torch.cat([noisy, cond], dim=1), timesteps, class_labels=levels, return_dict=False)[0]
            return objective.loss(pred, target, timesteps), n

    def validate(step: int) -> None:
        log_validation(upscaler_pipeline(unet_for_inference(accelerator, unet, ema), args), inputs["validation"],
                       args, f"step-{step:06d}")

    clock = train_loop(
        args, accelerator, unet=unet, trainable=trainable, optimizer=optimizer, lr_scheduler=lr_scheduler,
        train_dataloader=train_dataloader, sampler=sampler, plan=plan, progress=progress, ema=ema,
        compute_loss=compute_loss, validate=validate, last_checkpoint=inputs["resume_path"], debug=debug,
    )

    # ---- 5. save the pipeline, a final grid and the run record (main process)
    if debug.weight_hashes:
        write_weight_hashes(accelerator, unet, ema, output_dir / "debug_weight_hashes.json")
    record: dict[str, Any] = {}
    if main_process:
        final_unet = unet_for_inference(accelerator, unet, ema)
        grid = None
        if args.objective == "regression":  # not a diffusion model: no pipeline, the UNet alone
            final_unet.save_pretrained(output_dir / "unet")
        else:
            pipe = upscaler_pipeline(final_unet, args)
            pipe.save_pretrained(output_dir)
            grid = log_validation(pipe, inputs["validation"], args, "final")
        record = {
            "command": command_line(args._argv, script=Path(__file__).name),
            "datasets": [Path(d).name for d in args.dataset], "pairs": len(targets), "crop_size": crop,
            "objective": args.objective, "prediction_type": args.prediction_type,
            "max_noise_level": args.max_noise_level, "unet_preset": args.unet_preset, "parameters": n_params,
            "steps": progress.global_step,
            "global_batch": global_batch, "samples_seen": progress.global_step * global_batch,
            "loss": progress.loss_summary(), "ema": ema is not None, "resumed_from": resumed_from,
            "train_seconds": round(clock.run_seconds, 1), "wall_seconds": round(time.perf_counter() - t_start, 1),
            "hardware": hardware_summary(accelerator), "validation_grid": grid and str(grid.relative_to(output_dir)),
        }
        write_text(output_dir / TRAINING_CONFIG_FILE, json.dumps(record, indent=2, default=str) + "\n")
        logger.info(f"Saved the upscaler to {output_dir} ({progress.global_step} steps, {clock.run_seconds:.0f} s)")
    accelerator.wait_for_everyone()
    # As in train_glyph_diffusion.py: free the DDP wrapper while the process group exists (pytorch#56297).
    unet = accelerator.unwrap_model(unet)
    accelerator.free_memory()
    accelerator.end_training()
    if main_process and inputs["hub_repo"] is not None:
        push_run(args, inputs["hub_repo"], record, f"glyffuser upscaler: {record['steps']} training steps")
    return record


if __name__ == "__main__":
    try:
        if main(parse_args()).get("hub_push_error"):
            sys.exit(3)  # training and the local pipeline are complete; the log holds the retry command
    except TrainingSetupError as err:
        print(f"train_glyph_upscaler.py: error: {err}", file=sys.stderr)
        sys.exit(2)
    except TrainingDiverged as err:
        print(f"train_glyph_upscaler.py: training diverged: {err}", file=sys.stderr)
        sys.exit(1)
