"""glyffuser: generate new Chinese glyphs from English definitions with a diffusers pipeline.

Names are imported lazily so the `glyffuser` CLI starts fast and pulls in only what a command uses.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "GlyphDiffusionPipeline": "pipeline_glyph_diffusion",
    "GlyphUpscalePipeline": "pipeline_glyph_upscale",
    "PRESETS": "presets",
    "build_unet": "presets",
    "unet_config": "presets",
    "UPSCALER_PRESETS": "presets",
    "build_upscaler_unet": "presets",
    "SCHEDULERS": "schedulers",
    "noise_schedule": "schedulers",
    "sampling_scheduler": "schedulers",
    "training_scheduler": "schedulers",
    "load_text_encoder": "text_encoders",
    "build_glyph_dataset": "data.dataset",
    "load_glyph_dataset": "data.dataset",
    "GlyphJudge": "evaluation.judge",
    "evaluate_pipeline": "evaluation.evaluate",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
