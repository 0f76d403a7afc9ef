"""The card of a glyph LoRA folder (`pytorch_lora_weights.safetensors`): `LORA.md.jinja` beside this module.

Facts come from the LoRA file itself (rank, targets, parameters: its safetensors header), the training record
(`training_config.json`) and evaluation results; no network. Pushing lives in `glyph_pipeline.hub.push`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import LICENSE, _cell, _hub_id, _metric_rows, _training_commands, _training_rows

if TYPE_CHECKING:  # pragma: no cover
    from huggingface_hub import ModelCard

LORA_TEMPLATE = "LORA.md.jinja"
LORA_TAGS = ["glyffuser", "lora", "text-to-image", "diffusers", "diffusers-training", "cjk", "glyphs", "typeface"]
# Rows of the full-training table that describe the base model, not the adapter.
_BASE_ROWS = {"Preset", "Initialised from", "UNet parameters", "Text encoder"}


def lora_facts(folder: str | os.PathLike) -> dict[str, Any]:
    """Rank, alpha, target modules, parameter count and file size of the LoRA in `folder` (its header only)."""
    from safetensors import safe_open

    from ..lora import LORA_WEIGHT_NAME

    path = Path(folder) / LORA_WEIGHT_NAME
    with safe_open(str(path), "pt") as f:
        metadata = f.metadata() or {}
        parameters = 0
        for key in f.keys():  # noqa: SIM118 (safe_open is not a dict)
            shape = f.get_slice(key).get_shape()
            n = 1
            for d in shape:
                n *= d
            parameters += n
    config = json.loads(metadata.get("lora_adapter_metadata") or "{}")
    targets = config.get("unet.target_modules") or []
    size = path.stat().st_size
    return {
        "rank": config.get("unet.r"),
        "alpha": config.get("unet.lora_alpha"),
        "target_modules": sorted(targets),
        "parameters": f"{parameters:,}",
        "num_parameters": parameters,
        "size": f"{size / 1e6:.1f} MB" if size >= 1e5 else f"{size / 1e3:.0f} kB",
        "bytes": size,
    }


def _from_description(text: str | None, pattern: str) -> str | None:
    match = re.search(pattern, text or "")
    return match.group(1) if match else None


def make_lora_card(
    folder: str | os.PathLike,
    repo_id: str,
    training_config: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    sample_grid: str | None = None,
    sample_caption: str | None = None,
    base_model: str | None = None,
) -> ModelCard:
    """Fill `LORA.md.jinja` for the LoRA saved in `folder`.

    Args:
        folder: holds `pytorch_lora_weights.safetensors` (written by the training script's `--lora_rank`).
        repo_id: where it goes; used in the snippets.
        training_config: the run's `training_config.json` (adds the training table, the typeface and its licence).
        metrics: a `glyffuser evaluate --lora ... --typeface ...` result (adds the evaluation table).
        sample_grid, sample_caption: file name of a samples image in the repo and its caption.
        base_model: Hub id of the base pipeline (default: the training's `--pretrained_model_name_or_path` if it
            is a Hub id).
    """
    from huggingface_hub import ModelCard, ModelCardData

    tc = dict(training_config or {})
    lora = lora_facts(folder)
    args = tc.get("args") or {}
    base_model = base_model or _hub_id(args.get("pretrained_model_name_or_path"))
    data = tc.get("dataset") or {}
    typeface = _from_description(data.get("description"), r"rendered from (.+?) at \d+px")
    font_license = _from_description(data.get("license"), r"rendered from .+? \((.+?)\)\.?$")
    rows = [(name, value) for name, value in _training_rows(tc, {"text_encoder_label": ""}) if name not in _BASE_ROWS]
    if tc:
        alpha = lora["alpha"] if lora["alpha"] is not None else lora["rank"]
        rows.insert(0, ("LoRA", f"rank {lora['rank']}, alpha {alpha:g}, {lora['parameters']} parameters"))
        rows.insert(0, ("Base model", f"`{base_model}`" if base_model else "a local glyph pipeline"))
        if typeface:
            rows.insert(2, ("Typeface", typeface))
    metric_rows, metrics_note = _metric_rows(metrics)
    # The evaluation's LoRA settings (`glyffuser evaluate --lora-scale/--lora-start`): the ones the card recommends.
    scored = (metrics or {}).get("lora") if isinstance((metrics or {}).get("lora"), Mapping) else {}
    lora_start = scored.get("start") or None
    if metric_rows and scored:
        setting = f"scale {scored.get('scale', 1):g}" + (f", `lora_start={lora_start:g}`" if lora_start else "")
        metrics_note = f"{metrics_note or ''} The adapter was scored at {setting}.".strip()
    card_data = ModelCardData(
        library_name="diffusers",
        pipeline_tag="text-to-image",
        license=LICENSE,
        language=["en"],
        tags=list(LORA_TAGS),
        base_model=base_model,
        instance_prompt=None,
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(Path(__file__).with_name(LORA_TEMPLATE)),
        title=repo_id.split("/")[-1],
        repo_id=repo_id,
        base_model=base_model,
        typeface=typeface,
        font_license=font_license,
        data_description=(data.get("description") or "").strip() or None,
        license=LICENSE,
        lora=lora,
        sample_grid=sample_grid,
        sample_caption=sample_caption or "",
        training_rows=rows,
        training_command=_training_commands(tc),
        training_notes=[_cell(n) for n in tc.get("notes") or [] if isinstance(n, str)],
        metric_rows=metric_rows,
        metrics_note=metrics_note,
        lora_start=lora_start,
    )
