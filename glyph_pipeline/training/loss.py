# Copyright 2026 The glyffuser developers. Licensed under the Apache License, Version 2.0.
"""The denoising objective: pixels, noise, timesteps, condition dropout and the (min-SNR weighted) loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from diffusers.training_utils import compute_snr


def to_model_pixels(pixels_u8: torch.Tensor) -> torch.Tensor:
    """uint8 greyscale -> float in [-1, 1], white paper = +1, black ink = -1 (the pipeline's convention)."""
    return pixels_u8.to(torch.float32) / 127.5 - 1.0


def draw_training_inputs(x0, text, mask, empty_embeds, empty_mask, num_timesteps: int, cond_dropout: float, generator):
    """Noise, timesteps and condition dropout for one batch, all from `generator` (on its device, then moved to
    the batch's if they differ).

    A dropped sample gets the empty prompt's embedding AND attention mask: exactly the unconditional input
    the pipeline feeds the UNet for classifier-free guidance.
    """
    bsz, device, on = x0.shape[0], x0.device, generator.device
    noise = torch.randn(x0.shape, generator=generator, device=on).to(device)
    timesteps = torch.randint(0, num_timesteps, (bsz,), generator=generator, device=on).to(device)
    drop = (torch.rand(bsz, generator=generator, device=on) < cond_dropout).to(device)
    text = torch.where(drop[:, None, None], empty_embeds.to(text.device, text.dtype), text)
    mask = torch.where(drop[:, None], empty_mask.to(mask.device, mask.dtype), mask)
    return noise, timesteps, text, mask


def diffusion_loss(pred, target, timesteps, noise_scheduler, prediction_type: str, snr_gamma: float | None):
    """MSE, optionally min-SNR weighted (Hang et al. 2023): the weight on the x0 error is min(snr, gamma);
    an epsilon error carries snr times the x0 error, a v error (snr + 1) times, hence the divisions."""
    per_sample = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=list(range(1, pred.ndim)))
    if snr_gamma is None:
        return per_sample.mean()
    snr = compute_snr(noise_scheduler, timesteps)
    weight = torch.stack([snr, torch.full_like(snr, snr_gamma)], dim=1).min(dim=1)[0]
    weight = weight / snr if prediction_type == "epsilon" else weight / (snr + 1)
    return (per_sample * weight).mean()


class DiffusionObjective:
    """What the UNet is trained on: a noised batch with its regression target, and the loss of a prediction.

    Args:
        noise_scheduler: the training noise schedule (`glyph_pipeline.schedulers.training_scheduler`).
        empty_embeds, empty_mask: the empty prompt's text embedding and mask (the unconditional input).
        cond_dropout: probability of training a sample on the empty prompt (classifier-free guidance).
        snr_gamma: min-SNR weighting (None: plain MSE).
        max_timestep: draw timesteps from [0, max_timestep) only (None: every timestep of the schedule).
    """

    def __init__(
        self, noise_scheduler: DDPMScheduler, empty_embeds: torch.Tensor, empty_mask: torch.Tensor,
        cond_dropout: float, snr_gamma: float | None = None, max_timestep: int | None = None,
    ):
        self.noise_scheduler = noise_scheduler
        self.prediction_type = noise_scheduler.config.prediction_type
        self.num_timesteps = noise_scheduler.config.num_train_timesteps if max_timestep is None else max_timestep
        self.empty_embeds, self.empty_mask = empty_embeds, empty_mask
        self.cond_dropout, self.snr_gamma = cond_dropout, snr_gamma

    def noised(self, x0: torch.Tensor, text: torch.Tensor, mask: torch.Tensor, generator: torch.Generator):
        """(noisy, timesteps, target, text, mask) for clean pixels `x0`: randomness from `generator` only."""
        noise, timesteps, text, mask = draw_training_inputs(
            x0, text, mask, self.empty_embeds, self.empty_mask, self.num_timesteps, self.cond_dropout, generator
        )
        noisy, target = self.noised_with(x0, noise, timesteps)
        return noisy, timesteps, target, text, mask

    def noised_with(self, x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor):
        """(noisy, target) for clean pixels `x0` with the given noise and timesteps (a recipe that draws its own)."""
        noisy = self.noise_scheduler.add_noise(x0, noise, timesteps)
        if self.prediction_type == "epsilon":
            return noisy, noise
        return noisy, self.noise_scheduler.get_velocity(x0, noise, timesteps)

    def loss(self, pred: torch.Tensor, target: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        return diffusion_loss(pred, target, timesteps, self.noise_scheduler, self.prediction_type, self.snr_gamma)
