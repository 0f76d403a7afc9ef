# Copyright 2026 The glyffuser developers. Licensed under the Apache License, Version 2.0.
"""The run record (`training_config.json`): what was trained, on what, how long, on which hardware.

The model card is written from it (`glyph_pipeline.model_card`), and a run continued from saved weights adds
its numbers to theirs, so the record is what makes a published model's compute and recipe checkable.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
from pathlib import Path
from typing import Any

import accelerate
import datasets
import diffusers
import torch
import transformers
from accelerate import Accelerator
from accelerate.logging import get_logger

from ..lora import LORA_WEIGHT_NAME
from ..text_encoders import DEFAULT_TEXT_ENCODER, hidden_size
from .arguments import lora_targets
from .batches import TrainingData
from .inputs import prior_commands
from .progress import TrainingProgress
from .runtime import StepPlan

logger = get_logger(__name__, log_level="INFO")


def hardware_summary(accelerator: Accelerator) -> dict[str, Any]:
    """Device, processes, precision, CPU, threads and library versions: what the record's timings ran on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    info = {
        "device": str(accelerator.device),
        "distributed_type": str(accelerator.distributed_type).split(".")[-1],
        "num_processes": accelerator.num_processes,
        "mixed_precision": accelerator.mixed_precision,
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "versions": {
            "torch": torch.__version__, "diffusers": diffusers.__version__, "transformers": transformers.__version__,
            "accelerate": accelerate.__version__, "datasets": datasets.__version__,
        },
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(accelerator.device)
    return info


def log_run_plan(
    args: argparse.Namespace, accelerator: Accelerator, parts: dict[str, Any], data: TrainingData, resolution: int,
    plan: StepPlan, n_params: int, n_trainable: int, global_batch: int,
) -> None:
    """What is about to be trained, on what, for how long: the log's record of the set-up."""
    logger.info("***** Running training *****")
    logger.info(
        f"  Rows = {len(data):,} ({len(data.cache.unique_texts):,} distinct captions), resolution {resolution}px"
    )
    logger.info(
        f"  UNet = {parts['source']}, {n_params / 1e6:.2f}M parameters ({n_trainable / 1e6:.3f}M trained); "
        f"text encoder width {hidden_size(parts['text_encoder'])}"
    )
    logger.info(
        f"  Epochs = {plan.num_epochs}, steps per epoch = {plan.steps_per_epoch}, "
        f"total optimisation steps = {plan.max_train_steps}"
    )
    logger.info(
        f"  Batch per device = {args.train_batch_size}, processes = {accelerator.num_processes}, "
        f"accumulation = {args.gradient_accumulation_steps} -> global batch {global_batch}"
    )


