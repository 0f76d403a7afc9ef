# Copyright 2026 The glyffuser developers. Licensed under the Apache License, Version 2.0.
"""What the app does, without Gradio: check a request, sample its glyphs and figures, read and match them.

`GlyphApp` holds what is loaded once (the model, the radical judge, the training glyphs of `app.nearest`)
and only reads it afterwards: each request builds its own pipeline object with the chosen sampler (sharing
the weights) and returns its results to its own caller, so two users never see each other's glyphs.
`validate_request` refuses bad input with a message that names the fix, before any compute. The page
itself (`app.ui`) only lays this out.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
import unicodedata
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from ..demo import ARTICLE_PROMPTS
from ..hub.pretrained import SHIPPED_KAI_LORA_START, CallDefaults
from .nearest import Neighbour, RealGlyphs, ensure_dataset

if TYPE_CHECKING:
    from ..evaluation.judge import GlyphJudge
    from ..pipeline_glyph_diffusion import GlyphDiffusionPipeline
    from ..pipeline_glyph_upscale import GlyphUpscalePipeline

#: The article's prompts (`demo.ARTICLE_PROMPTS`), offered as one-click examples.
EXAMPLE_PROMPTS = tuple(ARTICLE_PROMPTS)
DEFAULT_JUDGE = Path(__file__).resolve().parents[2] / "artifacts" / "judge-32"
BASE_TYPEFACE = "Base model"  # the typeface choice that draws without the LoRA (its scale 0)
MAX_GUIDANCE = 30.0  # beyond this classifier-free guidance only saturates the glyph
MAX_SEED = 2**32 - 1
SINGLE_STEP_MAX_SEEDS = 8
ANIMATION_FRAME_SIZE = 160
ANIMATION_MAX_FRAMES = 61  # long DDPM runs are subsampled, keeping the first and the last frames
ANIMATION_DIR = Path(tempfile.gettempdir()) / "glyffuser-app"
ANIMATION_MAX_AGE_S = 3600


class AppInputError(ValueError):
    """Input the page refuses before any compute; the message is shown to the user."""


# ----------------------------------------------------------------------------------------------------
# Limits and requests
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """What one request may ask of this machine."""

    max_images: int = 16  # glyphs per run (definitions x images per prompt)
    max_steps: int = 1000
    max_guidance: float = MAX_GUIDANCE
    max_queue: int = 16  # requests waiting in Gradio's queue; more are turned away with a message

    @classmethod
    def for_device(
        cls, device: str, max_images: int | None = None, max_steps: int | None = None, max_queue: int | None = None
    ) -> Limits:
        """CPU: 16 glyphs a run; an accelerator: 64. Explicit values win."""
        default_images = 16 if device == "cpu" else 64
        return cls(
            max_images=max_images or default_images,
            max_steps=max_steps or cls.max_steps,
            max_queue=max_queue or cls.max_queue,
        )


@dataclass(frozen=True)
class GlyphRequest:
    """One validated request: every glyph is (definition, seed); image j of every definition uses seed + j."""

    prompts: tuple[str, ...]
    negative_prompt: str | None
    sampler: str
    steps: int
    guidance: float
    seed: int
    images_per_prompt: int
    lora_scale: float | None = None  # None: no LoRA loaded; 0: the base model; 1: the LoRA's typeface

    @property
    def jobs(self) -> list[tuple[str, int]]:
        return [(p, self.seed + j) for p in self.prompts for j in range(self.images_per_prompt)]


def _whole_number(name: str, value: Any, hint: str) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise AppInputError(f"{name} must be a whole number; it is empty or not a number. {hint}") from None
    if not math.isfinite(number) or not number.is_integer():
        raise AppInputError(f"{name} must be a whole number, got {value!r}. {hint}")
    return int(number)


def validate_request(
    definitions: Any,
    negative_prompt: Any,
    sampler: Any,
    steps: Any,
    guidance: Any,
    seed: Any,
    images_per_prompt: Any,
    limits: Limits,
    scheduler_config: dict[str, Any] | None = None,
    typeface: Any = None,
    typefaces: Sequence[str] = (),
) -> tuple[GlyphRequest, list[str]]:
    """Check every input before any compute: (request, warnings) or `AppInputError` with a message that names
    the fix. With `scheduler_config` (the model's), the step count is also checked against the sampler. With
    `typefaces` (the base model, then a loaded LoRA's typeface), `typeface` picks one of them."""
    from ..schedulers import (
        RECOMMENDED_GUIDANCE,
        RECOMMENDED_SAMPLER,
        RECOMMENDED_STEPS,
        SCHEDULERS,
        sampling_scheduler,
        steps_problem,
    )

    if definitions is not None and not isinstance(definitions, str):
        raise AppInputError("Definitions must be text: English definitions, one per line.")
    prompts = tuple(line.strip() for line in (definitions or "").splitlines() if line.strip())
    if not prompts:
        raise AppInputError("Type at least one English definition (one per line), e.g. “gold; metal”.")
    if negative_prompt is not None and not isinstance(negative_prompt, str):
        raise AppInputError("The negative prompt must be text (or empty).")
    negative = " ".join((negative_prompt or "").split()) or None
    if sampler not in SCHEDULERS:
        raise AppInputError(f"Unknown sampler {sampler!r}; choose one of {', '.join(SCHEDULERS)}.")

    steps = _whole_number("Steps", steps, f"Try {RECOMMENDED_STEPS} with {RECOMMENDED_SAMPLER}.")
    if steps < 1:
        raise AppInputError(
            f"Steps must be at least 1, got {steps}. Try {RECOMMENDED_STEPS} with {RECOMMENDED_SAMPLER}."
        )
    if steps > limits.max_steps:
        raise AppInputError(f"Steps must be at most {limits.max_steps} on this machine, got {steps}.")
    if scheduler_config is not None:
        _, problem = steps_problem(sampling_scheduler(sampler, base_config=scheduler_config), steps)
        if problem:
            raise AppInputError(f"{problem} Use more steps or another sampler.")

    try:
        guidance = float(guidance)
    except (TypeError, ValueError):
        raise AppInputError(
            f"Guidance must be a number, e.g. {RECOMMENDED_GUIDANCE:g} (1 or less turns guidance off)."
        ) from None
    if not math.isfinite(guidance) or guidance < 0 or guidance > limits.max_guidance:
        raise AppInputError(
            f"Guidance {guidance:g} is outside the useful range 0 to {limits.max_guidance:g}: about "
            f"{RECOMMENDED_GUIDANCE:g} works best, "
            "1 or less turns guidance off."
        )
    seed = _whole_number("Seed", seed, f"Use 0 to {MAX_SEED}.")
    if not 0 <= seed <= MAX_SEED:
        raise AppInputError(f"Seed must be between 0 and {MAX_SEED}, got {seed}.")
    per_prompt = _whole_number("Images per prompt", images_per_prompt, "Try 4.")
    if per_prompt < 1:
        raise AppInputError(f"Images per prompt must be at least 1, got {per_prompt}.")
    total = len(prompts) * per_prompt
    if total > limits.max_images:
        raise AppInputError(
            f"That is {total} glyphs ({len(prompts)} definition{'s' * (len(prompts) > 1)} × {per_prompt} "
            f"image{'s' * (per_prompt > 1)}); this machine makes at most {limits.max_images} per run. "
            "Use fewer definitions or fewer images per prompt."
        )
    warnings = []
    if negative and guidance <= 1:
        warnings.append("The negative prompt acts through guidance only: it has no effect at guidance 1 or less.")
    lora_scale = None
    if typefaces:
        typeface = typefaces[0] if typeface in (None, "") else typeface
        if typeface not in typefaces:
            raise AppInputError(f"Unknown typeface {typeface!r}; choose one of {', '.join(typefaces)}.")
        lora_scale = 0.0 if typeface == BASE_TYPEFACE else 1.0
    elif typeface not in (None, "", BASE_TYPEFACE):
        raise AppInputError(f"No typeface LoRA is loaded; start the app with --lora to offer {typeface!r}.")
    request = GlyphRequest(prompts, negative, sampler, steps, guidance, seed, per_prompt, lora_scale)
    return request, warnings


# ----------------------------------------------------------------------------------------------------
# Generating
# ----------------------------------------------------------------------------------------------------


@dataclass
class GlyphResult:
    prompt: str
    seed: int
    image: Image.Image
    radical: int | None = None  # the judge's reading
    expected: dict[str, int] = field(default_factory=dict)  # words of the prompt with a known radical
    nearest: list[Neighbour] = field(default_factory=list)

    @property
    def caption(self) -> str:
        text = f"{self.prompt} · seed {self.seed}"
        return text + (f" · {radical_character(self.radical)} {self.radical}" if self.radical else "")


@dataclass
class GlyphResults:
    request: GlyphRequest
    glyphs: list[GlyphResult]
    animation: Path
    single_step: Image.Image
    seconds: float


def radical_character(radical: int) -> str:
    """The radical as its ordinary CJK character (⾦ U+2FA6 -> 金 U+91D1), which every CJK font has."""
    from ..evaluation.metrics import radical_symbol

    return unicodedata.normalize("NFKC", radical_symbol(radical))


def expected_radicals(prompt: str) -> dict[str, int]:
    """Words of `prompt` whose radical the article's probes know ("gold" -> 167, "water" -> 85 ...)."""
    from ..evaluation.metrics import PROBES

    words = "".join(c if c.isalpha() else " " for c in prompt.lower()).split()
    return {w: PROBES[w] for w in dict.fromkeys(words) if w in PROBES}


def _prune_animations(folder: Path, max_age_s: float = ANIMATION_MAX_AGE_S) -> None:
    now = time.time()
    for old in folder.glob("*.gif"):
        try:
            if now - old.stat().st_mtime > max_age_s:
                old.unlink()
        except OSError:
            pass


class GlyphApp:
    """What the page needs, loaded once: the model, the judge and the training glyphs (each optional but the
    model; `notes` says what is missing). Its methods only read them."""

    def __init__(
        self,
        pipe: GlyphDiffusionPipeline,
        judge: GlyphJudge | None = None,
        real: RealGlyphs | None = None,
        limits: Limits | None = None,
        model_name: str = "model",
        notes: Sequence[str] = (),
        lora_typeface: str | None = None,
        lora_start: float = 0.0,
        upscaler: GlyphUpscalePipeline | None = None,
        upscale_settings: dict[str, int] | None = None,
    ):
        """`lora_typeface`: the name of the typeface LoRA loaded into `pipe` (offered beside the base model), drawn
        with `lora_start` of the steps (the first ones) left to the base model. `upscaler`: the stage that turns
        the base model's glyphs into the 128 px ones shown (the judge and the nearest glyphs read the base size)."""
        self.pipe = pipe
        self.judge = judge
        self.real = real
        self.limits = limits or Limits.for_device(pipe.device.type)
        self.model_name = model_name
        self.notes = list(notes)
        self.typefaces = (BASE_TYPEFACE, lora_typeface) if lora_typeface else ()
        self.lora_start = lora_start
        self.upscaler = upscaler
        self.upscale_settings = dict(upscale_settings or {})  # the upscaler's num_inference_steps, noise_level

    @classmethod
    def load(
        cls,
        model: str | os.PathLike | None = None,
        dataset: str | os.PathLike | None = None,
        judge: str | os.PathLike | None = DEFAULT_JUDGE,
        device: str | None = None,
        limits: dict[str, int | None] | None = None,
        lora: str | os.PathLike | None = None,
        lora_start: float | None = None,
        upscaler: str | None = None,
        upscale_steps: int | None = None,
        upscale_noise_level: int | None = None,
    ) -> GlyphApp:
        """Load the model (default: the shipped one, with its Kai-brush LoRA), a typeface LoRA, the judge and the
        training glyphs (built once if needed). A missing model or a `lora` that does not load is an error; a
        missing judge or dataset only disables its panel (see `notes`). `lora_start` (default: the shipped LoRA's
        recommended value for it, else 0): the share of the steps drawn by the base model before the LoRA."""
        from ..hub.pretrained import SHIPPED_KAI_LORA, check_lora_settings, load_glyph_pipeline, resolve_model
        from ..lora import lora_typeface
        from ..upscale import check_upscaler_settings, upscaler_for

        source = resolve_model(model)
        if lora is None and model is None and SHIPPED_KAI_LORA.is_dir():
            lora = SHIPPED_KAI_LORA
        if lora_start is None:
            shipped = lora is not None and Path(lora).resolve() == SHIPPED_KAI_LORA.resolve()
            lora_start = SHIPPED_KAI_LORA_START if shipped else 0.0
        check_lora_settings(lora, lora_start=lora_start)
        check_upscaler_settings(upscaler, upscale_steps, upscale_noise_level)  # before anything loads
        pipe = load_glyph_pipeline(source, None, device, lora=lora)
        loaded_upscaler, skipped = upscaler_for(pipe, upscaler, device)  # None: the shipped one, when it fits
        typeface = None
        if lora is not None:
            typeface = f"{lora_typeface(lora) or Path(lora).name} (LoRA)"
        notes = [f"Glyphs at the model's size: {skipped}."] if skipped else []
        loaded_judge = None
        if judge is not None:
            try:
                from ..evaluation.judge import load_judge

                loaded_judge = load_judge(judge).to(pipe.device)
            except (OSError, ValueError) as err:
                notes.append(f"No radical readings: {err}")
        real = None
        try:
            real = RealGlyphs.from_dataset(ensure_dataset(dataset))
        except (OSError, ValueError, ImportError) as err:
            notes.append(f"No nearest real glyphs: {err}")
        limits = Limits.for_device(pipe.device.type, **(limits or {}))
        return cls(
            pipe, loaded_judge, real, limits, model_name=os.fspath(source), notes=notes, lora_typeface=typeface,
            lora_start=lora_start, upscaler=loaded_upscaler,
            upscale_settings={k: v for k, v in (("num_inference_steps", upscale_steps),
                                                ("noise_level", upscale_noise_level)) if v is not None},
        )

    # -------------------------------------------------------------------------------------------------
    def validate(self, *inputs: Any, typeface: Any = None) -> tuple[GlyphRequest, list[str]]:
        return validate_request(
            *inputs, limits=self.limits, scheduler_config=self.pipe.scheduler.config, typeface=typeface,
            typefaces=self.typefaces,
        )

    def request_pipeline(self, sampler: str) -> GlyphDiffusionPipeline:
        """A new pipeline object for one request: the shared weights, its own scheduler and progress bar."""
        from ..schedulers import use_scheduler

        base = self.pipe
        pipe = type(base)(
            **base.components,
            max_sequence_length=base.config.max_sequence_length,
            text_encoder_source=base.config.text_encoder_source,
        )
        use_scheduler(pipe, sampler, base.scheduler.config)
        return pipe

    def generate(self, request: GlyphRequest, progress: Callable[..., Any] | None = None) -> GlyphResults:
        """Sample every glyph, the first one's denoising animation and one-step view, then read and match them."""
        import torch

        from ..figures.animation import denoising_frames, save_animation
        from ..figures.diffusion import seed_generator, single_step_grid

        def stage(fraction: float, text: str) -> None:
            if progress is not None:
                progress(fraction, desc=text)

        start = time.perf_counter()
        pipe = self.request_pipeline(request.sampler)
        scale = None if request.lora_scale is None else {"scale": request.lora_scale}
        figure_pipe = CallDefaults(
            pipe, negative_prompt=request.negative_prompt, cross_attention_kwargs=scale,
            lora_start=self.lora_start if request.lora_scale else None,
        )
        jobs = request.jobs
        sampling = f"Sampling {len(jobs)} glyph{'s' * (len(jobs) > 1)}"
        stage(0.0, sampling)
        pipe.set_progress_bar_config(desc=sampling, leave=False)
        generators = [seed_generator(s) for _, s in jobs]  # continued by the upscaler, as in `UpscaledPipeline`
        with torch.inference_mode():
            drawn = figure_pipe(
                [p for p, _ in jobs],
                negative_prompt=[request.negative_prompt] * len(jobs) if request.negative_prompt else None,
                num_inference_steps=request.steps,
                guidance_scale=request.guidance,
                generator=generators,
                output_type="pt",
            ).images
            images = pipe.image_processor.numpy_to_pil(pipe.image_processor.pt_to_numpy(drawn))
            shown = images
            if self.upscaler is not None:
                stage(0.4, f"Upscaling to {self.upscaler.output_size} px")
                shown = self.upscaler(drawn, generator=generators, **self.upscale_settings).images
            stage(0.5, "Denoising animation of the first glyph")
            pipe.set_progress_bar_config(desc="Denoising animation", leave=False)
            frames = denoising_frames(
                figure_pipe, request.prompts[0], request.steps, request.guidance, request.seed, ANIMATION_FRAME_SIZE
            )
            stage(0.8, "One-step prediction from pure noise")
            seeds = [request.seed + j for j in range(min(request.images_per_prompt, SINGLE_STEP_MAX_SEEDS))]
            single = single_step_grid(figure_pipe, request.prompts[0], seeds, request.guidance, cell_size=64)
        if len(frames) > ANIMATION_MAX_FRAMES:
            keep = np.unique(np.linspace(0, len(frames) - 2, ANIMATION_MAX_FRAMES - 1).round().astype(int))
            frames = [frames[i] for i in keep] + [frames[-1]]
        ANIMATION_DIR.mkdir(parents=True, exist_ok=True)
        _prune_animations(ANIMATION_DIR)
        animation = save_animation(frames, ANIMATION_DIR / f"denoising-{uuid.uuid4().hex}.gif", fps=8, hold_last=1.5)

        stage(0.95, "Reading radicals and finding the nearest real glyphs")
        glyphs = [GlyphResult(p, s, im, expected=expected_radicals(p)) for (p, s), im in zip(jobs, shown)]
        if self.judge is not None:
            from ..evaluation.metrics import judge_readings

            _, radicals = judge_readings(self.judge, images)
            for glyph, radical in zip(glyphs, radicals.tolist()):
                glyph.radical = int(radical)
        if self.real is not None:
            for glyph, neighbours in zip(glyphs, self.real.nearest(images)):
                glyph.nearest = neighbours
        return GlyphResults(request, glyphs, animation, single, time.perf_counter() - start)
