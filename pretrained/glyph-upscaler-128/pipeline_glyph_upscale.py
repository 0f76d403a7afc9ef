# Copyright 2026 The glyffuser developers. Licensed under the Apache License, Version 2.0.
"""Glyph super-resolution pipeline: a 32 px glyph -> the same glyph at 128 px (DeepFloyd IF's stage II, for glyphs).

The base model decides *what* a glyph is (its radicals and layout) at 32 px; this text-free stage draws *how the
strokes look* at 128 px. As in IF's stage II, the low-resolution glyph is upsampled (bilinear), noised at
`noise_level` by a separate `image_noising_scheduler` (the level is also the UNet's `class_labels`), and
concatenated to the noisy 128 px sample as a second input channel. The noise hides the small differences
between a real 32 px render and a model's sample, which the stage was trained to ignore.

Like `pipeline_glyph_diffusion.py`, this file runs as Hub remote code with torch, diffusers and transformers only;
`save_pretrained` copies both files next to `model_index.json`. Pixels: white paper = +1, black ink = -1.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, DiffusionPipeline, ImagePipelineOutput, UNet2DModel
from diffusers.image_processor import VaeImageProcessor
from diffusers.schedulers import KarrasDiffusionSchedulers
from diffusers.utils import logging, replace_example_docstring
from diffusers.utils.torch_utils import randn_tensor

from .pipeline_glyph_diffusion import GlyphPipelineMixin, _push_kwargs, scheduler_dry_run, set_timesteps
from .pipeline_glyph_diffusion import _source_file as _base_source_file

logger = logging.get_logger(__name__)

# The sampling defaults, defined once (`__call__`, the CLI, the app and the card read them from here); chosen by
# measurement (benchmarks/bench_upscale.py).
DEFAULT_UPSCALE_STEPS = 4
DEFAULT_NOISE_LEVEL = 100

EXAMPLE_DOC_STRING = """
    Examples:
        ```py
        >>> from diffusers import DiffusionPipeline

        >>> pipe = DiffusionPipeline.from_pretrained("user/glyffuser", trust_remote_code=True)
        >>> upscaler = DiffusionPipeline.from_pretrained("user/glyph-upscaler-128", trust_remote_code=True)
        >>> low = pipe("gold; metal", output_type="pt").images  # (1, 1, 32, 32) in [0, 1]
        >>> image = upscaler(low).images[0]  # a 128 px greyscale ("L") PIL image
        ```
