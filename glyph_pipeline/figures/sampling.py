# Copyright 2026 The glyffuser developers. Licensed under the Apache License, Version 2.0.
"""See inside diffusion: the figures of "A Visual Guide to How Diffusion Models Work" as tools.

Every figure is a function returning PIL images (for notebooks) and a `glyffuser` subcommand:

- `generate`: sample glyphs for English definitions into a captioned grid.
- `animate`: GIF of the denoising trajectory x_t beside the model's predicted clean glyph x̂0 at each step.
- `steps-grid`: one prompt and seed sampled with 1, 2, 3, 5, 10, 20... steps, for one or more schedulers.
- `noising`: a real glyph noised in closed form to t = 0...T, labelled by t and SNR, per beta schedule.
- `single-step`: the model's x̂0 from pure noise in ONE step (the article's blurry "Gold"), over seeds.

Figures reuse the pipeline itself (its `callback_on_step_end` exposes `latents` and `pred_original_sample`)
rather than a second sampling loop, so what you see is what `pipe(...)` does. Outputs are written to a
temporary file next to the target and renamed into place, so an interrupted run never leaves half a file.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..atomic import atomic_output
from ..hub.pretrained import load_glyph_pipeline
from ..lora import add_lora_args

if TYPE_CHECKING:
    import torch

    from ..pipeline_glyph_diffusion import GlyphDiffusionPipeline

DEFAULT_STEPS_LIST = (1, 2, 3, 5, 10, 20, 50)
DEFAULT_SEEDS = (0, 1, 2, 3, 4, 5, 6, 7)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
MARGIN = 3  # white border around each cell, so neighbouring glyphs don't merge into one picture
VIZ_HINT = "pip install glyph-pipeline[viz]"


class FigureError(ValueError):
    """Bad figure arguments (unknown scheduler, empty prompt, not a pipeline folder...): raised before any work."""


# ----------------------------------------------------------------------------------------------------
# Output and labelling helpers
# ----------------------------------------------------------------------------------------------------


def save_image(image: Image.Image, path: str | os.PathLike) -> Path:
    """Save `image` atomically (format from the suffix)."""
    with atomic_output(path) as tmp:
        image.save(tmp)
    return Path(path)


@functools.lru_cache(maxsize=16)
def label_font(px: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans (has x̂₀, ᾱ, −) if the system has it, else Pillow's default font."""
    try:
        return ImageFont.truetype("DejaVuSans.ttf", px)
    except OSError:
        return ImageFont.load_default(px)


_ASCII = str.maketrans({"₀": "0", "ₜ": "_t", "ᾱ": "a", "−": "-", "≥": ">=", "·": "|", "…": "...", "“": '"', "”": '"'})


def _label_text(text: str, font: Any) -> str:
    """Pillow's fallback font lacks the math symbols: spell them in ASCII there."""
    if "DejaVu" in str(getattr(font, "path", "")):
        return text
    return text.replace("x̂", "x^").translate(_ASCII)


def _font_px(cell_size: int) -> int:
    return max(10, min(18, round(cell_size / 9)))


def _line_height(font: Any) -> int:
    ascent, descent = font.getmetrics()
    return ascent + descent + 1


def fit_lines(text: str, font: Any, width: int, max_lines: int) -> list[str]:
    """Word-wrap `text` to `width` px in at most `max_lines` lines; an ellipsis marks what didn't fit."""
    text = _label_text(" ".join(text.split()), font)
    lines: list[str] = []
    current = ""
    for word in text.split(" "):
        trial = f"{current} {word}".strip()
        if font.getlength(trial) <= width:
            current = trial
            continue
        if current:
            lines.append(current)
        current = word
        while len(current) > 1 and font.getlength(current) > width:  # hard-split words longer than a line
            cut = 1
            while cut < len(current) and font.getlength(current[: cut + 1]) <= width:
                cut += 1
            lines.append(current[:cut])
            current = current[cut:]
    if current:
        lines.append(current)
    if len(lines) > max_lines:
        last = lines[max_lines - 1]
        while last and font.getlength(last + "…") > width:
            last = last[:-1]
        lines = [*lines[: max_lines - 1], last.rstrip() + "…"]
    return lines


def caption_height(cell_size: int, lines: int) -> int:
    """Height in px of a caption block of `lines` lines under a `cell_size` cell."""
    return 0 if lines <= 0 else lines * _line_height(label_font(_font_px(cell_size))) + 4


def tile_size(cell_size: int, caption_lines: int) -> tuple[int, int]:
    """(width, height) of one grid tile: the cell with its margin, plus its caption."""
    side = cell_size + 2 * MARGIN
    return side, side + caption_height(cell_size, caption_lines)


