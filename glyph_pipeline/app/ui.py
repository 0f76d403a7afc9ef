# Copyright 2026 The glyffuser developers. Licensed under the Apache License, Version 2.0.
"""`glyffuser app`: a Gradio page to play with a glyph model (Spaces: the repository's `app.py` runs it).

Type English definitions (one per line), pick a sampler, steps, guidance, seed and images per prompt; the
page shows

* the glyphs, each labelled with its definition, seed and the radical the judge reads in it;
* the denoising animation of the first glyph (x_t beside the predicted clean glyph x̂0) and the model's
  one-step x̂0 from pure noise — the article's figures, made by `glyph_pipeline.figures.sampling`;
* for every glyph, the Kangxi radical the glyph judge (`artifacts/judge-32`) reads and the 3 nearest real
  glyphs of the training set (pixel distance at the dataset's resolution, with their definitions), so you
  can see whether the model invents or copies.

The model, the judge and the decoded training glyphs are loaded once and only read afterwards. Each request
builds its own pipeline object with the chosen sampler (sharing the weights) and returns its results to its
own caller, so two users never see each other's glyphs. Bad input is refused with a message on the page
before any compute. Needs the `[app]` extra: ``pip install 'glyph-pipeline[app]'``.
"""

from __future__ import annotations

import argparse
import base64
import gc
import html
import io
import logging
import math
import os
import sys
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

if TYPE_CHECKING:
    import torch

    from ..evaluation.judge import GlyphJudge
    from ..pipeline_glyph_diffusion import GlyphDiffusionPipeline

logger = logging.getLogger(__name__)

#: The article's prompts (`demo.ARTICLE_PROMPTS`), offered as one-click examples.
EXAMPLE_PROMPTS = tuple(ARTICLE_PROMPTS)
DEFAULT_JUDGE = Path(__file__).resolve().parents[1] / "artifacts" / "judge-32"
BASE_TYPEFACE = "Base model"  # the typeface choice that draws without the LoRA (its scale 0)
DATASET_SIZE = 32  # px of the training glyphs the nearest-glyph panel compares with
NEAREST_K = 3
MAX_GUIDANCE = 30.0  # beyond this classifier-free guidance only saturates the glyph
MAX_SEED = 2**32 - 1
SINGLE_STEP_MAX_SEEDS = 8
ANIMATION_FRAME_SIZE = 160
ANIMATION_MAX_FRAMES = 61  # long DDPM runs are subsampled, keeping the first and the last frames
ANIMATION_DIR = Path(tempfile.gettempdir()) / "glyffuser-app"
ANIMATION_MAX_AGE_S = 3600
APP_HINT = "pip install 'glyph-pipeline[app]'"