def command_line(argv: list[str], script: str = "train_glyph_diffusion.py") -> str:
    """The launch command of this run for the record and the model card: no token, local folders by name only."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--hub_token" or arg.startswith("--hub_token="):
            skip = arg == "--hub_token"
            continue
        kept.append(Path(arg).name if os.path.isabs(arg) else arg)
    return f"accelerate launch training/{script} " + " ".join(shlex.quote(a) for a in kept)


def training_record(
    args: argparse.Namespace, parts: dict[str, Any], *, accelerator: Accelerator, unet_config: dict[str, Any],
    n_params: int, n_trainable: int, ema: bool, data: TrainingData, resolution: int, dataset,
    progress: TrainingProgress, global_batch: int, steps_per_epoch: int, samples_this_run: int, run_seconds: float,
    wall_seconds: float, warm_up: dict[str, Any], resumed_from: str | None,
    validation_grid: Path,
) -> dict[str, Any]:
    """`training_config.json` of a finished run (`args` as parsed; `_argv` holds the command line)."""
    text_encoder, steps = parts["text_encoder"], progress.global_step
    return {
        "command": command_line(args._argv),
        # Every run that led to these weights, oldest first (a continued model lists its initial training).
        "commands": [
            *(prior_commands(parts.get("prior_training")) if not args.lora_rank else []), command_line(args._argv)
        ],
        "args": {k: v for k, v in vars(args).items() if "token" not in k and not k.startswith("_")},
        "preset": args.unet_preset if not args.pretrained_model_name_or_path else None,
        "model_source": parts["source"],
        "unet_config": {k: v for k, v in dict(unet_config).items() if not k.startswith("_")},
        "unet_parameters": n_params,
        "trained_parameters": n_trainable,
        "lora": None if not args.lora_rank else {
            "rank": args.lora_rank, "alpha": args.lora_alpha or args.lora_rank,
            "target_modules": lora_targets(args),
            "base_model": args.pretrained_model_name_or_path, "weights": LORA_WEIGHT_NAME,
        },
        "ema": ema,
        "text_encoder": {
            "name_or_path": (
                args.text_encoder_name_or_path
                or (None if args.pretrained_model_name_or_path else DEFAULT_TEXT_ENCODER)
            ),
            "class": type(text_encoder).__name__,
            "hidden_size": hidden_size(text_encoder),
            "max_sequence_length": parts["max_len"],
        },
        "noise_schedule": parts["schedule"],
        "dataset": {
            "source": args.dataset, "local": Path(args.dataset).exists(), "split": args.dataset_split,
            "rows": len(data), "distinct_captions": len(data.cache.unique_texts), "resolution": resolution,
            "embedding_cache": str(data.cache.path), "embedding_cache_hit": data.cache.from_cache,
            # what the glyphs are (font, size) and their licence, as the dataset states them
            "description": dataset.info.description or None, "license": dataset.info.license or None,
        },
        "hardware": hardware_summary(accelerator),
        "world_size": accelerator.num_processes,
        "global_batch_size": global_batch,
        "steps": steps,
        "total_steps": progress.prior_steps + steps,
        "epochs": progress.prior_epochs + steps / steps_per_epoch,
        "samples_seen": progress.samples_seen,
        "train_seconds": progress.train_seconds,
        "thread_seconds": progress.thread_seconds,
        "gpu_seconds": progress.gpu_seconds,
        # This run's rate (a continued model's totals above may mix devices).
        "samples_per_second": samples_this_run / run_seconds if run_seconds else None,
        "wall_time_seconds": wall_seconds,
        "text_embedding_seconds": data.embed_seconds,
        "warm_up": warm_up,  # --compile: compiled or why not, and the compile time (not in train_seconds)
        **progress.loss_summary(),
        "resumed_from": resumed_from,
        "validation_grid": str(validation_grid),
    }


def print_summary(r: dict[str, Any], output_dir: Path) -> None:
    """The end-of-run summary of a record, on stdout."""
    fmt = lambda x: "n/a" if x is None else f"{x:.4f}"  # noqa: E731
    lines = [
        "",
        "=" * 72,
        " glyffuser training summary",
        "=" * 72,
        f" steps        {r['steps']:,} (in total {r['total_steps']:,}, {r['epochs']:.2f} epochs)"
        + (f", resumed from {r['resumed_from']}" if r["resumed_from"] else ""),
        f" batch        global {r['global_batch_size']} on {r['world_size']} process(es), {r['hardware']['device']}"
        f" [{r['hardware']['distributed_type']}, precision {r['hardware']['mixed_precision']}]",
        f" data         {r['dataset']['rows']:,} rows, {r['dataset']['distinct_captions']:,} distinct captions, "
        f"{r['dataset']['resolution']}px; text embeddings "
        f"{'cached' if r['dataset']['embedding_cache_hit'] else 'encoded'} in {r['text_embedding_seconds']:.1f}s",
        f" throughput   {r['samples_per_second'] or 0:.1f} samples/s in this run "
        f"({r['samples_seen']:,} samples in {r['train_seconds']:.1f}s of training in all)",
        f" time         {r['wall_time_seconds']:.1f}s wall for this run",
        f" loss         first 10 steps {fmt(r['initial_loss'])} -> last 10 steps {fmt(r['final_loss'])}",
        (
            f" LoRA         {output_dir / r['lora']['weights']} (rank {r['lora']['rank']}, "
            f"{'EMA' if r['ema'] else 'raw'} weights, {r['trained_parameters'] / 1e6:.3f}M params) "
            f"for {r['lora']['base_model']}"
            if r.get("lora") else
            f" pipeline     {output_dir} ({'EMA' if r['ema'] else 'raw'} weights, "
            f"{r['unet_parameters'] / 1e6:.2f}M params)"
        ),
        f" samples      {r['validation_grid']}",
        "=" * 72,
    ]
    print("\n".join(lines), flush=True)
