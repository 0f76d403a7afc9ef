"""LoRA adapters of a trained glyph UNet (a typeface, a style): add, save, describe.

Training adds peft LoRA layers to the UNet's attention projections and resnet convolutions, as diffusers'
`train_text_to_image_lora.py` does for Stable Diffusion; the result is a diffusers LoRA file that
`GlyphDiffusionPipeline.load_lora_weights` (or plain diffusers with the remote-code pipeline) loads.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from typing import Any

import torch
from diffusers import UNet2DConditionModel

# diffusers' file name: `load_lora_weights(folder)` finds it without `weight_name`.
LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
# Attention (self and cross) and the resnets' 3x3 convolutions, which draw the strokes. Leaving cross-attention
# out kept less of the base model's meaning, not more (docs/results.md, the typeface LoRA).
DEFAULT_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2")


class LoraSetupError(ValueError):
    """The LoRA configuration does not fit the UNet; raised before any training."""


def check_targets(unet: UNet2DConditionModel, targets: Sequence[str]) -> None:
    """Every target must name layers of `unet` (peft would fail later, or silently skip a typo)."""
    names = [name for name, _ in unet.named_modules()]
    # peft's rule: a target names a module by its full name or by a dotted suffix of it (to_q, attn1.to_q)
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        kinds = (torch.nn.Linear, torch.nn.Conv2d)
        layers = sorted({n.rsplit(".", 1)[-1] for n, m in unet.named_modules() if isinstance(m, kinds)})
        raise LoraSetupError(
            f"--lora_target_modules names {', '.join(missing)}, which this UNet does not have; its linear and conv "
            f"layers are called: {', '.join(layers)}."
        )


def add_lora(
    unet: UNet2DConditionModel, rank: int, alpha: float | None = None, targets: Sequence[str] = DEFAULT_LORA_TARGETS
) -> list[torch.nn.Parameter]:
    """Freeze `unet`, add a LoRA adapter ("default") to `targets`; return the adapter's (trainable) parameters.

    LoRA B starts at zero (peft's default), so the adapted UNet starts as exactly the base model.
    """
    from peft import LoraConfig

    check_targets(unet, targets)
    unet.requires_grad_(False)
    config = LoraConfig(r=rank, lora_alpha=alpha or rank, init_lora_weights="gaussian", target_modules=list(targets))
    unet.add_adapter(config)
    return [p for p in unet.parameters() if p.requires_grad]


def lora_layers(unet: UNet2DConditionModel) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The adapter's weights (peft's `lora_A`/`lora_B` keys, which diffusers loads as they are) and its peft
    config (saved as safetensors metadata, so loading rebuilds the same rank, alpha and targets)."""
    from peft.utils import get_peft_model_state_dict

    state = get_peft_model_state_dict(unet)
    config = unet.peft_config["default"].to_dict()
    config["target_modules"] = sorted(config["target_modules"])  # a set in peft; JSON needs a list
    return {k: v.detach().float().contiguous().cpu() for k, v in state.items()}, config


def save_lora(folder: str | os.PathLike, unet: UNet2DConditionModel) -> str:
    """Write the adapter of `unet` as `folder/pytorch_lora_weights.safetensors`; return the file's path.

    diffusers' `save_lora_weights` writes it; the base UNet's architecture is then added to the file's metadata
    (`LORA_BASE_KEY`), so that loading it onto another model fails with both architectures named.
    """
    from safetensors import safe_open
    from safetensors.torch import save_file

    from glyph_pipeline.pipeline_glyph_diffusion import LORA_BASE_KEY, GlyphDiffusionPipeline, unet_architecture

    weights, config = lora_layers(unet)
    os.makedirs(folder, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".lora-") as tmp:
        GlyphDiffusionPipeline.save_lora_weights(
            tmp, unet_lora_layers=weights, unet_lora_adapter_metadata=config, weight_name=LORA_WEIGHT_NAME
        )
        written = os.path.join(tmp, LORA_WEIGHT_NAME)
        with safe_open(written, "pt") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
        metadata[LORA_BASE_KEY] = json.dumps(unet_architecture(unet), sort_keys=True)
        save_file(tensors, written, metadata=metadata)
        target = os.path.join(folder, LORA_WEIGHT_NAME)
        os.replace(written, target)
    return target


def apply_lora(pipe, source: str | os.PathLike, scale: float = 1.0, adapter_name: str = "lora") -> None:
    """Load the LoRA at `source` (folder, .safetensors file or Hub repo) into `pipe` at strength `scale`.

    `scale` 0 gives the base model's images exactly, 1 the adapter as trained; the pipeline checks that the
    LoRA fits its UNet before loading anything.
    """
    import math

    if not math.isfinite(scale):
        raise ValueError(f"--lora-scale must be a finite number (0 = base model, 1 = as trained), got {scale}.")
    path = os.fspath(source)
    if os.path.isfile(path):
        folder, name = os.path.split(path)
        pipe.load_lora_weights(folder or ".", weight_name=name, adapter_name=adapter_name)
    else:
        if not os.path.exists(path) and (path.startswith((".", "/", "~")) or path.count("/") != 1):
            raise FileNotFoundError(f"LoRA {path} does not exist (give a folder, a .safetensors file or a Hub repo).")
        pipe.load_lora_weights(path, adapter_name=adapter_name)
    if scale != 1.0:
        pipe.set_adapters([adapter_name], [scale])


def lora_typeface(source: str | os.PathLike) -> str | None:
    """The typeface a local LoRA folder was trained on (its training record names the rendered font), if known."""
    import re

    from .model_card import TRAINING_CONFIG_FILE

    path = os.fspath(source)
    record = os.path.join(path if os.path.isdir(path) else os.path.dirname(path), TRAINING_CONFIG_FILE)
    try:
        with open(record, encoding="utf-8") as f:
            description = (json.load(f).get("dataset") or {}).get("description") or ""
    except (OSError, ValueError, AttributeError):
        return None
    match = re.search(r"rendered from (.+?) at \d+px", description)
    return match.group(1) if match else None
