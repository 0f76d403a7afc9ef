# Copyright 2026 The glyffuser developers. Licensed under the Apache License, Version 2.0.
"""The denoising animation: x_t beside the model's predicted clean glyph x̂0 at every step (`glyffuser animate`).

`denoising_trajectory` records one ordinary pipeline call through `callback_on_step_end`, so the animation
shows the real sampling run; `denoising_frames` draws it and `save_animation` writes a GIF (or MP4).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from PIL import Image, ImageDraw

from ..atomic import atomic_output
from ..schedulers import with_recommended
from .diffusion import check_guidance, check_prompts, check_steps, initial_noise
from .layout import (
    MARGIN,
    FigureError,
    check_positive,
    draw_lines,
    fit_lines,
    font_px,
    label_font,
    line_height,
    to_pil,
)

if TYPE_CHECKING:
    import torch

    from ..pipeline_glyph_diffusion import GlyphDiffusionPipeline


def _format_t(t: Any) -> str:
    """A timestep for the footer: whole numbers without decimals (Karras samplers step at fractional t)."""
    t = float(t)
    return str(round(t)) if abs(t - round(t)) < 1e-3 else f"{t:.1f}"


class DenoisingTrajectory(NamedTuple):
    """What the UNet saw and predicted at each scheduler timestep, and the final sample.

    `inputs[i]` is x_t at `timesteps[i]` in the DDPM scale sqrt(ᾱ)·x0 + sqrt(1-ᾱ)·ε (inputs[0] is the starting
    noise x_T); `predictions[i]` is the model's x̂0 from it. All tensors are (1, C, H, W) on the CPU.
    """

    timesteps: list[float]
    inputs: list[torch.Tensor]
    predictions: list[torch.Tensor]
    final: torch.Tensor


def denoising_trajectory(
    pipe: GlyphDiffusionPipeline,
    prompt: str,
    num_inference_steps: int | None = None,
    guidance_scale: float | None = None,
    seed: int = 0,
) -> DenoisingTrajectory:
    """Run the pipeline once and record x_t and x̂0 at every step through `callback_on_step_end`.

    Karras-style samplers (Euler, Heun, LMS...) keep latents as x0 + σε; after each step they are passed
    through the scheduler's own `scale_model_input` for the next timestep (÷ sqrt(1+σ²)), which is exactly
    the next UNet input. The same seed gives the same image as `pipe(prompt, generator=manual_seed(seed))`.
    """
    (prompt,) = check_prompts(prompt)
    num_inference_steps, guidance_scale = with_recommended(num_inference_steps, guidance_scale)
    check_steps(pipe.scheduler, num_inference_steps)
    noise, generators = initial_noise(pipe, [seed])
    after: list[torch.Tensor] = []
    predictions: list[torch.Tensor] = []
    timesteps: list[float] = []

    def record(p, i: int, t, tensors: dict[str, torch.Tensor]) -> dict:
        latents = tensors["latents"]
        schedule = p.scheduler.timesteps
        shown = p.scheduler.scale_model_input(latents, schedule[i + 1]) if i + 1 < len(schedule) else latents
        after.append(shown[:1].detach().float().cpu().clone())
        predictions.append(tensors["pred_original_sample"][:1].detach().float().cpu().clone())
        timesteps.append(float(t))
        return {}

    pipe(
        prompt,
        num_inference_steps=num_inference_steps,
        guidance_scale=check_guidance(guidance_scale),
        generator=generators[0],  # already past x_T: ancestral/SDE noise is as in a plain seeded call
        latents=noise.clone(),
        output_type="latent",
        callback_on_step_end=record,
        callback_on_step_end_tensor_inputs=["latents", "pred_original_sample"],
    )
    return DenoisingTrajectory(timesteps, [noise, *after[:-1]], predictions, after[-1])


def animation_frame_size(frame_size: int) -> tuple[int, int]:
    """(width, height) of one animation frame: two `frame_size` panels, a header and a two-line footer."""
    font = label_font(font_px(frame_size))
    return 2 * frame_size + MARGIN, frame_size + 3 * line_height(font) + 8


def _animation_frame(
    left_image: Image.Image,
    right_image: Image.Image,
    footer: str,
    prompt: str,
    frame_size: int,
    headers: tuple[str, str] = ("noisy xₜ", "predicted x̂₀"),
) -> Image.Image:
    width, height = animation_frame_size(frame_size)
    font = label_font(font_px(frame_size))
    top = line_height(font) + 3
    frame = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(frame)
    for left, image, header in ((0, left_image, headers[0]), (frame_size + MARGIN, right_image, headers[1])):
        draw_lines(draw, fit_lines(header, font, frame_size, 1), font, (left, 1, left + frame_size, top))
        frame.paste(image.convert("L").resize((frame_size, frame_size), Image.Resampling.NEAREST), (left, top))
    text = fit_lines(footer, font, width - 8, 1) + fit_lines(f"“{prompt}”", font, width - 8, 1)
    draw_lines(draw, text, font, (0, top + frame_size + 3, width, height))
    return frame


def denoising_frames(
    pipe: GlyphDiffusionPipeline,
    prompt: str,
    num_inference_steps: int | None = None,
    guidance_scale: float | None = None,
    seed: int = 0,
    frame_size: int = 256,
) -> list[Image.Image]:
    """Frames of the denoising animation: one per scheduler timestep (x_t and the x̂0 predicted from it,
    starting from the pure noise x_T), then the final sample."""
    check_positive("frame_size", frame_size, 16)
    traj = denoising_trajectory(pipe, prompt, num_inference_steps, guidance_scale, seed)
    (prompt,) = check_prompts(prompt)
    n = len(traj.timesteps)
    frames = []
    for i, (t, x_t, x0) in enumerate(zip(traj.timesteps, traj.inputs, traj.predictions)):
        label = f"step {i + 1}/{n} · t = {_format_t(t)}" + (" · pure noise" if i == 0 else "")
        frames.append(_animation_frame(to_pil(x_t)[0], to_pil(x0)[0], label, prompt, frame_size))
    final = to_pil(traj.final)[0]
    last = to_pil(traj.predictions[-1])[0]
    frames.append(
        _animation_frame(final, last, f"done after {n} steps", prompt, frame_size, ("final sample", "last x̂₀"))
    )
    return frames


def save_animation(
    frames: Sequence[Image.Image], path: str | os.PathLike, fps: float = 8, hold_last: float = 1.5
) -> Path:
    """Write frames as a looping GIF (or MP4 with imageio-ffmpeg), atomically; the last frame is held longer.

    (diffusers' `export_to_gif` has one duration for all frames, so the GIF is written with PIL directly.)
    """
    path = Path(path)
    if fps <= 0:
        raise FigureError(f"fps must be > 0, got {fps}.")
    if path.suffix.lower() == ".mp4":
        check_mp4()
        from diffusers.utils import export_to_video

        held = list(frames) + [frames[-1]] * max(0, round(hold_last * fps) - 1)
        with atomic_output(path) as tmp:
            export_to_video([f.convert("RGB") for f in held], str(tmp), fps=fps)
        return path
    durations = [round(1000 / fps)] * (len(frames) - 1) + [round(1000 * max(hold_last, 1 / fps))]
    with atomic_output(path) as tmp:
        frames[0].save(tmp, save_all=True, append_images=list(frames[1:]), duration=durations, loop=0, optimize=False)
    return path


def check_mp4() -> None:
    import importlib.util

    if importlib.util.find_spec("imageio") is None or importlib.util.find_spec("imageio_ffmpeg") is None:
        raise FigureError("MP4 output needs `pip install imageio imageio-ffmpeg`; or write a .gif.")
