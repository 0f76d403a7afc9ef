#!/usr/bin/env python
# Copyright 2026 The glyffuser developers. Licensed under the Apache License, Version 2.0.
"""Train a text-to-glyph diffusion model (GlyphDiffusionPipeline) with 🤗 accelerate.

    accelerate launch --config_file training/accelerate_configs/cpu.yaml training/train_glyph_diffusion.py \
        --dataset data/glyphs-32 --text_encoder_name_or_path minilm --unet_preset tiny-32 \
        --train_batch_size 32 --max_train_steps 2000 --learning_rate 5e-4 --lr_warmup_steps 100 \
        --use_ema --output_dir glyffuser-tiny

What happens, in order (every check runs before the first training step, and nothing is written until
they all pass):

1. Inputs are validated: output folder writable, checkpoint to resume from exists, UNet preset/config,
   text encoder (offline), dataset and its columns, resolution vs the UNet's downsampling factor.
2. Captions are encoded ONCE with the pipeline's own `encode_prompt` (distinct texts only) and cached on
   disk (`glyph_pipeline.data.embeddings`); the text encoder never runs inside the training loop.
3. Images are decoded once into a uint8 tensor (greyscale, white = 255) and mapped to [-1, 1] per batch.
4. The UNet learns to denoise (epsilon or v-prediction, optional min-SNR weighting); with probability
   `--cond_dropout` a sample's text embedding AND attention mask are replaced by the empty prompt's, which
   is what classifier-free guidance at sampling time uses as the unconditional input.
5. Checkpoints (`accelerator.save_state`, EMA included) are written atomically: `checkpoint-N.tmp`, then
   renamed. `--resume_from_checkpoint latest` continues exactly where a killed run left off.
6. Validation grids and the final samples come from `GlyphDiffusionPipeline` itself; at the end the
   (EMA) UNet, the text encoder and tokenizer and a DPM-Solver++ scheduler on the training noise schedule
   are saved as a complete pipeline, plus `training_config.json`.
7. With `--eval_judge DIR` the saved pipeline is scored like `glyffuser evaluate` (FGD, KID, radical
   adherence; `glyph_pipeline.evaluation`) into `metrics.json`, which `--push_to_hub` puts on the model card.
   The judge and the held-out split are loaded and checked in step 1, before any training.

Randomness is explicit: the data order of epoch `e` is a permutation seeded by `(seed, e)`; the noise,
timesteps and condition dropout of a batch come from a generator seeded by
`(seed, epoch, batch, process)`. A resumed run therefore sees exactly the batches and noise of the
uninterrupted one.

This file is the `main` of one training recipe. Its parts (the flags, input checks, batches, loss, progress and
NaN guard, checkpoints and EMA, warm-up, validation and the run record) live in `glyph_pipeline.training`, so
another entry point (a LoRA or distillation recipe) imports them instead of copying this script.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import torch
from accelerate.logging import get_logger
from accelerate.utils import set_seed
from diffusers import UNet2DConditionModel
from torch.profiler import record_function

from glyph_pipeline import GlyphDiffusionPipeline
from glyph_pipeline.atomic import write_text
from glyph_pipeline.lora import LoraSetupError, add_lora, check_targets, save_lora
from glyph_pipeline.model_card import TRAINING_CONFIG_FILE
from glyph_pipeline.schedulers import RECOMMENDED_SAMPLER, training_scheduler
from glyph_pipeline.training.arguments import (
    ARGUMENT_GROUPS,
    DEFAULT_VALIDATION_PROMPTS,
    HelpFormatter,
    check_arguments,
    lora_targets,
)
from glyph_pipeline.training.batches import batch_generator, prepare_training_data, row_loader
from glyph_pipeline.training.checkpoints import (
    create_ema,
    remove_interrupted_saves,
    resolve_resume,
    unet_for_inference,
    write_weight_hashes,
)
from glyph_pipeline.training.inputs import (
    TrainingSetupError,
    check_memory,
    check_output_dir,
    check_resolution,
    load_model,
    load_training_data,
    unet_from_config,
)
from glyph_pipeline.training.loop import debug_hooks, train_loop
from glyph_pipeline.training.loss import DiffusionObjective
from glyph_pipeline.training.progress import TrainingDiverged, TrainingProgress
from glyph_pipeline.training.records import log_run_plan, print_summary, training_record
from glyph_pipeline.training.runtime import make_accelerator, prepare_optimisation, resume_from
from glyph_pipeline.training.sharing import check_hub_repo, push_run
from glyph_pipeline.training.validation import build_pipeline, log_validation, prepare_eval, run_eval
from glyph_pipeline.training.warmup import warm_up, warm_up_inputs

logger = get_logger(__name__, log_level="INFO")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train a GlyphDiffusionPipeline (text-to-glyph diffusion) with accelerate.",
        formatter_class=HelpFormatter,
    )
    for add_arguments in ARGUMENT_GROUPS:
        add_arguments(parser)
    args = parser.parse_args(argv)
    args._argv = list(sys.argv[1:] if argv is None else argv)  # for the run record's command (token removed)
    if args.validation_prompts is None:
        args.validation_prompts = list(DEFAULT_VALIDATION_PROMPTS)
    return args


class CheckedInputs(NamedTuple):
    """What step 1 loaded and checked; nothing has been written yet."""

    parts: dict[str, Any]  # `load_model`'s UNet (or its config), text encoder, noise schedule, max length
    dataset: Any  # the training split
    evaluation: Any  # `prepare_eval`'s judge and held-out data (None without --eval_judge)
    resume_path: Path | None
    hub_repo: str | None
    unet_config: Any
    resolution: int


def check_inputs(args: argparse.Namespace) -> CheckedInputs:
    """Everything that can be wrong, checked before anything is written or trained."""
    check_arguments(args)
    check_output_dir(args.output_dir)
    hub_repo = check_hub_repo(args)
    resume_path = resolve_resume(args.resume_from_checkpoint, args.output_dir)
    parts = load_model(args)
    if args.lora_rank:
        try:
            check_targets(parts["unet"], lora_targets(args))
        except LoraSetupError as err:
            raise TrainingSetupError(str(err)) from err
    schedule_steps = parts["schedule"]["num_train_timesteps"]
    if args.max_timestep is not None and args.max_timestep > schedule_steps:
        raise TrainingSetupError(
            f"--max_timestep {args.max_timestep} is above the {schedule_steps} timesteps of the noise schedule; "
            f"use at most {schedule_steps} (all of them)."
        )
    dataset = load_training_data(args)
    evaluation = prepare_eval(args)
    config = parts["unet"].config if parts["unet"] is not None else parts["unet_config"]
    resolution = args.resolution or config["sample_size"]
    check_resolution(resolution, dict(config))
    check_memory(len(dataset), resolution)
    return CheckedInputs(parts, dataset, evaluation, resume_path, hub_repo, config, resolution)


def build_unet(
    args: argparse.Namespace, parts: dict[str, Any], resolution: int
) -> tuple[UNet2DConditionModel, list[torch.nn.Parameter], list[str]]:
    """The UNet to train (seeded: same flags, same initial weights), its trained parameters (all, or a LoRA's)
    and notes to log once the logger is ready."""
    set_seed(args.seed)  # before the UNet is initialised
    notes: list[str] = []
    if parts["unet"] is not None:
        unet = parts["unet"]
        if unet.config.sample_size != resolution:
            notes.append(f"Setting the UNet's sample_size {unet.config.sample_size} -> {resolution} (--resolution)")
            unet.register_to_config(sample_size=resolution)
    else:
        unet = unet_from_config(parts["unet_config"])
    if not args.lora_rank:
        return unet, list(unet.parameters()), notes
    try:
        return unet, add_lora(unet, args.lora_rank, args.lora_alpha, lora_targets(args)), notes
    except LoraSetupError as err:
        raise TrainingSetupError(str(err)) from err


# =========================================================================================== main
def main(args: argparse.Namespace) -> dict[str, Any]:
    t_start = time.perf_counter()
    debug = debug_hooks()
    # ---- 1. everything that can be wrong is checked before anything is written or trained
    inputs = check_inputs(args)
    parts, config, resolution = inputs.parts, inputs.unet_config, inputs.resolution
    output_dir = Path(args.output_dir)
    unet, trainable, notes = build_unet(args, parts, resolution)

    # ---- 2. accelerate
    accelerator = make_accelerator(args)
    device, main_process = accelerator.device, accelerator.is_main_process
    for note in notes:
        logger.warning(note)
    if main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        remove_interrupted_saves(output_dir)
    accelerator.wait_for_everyone()

    # ---- 3. model
    unet.train()
    if args.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    parts["text_encoder"] = parts["text_encoder"].to(device).eval().requires_grad_(False)
    ema = create_ema(trainable, unet, args.ema_decay, device) if args.use_ema else None

    # ---- 4. data: text embeddings once (main process writes the cache, the others read it), images once
    data = prepare_training_data(accelerator, inputs.dataset, parts, args, resolution, log=logger.info)
    objective = DiffusionObjective(
        training_scheduler(**parts["schedule"]), data.cache.empty_embeds.to(device), data.cache.empty_mask.to(device),
        args.cond_dropout, args.snr_gamma, args.max_timestep,
    )
    train_dataloader, sampler = row_loader(len(data), args.train_batch_size, args.seed, args.dataloader_num_workers)

    # ---- 5. optimiser, schedule, accelerate.prepare
    unet, optimizer, train_dataloader, lr_scheduler, plan = prepare_optimisation(
        args, accelerator, unet, trainable, train_dataloader
    )
    steps_per_epoch = plan.steps_per_epoch
    progress = TrainingProgress()
    if not args.lora_rank:  # a LoRA is a new set of weights: its record counts its own training only
        progress.continue_from(parts.get("prior_training"))
    if ema is not None:
        accelerator.register_for_checkpointing(ema)
    accelerator.register_for_checkpointing(progress)
    global_batch = args.train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps
    if main_process:
        hparams = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in vars(args).items()}
        accelerator.init_trackers(args.tracker_project_name, config=hparams)

    # ---- 6. resume
    resumed_from = None
    if inputs.resume_path is not None:
        resumed_from = resume_from(accelerator, inputs.resume_path, ema, progress, global_batch)
    elif args.resume_from_checkpoint:
        logger.info(f"--resume_from_checkpoint latest: no checkpoint in {output_dir} yet, starting a new run.")
    progress.world_size, progress.global_batch = accelerator.num_processes, global_batch
    n_params, n_trainable = sum(p.numel() for p in unet.parameters()), sum(p.numel() for p in trainable)
    log_run_plan(args, accelerator, parts, data, resolution, plan, n_params, n_trainable, global_batch)

    # ---- 7. train (after a warm-up step on a GPU or with --compile: OOM and compile failures surface here)
    train_forward, warm_up_report = unet, {"compiled": False}
    if args.compile or device.type == "cuda":
        example = warm_up_inputs(
            config, args.train_batch_size, resolution, objective.empty_embeds, objective.empty_mask, device
        )
        train_forward, warm_up_report = warm_up(unet, example, accelerator, args.compile, parts["source"])

    def compute_loss(rows: torch.Tensor, epoch: int, batch_index: int) -> tuple[torch.Tensor, int]:
        with record_function("glyffuser/data"):
            g = batch_generator(args.seed, epoch, batch_index, accelerator.process_index, device)
            x0, text, mask = data.gather(rows, device)
            noisy, timesteps, target, text, mask = objective.noised(x0, text, mask, g)
            text_inputs = GlyphDiffusionPipeline.unet_text_inputs(config, text, mask)
        with record_function("glyffuser/forward"):
            pred = train_forward(noisy, timesteps, **text_inputs, return_dict=False)[0]
            return objective.loss(pred, target, timesteps), x0.shape[0]

    def validate(step: int) -> None:
        pipe = build_pipeline(unet_for_inference(accelerator, unet, ema), parts, args.validation_scheduler)
        log_validation(pipe, args, accelerator, step, f"step-{step:06d}")

    clock = train_loop(
        args, accelerator, unet=unet, trainable=trainable, optimizer=optimizer, lr_scheduler=lr_scheduler,
        train_dataloader=train_dataloader, sampler=sampler, plan=plan, progress=progress, ema=ema,
        compute_loss=compute_loss, validate=validate, last_checkpoint=inputs.resume_path, debug=debug,
    )

    # ---- 8. save the pipeline (main process), a final grid and the run record
    result: dict[str, Any] = {}
    pipe = grid = None
    if debug.weight_hashes:
        write_weight_hashes(accelerator, unet, ema, output_dir / "debug_weight_hashes.json")
    if main_process:
        final_unet = unet_for_inference(accelerator, unet, ema)
        pipe = build_pipeline(final_unet, parts, RECOMMENDED_SAMPLER)
        if args.lora_rank:
            save_lora(output_dir, final_unet)  # the adapter only: the base model stays where it is
        else:
            pipe.save_pretrained(output_dir)
        grid = log_validation(pipe, args, accelerator, progress.global_step, "final")
        result = training_record(
            args, parts, accelerator=accelerator, unet_config=pipe.unet.config, n_params=n_params,
            n_trainable=n_trainable, ema=ema is not None, data=data, resolution=resolution, dataset=inputs.dataset,
            progress=progress, global_batch=global_batch, steps_per_epoch=steps_per_epoch,
            samples_this_run=clock.samples, run_seconds=clock.run_seconds,
            wall_seconds=time.perf_counter() - t_start, warm_up=warm_up_report,
            resumed_from=resumed_from, validation_grid=grid,
        )
        write_text(output_dir / TRAINING_CONFIG_FILE, json.dumps(result, indent=2, default=str) + "\n")
        print_summary(result, output_dir)
    # All ranks tear the process group down together: a rank that destroys it alone while another is still
    # saving can leave the other hanging at exit. The Hub upload below needs no collectives.
    accelerator.wait_for_everyone()
    # Free the DDP wrapper while the group is still registered. Otherwise its Reducer holds the last reference
    # and destroys the gloo group while holding the GIL, joining a worker thread that needs the GIL to drop
    # its last collective's tensors: a deadlock at exit, seen as an occasional hang of 2-process runs
    # (pytorch#56297).
    unet = accelerator.unwrap_model(unet)
    accelerator.free_memory()
    accelerator.end_training()
    if main_process:  # after the process group is gone: other ranks do not wait at a barrier (and time out)
        publish(args, result, pipe, grid, inputs)
    return result


def publish(args: argparse.Namespace, result: dict[str, Any], pipe, grid: Path, inputs: CheckedInputs) -> None:
    """The final evaluation (--eval_judge) and the Hub upload (--push_to_hub), recorded into `result`.

    A failed upload does not fail the run: the pipeline is saved, and the log ends with the retry command.
    """
    output_dir = Path(args.output_dir)
    if inputs.evaluation is not None:
        result["metrics"] = run_eval(pipe, inputs.evaluation, args, output_dir)
    if inputs.hub_repo is None:
        return
    push_run(args, inputs.hub_repo, result, f"glyffuser: {result['steps']} training steps", grid)

if __name__ == "__main__":
    try:
        record = main(parse_args())
        if isinstance(record, dict) and record.get("hub_push_error"):
            sys.exit(3)  # training and the local pipeline are complete; the log holds the retry command
    except TrainingSetupError as err:
        print(f"train_glyph_diffusion.py: error: {err}", file=sys.stderr)
        sys.exit(2)
    except TrainingDiverged as err:
        print(f"train_glyph_diffusion.py: training diverged: {err}", file=sys.stderr)
        sys.exit(1)