CSS = """
#glyph-gallery img, .glyph-card img { image-rendering: pixelated; }
#glyph-gallery .caption-label { max-width: 96%; }
.glyph-cards { display: flex; flex-direction: column; gap: 6px; }
.glyph-card { display: flex; gap: 14px; align-items: center; padding: 6px 8px; border: 1px solid #ddd;
  border-radius: 6px; }
.glyph-card .gen { display: flex; flex-direction: column; align-items: center; min-width: 110px; }
.glyph-card .gen img { width: 72px; height: 72px; border: 1px solid #ccc; background: #fff; }
.glyph-card .caption { font-size: 0.85em; text-align: center; }
.glyph-card .judge { min-width: 150px; }
.glyph-card .judge .radical { font-size: 1.5em; }
.glyph-card .match { color: #117a2e; } .glyph-card .miss { color: #a33; }
.glyph-card ol.nearest { display: flex; gap: 10px; list-style: none; margin: 0; padding: 0; }
.glyph-card ol.nearest li { display: flex; gap: 6px; align-items: center; max-width: 230px; }
.glyph-card ol.nearest img { width: 48px; height: 48px; border: 1px solid #ccc; background: #fff; }
.glyph-card ol.nearest .char { font-size: 1.6em; }
.glyph-card ol.nearest .def { font-size: 0.8em; }
.glyph-card ol.nearest .dist { font-size: 0.75em; color: #666; }
"""


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
    from ..figures.sampling import steps_problem
    from ..schedulers import (
        RECOMMENDED_GUIDANCE,
        RECOMMENDED_SAMPLER,
        RECOMMENDED_STEPS,
        SCHEDULERS,
        sampling_scheduler,
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
# The training glyphs, for "nearest real glyphs"
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Neighbour:
    character: str
    text: str
    radical: int
    distance: float  # RMS pixel difference, pixels in [0, 1]
    image: Image.Image


def resize_glyph(image: Image.Image, size: int) -> Image.Image:
    """Greyscale at `size` px, resized as `judge.decode_split` resizes the dataset (box down, bilinear up)."""
    image = image.convert("L")
    if image.size != (size, size):
        image = image.resize((size, size), Image.BOX if image.size[0] > size else Image.BILINEAR)
    return image


class RealGlyphs:
    """The training split decoded once (uint8) with a nearest-neighbour search by pixel distance."""

    def __init__(self, images: torch.Tensor, characters: Sequence[str], texts: Sequence[str], radicals: Sequence[int]):
        import torch

        if not (len(images) == len(characters) == len(texts) == len(radicals)) or len(images) == 0:
            raise ValueError("RealGlyphs needs as many characters, texts and radicals as images (and at least one).")
        self.images = images
        self.characters = list(characters)
        self.texts = list(texts)
        self.radicals = [int(r) for r in radicals]
        self.size = int(images.shape[-1])
        self._flat = images.reshape(len(images), -1).to(torch.float32) / 255.0
        self._sq_norms = (self._flat * self._flat).sum(dim=1)

    def __len__(self) -> int:
        return len(self.characters)

    @classmethod
    def from_dataset(cls, source: str | os.PathLike, split: str = "train") -> RealGlyphs:
        """Decode `split` of a glyph dataset (save_to_disk folder, parquet file or Hub name) at its own size."""
        from ..data.dataset import load_glyph_dataset
        from ..evaluation.judge import decode_split

        splits = load_glyph_dataset(source)
        if split not in splits:
            raise ValueError(f"Dataset {source} has no {split!r} split (has {', '.join(splits)}).")
        ds = splits[split]
        size = ds[0]["image"].size[0]
        arrays = decode_split(ds, size)
        if not arrays.characters or not arrays.texts:
            raise ValueError(f"Dataset {source} needs the columns 'character' and 'text' for the nearest-glyph panel.")
        return cls(arrays.images, arrays.characters, arrays.texts, arrays.radicals.tolist())

    def nearest(self, images: Sequence[Image.Image], k: int = NEAREST_K) -> list[list[Neighbour]]:
        """The `k` training glyphs closest to each image (RMS pixel difference at the dataset's size)."""
        import torch

        from ..evaluation.metrics import nearest_glyphs

        x = torch.from_numpy(np.stack([np.asarray(resize_glyph(im, self.size)) for im in images]))
        x = x.reshape(len(images), -1).to(torch.float32) / 255.0
        rms, indices = nearest_glyphs(x, self._flat, k, self._sq_norms)
        return [
            [
                Neighbour(
                    self.characters[i], self.texts[i], self.radicals[i], float(d),
                    Image.fromarray(self.images[i, 0].numpy()),
                )
                for i, d in zip(row.tolist(), dist.tolist())
            ]
            for row, dist in zip(indices, rms)
        ]


def cache_dir() -> Path:
    """$GLYFFUSER_CACHE, else $XDG_CACHE_HOME/glyffuser, else ~/.cache/glyffuser."""
    if os.environ.get("GLYFFUSER_CACHE"):
        return Path(os.environ["GLYFFUSER_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "glyffuser"


def ensure_dataset(dataset: str | os.PathLike | None = None, size: int = DATASET_SIZE) -> str:
    """`dataset` as given, or the 32 px glyph dataset in the cache, built once (offline, seconds)."""
    if dataset is not None:
        return os.fspath(dataset)
    target = cache_dir() / f"glyphs-{size}"
    if not (target / "dataset_dict.json").is_file():
        from ..data.dataset import build_glyph_dataset, save_dataset

        print(f"glyffuser app: building the {size} px glyph dataset once, into {target} ...", file=sys.stderr)
        save_dataset(build_glyph_dataset(size=size, progress=False), target, overwrite=True)
    return str(target)


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
    ):
        """`lora_typeface`: the name of the typeface LoRA loaded into `pipe` (offered beside the base model), drawn
        with `lora_start` of the steps (the first ones) left to the base model."""
        self.pipe = pipe
        self.judge = judge
        self.real = real
        self.limits = limits or Limits.for_device(pipe.device.type)
        self.model_name = model_name
        self.notes = list(notes)
        self.typefaces = (BASE_TYPEFACE, lora_typeface) if lora_typeface else ()
        self.lora_start = lora_start

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
    ) -> GlyphApp:
        """Load the model (default: the shipped one, with its Kai-brush LoRA), a typeface LoRA, the judge and the
        training glyphs (built once if needed). A missing model or a `lora` that does not load is an error; a
        missing judge or dataset only disables its panel (see `notes`). `lora_start` (default: the shipped LoRA's
        recommended value for it, else 0): the share of the steps drawn by the base model before the LoRA."""
        from ..hub.pretrained import SHIPPED_KAI_LORA, check_lora_settings, load_glyph_pipeline, resolve_model
        from ..lora import lora_typeface

        source = resolve_model(model)
        if lora is None and model is None and SHIPPED_KAI_LORA.is_dir():
            lora = SHIPPED_KAI_LORA
        if lora_start is None:
            shipped = lora is not None and Path(lora).resolve() == SHIPPED_KAI_LORA.resolve()
            lora_start = SHIPPED_KAI_LORA_START if shipped else 0.0
        check_lora_settings(lora, lora_start=lora_start)
        pipe = load_glyph_pipeline(source, None, device, lora=lora)
        typeface = None
        if lora is not None:
            typeface = f"{lora_typeface(lora) or Path(lora).name} (LoRA)"
        notes = []
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
            lora_start=lora_start,
        )

    # -------------------------------------------------------------------------------------------------
    def validate(self, *inputs: Any, typeface: Any = None) -> tuple[GlyphRequest, list[str]]:
        return validate_request(
            *inputs, limits=self.limits, scheduler_config=self.pipe.scheduler.config, typeface=typeface,
            typefaces=self.typefaces,
        )

    def request_pipeline(self, sampler: str) -> GlyphDiffusionPipeline:
        """A new pipeline object for one request: the shared weights, its own scheduler and progress bar."""
        from ..figures.sampling import use_scheduler

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

        from ..figures.sampling import _generator, denoising_frames, save_animation, single_step_grid

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
        with torch.inference_mode():
            images = figure_pipe(
                [p for p, _ in jobs],
                negative_prompt=[request.negative_prompt] * len(jobs) if request.negative_prompt else None,
                num_inference_steps=request.steps,
                guidance_scale=request.guidance,
                generator=[_generator(s) for _, s in jobs],
            ).images
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
        glyphs = [GlyphResult(p, s, im, expected=expected_radicals(p)) for (p, s), im in zip(jobs, images)]
        if self.judge is not None:
            from ..evaluation.metrics import judge_readings

            _, radicals = judge_readings(self.judge, images)
            for glyph, radical in zip(glyphs, radicals.tolist()):
                glyph.radical = int(radical)
        if self.real is not None:
            for glyph, neighbours in zip(glyphs, self.real.nearest(images)):
                glyph.nearest = neighbours
        return GlyphResults(request, glyphs, animation, single, time.perf_counter() - start)


