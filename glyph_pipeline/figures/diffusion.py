# Copyright 2026 The glyffuser developers. Licensed under the Apache License, Version 2.0.
"""Sampling figures: what the pipeline draws for a prompt, over prompts, step counts and seeds.

- `generate_grid`: glyphs for English definitions in a captioned grid (`glyffuser generate`).
- `steps_grid`: one prompt and seed sampled with 1, 2, 3, 5, 10, 20... steps per scheduler (`glyffuser steps-grid`).
- `single_step_grid`: the model's x̂0 from pure noise in ONE step (the article's blurry "Gold"), over seeds
  (`glyffuser single-step`).

Figures reuse the pipeline itself (its `callback_on_step_end` exposes `latents` and `pred_original_sample`)
rather than a second sampling loop, so what you see is what `pipe(...)` does. Every argument is checked before
a step is sampled. The denoising animation is `figures.animation`, the forward process `figures.noising`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from PIL import Image

from ..schedulers import (
    SCHEDULERS,
    sampling_scheduler,
    scheduler_label,
    steps_problem,
    use_scheduler,
    with_recommended,
)
from .layout import FigureError, check_positive, labelled_grid, to_pil

if TYPE_CHECKING:
    import torch

    from ..pipeline_glyph_diffusion import GlyphDiffusionPipeline

DEFAULT_STEPS_LIST = (1, 2, 3, 5, 10, 20, 50)
DEFAULT_SEEDS = (0, 1, 2, 3, 4, 5, 6, 7)


# ----------------------------------------------------------------------------------------------------
# Checks (all run before any model is loaded or any step is sampled)
# ----------------------------------------------------------------------------------------------------


def check_scheduler_name(name: str) -> str:
    """`name` if it is a sampler of `schedulers.SCHEDULERS`: a typo fails before the model loads."""
    if name not in SCHEDULERS:
        raise FigureError(f"Unknown scheduler {name!r}; valid names: {', '.join(SCHEDULERS)}.")
    return name


def check_prompts(prompts: str | Sequence[str]) -> list[str]:
    """The prompts as a stripped list; none, or an empty one (the unconditional input), is refused."""
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


def check_guidance(value: Any) -> float:
    """The guidance scale as a float >= 0 (a NaN or negative scale would silently give noise)."""
    if not isinstance(value, (int, float)) or math.isnan(value) or value < 0:
        raise FigureError(f"guidance must be a number >= 0 (<= 1 turns guidance off), got {value!r}.")
    return float(value)


def check_steps(scheduler: Any, num_inference_steps: int) -> int:
    """UNet calls for `num_inference_steps` with `scheduler`, or `FigureError` if it cannot sample that many."""
    check_positive("steps", num_inference_steps)
    calls, problem = steps_problem(scheduler, num_inference_steps)
    if problem:
        raise FigureError(problem + " Use more steps or another --scheduler.")
    return calls


# ----------------------------------------------------------------------------------------------------
# Seeded noise, as the pipeline draws it
# ----------------------------------------------------------------------------------------------------


def seed_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded as `glyffuser generate --seed` seeds it: the same seed, the same x_T anywhere."""
    import torch

    return torch.Generator("cpu").manual_seed(int(seed))


def initial_noise(
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
    generators = [seed_generator(s) for s in seeds]
    noise = torch.cat([randn_tensor(shape, generator=g, dtype=pipe.unet.dtype) for g in generators])
    return noise, generators


def _model_name(pipe: GlyphDiffusionPipeline) -> str:
    """'user/repo' or the last two folders of a local path ('run1/model' says more than 'model')."""
    source = str(pipe.config.get("_name_or_path", "") or "")
    return "/".join(Path(source).parts[-2:]) or "model"


# ----------------------------------------------------------------------------------------------------
# generate
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
            generator=[seed_generator(s) for _, s in chunk],
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
# steps grid
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
                    prompt, num_inference_steps=n, guidance_scale=guidance_scale, generator=seed_generator(seed)
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
# single-step prediction
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
    noise, generators = initial_noise(pipe, seeds)
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
    rows = [to_pil(noise), to_pil(captured[0])]
    labels = ["pure noise x_T", f"x̂₀ after ONE step (t = {last_t})"]
    if compare_steps:
        rows.append(
            pipe(
                prompt, num_inference_steps=compare_steps, guidance_scale=guidance_scale,
                num_images_per_prompt=len(seeds), generator=[seed_generator(s) for s in seeds],
            ).images  # fresh generators: the same x_T as the top row, as `generate --seed s` would draw
        )
        labels.append(f"{compare_steps} steps ({scheduler_label(original)})")
    captions = [[f"seed {s}" for s in seeds]] * len(rows)
    title = f"“{prompt}” · one-step prediction from pure noise · guidance {guidance_scale:g}"
    return labelled_grid(rows, cell_size, captions, caption_lines=1, row_labels=labels, title=title)
