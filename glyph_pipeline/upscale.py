# Copyright 2026 The glyffuser developers. Licensed under the Apache License, Version 2.0.
"""The 128 px stage for users: the shipped upscaler, its loader and `--upscaler` flags, and the cascade that every
command samples through (base model at 32 px -> `GlyphUpscalePipeline` -> 128 px), as diffusers chains IF's stages.

In Python the chain is three lines:

    low = pipe("gold; metal", output_type="pt").images   # (1, 1, 32, 32) in [0, 1]
    glyph = upscaler(low).images[0]                       # 128 px, greyscale PIL
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .hub.pretrained import SHIPPED_MODEL, NotAPipelineError, check_model
from .model_card import saved_class_name

if TYPE_CHECKING:
    from .pipeline_glyph_upscale import GlyphUpscalePipeline

# Trained on this 2-core CPU from the font pairs of four typefaces (docs/results.md, "128 px glyphs").
SHIPPED_UPSCALER = SHIPPED_MODEL.with_name("glyph-upscaler-128")
NO_UPSCALER = "none"


def default_upscaler() -> str | None:
    """The shipped upscaler's folder when this copy has it (a slim install has none: glyphs stay at 32 px)."""
    return str(SHIPPED_UPSCALER) if (SHIPPED_UPSCALER / "model_index.json").is_file() else None


def check_upscaler_settings(upscaler: str | None, steps: int | None, noise_level: int | None) -> str | None:
    """The upscaler to load (None: none), with its settings checked before anything loads."""
    if steps is not None and steps < 1:
        raise ValueError(f"--upscale-steps must be >= 1, got {steps}.")
    if noise_level is not None and not 0 <= noise_level < 1000:
        raise ValueError(f"--upscale-noise-level must be in [0, 1000), got {noise_level}.")
    if upscaler is None:
        return default_upscaler()
    if upscaler.lower() == NO_UPSCALER:
        return None
    return upscaler


def load_upscaler(upscaler: str | os.PathLike, device: str | None = None) -> GlyphUpscalePipeline:
    """A saved or pushed `GlyphUpscalePipeline` with our installed class (no remote code runs), float32 on
    `device`. A base (text-to-glyph) folder is refused with the flag it belongs to."""
    import torch

    from .pipeline_glyph_upscale import GlyphUpscalePipeline

    source = check_model(upscaler)
    kind = saved_class_name(source) if Path(source).is_dir() else None
    if kind is not None and kind != GlyphUpscalePipeline.__name__:
        raise NotAPipelineError(
            f"{upscaler} holds a {kind}, not an upscaler: a text-to-glyph model goes to --model; --upscaler takes a "
            f"GlyphUpscalePipeline folder or repo (e.g. {SHIPPED_UPSCALER.name}), or 'none'."
        )
    try:
        pipe = GlyphUpscalePipeline.from_pretrained(source, use_safetensors=True, dtype=torch.float32)
    except (OSError, ValueError, TypeError) as err:
        raise NotAPipelineError(f"Could not load an upscaler from {upscaler!r}: {err}") from err
    pipe.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    pipe.set_progress_bar_config(leave=False)
    return pipe


class UpscaledPipeline:
    """A glyph pipeline followed by an upscaler: `pipe(prompt, ...)` draws at the base size and returns the glyphs
    upscaled (in the `output_type` asked for). The same generators continue into the upscaler, so a seed gives
    one 128 px glyph, alone or in a batch. Everything else (the scheduler, the UNet, the config) is the base
    pipeline's, so code written for it (figures, the app) runs unchanged."""

    def __init__(
        self, pipe: Any, upscaler: GlyphUpscalePipeline, num_inference_steps: int | None = None,
        noise_level: int | None = None,
    ):
        settings = {"num_inference_steps": num_inference_steps, "noise_level": noise_level}
        object.__setattr__(self, "_pipe", pipe)
        object.__setattr__(self, "upscaler", upscaler)
        object.__setattr__(self, "upscale_settings", {k: v for k, v in settings.items() if v is not None})

    def __call__(self, *args: Any, output_type: str = "pil", return_dict: bool = True, **kwargs: Any) -> Any:
        low = self._pipe(*args, output_type="pt", **kwargs).images
        out = self.upscaler(
            low, generator=kwargs.get("generator"), output_type=output_type, return_dict=return_dict,
            **self.upscale_settings,
        )
        return out

    def to(self, *args: Any, **kwargs: Any) -> UpscaledPipeline:
        self._pipe.to(*args, **kwargs)
        self.upscaler.to(*args, **kwargs)
        return self

    def set_progress_bar_config(self, **kwargs: Any) -> None:
        self._pipe.set_progress_bar_config(**kwargs)
        self.upscaler.set_progress_bar_config(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pipe, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._pipe, name, value)


def upscaler_for(pipe: Any, upscaler: str | None, device: str | None = None) -> tuple[Any, str | None]:
    """(the upscaler that `--upscaler` value names, loaded, or None; a note when the shipped one was skipped).

    The shipped default (`upscaler=None`) is skipped for a model of another glyph size; one named explicitly must
    take the model's size, else a `ValueError` before any sampling."""
    spec = check_upscaler_settings(upscaler, None, None)
    if spec is None:
        return None, None
    loaded = load_upscaler(spec, device)
    size, takes = pipe.unet.config.sample_size, loaded.config.low_res_size
    if size == takes:
        return loaded, None
    if upscaler is not None:
        raise ValueError(f"--upscaler {upscaler} takes {takes} px glyphs, but the model draws {size} px.")
    return None, f"the shipped upscaler takes {takes} px glyphs and this model draws {size} px: not upscaling"


def with_upscaler(pipe: Any, args: argparse.Namespace) -> Any:
    """`pipe`, followed by the upscaler the command's `--upscaler` flags name (the shipped one by default)."""
    check_upscaler_settings(args.upscaler, args.upscale_steps, args.upscale_noise_level)
    upscaler, note = upscaler_for(pipe, args.upscaler, getattr(args, "device", None))
    if note:
        print(f"note: {note}", file=sys.stderr)
    if upscaler is None:
        return pipe
    return UpscaledPipeline(pipe, upscaler, args.upscale_steps, args.upscale_noise_level)


def add_upscaler_args(parser: argparse.ArgumentParser) -> None:
    """`--upscaler` / `--upscale-steps` / `--upscale-noise-level`, shared by every command that shows glyphs."""
    from .pipeline_glyph_upscale import DEFAULT_NOISE_LEVEL, DEFAULT_UPSCALE_STEPS

    parser.add_argument(
        "--upscaler", default=None, metavar="DIR_OR_REPO|none",
        help=f"super-resolution stage for 128 px glyphs (default: the shipped {SHIPPED_UPSCALER.name} when present; "
        "'none' keeps the base model's 32 px)",
    )
    parser.add_argument(
        "--upscale-steps", type=int, default=None, help=f"upscaler denoising steps (default: {DEFAULT_UPSCALE_STEPS})"
    )
    parser.add_argument(
        "--upscale-noise-level", type=int, default=None,
        help=f"noise added to the 32 px glyph before upscaling, 0-999 (default: {DEFAULT_NOISE_LEVEL})",
    )