def title_height(width: int, cell_size: int, title: str | None) -> int:
    if not title:
        return 0
    font = label_font(_font_px(cell_size) + 1)
    return len(fit_lines(title, font, width - 2 * MARGIN, 2)) * _line_height(font) + 6


def _draw_lines(draw: ImageDraw.ImageDraw, lines: Sequence[str], font: Any, box: tuple[int, int, int, int]) -> None:
    """Centre `lines` horizontally in `box` (left, top, right, bottom), stacked from the top."""
    left, top, right, _ = box
    y = top
    for line in lines:
        draw.text(((left + right) / 2, y), line, font=font, fill=0, anchor="ma")
        y += _line_height(font)


def _fit_cell(image: Image.Image, cell_size: int) -> Image.Image:
    """Greyscale and `cell_size` square; upscaling uses NEAREST so every model pixel stays visible."""
    image = image.convert("L")
    if image.size != (cell_size, cell_size):
        small = max(image.size) < cell_size
        image = image.resize((cell_size, cell_size), Image.Resampling.NEAREST if small else Image.Resampling.LANCZOS)
    return image


def _tile(image: Image.Image | None, caption: str | Sequence[str], cell_size: int, caption_lines: int) -> Image.Image:
    width, height = tile_size(cell_size, caption_lines)
    tile = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(tile)
    if image is None:  # a cell that could not be made (e.g. a step count the scheduler can't do)
        draw.rectangle([MARGIN, MARGIN, MARGIN + cell_size - 1, MARGIN + cell_size - 1], fill=225)
        draw.line([MARGIN, MARGIN, MARGIN + cell_size - 1, MARGIN + cell_size - 1], fill=170, width=2)
        draw.line([MARGIN, MARGIN + cell_size - 1, MARGIN + cell_size - 1, MARGIN], fill=170, width=2)
    else:
        tile.paste(_fit_cell(image, cell_size), (MARGIN, MARGIN))
    draw.rectangle([MARGIN - 1, MARGIN - 1, MARGIN + cell_size, MARGIN + cell_size], outline=200)
    if caption_lines:
        font = label_font(_font_px(cell_size))
        parts = [caption] if isinstance(caption, str) else list(caption)
        lines: list[str] = []
        for i, part in enumerate(parts):  # later parts get one line each, the first what is left
            room = caption_lines - len(lines) - (len(parts) - i - 1)
            if room > 0 and part:
                lines += fit_lines(part, font, width - 4, room if i == 0 else 1)
        _draw_lines(draw, lines[:caption_lines], font, (0, MARGIN + cell_size + MARGIN + 1, width, height))
    return tile


