"""Glyph UNet presets: small data, one builder.

Each preset is the part of a `UNet2DConditionModel` config that defines an architecture. The text side
(`encoder_hid_dim`) is never part of a preset: it is taken from the chosen text encoder's hidden size
when the UNet is built, so a preset can't disagree with its encoder (the original glyffuser hard-coded
1024 and crashed with t5-small's 512).
"""

from __future__ import annotations

import math
from typing import Any

from diffusers import UNet2DConditionModel, UNet2DModel

_ORIGINAL_DOWN = ("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D")
_ORIGINAL_UP = ("UpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D")

PRESETS: dict[str, dict[str, Any]] = {
    # The original glyffuser architecture (~131M parameters, ~324 GFLOP per 128 px forward): a GPU job.
    "glyffuser-128": dict(
        sample_size=128,
        block_out_channels=(128, 256, 512, 512),
        down_block_types=_ORIGINAL_DOWN,
        up_block_types=_ORIGINAL_UP,
        layers_per_block=2,
        cross_attention_dim=512,
    ),
    # Same layout at half width and resolution: a single-GPU afternoon.
    "glyffuser-64": dict(
        sample_size=64,
        block_out_channels=(64, 128, 256, 256),
        down_block_types=_ORIGINAL_DOWN,
        up_block_types=_ORIGINAL_UP,
        layers_per_block=2,
        cross_attention_dim=256,
    ),
    # Trains on a laptop CPU: cross-attention at 16 and 8 px, where glyph structure is decided.
    "tiny-32": dict(
        sample_size=32,
        block_out_channels=(32, 64, 128),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        layers_per_block=2,
        cross_attention_dim=128,
    ),
}

# Shared by every preset: one greyscale channel in and out, text conditioning through cross-attention (token
# states) plus the sentence embedding (the masked mean of the token states, from
# GlyphDiffusionPipeline.unet_text_inputs) as a class embedding added to the timestep embedding. The original's
# `addition_embed_type="text"` pools every position, padding included (most of a 32-token definition); it
# stays one override away: {"class_embed_type": None, "addition_embed_type": "text"}.
_COMMON: dict[str, Any] = dict(
    in_channels=1,
    out_channels=1,
    class_embed_type="projection",
    addition_embed_type=None,
    encoder_hid_dim_type="text_proj",
    attention_head_dim=8,
)


def unet_config(preset: str, text_hidden_size: int, **overrides: Any) -> dict[str, Any]:
    """The `UNet2DConditionModel` config for `preset`, wired to a text encoder of `text_hidden_size`."""
    if preset not in PRESETS:
        raise ValueError(f"Unknown UNet preset {preset!r}; valid presets: {', '.join(sorted(PRESETS))}.")
    if not isinstance(text_hidden_size, int) or text_hidden_size < 1:
        raise ValueError(
            f"text_hidden_size must be a positive int (the encoder's hidden size), got {text_hidden_size!r}."
        )
    config = {**_COMMON, **PRESETS[preset], "encoder_hid_dim": text_hidden_size}
    config.update(overrides)
    if config.get("addition_embed_type") == "text":
        # Its attention pooling splits the encoder width into heads; use the most heads (<= 64) that divide it.
        config.setdefault("addition_embed_type_num_heads", math.gcd(64, text_hidden_size))
    if config.get("class_embed_type") == "projection":
        # The pooled sentence embedding (see GlyphDiffusionPipeline.unet_text_inputs) has the encoder's width.
        config["projection_class_embeddings_input_dim"] = text_hidden_size
    return config


def build_unet(preset: str, text_hidden_size: int, **overrides: Any) -> UNet2DConditionModel:
    """A freshly initialised glyph UNet (see `unet_config`)."""
    return UNet2DConditionModel(**unet_config(preset, text_hidden_size, **overrides))


def downsampling_factor(unet_or_config: UNet2DConditionModel | dict[str, Any]) -> int:
    """Height and width must be multiples of this."""
    config = getattr(unet_or_config, "config", unet_or_config)
    return 2 ** (len(config["block_out_channels"]) - 1)


# The super-resolution stage (`GlyphUpscalePipeline`): a `UNet2DModel` with two input channels (noisy sample,
# upsampled condition) and the condition's noise level as a timestep-like class embedding (IF's stage II). Fully
# convolutional and without attention: strokes are local, so it trains on crops and runs on any size.
UPSCALER_PRESETS: dict[str, dict[str, Any]] = {
    # 2.5M parameters: 42 ms per 128 px glyph per step on 2 CPU threads; trains on 64 px crops at ~43 crops/s.
    "upscaler-128": dict(sample_size=128, block_out_channels=(16, 32, 64, 128), layers_per_block=1),
    # Twice the width: ~3x the cost.
    "upscaler-128-wide": dict(sample_size=128, block_out_channels=(32, 64, 128), layers_per_block=1),
}


def upscaler_unet_config(preset: str, **overrides: Any) -> dict[str, Any]:
    """The `UNet2DModel` config of upscaler `preset`."""
    if preset not in UPSCALER_PRESETS:
        raise ValueError(f"Unknown upscaler preset {preset!r}; valid presets: {', '.join(sorted(UPSCALER_PRESETS))}.")
    config = {**UPSCALER_PRESETS[preset], **overrides}
    n = len(config["block_out_channels"])
    return dict(
        in_channels=2, out_channels=1, down_block_types=("DownBlock2D",) * n, up_block_types=("UpBlock2D",) * n,
        class_embed_type="timestep", norm_num_groups=min(8, config["block_out_channels"][0]), **config,
    )


def build_upscaler_unet(preset: str, **overrides: Any) -> UNet2DModel:
    """A freshly initialised upscaler UNet (see `upscaler_unet_config`)."""
    return UNet2DModel(**upscaler_unet_config(preset, **overrides))
