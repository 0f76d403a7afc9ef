"""Noise schedules and samplers: the training scheduler, the sampler names users pick from, and swapping them.

Every scheduler is built with its noise schedule spelled out (`beta_start`, `beta_end`,
`beta_schedule`, `prediction_type`). diffusers' `from_config` drops values that were left at their
defaults, so a scheduler built with implicit betas silently gets the *target* class's betas after a
swap (e.g. DPMSolverSDE's 0.00085/0.012 scaled_linear): a different model. Explicit values travel.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DEISMultistepScheduler,
    DPMSolverMultistepScheduler,
    DPMSolverSDEScheduler,
    DPMSolverSinglestepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    KDPM2AncestralDiscreteScheduler,
    KDPM2DiscreteScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
    UniPCMultistepScheduler,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from .pipeline_glyph_diffusion import DEFAULT_GUIDANCE_SCALE, DEFAULT_NUM_INFERENCE_STEPS, scheduler_dry_run

if TYPE_CHECKING:
    from .pipeline_glyph_diffusion import GlyphDiffusionPipeline

# CLI / training names -> (class, extra config). Extras only where a sampler needs them for pixel space.
SCHEDULERS: dict[str, tuple[type[SchedulerMixin], dict[str, Any]]] = {
    # Trailing spacing starts few-step sampling at t = T-1 (leading would start DDIM-1 at t = 0: pure noise out).
    "ddpm": (DDPMScheduler, {"timestep_spacing": "trailing"}),
    "ddim": (DDIMScheduler, {"timestep_spacing": "trailing"}),
    "pndm": (PNDMScheduler, {}),
    "lms": (LMSDiscreteScheduler, {}),
    "euler": (EulerDiscreteScheduler, {}),
    "euler-a": (EulerAncestralDiscreteScheduler, {}),
    "heun": (HeunDiscreteScheduler, {}),
    "dpmsolver++": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "dpmsolver-singlestep": (DPMSolverSinglestepScheduler, {}),
    "dpmsolver-sde": (DPMSolverSDEScheduler, {}),
    "kdpm2": (KDPM2DiscreteScheduler, {}),
    "kdpm2-a": (KDPM2AncestralDiscreteScheduler, {}),
    "deis": (DEISMultistepScheduler, {}),
    "unipc": (UniPCMultistepScheduler, {}),
}

SCHEDULE_KEYS = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "prediction_type")
RECOMMENDED_SAMPLER = "dpmsolver++"
RECOMMENDED_STEPS = DEFAULT_NUM_INFERENCE_STEPS
RECOMMENDED_GUIDANCE = DEFAULT_GUIDANCE_SCALE
#: RECOMMENDED_SAMPLER in words, for model cards.
RECOMMENDED_SAMPLER_DESCRIPTION = (
    'DPM-Solver++ 2M (`DPMSolverMultistepScheduler`, `algorithm_type="dpmsolver++"`, `solver_order=2`) with '
    "dynamic thresholding (`thresholding=True, sample_max_value=1.0`)"
)


def noise_schedule(
    num_train_timesteps: int = 1000,
    beta_schedule: str = "squaredcos_cap_v2",
    prediction_type: str = "v_prediction",
    beta_start: float = 0.0001,
    beta_end: float = 0.02,
) -> dict[str, Any]:
    """The explicit noise-schedule keys every glyph scheduler carries.

    Default: v-prediction on the cosine schedule (terminal SNR ≈ 2e-9, Lin et al. 2024). The original
    glyffuser's ε-prediction on linear betas (`beta_schedule="linear", prediction_type="epsilon"`) has
    √ᾱ = 0.0064 at t = 999, so x̂0 = (x_t − √(1−ᾱ)·ε̂)/√ᾱ amplifies ε errors ~156x at the first sampling
    steps: each sample's global brightness is fixed at random and glyphs come out on grey paper. Zero
    terminal SNR via `rescale_betas_zero_snr` is not used: not every diffusers scheduler implements it, so
    the one-line scheduler swap would silently drop it (a different model).
    """
    if beta_schedule not in ("linear", "scaled_linear", "squaredcos_cap_v2"):
        raise ValueError(
            f"beta_schedule {beta_schedule!r} is not supported; use 'linear' (original), 'scaled_linear' "
            "or 'squaredcos_cap_v2' (cosine)."
        )
    if prediction_type not in ("epsilon", "v_prediction"):
        raise ValueError(f"prediction_type {prediction_type!r} is not supported; use 'epsilon' or 'v_prediction'.")
    return dict(
        num_train_timesteps=num_train_timesteps,
        beta_start=beta_start,
        beta_end=beta_end,
        beta_schedule=beta_schedule,
        prediction_type=prediction_type,
    )


def training_scheduler(**schedule: Any) -> DDPMScheduler:
    """The DDPM scheduler training adds noise with (pixels are clipped to [-1, 1] when it samples)."""
    return DDPMScheduler(**noise_schedule(**schedule), clip_sample=True, clip_sample_range=1.0)


def sampling_scheduler(name: str = RECOMMENDED_SAMPLER, base_config: dict[str, Any] | None = None, **overrides: Any):
    """Scheduler `name` on the same noise schedule as `base_config` (a scheduler config) or the default.

    Every sampler that supports it gets dynamic thresholding at 1.0 (clips x̂0 to the pixel range, the
    multistep counterpart of DDPM's `clip_sample`); `dpmsolver++` with trailing timesteps is our recommended
    fast sampler for pixel space.
    """
    if name not in SCHEDULERS:
        raise ValueError(f"Unknown scheduler {name!r}; valid names: {', '.join(SCHEDULERS)}.")
    cls, extra = SCHEDULERS[name]
    base = dict(base_config) if base_config is not None else noise_schedule()
    missing = [k for k in SCHEDULE_KEYS if k not in base]
    if missing:
        raise ValueError(f"base_config lacks the noise-schedule keys {missing}; build it with noise_schedule().")
    # Only the noise schedule travels: another sampler's own options (e.g. DEIS's algorithm_type) can break this one.
    config = {**{k: base[k] for k in SCHEDULE_KEYS}, **extra}
    if "thresholding" in inspect.signature(cls.__init__).parameters:
        # Pixels live in [-1, 1]: clip each predicted clean image to that range (dynamic thresholding at 1.0).
        # Without it, multistep solvers extrapolate an imperfect model's x̂0 far outside and saturate to noise.
        config.update(thresholding=True, sample_max_value=1.0)
    if name == "dpmsolver++":
        config.update(timestep_spacing="trailing")
    config.update(overrides)
    return cls.from_config(config)


def with_recommended(num_inference_steps: int | None = None, guidance_scale: float | None = None) -> tuple[int, float]:
    """The sampling settings given, None replaced by the recommended ones (the pipeline's defaults)."""
    steps = RECOMMENDED_STEPS if num_inference_steps is None else num_inference_steps
    return steps, RECOMMENDED_GUIDANCE if guidance_scale is None else guidance_scale


def steps_problem(scheduler: Any, num_inference_steps: int) -> tuple[int | None, str | None]:
    """(number of UNet calls, None) if `scheduler` can sample with that many steps, else (None, reason).

    The pipeline's own pre-flight check (on a copy: nothing is sampled, the scheduler is untouched), so a
    figure or the app can refuse a step count before any compute.
    """
    try:
        return scheduler_dry_run(scheduler, num_inference_steps), None
    except ValueError as err:
        return None, str(err)


def use_scheduler(
    pipe: GlyphDiffusionPipeline, name: str, base_config: dict[str, Any] | None = None, **overrides: Any
) -> SchedulerMixin:
    """Swap `pipe.scheduler` for sampler `name` on the model's own noise schedule; returns the new scheduler.

    `base_config` (default: the current scheduler's) supplies the noise schedule; only that travels (see
    `sampling_scheduler`). An unknown `name` raises `ValueError` before `pipe` is touched.
    """
    base = base_config if base_config is not None else pipe.scheduler.config
    pipe.scheduler = sampling_scheduler(name, base_config=base, **overrides)
    return pipe.scheduler


def scheduler_label(scheduler: Any) -> str:
    """The CLI name of a scheduler instance (e.g. 'dpmsolver++'), else its class name."""
    return next((name for name, (cls, _) in SCHEDULERS.items() if type(scheduler) is cls), type(scheduler).__name__)