def _row_label_tile(text: str, cell_size: int, caption_lines: int) -> Image.Image:
    width, height = tile_size(cell_size, caption_lines)
    tile = Image.new("L", (width, height), 255)
    font = label_font(_font_px(cell_size))
    lines = fit_lines(text, font, width - 6, max(1, (height - 8) // _line_height(font)))
    top = (height - len(lines) * _line_height(font)) // 2
    _draw_lines(ImageDraw.Draw(tile), lines, font, (0, top, width, height))
    return tile


def labelled_grid(
    cells: Sequence[Sequence[Image.Image | None]],
    cell_size: int,
    captions: Sequence[Sequence[str | Sequence[str]]] | None = None,
    caption_lines: int = 1,
    row_labels: Sequence[str] | None = None,
    title: str | None = None,
) -> Image.Image:
    """A greyscale grid of `cell_size` cells, each with a caption below, optional row labels and a title.

    Layout: an optional title strip, then `rows` rows of tiles of `tile_size(cell_size, caption_lines)`;
    with `row_labels` the first column holds them. `None` cells are drawn as a crossed-out placeholder.
    """
    from diffusers.utils import make_image_grid

    rows = len(cells)
    cols = max(len(r) for r in cells)
    if captions is None:
        captions, caption_lines = [[""] * cols] * rows, 0
    tiles: list[Image.Image] = []
    for r in range(rows):
        if row_labels is not None:
            tiles.append(_row_label_tile(row_labels[r], cell_size, caption_lines))
        for c in range(cols):
            if c < len(cells[r]):
                tiles.append(_tile(cells[r][c], captions[r][c], cell_size, caption_lines))
            else:  # ragged last row: blank
                tiles.append(Image.new("L", tile_size(cell_size, caption_lines), 255))
    body = make_image_grid(tiles, rows=rows, cols=cols + (row_labels is not None)).convert("L")
    head = title_height(body.width, cell_size, title)
    if not head:
        return body
    canvas = Image.new("L", (body.width, body.height + head), 255)
    canvas.paste(body, (0, head))
    font = label_font(_font_px(cell_size) + 1)
    _draw_lines(
        ImageDraw.Draw(canvas), fit_lines(title, font, body.width - 2 * MARGIN, 2), font, (0, 3, body.width, head)
    )
    return canvas


def _to_pil(x: torch.Tensor) -> list[Image.Image]:
    """(B, 1, H, W) pixels in [-1, 1] (white = +1) -> greyscale images; values outside are clipped."""
    from diffusers.image_processor import VaeImageProcessor

    return VaeImageProcessor(vae_scale_factor=1).postprocess(x.detach().float().cpu().clamp(-1, 1), output_type="pil")


def _format_t(t: Any) -> str:
    t = float(t)
    return str(round(t)) if abs(t - round(t)) < 1e-3 else f"{t:.1f}"


def _shorten(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


# ----------------------------------------------------------------------------------------------------
# Checks (all run before any model is loaded or any step is sampled)
# ----------------------------------------------------------------------------------------------------


def check_scheduler_name(name: str) -> str:
    from ..schedulers import SCHEDULERS

    if name not in SCHEDULERS:
        raise FigureError(f"Unknown scheduler {name!r}; valid names: {', '.join(SCHEDULERS)}.")
    return name


def check_prompts(prompts: str | Sequence[str]) -> list[str]:
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not prompts:
        raise FigureError("No prompt given: pass at least one English definition, e.g. 'gold; metal'.")
    for p in prompts:
        if not isinstance(p, str) or not p.strip():
            raise FigureError(
                f"Empty prompt {p!r}: pass an English definition such as 'gold; metal' (the empty prompt is "
                "the unconditional input, not a glyph description)."
            )
    return [p.strip() for p in prompts]


def check_positive(name: str, value: Any, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise FigureError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return value


def with_recommended(num_inference_steps: int | None = None, guidance_scale: float | None = None) -> tuple[int, float]:
    """The sampling settings given, None replaced by the recommended ones (`schedulers.RECOMMENDED_STEPS` and
    `RECOMMENDED_GUIDANCE`, the pipeline's defaults; imported here so that importing figures stays light)."""
    from ..schedulers import RECOMMENDED_GUIDANCE, RECOMMENDED_STEPS

    steps = RECOMMENDED_STEPS if num_inference_steps is None else num_inference_steps
    return steps, RECOMMENDED_GUIDANCE if guidance_scale is None else guidance_scale


def check_guidance(value: Any) -> float:
    if not isinstance(value, (int, float)) or math.isnan(value) or value < 0:
        raise FigureError(f"guidance must be a number >= 0 (<= 1 turns guidance off), got {value!r}.")
    return float(value)


def check_output(path: str | os.PathLike, suffixes: Sequence[str]) -> Path:
    path = Path(path).expanduser()
    if path.suffix.lower() not in suffixes:
        raise FigureError(f"Output {path} must end in one of {', '.join(suffixes)}.")
    if path.is_dir():
        raise FigureError(f"Output {path} is a directory; give a file name.")
    return path


def steps_problem(scheduler: Any, num_inference_steps: int) -> tuple[int | None, str | None]:
    """(number of UNet calls, None) if `scheduler` can sample with that many steps, else (None, reason).

    The pipeline's own pre-flight check (on a copy: nothing is sampled, the scheduler is untouched).
    """
    from ..pipeline_glyph_diffusion import scheduler_dry_run

    try:
        return scheduler_dry_run(scheduler, num_inference_steps), None
    except ValueError as err:
        return None, str(err)


def check_steps(scheduler: Any, num_inference_steps: int) -> int:
    check_positive("steps", num_inference_steps)
    calls, problem = steps_problem(scheduler, num_inference_steps)
    if problem:
        raise FigureError(problem + " Use more steps or another --scheduler.")
    return calls


# ----------------------------------------------------------------------------------------------------
# Swapping the sampler (models load with `pretrained.load_glyph_pipeline`)
# ----------------------------------------------------------------------------------------------------


def use_scheduler(
    pipe: GlyphDiffusionPipeline, name: str, base_config: dict[str, Any] | None = None, **overrides: Any
):
    """Swap `pipe.scheduler` for sampler `name` on the model's own noise schedule; returns the new scheduler."""
    from ..schedulers import sampling_scheduler

    check_scheduler_name(name)
    # sampling_scheduler carries only the model's noise schedule over to the new sampler.
    base = base_config if base_config is not None else pipe.scheduler.config
    pipe.scheduler = sampling_scheduler(name, base_config=base, **overrides)
    return pipe.scheduler


def scheduler_label(scheduler: Any) -> str:
    """The CLI name of a scheduler instance (e.g. 'dpmsolver++'), else its class name."""
    from ..schedulers import SCHEDULERS

    return next((name for name, (cls, _) in SCHEDULERS.items() if type(scheduler) is cls), type(scheduler).__name__)


def _generator(seed: int) -> torch.Generator:
    import torch

    return torch.Generator("cpu").manual_seed(int(seed))


def _initial_noise(
    pipe: GlyphDiffusionPipeline, seeds: Sequence[int]
) -> tuple[torch.Tensor, list[torch.Generator]]:
    """x_T for each seed, drawn exactly as the pipeline draws it from `generator=manual_seed(seed)`, and the
    generators in the state the pipeline would leave them (ancestral/SDE samplers keep drawing from them).

    Passing both to the pipeline (`latents=`, `generator=`) reproduces a plain seeded call. The noise is
    unscaled (std 1): the pipeline multiplies it by the scheduler's `init_noise_sigma` itself.
    """
    import torch
    from diffusers.utils.torch_utils import randn_tensor

    size = pipe.unet.config.sample_size
    shape = (1, pipe.unet.config.in_channels, size, size)
    generators = [_generator(s) for s in seeds]
    noise = torch.cat([randn_tensor(shape, generator=g, dtype=pipe.unet.dtype) for g in generators])
    return noise, generators


def _model_name(pipe: GlyphDiffusionPipeline) -> str:
    """'user/repo' or the last two folders of a local path ('run1/model' says more than 'model')."""
    source = str(pipe.config.get("_name_or_path", "") or "")
    return "/".join(Path(source).parts[-2:]) or "model"


# ----------------------------------------------------------------------------------------------------
# 1. generate
# ----------------------------------------------------------------------------------------------------


def generate_grid(
    pipe: GlyphDiffusionPipeline,
    prompts: str | Sequence[str],
    num_images: int = 1,
    num_inference_steps: int | None = None,
    guidance_scale: float | None = None,
    seed: int = 0,
    cell_size: int = 128,
    cols: int | None = None,
    batch_size: int = 16,
    title: str | None = None,
) -> Image.Image:
    """Sample `num_images` glyphs per prompt into a grid captioned with the prompts.

    Image j of every prompt uses seed `seed + j`: the same starting noise across prompts, so a column
    shows what the text alone changes. One prompt per row when `num_images > 1`, else up to 6 per row.
    """
    prompts = check_prompts(prompts)
    check_positive("num_images", num_images)
    check_positive("cell_size", cell_size, 8)
    num_inference_steps, guidance_scale = with_recommended(num_inference_steps, guidance_scale)
    guidance_scale = check_guidance(guidance_scale)
    check_steps(pipe.scheduler, num_inference_steps)
    jobs = [(p, seed + j) for p in prompts for j in range(num_images)]
    images: list[Image.Image] = []
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start : start + batch_size]
        images += pipe(
            [p for p, _ in chunk],
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            generator=[_generator(s) for _, s in chunk],
        ).images
    if title is None:
        title = (
            f"{_model_name(pipe)} · {scheduler_label(pipe.scheduler)} · {num_inference_steps} steps · "
            f"guidance {guidance_scale:g}"
        )
    if num_images > 1:  # a row per prompt, labelled on the left; seeds under the cells
        cells = [images[i : i + num_images] for i in range(0, len(images), num_images)]
        captions = [[f"seed {seed + j}" for j in range(num_images)]] * len(prompts)
        return labelled_grid(cells, cell_size, captions, caption_lines=1, row_labels=prompts, title=title)
    cols = cols or min(len(prompts), 6)
    cells = [images[i : i + cols] for i in range(0, len(images), cols)]
    captions = [prompts[i : i + cols] for i in range(0, len(prompts), cols)]
    return labelled_grid(cells, cell_size, captions, caption_lines=2, title=f"{title} · seed {seed}")


# ----------------------------------------------------------------------------------------------------
# 2. animate
# ----------------------------------------------------------------------------------------------------


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
    noise, generators = _initial_noise(pipe, [seed])
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
    font = label_font(_font_px(frame_size))
    return 2 * frame_size + MARGIN, frame_size + 3 * _line_height(font) + 8


def _animation_frame(
    left_image: Image.Image,
    right_image: Image.Image,
    footer: str,
    prompt: str,
    frame_size: int,
    headers: tuple[str, str] = ("noisy xₜ", "predicted x̂₀"),
) -> Image.Image:
    width, height = animation_frame_size(frame_size)
    font = label_font(_font_px(frame_size))
    top = _line_height(font) + 3
    frame = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(frame)
    for left, image, header in ((0, left_image, headers[0]), (frame_size + MARGIN, right_image, headers[1])):
        _draw_lines(draw, fit_lines(header, font, frame_size, 1), font, (left, 1, left + frame_size, top))
        frame.paste(image.convert("L").resize((frame_size, frame_size), Image.Resampling.NEAREST), (left, top))
    text = fit_lines(footer, font, width - 8, 1) + fit_lines(f"“{prompt}”", font, width - 8, 1)
    _draw_lines(draw, text, font, (0, top + frame_size + 3, width, height))
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
        frames.append(_animation_frame(_to_pil(x_t)[0], _to_pil(x0)[0], label, prompt, frame_size))
    final = _to_pil(traj.final)[0]
    last = _to_pil(traj.predictions[-1])[0]
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
        _check_mp4()
        from diffusers.utils import export_to_video

        held = list(frames) + [frames[-1]] * max(0, round(hold_last * fps) - 1)
        with atomic_output(path) as tmp:
            export_to_video([f.convert("RGB") for f in held], str(tmp), fps=fps)
        return path
    durations = [round(1000 / fps)] * (len(frames) - 1) + [round(1000 * max(hold_last, 1 / fps))]
    with atomic_output(path) as tmp:
        frames[0].save(tmp, save_all=True, append_images=list(frames[1:]), duration=durations, loop=0, optimize=False)
    return path


def _check_mp4() -> None:
    import importlib.util

    if importlib.util.find_spec("imageio") is None or importlib.util.find_spec("imageio_ffmpeg") is None:
        raise FigureError("MP4 output needs `pip install imageio imageio-ffmpeg`; or write a .gif.")


# ----------------------------------------------------------------------------------------------------
# 3. steps grid
# ----------------------------------------------------------------------------------------------------


class StepsGrid(NamedTuple):
    image: Image.Image
    skipped: list[tuple[str, int, str]]  # (scheduler, steps, reason) for cells that could not be sampled


def steps_grid(
    pipe: GlyphDiffusionPipeline,
    prompt: str,
    steps_list: Sequence[int] = DEFAULT_STEPS_LIST,
    schedulers: Sequence[str] | None = None,
    guidance_scale: float | None = None,
    seed: int = 0,
    cell_size: int = 96,
    progress: bool = True,
) -> StepsGrid:
    """The same prompt and starting noise sampled with each step count (columns) and scheduler (rows).

    Step counts a scheduler can't do (PNDM below 4) become crossed-out cells listed in `skipped`.
    """
    from tqdm.auto import tqdm

    from ..schedulers import sampling_scheduler

    (prompt,) = check_prompts(prompt)
    steps_list = [check_positive("steps", n) for n in steps_list]
    if not steps_list:
        raise FigureError("steps_list is empty; pass step counts such as 1 2 3 5 10 20.")
    names = [check_scheduler_name(s) for s in schedulers] if schedulers else [None]
    guidance_scale = check_guidance(with_recommended(guidance_scale=guidance_scale)[1])
    original = pipe.scheduler
    base = original.config
    plans = []
    for name in names:
        sampler = sampling_scheduler(name, base_config=base) if name else original
        plans.append((name or scheduler_label(sampler), sampler, [steps_problem(sampler, n) for n in steps_list]))
    skipped = [(label, n, why) for label, _, checks in plans for n, (_, why) in zip(steps_list, checks) if why]
    todo = sum(why is None for _, _, checks in plans for _, why in checks)
    if not todo:
        raise FigureError("No cell can be sampled: " + "; ".join(why for _, _, why in skipped))

    cells, captions = [], []
    bar = tqdm(total=todo, desc="steps grid", unit="image", disable=not progress)
    try:
        for _, sampler, checks in plans:
            pipe.scheduler = sampler
            row, row_caps = [], []
            for n, (calls, why) in zip(steps_list, checks):
                if why:
                    row.append(None)
                    row_caps.append((f"{n} step{'s' * (n > 1)}", "not possible"))
                    continue
                image = pipe(  # a fresh generator per cell: the same x_T (and noise stream) everywhere
                    prompt, num_inference_steps=n, guidance_scale=guidance_scale, generator=_generator(seed)
                ).images[0]
                row.append(image)
                row_caps.append((f"{n} step{'s' * (n > 1)}", f"{calls} UNet call{'s' * (calls > 1)}"))
                bar.update()
            cells.append(row)
            captions.append(row_caps)
    finally:
        pipe.scheduler = original
        bar.close()
    title = f"“{prompt}” · seed {seed} · guidance {guidance_scale:g} · same starting noise in every cell"
    image = labelled_grid(cells, cell_size, captions, caption_lines=2, row_labels=[p[0] for p in plans], title=title)
    return StepsGrid(image, skipped)


# ----------------------------------------------------------------------------------------------------
# 4. forward noising
# ----------------------------------------------------------------------------------------------------

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
        return row["image"].convert("L"), f"{label} “{_shorten(text, 40)}”" if text else label
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

    from ..schedulers import noise_schedule

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
    noise = torch.randn(x0.shape, generator=_generator(seed))
    t = torch.tensor(timesteps)
    batch = len(timesteps)
    cells, captions = [], []
    for config in configs:
        scheduler = DDPMScheduler(**config)
        x_t = scheduler.add_noise(x0.expand(batch, -1, -1, -1), noise.expand(batch, -1, -1, -1), t)
        alpha_bar = scheduler.alphas_cumprod[t].double()
        snr_db = 10 * torch.log10(alpha_bar / (1 - alpha_bar))
        cells.append(_to_pil(x_t))
        captions.append(
            [(f"t = {ti}", f"SNR {db:+.1f} dB".replace("-", "−")) for ti, db in zip(timesteps, snr_db.tolist())]
        )
    labels = [f"{BETA_SCHEDULE_LABELS.get(c['beta_schedule'], c['beta_schedule'])} betas" for c in configs]
    if title is None:
        title = f"Forward noising q(xₜ | x₀) of {num_train_timesteps} steps · same ε in every cell"
    return labelled_grid(cells, cell_size, captions, caption_lines=2, row_labels=labels, title=title)


# ----------------------------------------------------------------------------------------------------
# 5. single-step prediction
# ----------------------------------------------------------------------------------------------------


def single_step_grid(
    pipe: GlyphDiffusionPipeline,
    prompt: str,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    guidance_scale: float | None = None,
    cell_size: int = 96,
    compare_steps: int = 0,
) -> Image.Image:
    """Pure noise x_T (top row) and the model's x̂0 from it in ONE step at t = T-1 (middle row), per seed.

    One step means one UNet call at the noisiest timestep: its x̂0 is the model's best guess of the mean
    glyph for the prompt — the blurry average the article shows. A DDPM sampler with the custom schedule
    `[T-1]` gives exactly that step (a 1-step DDIM/DDPM with "leading" spacing would ask at t=0 instead).
    With `compare_steps` > 0 a last row shows the full sample from the same noise with the current sampler.
    """

    (prompt,) = check_prompts(prompt)
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise FigureError("No seeds given; e.g. --seeds 0 1 2 3.")
    guidance_scale = check_guidance(with_recommended(guidance_scale=guidance_scale)[1])
    if compare_steps:
        check_steps(pipe.scheduler, compare_steps)
    original = pipe.scheduler
    last_t = int(original.config.num_train_timesteps) - 1
    noise, generators = _initial_noise(pipe, seeds)
    captured: list[torch.Tensor] = []

    def capture(p, i: int, t, tensors: dict[str, torch.Tensor]) -> dict:
        captured.append(tensors["pred_original_sample"].detach().float().cpu().clone())
        return {}

    try:
        use_scheduler(pipe, "ddpm", original.config)
        pipe(
            prompt, timesteps=[last_t], guidance_scale=guidance_scale, num_images_per_prompt=len(seeds),
            generator=generators, latents=noise.clone(), output_type="latent",
            callback_on_step_end=capture, callback_on_step_end_tensor_inputs=["pred_original_sample"],
        )
    finally:
        pipe.scheduler = original
    rows = [_to_pil(noise), _to_pil(captured[0])]
    labels = ["pure noise x_T", f"x̂₀ after ONE step (t = {last_t})"]
    if compare_steps:
        rows.append(
            pipe(
                prompt, num_inference_steps=compare_steps, guidance_scale=guidance_scale,
                num_images_per_prompt=len(seeds), generator=[_generator(s) for s in seeds],
            ).images  # fresh generators: the same x_T as the top row, as `generate --seed s` would draw
        )
        labels.append(f"{compare_steps} steps ({scheduler_label(original)})")
    captions = [[f"seed {s}" for s in seeds]] * len(rows)
    title = f"“{prompt}” · one-step prediction from pure noise · guidance {guidance_scale:g}"
    return labelled_grid(rows, cell_size, captions, caption_lines=1, row_labels=labels, title=title)


# ----------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.replace(",", " ").split()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected integers, got {text!r}") from err


def _flat(groups: Sequence[Sequence[int]] | None) -> list[int] | None:
    """`--seeds 0 1 2`, `--seeds '0 1 2'` and `--seeds 0,1,2` all mean [0, 1, 2]."""
    return None if groups is None else [x for group in groups for x in group]


def _add_model_args(parser: argparse.ArgumentParser, steps: bool = True, scheduler_nargs: str | None = None) -> None:
    from ..schedulers import RECOMMENDED_GUIDANCE, RECOMMENDED_SAMPLER, RECOMMENDED_STEPS, SCHEDULERS

    parser.add_argument(
        "--model", default=None,
        help="saved glyph pipeline folder or Hub repo id (default: the shipped pretrained/tiny-32)",
    )
    parser.add_argument(
        "--scheduler", default=[RECOMMENDED_SAMPLER] if scheduler_nargs else RECOMMENDED_SAMPLER,
        nargs=scheduler_nargs, metavar="NAME",
        help=f"sampler{'(s), one row each' if scheduler_nargs else ''}: {', '.join(SCHEDULERS)} "
        f"(default: {RECOMMENDED_SAMPLER})",
    )
    if steps:
        parser.add_argument(
            "--steps", type=int, default=RECOMMENDED_STEPS, help=f"denoising steps (default: {RECOMMENDED_STEPS})"
        )
    parser.add_argument(
        "--guidance", type=float, default=RECOMMENDED_GUIDANCE,
        help=f"classifier-free guidance scale (default: {RECOMMENDED_GUIDANCE:g})",
    )
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    add_lora_args(parser)


def _report_errors(prog: str) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]:
    """CLI runners print a one-line error (exit code 2) instead of a traceback for bad input."""

    def wrap(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        @functools.wraps(run)
        def runner(args: argparse.Namespace) -> int:
            try:
                return run(args)
            except (ValueError, FileNotFoundError, ImportError) as err:
                print(f"glyffuser {prog}: error: {err}", file=sys.stderr)
                return 2

        return runner

    return wrap


def configure_generate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", nargs="+", help="English definitions, one glyph row each, e.g. 'gold; metal'")
    _add_model_args(parser)
    parser.add_argument("--seed", type=int, default=0, help="image j of every prompt uses seed+j (default: 0)")
    parser.add_argument("--num-images", type=int, default=1, help="images per prompt (default: 1)")
    parser.add_argument("--cell-size", type=int, default=128, help="px per glyph in the grid (default: 128)")
    parser.add_argument("--cols", type=int, help="grid columns with --num-images 1 (default: up to 6 prompts a row)")
    parser.add_argument("-o", "--output", type=Path, default=Path("glyphs.png"), help="PNG to write")


@_report_errors("generate")
def run_generate(args: argparse.Namespace) -> int:
    output = check_output(args.output, IMAGE_SUFFIXES)
    prompts = check_prompts(args.prompt)
    check_positive("--num-images", args.num_images)
    check_positive("--steps", args.steps)
    check_positive("--cell-size", args.cell_size, 8)
    check_guidance(args.guidance)
    check_scheduler_name(args.scheduler)
    pipe = load_glyph_pipeline(args.model, args.scheduler, args.device, args.lora, args.lora_scale, args.lora_start)
    grid = generate_grid(
        pipe, prompts, args.num_images, args.steps, args.guidance, args.seed, args.cell_size, args.cols
    )
    print(f"wrote {save_image(grid, output)} ({grid.width}x{grid.height})")
    return 0


def configure_animate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", help="English definition to draw")
    _add_model_args(parser)
    parser.add_argument("--seed", type=int, default=0, help="seed of the starting noise (default: 0)")
    parser.add_argument(
        "--frame-size", type=int, default=256, help="px of each panel, NEAREST-upscaled (default: 256)"
    )
    parser.add_argument("--fps", type=float, default=8, help="frames per second (default: 8)")
    parser.add_argument("--hold-last", type=float, default=1.5, help="seconds to show the final frame (default: 1.5)")
    parser.add_argument(
        "-o", "--output", type=Path, default=Path("denoising.gif"), help=".gif, or .mp4 with imageio-ffmpeg installed"
    )


@_report_errors("animate")
def run_animate(args: argparse.Namespace) -> int:
    output = check_output(args.output, (".gif", ".mp4"))
    if output.suffix.lower() == ".mp4":
        _check_mp4()
    check_prompts(args.prompt)
    check_positive("--steps", args.steps)
    check_positive("--frame-size", args.frame_size, 16)
    check_guidance(args.guidance)
    if args.fps <= 0:
        raise FigureError(f"--fps must be > 0, got {args.fps}.")
    check_scheduler_name(args.scheduler)
    pipe = load_glyph_pipeline(args.model, args.scheduler, args.device, args.lora, args.lora_scale, args.lora_start)
    frames = denoising_frames(pipe, args.prompt, args.steps, args.guidance, args.seed, args.frame_size)
    save_animation(frames, output, args.fps, args.hold_last)
    print(f"wrote {output} ({len(frames)} frames of {frames[0].width}x{frames[0].height})")
    return 0


def configure_steps_grid(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", help="English definition to draw")
    _add_model_args(parser, steps=False, scheduler_nargs="+")
    parser.add_argument(
        "--steps-list", type=_int_list, nargs="+", default=[list(DEFAULT_STEPS_LIST)], metavar="N",
        help="step counts, e.g. 1 2 3 5 10 20 (default: 1 2 3 5 10 20 50)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the shared starting noise (default: 0)")
    parser.add_argument("--cell-size", type=int, default=96, help="px per glyph (default: 96)")
    parser.add_argument("-o", "--output", type=Path, default=Path("steps-grid.png"), help="PNG to write")


@_report_errors("steps-grid")
def run_steps_grid(args: argparse.Namespace) -> int:
    output = check_output(args.output, IMAGE_SUFFIXES)
    check_prompts(args.prompt)
    for name in args.scheduler:
        check_scheduler_name(name)
    steps_list = _flat(args.steps_list)
    for n in steps_list:
        check_positive("--steps-list entries", n)
    check_positive("--cell-size", args.cell_size, 8)
    check_guidance(args.guidance)
    pipe = load_glyph_pipeline(args.model, None, args.device, args.lora, args.lora_scale, args.lora_start)
    result = steps_grid(pipe, args.prompt, steps_list, args.scheduler, args.guidance, args.seed, args.cell_size)
    for name, n, why in result.skipped:
        print(f"glyffuser steps-grid: skipped {name} with {n} step(s): {why}", file=sys.stderr)
    print(f"wrote {save_image(result.image, output)} ({result.image.width}x{result.image.height})")
    return 0


def configure_noising(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("glyph (one of --character or --image)")
    src.add_argument("--character", help="the glyph to noise, e.g. 永 (from --dataset, else rendered with the font)")
    src.add_argument("--dataset", help="glyph dataset (save_to_disk folder, parquet file or Hub name)")
    src.add_argument("--split", help="dataset split to search (default: all)")
    src.add_argument("--image", type=Path, help="an image file instead of a character")
    src.add_argument("--size", type=int, default=64, help="px when rendering --character without --dataset (64)")
    parser.add_argument(
        "--beta-schedules", nargs="+", default=["linear"], metavar="SCHEDULE",
        help="one row each: linear, scaled_linear, squaredcos_cap_v2 (alias: cosine). Default: linear",
    )
    parser.add_argument(
        "--timesteps", type=_int_list, nargs="+", metavar="T",
        help="t values, e.g. 0 100 250 500 999 (default: evenly spaced)",
    )
    parser.add_argument("--num-columns", type=int, default=9, help="evenly spaced t values when --timesteps is unset")
    parser.add_argument("--num-train-timesteps", type=int, default=1000, help="T (default: 1000)")
    parser.add_argument("--beta-start", type=float, default=0.0001, help="first beta (linear schedules)")
    parser.add_argument("--beta-end", type=float, default=0.02, help="last beta (linear schedules)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise ε (default: 0)")
    parser.add_argument("--cell-size", type=int, default=96, help="px per cell (default: 96)")
    parser.add_argument("-o", "--output", type=Path, default=Path("noising.png"), help="PNG to write")


@_report_errors("noising")
def run_noising(args: argparse.Namespace) -> int:
    output = check_output(args.output, IMAGE_SUFFIXES)
    check_positive("--cell-size", args.cell_size, 8)
    check_positive("--size", args.size, 8)
    image, label = load_glyph_image(args.character, args.dataset, args.image, args.size, args.split)
    title = f"Forward noising q(xₜ | x₀) of {label} · same ε in every cell"
    strip = noising_strip(
        image, args.beta_schedules, _flat(args.timesteps), args.num_columns, args.num_train_timesteps, args.beta_start,
        args.beta_end, args.seed, args.cell_size, title,
    )
    print(f"wrote {save_image(strip, output)} ({strip.width}x{strip.height})")
    return 0


def configure_single_step(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", help="English definition, e.g. 'gold'")
    _add_model_args(parser, steps=False)
    parser.add_argument(
        "--seeds", type=_int_list, nargs="+", default=[list(DEFAULT_SEEDS)], metavar="S",
        help="e.g. 0 1 2 3 (default: 0..7)",
    )
    parser.add_argument(
        "--compare-steps", type=int, default=0,
        help="add a row sampled with this many steps by --scheduler (default: off)",
    )
    parser.add_argument("--cell-size", type=int, default=96, help="px per glyph (default: 96)")
    parser.add_argument("-o", "--output", type=Path, default=Path("single-step.png"), help="PNG to write")


@_report_errors("single-step")
def run_single_step(args: argparse.Namespace) -> int:
    output = check_output(args.output, IMAGE_SUFFIXES)
    check_prompts(args.prompt)
    check_positive("--cell-size", args.cell_size, 8)
    check_positive("--compare-steps", args.compare_steps, 0)
    check_guidance(args.guidance)
    seeds = _flat(args.seeds)
    if not seeds:
        raise FigureError("--seeds is empty; e.g. --seeds 0 1 2 3.")
    check_scheduler_name(args.scheduler)
    pipe = load_glyph_pipeline(args.model, args.scheduler, args.device, args.lora, args.lora_scale, args.lora_start)
    grid = single_step_grid(pipe, args.prompt, seeds, args.guidance, args.cell_size, args.compare_steps)
    print(f"wrote {save_image(grid, output)} ({grid.width}x{grid.height})")
    return 0
