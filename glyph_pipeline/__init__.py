"""glyffuser: generate new Chinese glyphs from English definitions with a diffusers pipeline."""

from .pipeline_glyph_diffusion import GlyphDiffusionPipeline
from .presets import PRESETS, build_unet, unet_config
from .schedulers import SCHEDULERS, noise_schedule, sampling_scheduler, training_scheduler

__version__ = "0.1.0"

__all__ = [
    "GlyphDiffusionPipeline",
    "PRESETS",
    "SCHEDULERS",
    "build_unet",
    "noise_schedule",
    "sampling_scheduler",
    "training_scheduler",
    "unet_config",
]
