# Copyright 2026 The glyffuser developers. Licensed under the Apache License, Version 2.0.
"""The warm-up step: one forward + backward of the training shape before the first real step.

It makes the two failures that would otherwise surface mid-run happen before training starts, with a clear
message: a batch too big for the GPU, and `torch.compile` failing.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.logging import get_logger

from ..pipeline_glyph_diffusion import GlyphDiffusionPipeline
from .inputs import TrainingSetupError

logger = get_logger(__name__, log_level="INFO")


def warm_up_inputs(
    unet_config, batch_size: int, resolution: int, empty_embeds: torch.Tensor, empty_mask: torch.Tensor,
    device: torch.device,
) -> dict[str, torch.Tensor]:
    """UNet keyword arguments of the training batch's shape (blank pixels, the empty prompt)."""
    return {
        "sample": torch.zeros((batch_size, unet_config["in_channels"], resolution, resolution), device=device),
        "timestep": torch.zeros(batch_size, dtype=torch.long, device=device),
        **GlyphDiffusionPipeline.unet_text_inputs(
            unet_config, empty_embeds.float().expand(batch_size, -1, -1), empty_mask.expand(batch_size, -1)
        ),
    }


def warm_up(
    unet: torch.nn.Module, inputs: dict[str, torch.Tensor], accelerator: Accelerator, compile_unet: bool,
    describe: str,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """One forward + backward on `inputs` (`warm_up_inputs`) before the first real step (gradients dropped).

    A batch too big for the GPU raises `TrainingSetupError` with the memory it needs and the batch that fits;
    `torch.compile` failing (`compile_unet`) is logged with the reason and training continues uncompiled.
    Returns the module to call in the loop (compiled or not) and what was measured: compile warm-up seconds
    and, on CUDA, the step's peak memory.
    """
    device = accelerator.device
    report: dict[str, Any] = {"compiled": False}
    forward = unet
    if compile_unet:
        forward = torch.compile(unet)

    def step(module: torch.nn.Module, batch: dict[str, torch.Tensor]) -> None:
        pred = module(**batch, return_dict=False)[0]
        accelerator.backward(pred.float().square().mean())
        unet.zero_grad(set_to_none=True)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    static = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    t0 = time.perf_counter()
    try:
        step(forward, inputs)
    except torch.cuda.OutOfMemoryError:
        unet.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()
        batch = len(inputs["sample"])
        small = max(1, batch // 8)
        torch.cuda.reset_peak_memory_stats(device)
        step(unet, {k: v[:small] for k, v in inputs.items()})
        per_sample = (torch.cuda.max_memory_allocated(device) - static) / small
        total = torch.cuda.get_device_properties(device).total_memory
        needed, fits = static + per_sample * batch, max(1, int((0.9 * total - static) / per_sample))
        raise TrainingSetupError(
            f"{describe} at --train_batch_size {batch} does not fit on {device} "
            f"({torch.cuda.get_device_name(device)}, {total / 2**30:.0f} GiB): it needs about "
            f"{needed / 2**30:.0f} GiB (measured at batch {small}). Use --train_batch_size {min(fits, batch - 1)} "
            "or less (with --gradient_accumulation_steps to keep the global batch), or --gradient_checkpointing."
        ) from None
    except Exception as exc:  # torch.compile fails lazily, at the first call, with many exception types
        if not compile_unet:
            raise
        first_line = (str(exc).strip().splitlines() or [""])[0][:300]
        logger.warning(
            f"--compile: torch.compile failed ({type(exc).__name__}: {first_line}); training continues "
            "uncompiled, at the uncompiled speed."
        )
        unet.zero_grad(set_to_none=True)
        forward = unet
        report["compile_error"] = f"{type(exc).__name__}: {first_line}"
    else:
        report["compiled"] = compile_unet
        if compile_unet:
            report["compile_seconds"] = round(time.perf_counter() - t0, 1)
            logger.info(f"  --compile: the UNet compiled in {report['compile_seconds']} s (warm-up, not counted)")
    if device.type == "cuda":
        report["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return forward, report
