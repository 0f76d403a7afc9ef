# Copyright 2026 The glyffuser developers. Licensed under the Apache License, Version 2.0.
"""Forward noising: a real glyph noised in closed form q(x_t | x_0) to t = 0...T, per beta schedule
(`glyffuser noising`).

No model is involved: every cell is `scheduler.add_noise` of the same glyph with the same ε, so the rows
differ only by the schedule's ᾱ_t, labelled by t and SNR.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ..schedulers import noise_schedule
from .diffusion import seed_generator
from .layout import FigureError, check_positive, labelled_grid, shorten, to_pil

BETA_SCHEDULE_ALIASES = {"cosine": "squaredcos_cap_v2"}
BETA_SCHEDULE_LABELS = {"linear": "linear", "scaled_linear": "scaled linear", "squaredcos_cap_v2": "cosine"}


def load_glyph_image(
    character: str | None = None,
    dataset: str | os.PathLike | None = None,
    image: str | os.PathLike | None = None,
    size: int = 64,
    split: str | None = None,
) -> tuple[Image.Image, str]:
    """A real glyph and a description: from `image` (a file), a `dataset` row, or rendered with the CJK font."""
    if (image is None) == (character is None):
        raise FigureError("Give exactly one source: --character CHAR (with or without --dataset) or --image FILE.")
    if image is not None:
        path = Path(image).expanduser()
        if not path.is_file():
            raise FigureError(f"Image file {path} does not exist.")
        try:
            with Image.open(path) as im:
                return im.convert("L"), path.name
        except OSError as err:
            raise FigureError(f"Cannot read image {path}: {err}") from err
    if len(character) != 1:
        raise FigureError(f"--character must be a single character, got {character!r}.")
    label = f"U+{ord(character):04X}"  # the label font has no CJK glyphs; the picture shows the character
    if dataset is not None:
        from datasets import concatenate_datasets

        from ..data.dataset import load_glyph_dataset

        loaded = load_glyph_dataset(dataset, split=split)
        ds = concatenate_datasets(list(loaded.values())) if hasattr(loaded, "values") else loaded
        if "character" not in ds.column_names:
            raise FigureError(f"Dataset {dataset} has no 'character' column (columns: {', '.join(ds.column_names)}).")
        chars = ds["character"]
        if character not in chars:
            raise FigureError(
                f"Character {character} (U+{ord(character):04X}) is not in dataset {dataset} ({len(chars)} glyphs, "
                f"e.g. {''.join(chars[:10])})."
            )
        row = ds[chars.index(character)]
        text = row.get("text")
        return row["image"].convert("L"), f"{label} “{shorten(text, 40)}”" if text else label
    from ..data.render import GlyphRenderer, load_font

    font = load_font()
    if not font.covers(character):
        raise FigureError(f"Character {character} (U+{ord(character):04X}) is not in the font {font.name}.")
    return GlyphRenderer(font, size=size).render(character), label


def noising_strip(
    image: Image.Image,
    beta_schedules: Sequence[str] = ("linear",),
    timesteps: Sequence[int] | None = None,
    num_columns: int = 9,
    num_train_timesteps: int = 1000,
    beta_start: float = 0.0001,
    beta_end: float = 0.02,
    seed: int = 0,
    cell_size: int = 96,
    title: str | None = None,
) -> Image.Image:
    """`image` noised to each t with the closed form q(x_t | x_0) (`add_noise`), one row per beta schedule.

    Every cell uses the same ε, so the rows differ only by the schedule's ᾱ_t. SNR = ᾱ/(1-ᾱ), in dB.
    """
    import torch
    from diffusers import DDPMScheduler
    from diffusers.image_processor import VaeImageProcessor

    check_positive("num_train_timesteps", num_train_timesteps, 2)
    schedules = [BETA_SCHEDULE_ALIASES.get(s, s) for s in beta_schedules]
    if not schedules:
        raise FigureError("No beta schedule given; e.g. --beta-schedules linear squaredcos_cap_v2.")
    try:
        configs = [noise_schedule(num_train_timesteps, s, beta_start=beta_start, beta_end=beta_end) for s in schedules]
    except ValueError as err:
        raise FigureError(str(err)) from err
    if timesteps is None:
        check_positive("num_columns", num_columns, 2)
        timesteps = sorted({round(x) for x in np.linspace(0, num_train_timesteps - 1, num_columns)})
    timesteps = [int(t) for t in timesteps]
    bad = [t for t in timesteps if not 0 <= t < num_train_timesteps]
    if not timesteps or bad:
        raise FigureError(f"timesteps must be in [0, {num_train_timesteps - 1}], got {bad or 'none'}.")

    side = image.size[0] if image.size[0] == image.size[1] else min(image.size)
    x0 = VaeImageProcessor(vae_scale_factor=1, do_convert_grayscale=True).preprocess(image.convert("L"), side, side)
    noise = torch.randn(x0.shape, generator=seed_generator(seed))
    t = torch.tensor(timesteps)
    batch = len(timesteps)
    cells, captions = [], []
    for config in configs:
        scheduler = DDPMScheduler(**config)
        x_t = scheduler.add_noise(x0.expand(batch, -1, -1, -1), noise.expand(batch, -1, -1, -1), t)
        alpha_bar = scheduler.alphas_cumprod[t].double()
        snr_db = 10 * torch.log10(alpha_bar / (1 - alpha_bar))
        cells.append(to_pil(x_t))
        captions.append(
            [(f"t = {ti}", f"SNR {db:+.1f} dB".replace("-", "−")) for ti, db in zip(timesteps, snr_db.tolist())]
        )
    labels = [f"{BETA_SCHEDULE_LABELS.get(c['beta_schedule'], c['beta_schedule'])} betas" for c in configs]
    if title is None:
        title = f"Forward noising q(xₜ | x₀) of {num_train_timesteps} steps · same ε in every cell"
    return labelled_grid(cells, cell_size, captions, caption_lines=2, row_labels=labels, title=title)
