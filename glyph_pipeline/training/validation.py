# Copyright 2026 The glyffuser developers. Licensed under the Apache License, Version 2.0.
"""Sampling and scoring during and after training, through `GlyphDiffusionPipeline` itself.

Validation grids and the final evaluation use the pipeline users get (same text encoding, guidance and
schedulers), never a copy of its sampling loop inside the training code.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from diffusers.utils import make_image_grid

from ..atomic import atomic_output
from ..pipeline_glyph_diffusion import GlyphDiffusionPipeline
from ..schedulers import sampling_scheduler
from .inputs import TrainingSetupError

logger = get_logger(__name__, log_level="INFO")


def build_pipeline(unet, parts: dict[str, Any], scheduler_name: str) -> GlyphDiffusionPipeline:
    """The pipeline around `unet` with the run's text encoder, max length and noise schedule (`load_model`)."""
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


def prepare_eval(args: argparse.Namespace):
    """Judge + held-out data for `--eval_judge`, loaded and checked now: a bad path must not cost a training run."""
    if not args.eval_judge:
        return None
    from ..evaluation.evaluate import prepare_evaluation

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
    from ..evaluation.evaluate import evaluate_pipeline, format_report, write_json
    from ..model_card import METRICS_FILE

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
