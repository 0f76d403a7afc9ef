# Copyright 2026 The glyffuser developers. Licensed under the Apache License, Version 2.0.
"""The accelerate side of a run: the Accelerator and its logging, the optimiser and LR schedule, resuming."""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path
from typing import NamedTuple

import datasets
import diffusers
import torch
import transformers
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import ProjectConfiguration
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel

from .checkpoints import load_checkpoint
from .progress import TrainingProgress

logger = get_logger(__name__, log_level="INFO")


def cpu_only() -> bool:
    """No GPU-like device: accelerate must be told so, or two launched processes never form a group."""
    if hasattr(torch, "accelerator"):
        return not torch.accelerator.is_available()
    return not torch.cuda.is_available()


def configure_logging(accelerator: Accelerator) -> None:
    """INFO for the run's own messages; the libraries' warnings on the local main process only."""
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%H:%M:%S", level=logging.INFO
    )
    if accelerator.is_local_main_process:
        datasets.utils.logging.set_verbosity_warning()
        transformers.utils.logging.set_verbosity_warning()
        diffusers.utils.logging.set_verbosity_warning()
        logging.getLogger("accelerate.checkpointing").setLevel(logging.WARNING)
    else:
        datasets.utils.logging.set_verbosity_error()
        transformers.utils.logging.set_verbosity_error()
        diffusers.utils.logging.set_verbosity_error()


def make_accelerator(args: argparse.Namespace) -> Accelerator:
    """The Accelerator for the run's flags (accumulation, precision, tracker under --output_dir), logging set up."""
    output_dir = Path(args.output_dir)
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(
            project_dir=str(output_dir), logging_dir=str(output_dir / args.logging_dir)
        ),
        cpu=cpu_only(),
    )
    configure_logging(accelerator)
    logger.info(accelerator.state, main_process_only=False)
    if args.allow_tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
    return accelerator


class StepPlan(NamedTuple):
    """How long the run is, counted on this process's shard of the data."""

    steps_per_epoch: int
    max_train_steps: int
    num_epochs: int


def prepare_optimisation(args: argparse.Namespace, accelerator: Accelerator, unet, trainable, train_dataloader):
    """AdamW over `trainable` and the LR schedule, prepared by accelerate with the model and the loader.

    Returns (unet, optimizer, train_dataloader, lr_scheduler, StepPlan), the first three prepared.
    """
    # Fused AdamW on CUDA: one kernel for all parameters instead of a launch per tensor and operation.
    optimizer = torch.optim.AdamW(
        trainable, lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2),
        weight_decay=args.adam_weight_decay, eps=args.adam_epsilon, fused=accelerator.device.type == "cuda",
    )
    unet, optimizer, train_dataloader = accelerator.prepare(unet, optimizer, train_dataloader)
    # Lengths only after prepare: the prepared loader holds this process's shard.
    steps_per_epoch = math.ceil(len(train_dataloader) / args.gradient_accumulation_steps)
    max_train_steps = args.max_train_steps or args.num_train_epochs * steps_per_epoch
    num_epochs = math.ceil(max_train_steps / steps_per_epoch)
    if args.lr_warmup_steps >= max_train_steps and args.lr_scheduler != "constant":
        logger.warning(
            f"--lr_warmup_steps {args.lr_warmup_steps} >= {max_train_steps} training steps: "
            "the LR never leaves warm-up."
        )
    # The prepared scheduler steps once per process per optimiser step (accelerate), hence the scaling.
    lr_scheduler = get_scheduler(
        args.lr_scheduler, optimizer=optimizer,
        num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=max_train_steps * accelerator.num_processes,
    )
    lr_scheduler = accelerator.prepare(lr_scheduler)
    return unet, optimizer, train_dataloader, lr_scheduler, StepPlan(steps_per_epoch, max_train_steps, num_epochs)


def resume_from(
    accelerator: Accelerator, path: Path, ema: EMAModel | None, progress: TrainingProgress, global_batch: int
) -> str:
    """Load checkpoint `path` (model, optimiser, LR schedule, RNG states, EMA, progress) into the prepared run.

    The data order replays exactly only with the checkpoint's process count and global batch: a change is
    allowed, with a warning.
    """
    logger.info(f"Resuming from {path}")
    load_checkpoint(accelerator, path, ema, accelerator.device)
    if (progress.world_size, progress.global_batch) != (accelerator.num_processes, global_batch):
        logger.warning(
            f"The checkpoint was written with {progress.world_size} process(es) and global batch "
            f"{progress.global_batch}; now {accelerator.num_processes} and {global_batch}. "
            "Training continues, but the data order is no longer the one of an uninterrupted run."
        )
    return str(path)