"""


class GlyphUpscalePipeline(GlyphPipelineMixin, DiffusionPipeline):
    r"""
    Text-free pixel-space super-resolution of greyscale glyphs (×`unet.sample_size / low_res_size`).

    Args:
        unet ([`UNet2DModel`]): 2 input channels (the noisy sample and the upsampled, noised condition), 1 output,
            `class_embed_type="timestep"` (the condition's noise level arrives as `class_labels`).
        scheduler ([`SchedulerMixin`]): any Karras-compatible diffusers scheduler for the denoising loop.
        image_noising_scheduler ([`DDPMScheduler`]): noises the upsampled condition at `noise_level`.
        low_res_size (`int`): the side of the glyphs the stage takes (32: the base model's).
    """

    model_cpu_offload_seq = "unet"
    _callback_tensor_inputs = ["latents", "noise_pred", "image_cond"]
    pipeline_tag = "image-to-image"

    def __init__(
        self,
        unet: UNet2DModel,
        scheduler: KarrasDiffusionSchedulers,
        image_noising_scheduler: DDPMScheduler,
        low_res_size: int = 32,
    ):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler, image_noising_scheduler=image_noising_scheduler)
        self.register_to_config(low_res_size=low_res_size)
        self.image_processor = VaeImageProcessor(vae_scale_factor=1, do_normalize=True)

    def save_pretrained(self, save_directory: str | os.PathLike, safe_serialization: bool = True, **kwargs):
        """Save like diffusers, plus this module and the base pipeline's (which it imports) as remote code; files
        appear atomically. `push_to_hub=True` then uploads the folder with diffusers' `push_to_hub`."""
        push_to_hub = kwargs.pop("push_to_hub", False)
        save_directory = self._save_with_code(
            save_directory, [_source_file(), _base_source_file()], safe_serialization=safe_serialization, **kwargs
        )
        if push_to_hub:
            self.push_to_hub(**_push_kwargs(kwargs, default_repo_id=os.path.basename(save_directory)))

    @property
    def output_size(self) -> int:
        return self.unet.config.sample_size

    # ------------------------------------------------------------------ inputs
    def preprocess(self, image: Any) -> torch.Tensor:
        """PIL image(s), numpy (HW, HWC, NHWC in [0, 1]) or torch (HW, CHW, NCHW in [0, 1], e.g. the base pipeline's
        `output_type="pt"`) -> (N, 1, h, w) float in [-1, 1], on the input's device. Anything that is not one
        channel of the size this stage takes is refused with the reason."""
        size = self.config.low_res_size
        images = image if isinstance(image, list) else [image]
        if not images:
            raise ValueError("`image` is an empty list; pass one glyph or a batch of them.")
        tensors = [self._to_tensor(item) for item in images]
        for tensor in tensors:
            if tensor.shape[1] != 1:
                raise ValueError(
                    f"`image` has {tensor.shape[1]} channels; the upscaler takes greyscale glyphs (1 channel). "
                    "Convert with `image.convert('L')` (PIL) or pass one channel."
                )
            if tuple(tensor.shape[-2:]) != (size, size):
                raise ValueError(
                    f"`image` is {tensor.shape[-1]}x{tensor.shape[-2]} px; this upscaler takes {size}x{size} glyphs "
                    f"(the base model's size) and draws {self.output_size}x{self.output_size}. Resize it first."
                )
        batch = torch.cat(tensors) if len(tensors) > 1 else tensors[0]
        if not torch.isfinite(batch).all() or batch.min() < -1e-3 or batch.max() > 1 + 1e-3:
            raise ValueError("`image` values must lie in [0, 1] (white paper = 1), as the base pipeline outputs them.")
        return batch.clamp(0, 1) * 2.0 - 1.0

    @staticmethod
    def _to_tensor(item: Any) -> torch.Tensor:
        if isinstance(item, PIL.Image.Image):
            if item.mode not in ("L", "1"):
                raise ValueError(
                    f"a {item.mode} PIL image: the upscaler takes greyscale glyphs (mode 'L'); use image.convert('L')."
                )
            return torch.from_numpy(np.asarray(item.convert("L"), dtype=np.float32) / 255.0)[None, None]
        if isinstance(item, np.ndarray):
            array = torch.from_numpy(np.asarray(item, dtype=np.float32))
            if array.ndim == 2:
                return array[None, None]
            if array.ndim == 3:  # HWC
                array = array[None]
            if array.ndim != 4:
                raise ValueError(f"a numpy image must be HW, HWC or NHWC; got shape {tuple(item.shape)}.")
            return array.permute(0, 3, 1, 2)
        if isinstance(item, torch.Tensor):
            tensor = item.detach().float()
            if tensor.ndim == 2:
                return tensor[None, None]
            if tensor.ndim == 3:  # CHW
                return tensor[None]
            if tensor.ndim != 4:
                raise ValueError(f"a torch image must be HW, CHW or NCHW; got shape {tuple(item.shape)}.")
            return tensor
        raise ValueError(f"`image` must be PIL, numpy or torch (or a list of them), got {type(item).__name__}.")

    def check_inputs(
        self, num_inference_steps: int, noise_level: int, output_type: str, tensor_inputs: list[str], generator
    ) -> None:
        levels = self.image_noising_scheduler.config.num_train_timesteps
        if not isinstance(noise_level, (int, np.integer)) or not 0 <= noise_level < levels:
            raise ValueError(
                f"`noise_level` must be an integer in [0, {levels}) (the noising schedule's timesteps), got "
                f"{noise_level!r}; the default is {DEFAULT_NOISE_LEVEL}."
            )
        if not isinstance(num_inference_steps, (int, np.integer)) or num_inference_steps < 1:
            raise ValueError(f"`num_inference_steps` must be a positive integer, got {num_inference_steps!r}.")
        if output_type not in ("pil", "np", "pt", "latent"):
            raise ValueError(f"`output_type` must be 'pil', 'np', 'pt' or 'latent', got {output_type!r}.")
        unknown = [name for name in tensor_inputs if name not in self._callback_tensor_inputs]
        if unknown:
            raise ValueError(
                f"`callback_on_step_end_tensor_inputs` {unknown} are not available; choose from "
                f"{self._callback_tensor_inputs}."
            )
        if isinstance(generator, list) and not generator:
            raise ValueError("`generator` is an empty list; pass one generator or one per image.")

    @staticmethod
    def upsample(low: torch.Tensor, size: int) -> torch.Tensor:
        """The condition before its noise: the low-resolution glyph upsampled bilinearly to `size`.

        Pixel areas stay aligned (`align_corners=False`: a 32 px pixel covers exactly the 4x4 pixels it covers in
        the font's 128 px render), unlike IF's `align_corners=True`, which maps corner centres onto each other and
        so shifts strokes by up to half a pixel toward the edges. Training crops this same upsampled image.
        """
        return F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)

    # ------------------------------------------------------------------ properties (diffusers convention)
    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    @property
    def interrupt(self) -> bool:
        return self._interrupt

    # ------------------------------------------------------------------ call
    @torch.no_grad()
    @replace_example_docstring(EXAMPLE_DOC_STRING)
    def __call__(
        self,
        image: PIL.Image.Image | np.ndarray | torch.Tensor | list,
        num_inference_steps: int = DEFAULT_UPSCALE_STEPS,
        noise_level: int = DEFAULT_NOISE_LEVEL,
        timesteps: list[int] | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable[[DiffusionPipeline, int, Any, dict], dict] | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
    ) -> ImagePipelineOutput | tuple:
        r"""
        Upscale glyphs.

        Args:
            image: the low-resolution glyph(s): PIL ("L"), numpy (HW/HWC/NHWC) or torch (CHW/NCHW), values in
                [0, 1]; a list, or a batch, upscales several (the base pipeline's `output_type="pt"` as is).
            num_inference_steps: denoising steps (ignored when `timesteps` is given).
            noise_level: how much noise the condition gets (0: none); higher trusts the input's details less.
            timesteps: a custom schedule, for schedulers whose `set_timesteps` accepts one.
            generator: a `torch.Generator` or one per image, for reproducibility.
            latents: starting noise of shape (batch, 1, size, size).
            output_type: `"pil"` (greyscale "L"), `"np"` (NHWC in [0, 1]) or `"pt"` (NCHW in [0, 1]).
            return_dict: return an [`ImagePipelineOutput`] instead of a tuple.
            callback_on_step_end: called as `fn(pipe, step, timestep, tensors)` after each step; may return
                replacements for `latents` and `image_cond` (the upsampled, noised condition).
            callback_on_step_end_tensor_inputs: names from `_callback_tensor_inputs` (default `["latents"]`).

        Examples:
        """
        tensor_inputs = callback_on_step_end_tensor_inputs or ["latents"]
        self.check_inputs(num_inference_steps, noise_level, output_type, tensor_inputs, generator)
        low = self.preprocess(image)  # every input check happens before any compute
        self._interrupt = False
        device, dtype = self._execution_device, self.unet.dtype
        total, size = low.shape[0], self.output_size
        if isinstance(generator, list) and len(generator) != total:
            raise ValueError(f"{len(generator)} generators for {total} images; pass one per image or a single one.")

        # 1. Timesteps first: a scheduler that can't take this schedule fails before any compute.
        scheduler_dry_run(self.scheduler, num_inference_steps, timesteps)
        timesteps, num_inference_steps = set_timesteps(self.scheduler, num_inference_steps, device, timesteps)
        self._num_timesteps = len(timesteps)

        # 2. Starting noise, then the condition: upsampled (as IF's stage II), noised at `noise_level`.
        shape = (total, 1, size, size)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"`latents` must have shape {shape}, got {tuple(latents.shape)}.")
        latents = latents.to(device=device, dtype=dtype) * self.scheduler.init_noise_sigma
        image_cond = self.upsample(low.to(device, dtype), size)
        level = torch.full((total,), int(noise_level), device=device, dtype=torch.long)
        if noise_level > 0:
            noise = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
            image_cond = self.image_noising_scheduler.add_noise(image_cond, noise, level)
        self._seed_sde_noise(generator, total)
        extra_step_kwargs = self._prepare_extra_step_kwargs(generator)

        # 3. Denoising loop.
        with self.progress_bar(total=len(timesteps)) as progress_bar:
            for i, t in enumerate(timesteps):
                if self.interrupt:
                    break
                model_input = torch.cat([self.scheduler.scale_model_input(latents, t), image_cond], dim=1)
                noise_pred = self.unet(model_input, t, class_labels=level, return_dict=False)[0]
                latents = self.scheduler.step(noise_pred, t, latents, **extra_step_kwargs, return_dict=False)[0]
                if callback_on_step_end is not None:
                    scope = locals()
                    callback_kwargs = {}
                    for name in tensor_inputs:
                        callback_kwargs[name] = scope[name]
                    outputs = callback_on_step_end(self, i, t, callback_kwargs) or {}
                    latents = outputs.pop("latents", latents)
                    image_cond = outputs.pop("image_cond", image_cond)
                progress_bar.update()

        # 4. Pixels in [-1, 1] -> images.
        if output_type == "latent":
            out = latents
        else:
            out = self.image_processor.postprocess(latents.clamp(-1.0, 1.0).float(), output_type=output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (out,)
        return ImagePipelineOutput(images=out)


def _source_file() -> str:
    """Path of this module's source, also when it was itself loaded as remote code."""
    return os.path.abspath(inspect.getsourcefile(GlyphUpscalePipeline) or __file__)
