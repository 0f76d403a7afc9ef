# Copyright 2026 The glyffuser developers. Licensed under the Apache License, Version 2.0.
"""Checkpoints (atomic, resumable exactly), the EMA of the trained weights, and the weights sampling uses.

A checkpoint is `accelerator.save_state` written into `checkpoint-N.tmp` and renamed to `checkpoint-N`: a
kill at any point leaves every earlier checkpoint intact, and `latest` never picks a half-written one.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import gather_object
from diffusers import UNet2DConditionModel
from diffusers.training_utils import EMAModel

from ..atomic import move_into_place, write_text
from .inputs import TrainingSetupError

logger = get_logger(__name__, log_level="INFO")

CHECKPOINT_PREFIX = "checkpoint-"


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Completed checkpoints (`checkpoint-N`, never `checkpoint-N.tmp`), oldest first."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        suffix = entry.name[len(CHECKPOINT_PREFIX):]
        if entry.is_dir() and entry.name.startswith(CHECKPOINT_PREFIX) and suffix.isdigit():
            found.append((int(suffix), entry))
    return [p for _, p in sorted(found)]


def resolve_resume(resume_from_checkpoint: str | None, output_dir: str | Path) -> Path | None:
    """The checkpoint folder `--resume_from_checkpoint` names: 'latest' (None when there is none yet), a path,
    or a name inside `output_dir`. Anything else is a `TrainingSetupError` that lists the checkpoints there."""
    if not resume_from_checkpoint:
        return None
    if resume_from_checkpoint == "latest":
        checkpoints = list_checkpoints(output_dir)
        return checkpoints[-1] if checkpoints else None
    path = Path(resume_from_checkpoint)
    candidates = [path] if path.is_absolute() else [path, Path(output_dir) / path]
    for candidate in candidates:
        has_state = any(candidate.glob("model*.safetensors")) or (candidate / "optimizer.bin").exists()
        if candidate.is_dir() and has_state:
            return candidate
    available = ", ".join(p.name for p in list_checkpoints(output_dir)) or "none"
    raise TrainingSetupError(
        f"--resume_from_checkpoint {resume_from_checkpoint} is not a checkpoint folder (looked at "
        f"{', '.join(str(c) for c in candidates)}). Checkpoints in {output_dir}: {available}. "
        "Pass one of them, 'latest', or drop the flag to start fresh."
    )


def remove_interrupted_saves(output_dir: Path) -> None:
    """Delete `checkpoint-N.tmp` folders a killed run left behind (main process only)."""
    for stale in output_dir.glob(f"{CHECKPOINT_PREFIX}*.tmp"):
        logger.info(f"Removing the interrupted checkpoint save {stale.name}")
        shutil.rmtree(stale, ignore_errors=True)


def save_checkpoint(accelerator: Accelerator, output_dir: Path, step: int, limit: int | None) -> Path:
    """save_state into checkpoint-N.tmp, rename to checkpoint-N, then prune the oldest beyond `limit`.

    A kill at any point leaves every earlier checkpoint intact; `latest` never picks a `.tmp` folder.
    """
    final = output_dir / f"{CHECKPOINT_PREFIX}{step}"
    tmp = output_dir / f"{CHECKPOINT_PREFIX}{step}.tmp"
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))  # every rank adds its own RNG state file; the rest is main-only
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        move_into_place(tmp, final)  # also over an existing checkpoint-N (a step re-saved after resuming)
        if limit is not None:
            for stale in list_checkpoints(output_dir)[:-limit]:
                shutil.rmtree(stale, ignore_errors=True)
                logger.info(f"Removed old checkpoint {stale.name} (--checkpoints_total_limit {limit})")
        logger.info(f"Saved checkpoint {final}")
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator: Accelerator, path: Path, ema: EMAModel | None, device: torch.device) -> None:
    """load_state, then put the EMA back on `device` (the model's: accelerator.device).

    accelerate restores registered custom objects with `torch.load(map_location="cpu")`, so the EMA's shadow
    weights come back on the CPU; on a GPU the first `ema.step` after a resume would then mix devices.
    """
    accelerator.load_state(str(path))
    if ema is not None:
        ema.to(device)


def create_ema(
    parameters: Sequence[torch.nn.Parameter], unet: UNet2DConditionModel, decay: float, device: torch.device
) -> EMAModel:
    """An EMA of the trained `parameters` (all of the UNet's, or a LoRA's), on `device`.

    On an accelerator, one fused (foreach) update of all shadow weights instead of a Python loop over ~500
    parameters: the loop was a fifth of the step's wall time on an H200. On a CPU foreach's temporary copy of
    every weight costs more than the loop saves for larger UNets (`bench_training.py ema`: 1.3-2x faster for
    tiny-32/micro, 0.7x for glyffuser-64), so the CPU keeps the loop.
    """
    ema = EMAModel(
        parameters, decay=decay, model_cls=type(unet), model_config=unet.config,
        foreach=device.type != "cpu",
    )
    ema.to(device)
    return ema


def unet_for_inference(accelerator: Accelerator, unet, ema: EMAModel | None) -> UNet2DConditionModel:
    """A float32 copy of the current (EMA) weights: sampling never touches the model being trained."""
    model = copy.deepcopy(accelerator.unwrap_model(unet)).eval()
    if model.dtype != torch.float32:
        model.to(torch.float32)
    if ema is not None:  # the EMA holds the trained parameters (all of them, or a LoRA's), in model order
        ema.copy_to([p for p in model.parameters() if p.requires_grad])
    model.requires_grad_(False)
    if hasattr(model, "disable_gradient_checkpointing"):
        model.disable_gradient_checkpointing()
    return model


def weights_digest(module: torch.nn.Module) -> str:
    """sha256 of a module's state dict (names and float32 values): equal digests, equal weights."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def write_weight_hashes(accelerator: Accelerator, unet, ema: EMAModel | None, path: Path) -> None:
    """Every rank's UNet and EMA digests into `path` (main process): data-parallel ranks must agree exactly."""
    digest = weights_digest(accelerator.unwrap_model(unet))
    ema_digest = None
    if ema is not None:
        ema_digest = hashlib.sha256(
            b"".join(p.detach().cpu().float().numpy().tobytes() for p in ema.shadow_params)
        ).hexdigest()
    hashes = gather_object([{"rank": accelerator.process_index, "unet": digest, "ema": ema_digest}])
    if accelerator.is_main_process:
        write_text(path, json.dumps(hashes, indent=2) + "\n")
