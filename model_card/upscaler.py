# Copyright 2026 The glyffuser developers. Licensed under the Apache License, Version 2.0.
"""The model card of a glyph upscaler (`GlyphUpscalePipeline`): `UPSCALER.md.jinja` filled from the saved folder,
the training record (`train_glyph_upscaler.py`) and the benchmark's numbers (`benchmarks/bench_upscale.py`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import LICENSE, _cell, _count, _duration, _num, _safetensors_parameters

if TYPE_CHECKING:  # pragma: no cover
    from huggingface_hub import ModelCard

UPSCALER_TEMPLATE = "UPSCALER.md.jinja"
DEFAULT_CAPTION = "Rows: the 32 px input (held out from training), the upscaled glyph, the real 128 px render."
UPSCALER_TAGS = ["glyffuser", "super-resolution", "image-to-image", "diffusers", "cjk", "glyphs", "pixel-space",
                 "custom_code", "diffusers:GlyphUpscalePipeline"]  # fmt: skip


def _training_rows(tc: Mapping[str, Any], folder: Path) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    config = folder / "unet" / "config.json"
    unet = json.loads(config.read_text()) if config.is_file() else {}
    if unet:
        widths = "/".join(str(c) for c in unet.get("block_out_channels", []))
        rows.append(("UNet", f"`UNet2DModel`, channels {widths}, {_count(_safetensors_parameters(folder / 'unet'))} "
                             "parameters, no attention, the condition's noise level as `class_labels`"))
    if tc.get("datasets"):
        rows.append(("Data", f"{_num(tc.get('pairs'))} glyph pairs (32 px and 128 px renders of one font) from "
                             + ", ".join(f"`{d}`" for d in tc["datasets"])))
    if tc.get("crop_size"):
        rows.append(("Crops", f"random {tc['crop_size']} px crops of the 128 px glyph with the aligned condition"))
    if tc.get("prediction_type"):
        rows.append(("Objective", f"{tc['prediction_type']} on the cosine schedule; the condition noised at a level "
                                  f"drawn uniformly from [0, {tc.get('max_noise_level')})"
                     + (", EMA weights" if tc.get("ema") else "")))
    if tc.get("steps"):
        rows.append(("Steps", f"{_num(tc['steps'])} of batch {tc.get('global_batch')} "
                              f"({_num(tc.get('samples_seen'))} crops)"))
    if tc.get("train_seconds"):
        hardware = tc.get("hardware") or {}
        threads = f"{hardware.get('torch_threads', '?')} threads of a {hardware.get('cpu', 'CPU')}"
        where = hardware.get("gpu") or threads
        rows.append(("Compute", f"{_duration(tc['train_seconds'])} on {where}"))
    return [(name, _cell(value)) for name, value in rows]


def _metric_rows(metrics: Mapping[str, Any] | None) -> list[tuple[str, str, str, str, str]]:
    """(typeface, method, SSIM, grey share, RMS at 32 px) for bicubic and the default setting, per typeface."""
    rows = []
    for typeface, result in ((metrics or {}).get("real") or {}).items():
        for method, r in result.get("rows", {}).items():
            shown = method.startswith(("truth", "bicubic", "regression")) or "(default)" in method
            if shown:
                ssim = "1" if method.startswith("truth") else f"{r['ssim']:.3f}"
                rows.append((typeface, method, ssim, f"{100 * r['grey']:.1f} %", f"{r['rms32']:.3f}"))
    return rows


def make_upscaler_card(
    folder: str | Path, repo_id: str, training_config: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None, sample_grid: str | None = None, sample_caption: str | None = None,
) -> ModelCard:
    """Fill `UPSCALER.md.jinja` for the upscaler saved in `folder` (`repo_id` goes into the snippets)."""
    from huggingface_hub import ModelCard, ModelCardData

    from ..pipeline_glyph_upscale import DEFAULT_NOISE_LEVEL, DEFAULT_UPSCALE_STEPS

    folder, tc = Path(folder), dict(training_config or {})
    card_data = ModelCardData(
        library_name="diffusers", pipeline_tag="image-to-image", license=LICENSE, tags=list(UPSCALER_TAGS)
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(Path(__file__).with_name(UPSCALER_TEMPLATE)),
        title=repo_id.split("/")[-1],
        repo_id=repo_id,
        steps=DEFAULT_UPSCALE_STEPS,
        noise_level=DEFAULT_NOISE_LEVEL,
        sample_grid=sample_grid,
        sample_caption=sample_caption or DEFAULT_CAPTION,
        training_rows=_training_rows(tc, folder),
        training_command=tc.get("command"),
        training_notes=[_cell(n) for n in tc.get("notes") or [] if isinstance(n, str)],
        metric_rows=_metric_rows(metrics),
        has_regression=any(row[1].startswith("regression") for row in _metric_rows(metrics)),
        metrics_n=next(iter(((metrics or {}).get("real") or {}).values()), {}).get("n"),
    )
