# Copyright 2026 The glyffuser developers. Licensed under the Apache License, Version 2.0.
"""The training loop every recipe shares: accumulation, clipping, optimiser and LR steps, EMA, loss reads with the
NaN guard, atomic checkpoints, validation and exact resume. A recipe passes only what differs: how a batch of rows
becomes a loss (`compute_loss`) and how it draws its validation grid (`validate`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch
from accelerate import Accelerator
from diffusers.training_utils import EMAModel
from torch.profiler import record_function
from tqdm.auto import tqdm

from .checkpoints import save_checkpoint
from .progress import LossWatch, TrainingClock, TrainingProgress
from .runtime import StepPlan


class DebugHooks(NamedTuple):
    """Test-only hooks. They come from the environment, not from flags, so they stay out of `--help`, the run
    record and the command on the model card; none changes what is computed."""

    nan_at_step: int | None  # the loss reads NaN from this step on (divergence handling)
    pause_after_checkpoint: bool  # print a marker after each checkpoint, block on stdin (a test kills us there)
    weight_hashes: bool  # write debug_weight_hashes.json: every rank's UNet and EMA digests


def debug_hooks(environ: Mapping[str, str] = os.environ) -> DebugHooks:
    """The hooks set by GLYFFUSER_DEBUG_NAN_AT_STEP=N, GLYFFUSER_DEBUG_PAUSE_AFTER_CHECKPOINT=1 and
    GLYFFUSER_DEBUG_WEIGHT_HASHES=1."""
    nan_at_step = environ.get("GLYFFUSER_DEBUG_NAN_AT_STEP")
    return DebugHooks(
        nan_at_step=int(nan_at_step) if nan_at_step else None,
        pause_after_checkpoint=environ.get("GLYFFUSER_DEBUG_PAUSE_AFTER_CHECKPOINT", "") not in ("", "0"),
        weight_hashes=environ.get("GLYFFUSER_DEBUG_WEIGHT_HASHES", "") not in ("", "0"),
    )


#: (rows of the batch, epoch, batch index) -> (this process's loss, its number of samples).
ComputeLoss = Callable[[torch.Tensor, int, int], tuple[torch.Tensor, int]]


def train_loop(
    args: argparse.Namespace, accelerator: Accelerator, *, unet, trainable: list[torch.nn.Parameter], optimizer,
    lr_scheduler, train_dataloader, sampler, plan: StepPlan, progress: TrainingProgress, ema: EMAModel | None,
    compute_loss: ComputeLoss, validate: Callable[[int], Any], last_checkpoint: Path | None, debug: DebugHooks,
) -> TrainingClock:
    """Train from `progress.global_step` to `plan.max_train_steps`; returns the clock (training time, samples).

    The data order of epoch `e` is `sampler`'s permutation for `e`, and a resumed run skips the batches the
    checkpoint had already seen, so it replays the uninterrupted run exactly. `validate(step)` runs on the main
    process every `--validation_steps` (not at the last step: the recipe draws its final grid itself).
    """
    output_dir = Path(args.output_dir)
    steps_per_epoch, max_train_steps = plan.steps_per_epoch, plan.max_train_steps
    first_epoch = progress.global_step // steps_per_epoch
    resume_batches = (progress.global_step % steps_per_epoch) * args.gradient_accumulation_steps
    bar = tqdm(
        range(max_train_steps), initial=progress.global_step, desc="Steps",
        disable=not accelerator.is_local_main_process,
    )
    step_loss: torch.Tensor | float = 0.0
    watch = LossWatch(args.loss_sync_steps)
    clock = TrainingClock(progress, accelerator.num_processes, on_accelerator=accelerator.device.type != "cpu")
    for epoch in range(first_epoch, plan.num_epochs):
        if progress.global_step >= max_train_steps:
            break
        sampler.epoch = epoch
        skip = resume_batches if epoch == first_epoch else 0
        loader = accelerator.skip_first_batches(train_dataloader, skip) if skip else train_dataloader
        for batch_index, rows in enumerate(loader, start=skip):
            # record_function ranges name the phases for profilers (benchmarks/bench_training.py loop); without
            # a profiler each costs a few microseconds. `compute_loss` marks its own data and forward phases.
            with accelerator.accumulate(unet):
                loss, n_samples = compute_loss(rows, epoch, batch_index)
                # The loss stays on the device: `watch` reads it every --loss_sync_steps steps, not every step.
                mean_loss = accelerator.gather(loss.detach().reshape(1)).mean()
                if debug.nan_at_step is not None and progress.global_step + 1 >= debug.nan_at_step:
                    mean_loss = mean_loss * float("nan")
                step_loss = step_loss + mean_loss / args.gradient_accumulation_steps
                clock.samples += n_samples * accelerator.num_processes

                with record_function("glyffuser/backward"):
                    accelerator.backward(loss)
                with record_function("glyffuser/optimizer"):
                    if accelerator.sync_gradients and args.max_grad_norm > 0:
                        accelerator.clip_grad_norm_(trainable, args.max_grad_norm)
                    optimizer.step()
                    lr_scheduler.step()
                    optimizer.zero_grad(set_to_none=True)

            if not accelerator.sync_gradients:
                continue
            if ema is not None:
                with record_function("glyffuser/ema"):
                    ema.step(trainable)
            progress.global_step += 1
            global_step = progress.global_step
            bar.update(1)
            due_checkpoint = bool(args.checkpointing_steps) and global_step % args.checkpointing_steps == 0
            due_validation = (
                bool(args.validation_steps) and global_step % args.validation_steps == 0
                and global_step < max_train_steps
            )
            read_now = watch.add(global_step, epoch, batch_index, step_loss, lr_scheduler.get_last_lr()[0])
            step_loss = 0.0
            if read_now or due_checkpoint or due_validation or global_step >= max_train_steps:
                with record_function("glyffuser/host_sync"):
                    for step, value, lr in watch.read(last_checkpoint):
                        progress.record(value)
                        accelerator.log({"train_loss": value, "lr": lr}, step=step)
                    bar.set_postfix(loss=f"{value:.4f}", lr=f"{lr:.2e}")

            with clock.paused():  # checkpoints and validation are not training time
                if due_checkpoint:
                    clock.update()
                    last_checkpoint = save_checkpoint(
                        accelerator, output_dir, global_step, args.checkpoints_total_limit
                    )
                    if debug.pause_after_checkpoint:
                        # Test hook: announce the finished checkpoint and block on stdin, so a test's SIGKILL
                        # lands at a known point (right after a save) without any timing guesswork.
                        print(f"PAUSED-AFTER-CHECKPOINT {global_step}", flush=True)
                        sys.stdin.read()
                if due_validation:
                    if accelerator.is_main_process:
                        validate(global_step)
                    accelerator.wait_for_everyone()
            if global_step >= max_train_steps:
                break
    bar.close()
    clock.update()
    accelerator.wait_for_everyone()
    return clock