# ----------------------------------------------------------------------------------------------------
# Presenting results
# ----------------------------------------------------------------------------------------------------


def _data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.convert("L").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _shorten(text: str, limit: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def readings_html(results: GlyphResults, app: GlyphApp) -> str:
    """One card per glyph: the glyph, its judge reading (checked against the article's probe words) and its
    nearest training glyphs with their definitions."""
    esc = html.escape
    cards = []
    for i, g in enumerate(results.glyphs):
        if g.radical is not None:
            reading = (
                f'judge reads <span class="radical" data-radical="{g.radical}">'
                f"{esc(radical_character(g.radical))}</span>"
                f" radical {g.radical}"
            )
            for word, radical in g.expected.items():
                ok = radical == g.radical
                reading += (
                    f'<br><span class="{"match" if ok else "miss"}">{"✓" if ok else "✗"} “{esc(word)}” is radical '
                    f"{radical} ({esc(radical_character(radical))})</span>"
                )
        else:
            reading = "no judge loaded"
        if g.nearest:
            items = "".join(
                f'<li data-character="{esc(n.character)}"><img src="{_data_uri(n.image)}" alt="{esc(n.character)}">'
                f'<span><span class="char">{esc(n.character)}</span> <span class="def">{esc(_shorten(n.text))}</span>'
                f'<br><span class="dist">RMS distance {n.distance:.3f}</span></span></li>'
                for n in g.nearest
            )
            nearest = f'<ol class="nearest">{items}</ol>'
        else:
            nearest = '<span class="nearest-missing">no training glyphs loaded</span>'
        cards.append(
            f'<div class="glyph-card" data-index="{i}">'
            f'<div class="gen"><img src="{_data_uri(g.image)}" alt="glyph {i}">'
            f'<span class="caption">{esc(g.prompt)} · seed {g.seed}</span></div>'
            f'<div class="judge">{reading}</div>{nearest}</div>'
        )
    real = f"{len(app.real):,} training glyphs at {app.real.size} px" if app.real is not None else "no training glyphs"
    head = (
        f'<p class="readings-head">Nearest real glyphs: smallest RMS pixel difference among {real} — a '
        "distance near 0 means the model copied a training glyph.</p>"
    )
    return f'<div id="glyph-readings-panel">{head}<div class="glyph-cards">{"".join(cards)}</div></div>'


def readings_json(results: GlyphResults) -> list[dict[str, Any]]:
    return [
        {
            "prompt": g.prompt,
            "seed": g.seed,
            "radical": g.radical,
            "radical_character": radical_character(g.radical) if g.radical else None,
            "expected_radicals": g.expected,
            "nearest": [
                {
                    "character": n.character, "definition": n.text, "radical": n.radical,
                    "distance": round(n.distance, 5),
                }
                for n in g.nearest
            ],
        }
        for g in results.glyphs
    ]


def summary_markdown(results: GlyphResults) -> str:
    r = results.request
    neg = f" · negative “{r.negative_prompt}”" if r.negative_prompt else ""
    return (
        f"**{len(results.glyphs)} glyph{'s' * (len(results.glyphs) > 1)}** · {r.sampler} · {r.steps} steps · "
        f"guidance {r.guidance:g} · seeds {r.seed}–{r.seed + r.images_per_prompt - 1}{neg} · "
        f"{results.seconds:.1f} s"
    )


# ----------------------------------------------------------------------------------------------------
# The page
# ----------------------------------------------------------------------------------------------------


def _import_gradio():
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no phoning home from an offline machine
    try:
        import gradio as gr
    except ImportError as err:
        raise ImportError(f"The app needs Gradio: {APP_HINT}") from err
    return gr


def build_demo(app: GlyphApp):
    """The Gradio Blocks page for `app`, with a bounded queue. Launch it with `launch(demo)` (adds the CSS)."""
    gr = _import_gradio()
    import torch

    from ..figures.sampling import FigureError
    from ..schedulers import RECOMMENDED_GUIDANCE, RECOMMENDED_SAMPLER, RECOMMENDED_STEPS, SCHEDULERS

    # gr.Progress(track_tqdm=True) below patches tqdm; progress bars left over from loading would then fail in
    # their __del__ (a harmless but alarming "Exception ignored ... AttributeError" on the console): collect them.
    gc.collect()
    limits = app.limits
    size = app.pipe.unet.config.sample_size
    judge_text = "the glyph judge (a CNN that reads a glyph's Kangxi radical)" if app.judge is not None else "no judge"
    intro = (
        f"# glyffuser: new Chinese glyphs from English definitions\n"
        f"Model `{app.model_name}` ({size}×{size} px) on {app.pipe.device.type}. Each glyph is labelled with the "
        f"radical that {judge_text} reads in it, and compared with the 3 nearest real glyphs of the training set."
        f" At most {limits.max_images} glyphs and {limits.max_steps} steps a run."
    )
    if app.notes:
        intro += "\n\n" + "\n".join(f"* {n}" for n in app.notes)

    def generate(definitions, negative_prompt, sampler, steps, guidance, seed, images_per_prompt, typeface=None,
                 progress=gr.Progress(track_tqdm=True)):  # fmt: skip
        try:
            request, warnings = app.validate(
                definitions, negative_prompt, sampler, steps, guidance, seed, images_per_prompt, typeface=typeface
            )
        except AppInputError as err:
            raise gr.Error(str(err), print_exception=False) from None
        for warning in warnings:
            gr.Warning(warning)
        try:
            results = app.generate(request, progress)
        except torch.OutOfMemoryError:
            raise gr.Error(
                "Out of memory on this machine: use fewer definitions or fewer images per prompt.",
                print_exception=False,
            ) from None
        except FigureError as err:
            raise gr.Error(str(err), print_exception=False) from None
        except Exception as err:  # never a traceback on the page; the log keeps it
            logger.exception("generation failed")
            raise gr.Error(
                f"Generation failed ({type(err).__name__}: {err}).", print_exception=False
            ) from None
        gallery = [(g.image, g.caption) for g in results.glyphs]
        return (
            summary_markdown(results), gallery, str(results.animation), results.single_step,
            readings_html(results, app), readings_json(results),
        )

    with gr.Blocks(title="glyffuser", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown(intro)
        with gr.Row():
            with gr.Column(scale=2, min_width=300):
                definitions = gr.Textbox(
                    label="English definitions, one per line", lines=4, value="gold; metal", elem_id="definitions",
                    placeholder="gold; metal",
                )
                negative = gr.Textbox(label="Negative prompt (optional)", lines=1, elem_id="negative-prompt")
                sampler = gr.Dropdown(list(SCHEDULERS), value=RECOMMENDED_SAMPLER, label="Sampler", elem_id="sampler")
                with gr.Row():
                    steps = gr.Number(
                        value=RECOMMENDED_STEPS, precision=0, label=f"Steps (1–{limits.max_steps})", elem_id="steps"
                    )
                    guidance = gr.Number(value=RECOMMENDED_GUIDANCE, label="Guidance (≤ 1: off)", elem_id="guidance")
                with gr.Row():
                    seed = gr.Number(value=0, precision=0, label="Seed", elem_id="seed")
                    per_prompt = gr.Number(
                        value=4, precision=0, label="Images per prompt", elem_id="images-per-prompt"
                    )
                typeface = None
                if app.typefaces:
                    typeface = gr.Radio(
                        list(app.typefaces), value=app.typefaces[0], label="Typeface (a LoRA of the model)",
                        elem_id="typeface",
                    )
                button = gr.Button("Generate", variant="primary", elem_id="generate")
                gr.Examples([[p] for p in EXAMPLE_PROMPTS], inputs=[definitions], label="The article's prompts")
            with gr.Column(scale=3, min_width=300):
                summary = gr.Markdown("Results appear here.", elem_id="summary")
                gallery = gr.Gallery(
                    label="Glyphs: definition · seed · the radical the judge reads", columns=4, height="auto",
                    object_fit="contain", format="png", elem_id="glyph-gallery", interactive=False,
                )
        with gr.Row():
            with gr.Column():
                gr.Markdown("### Denoising the first glyph\nThe noisy x_t the model sees at each step, beside the "
                            "clean glyph x̂0 it predicts from it.")
                animation = gr.Image(
                    label="denoising animation", show_label=False, type="filepath", elem_id="animation",
                    interactive=False,
                )
            with gr.Column():
                gr.Markdown("### One step from pure noise\nThe model's x̂0 after a single step at t = T−1: the "
                            "blurry average glyph for the first definition (the article's “gold”).")
                single = gr.Image(
                    label="single-step prediction", show_label=False, type="pil", format="png",
                    elem_id="single-step", interactive=False,
                )
        gr.Markdown("### What the judge reads, and the nearest real glyphs")
        readings = gr.HTML(elem_id="glyph-readings")
        with gr.Accordion("Readings as JSON", open=False):
            as_json = gr.JSON(elem_id="readings-json")
        button.click(
            generate,
            inputs=[definitions, negative, sampler, steps, guidance, seed, per_prompt, *filter(None, [typeface])],
            outputs=[summary, gallery, animation, single, readings, as_json],
            api_name="generate",
            concurrency_limit=1,  # one run at a time; the others wait in the bounded queue
        )
    demo.queue(max_size=limits.max_queue, default_concurrency_limit=1)
    return demo


def launch(demo, host: str | None = None, port: int | None = None, **kwargs: Any):
    """`demo.launch` with this page's CSS and a theme without web fonts (works offline). Host and port default
    to Gradio's (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT, as on Spaces)."""
    gr = _import_gradio()
    theme = gr.themes.Default(
        font=("ui-sans-serif", "system-ui", "sans-serif"), font_mono=("ui-monospace", "monospace")
    )
    return demo.launch(server_name=host, server_port=port, css=CSS, theme=theme, footer_links=["api"], **kwargs)


# ----------------------------------------------------------------------------------------------------
# Command line: `glyffuser app`
# ----------------------------------------------------------------------------------------------------


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Flags of ``glyffuser app``."""
    parser.add_argument(
        "--model", help="saved glyph pipeline folder or Hub repo id (default: the shipped pretrained/tiny-32)"
    )
    parser.add_argument("--port", type=int, help="port (default: $GRADIO_SERVER_PORT or 7860)")
    parser.add_argument("--host", help="interface to listen on (default: $GRADIO_SERVER_NAME or 127.0.0.1)")
    parser.add_argument(
        "--dataset", help="glyph dataset for the nearest-glyph panel (default: a 32 px one built once in the cache)"
    )
    parser.add_argument(
        "--judge", type=Path, default=DEFAULT_JUDGE, help="radical judge folder (default: %(default)s)"
    )
    parser.add_argument(
        "--lora", help="typeface LoRA offered beside the base model (default: the shipped Kai-brush LoRA of the "
        "shipped model)",
    )
    parser.add_argument(
        "--lora-start", type=float, help="share of the steps drawn by the base model before the LoRA takes over "
        f"(default: {SHIPPED_KAI_LORA_START} for the shipped LoRA, else 0)",
    )
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--max-images", type=int, help="glyphs per run (default: 16 on CPU, 64 on a GPU)")
    parser.add_argument("--max-steps", type=int, help=f"steps per run (default: {Limits.max_steps})")
    parser.add_argument("--max-queue", type=int, help=f"requests waiting in the queue (default: {Limits.max_queue})")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``glyffuser app``: load everything, then serve until interrupted."""
    for name in ("port", "max_images", "max_steps", "max_queue"):
        value = getattr(args, name)
        if value is not None and value < 1:
            print(f"glyffuser app: error: --{name.replace('_', '-')} must be positive, got {value}.", file=sys.stderr)
            return 2
    try:
        _import_gradio()
        app = GlyphApp.load(
            args.model, args.dataset, args.judge, args.device,
            limits={"max_images": args.max_images, "max_steps": args.max_steps, "max_queue": args.max_queue},
            lora=args.lora, lora_start=args.lora_start,
        )
    except (ValueError, FileNotFoundError, ImportError) as err:
        print(f"glyffuser app: error: {err}", file=sys.stderr)
        return 2
    for note in app.notes:
        print(f"glyffuser app: note: {note}", file=sys.stderr)
    launch(build_demo(app), args.host, args.port)
    return 0
