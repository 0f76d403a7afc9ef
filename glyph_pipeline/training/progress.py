# Copyright 2026 The glyffuser developers. Licensed under the Apache License, Version 2.0.
"""Where a run stands: step count, loss summary, compute spent, and the NaN guard that stops a diverged run."""

from __future__ import annotations

import contextlib
import math
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..model_card import training_compute


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf; training stopped, the last good checkpoint is untouched."""


class TrainingProgress:
    """Step counter and loss summary, saved inside every checkpoint (accelerate custom state)."""

    def __init__(self):
        self.global_step = 0
        self.first_losses: list[float] = []
        self.recent_losses: deque[float] = deque(maxlen=10)
        self.train_seconds = 0.0
        self.thread_seconds = 0.0  # train_seconds x torch threads, summed over resumed runs (CPU compute)
        self.gpu_seconds = 0.0  # train_seconds x processes on an accelerator, summed likewise (GPU compute)
        self.samples_seen = 0
        self.world_size = 1
        self.global_batch = 0
        # Training that produced --pretrained_model_name_or_path (read from its training_config.json), so that
        # a continued model's card states its total compute, not only the last run's.
        self.prior_steps = 0
        self.prior_epochs = 0.0

    def record(self, loss: float) -> None:
        """One step's loss (`global_step` counts steps as they happen; losses are read later, in order)."""
        if len(self.first_losses) < 10:
            self.first_losses.append(loss)
        self.recent_losses.append(loss)

    def state_dict(self) -> dict[str, Any]:
        return {
            "global_step": self.global_step, "first_losses": list(self.first_losses),
            "recent_losses": list(self.recent_losses), "train_seconds": self.train_seconds,
            "thread_seconds": self.thread_seconds, "gpu_seconds": self.gpu_seconds,
            "samples_seen": self.samples_seen, "world_size": self.world_size, "global_batch": self.global_batch,
            "prior_steps": self.prior_steps, "prior_epochs": self.prior_epochs,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.global_step = int(state["global_step"])
        self.first_losses = list(state["first_losses"])
        self.recent_losses = deque(state["recent_losses"], maxlen=10)
        self.train_seconds = float(state["train_seconds"])
        # Checkpoints from before this field: count their time at the current thread count.
        self.thread_seconds = float(state.get("thread_seconds", self.train_seconds * torch.get_num_threads()))
        self.gpu_seconds = float(state.get("gpu_seconds", 0.0))
        self.samples_seen = int(state["samples_seen"])
        self.world_size = int(state.get("world_size", 1))
        self.global_batch = int(state.get("global_batch", 0))
        self.prior_steps = int(state.get("prior_steps", 0))
        self.prior_epochs = float(state.get("prior_epochs", 0.0))

    def continue_from(self, record: dict[str, Any] | None) -> None:
        """Start the compute counters where the training of the initial weights stopped."""
        if not record:
            return
        self.prior_steps = int(record.get("total_steps", record.get("steps", 0)))
        self.prior_epochs = float(record.get("epochs") or 0.0)
        self.train_seconds = float(record.get("train_seconds") or 0.0)
        spent = training_compute(record)  # older records counted GPU time as CPU time
        self.thread_seconds, self.gpu_seconds = spent["thread_seconds"], spent["gpu_seconds"]
        self.samples_seen = int(record.get("samples_seen") or 0)

    def loss_summary(self) -> dict[str, float | None]:
        """Mean loss of the first and the last 10 steps, and the last step's (None before any step was read)."""
        return {
            "initial_loss": float(np.mean(self.first_losses)) if self.first_losses else None,
            "final_loss": float(np.mean(self.recent_losses)) if self.recent_losses else None,
            "final_step_loss": self.recent_losses[-1] if self.recent_losses else None,
        }


class TrainingClock:
    """This run's training time and samples, added to `progress`'s totals (which a resume carries on).

    Only training counts: time spent in `paused()` (checkpoints, validation) is left out, so the samples/s of a
    run measure the training step, not how often it saved.
    """

    def __init__(self, progress: TrainingProgress, num_processes: int, on_accelerator: bool):
        self.progress, self.num_processes, self.on_accelerator = progress, num_processes, on_accelerator
        self.base_seconds, self.base_samples = progress.train_seconds, progress.samples_seen
        self.base_threads, self.base_gpu = progress.thread_seconds, progress.gpu_seconds
        self.started, self.excluded, self.samples = time.perf_counter(), 0.0, 0

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.excluded += time.perf_counter() - t0

    def update(self) -> None:
        """Write the totals so far into `progress` (before a checkpoint saves it, and at the end)."""
        elapsed = time.perf_counter() - self.started - self.excluded
        self.progress.train_seconds = self.base_seconds + elapsed
        if self.on_accelerator:
            self.progress.gpu_seconds = self.base_gpu + elapsed * self.num_processes
        else:
            self.progress.thread_seconds = self.base_threads + elapsed * torch.get_num_threads()
        self.progress.samples_seen = self.base_samples + self.samples

    @property
    def run_seconds(self) -> float:
        """Training seconds of this run alone (as of the last `update`)."""
        return self.progress.train_seconds - self.base_seconds


class LossWatch:
    """The NaN guard and the loss log without a host sync per step.

    Each step's loss stays on the device; `read()` copies the pending ones to the host in one transfer (every
    `--loss_sync_steps` steps and before any checkpoint, validation or final save, so a diverged run still
    stops before it writes anything) and raises `TrainingDiverged` at the first non-finite one.
    """

    def __init__(self, every: int):
        self.every = every
        self.pending: list[tuple[int, int, int, torch.Tensor, float]] = []  # (step, epoch, batch, loss, lr)

    def add(self, step: int, epoch: int, batch_index: int, loss: torch.Tensor, lr: float) -> bool:
        """Queue one step's loss; True when it is time to read."""
        self.pending.append((step, epoch, batch_index, loss.detach().reshape(()), lr))
        return len(self.pending) >= self.every

    def read(self, last_checkpoint: Path | None) -> list[tuple[int, float, float]]:
        """[(step, loss, lr)] of the pending steps, in order; raises at the first non-finite loss."""
        if not self.pending:
            return []
        values = torch.stack([p[3] for p in self.pending]).float().cpu().tolist()
        pending, self.pending = self.pending, []
        for (step, epoch, batch_index, _, _), value in zip(pending, values):
            if not math.isfinite(value):
                raise TrainingDiverged(
                    f"Loss is {value} at step {step} (epoch {epoch}, batch {batch_index}); training stopped and "
                    f"nothing more was written. Last good checkpoint: {last_checkpoint or 'none'}. Try a lower "
                    "--learning_rate, --mixed_precision no or a smaller --max_grad_norm, then resume with "
                    "--resume_from_checkpoint latest."
                )
        return [(step, value, lr) for (step, _, _, _, lr), value in zip(pending, values)]
