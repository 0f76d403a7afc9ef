# Copyright 2026 The glyffuser developers. Licensed under the Apache License, Version 2.0.
"""The training command line, one argument group per function, and the checks of its numbers.

A training entry point composes the groups it needs (`training/train_glyph_diffusion.py` uses all of them), so
a second one (a distillation, say) offers the same flags with the same defaults and help texts.
"""

from __future__ import annotations

import argparse
import importlib.util

from ..data.embeddings import default_cache_dir
from ..lora import DEFAULT_LORA_TARGETS, LORA_WEIGHT_NAME
from ..presets import PRESETS
from ..schedulers import RECOMMENDED_GUIDANCE, RECOMMENDED_SAMPLER, RECOMMENDED_STEPS, SCHEDULERS
from ..text_encoders import DEFAULT_TEXT_ENCODER, OFFLINE_TEXT_ENCODER
from .inputs import TrainingSetupError

DEFAULT_VALIDATION_PROMPTS = ["water", "fire", "tree; wood", "to speak; words"]
LR_SCHEDULERS = ["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup"]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show `(default: x)` only where the help text doesn't already explain the default."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    data.add_argument(
        "--dataset", required=True,
        help="save_to_disk folder, parquet file, imagefolder with metadata.jsonl, or Hub dataset name "
        "(build one with `glyffuser build-dataset --out DIR`)",
    )
    data.add_argument("--dataset_split", default="train", help="split to train on")
    data.add_argument("--image_column", default="image", help="column with the glyph images")
    data.add_argument("--caption_column", default="text", help="column with the English definitions")
    data.add_argument(
        "--resolution", type=int, default=None, help="train at this size (default: the UNet's sample_size)"
    )
    data.add_argument(
        "--max_train_samples", type=int, default=None, help="use a seeded random subset of this many rows"
    )
    data.add_argument(
        "--embedding_cache_dir", default=None,
        help=f"where cached text embeddings live (default: {default_cache_dir()})",
    )
    data.add_argument(
        "--embedding_dtype", default="float32", choices=["float32", "float16", "bfloat16"],
        help="storage dtype of cached text embeddings (float32 matches sampling exactly)",
    )
    data.add_argument(
        "--text_encoder_batch_size", type=int, default=256, help="captions per encoder call when caching"
    )


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    model = parser.add_argument_group("model")
    model.add_argument("--unet_preset", default="tiny-32", help=f"UNet architecture: {', '.join(PRESETS)}")
    model.add_argument(
        "--unet_config", default=None,
        help="UNet2DConditionModel config values applied on top of --unet_preset: a JSON file (a saved "
        "unet/config.json works) or inline JSON, e.g. the original glyffuser's pooled text (padding included) "
        "instead of the sentence embedding: '{\"class_embed_type\": null, \"addition_embed_type\": \"text\"}'",
    )
    model.add_argument(
        "--pretrained_model_name_or_path", default=None,
        help="fine-tune a saved GlyphDiffusionPipeline (its UNet, text encoder, noise schedule, max length)",
    )
    model.add_argument(
        "--text_encoder_name_or_path", default=None,
        help=f"text encoder (default: {DEFAULT_TEXT_ENCODER}, or the pretrained pipeline's); "
        f"'{OFFLINE_TEXT_ENCODER}' works offline; any local folder",
    )
    model.add_argument(
        "--max_text_length", type=int, default=None,
        help="tokens per caption, padded/truncated; becomes the pipeline's max_sequence_length (default: 32)",
    )


def add_lora_arguments(parser: argparse.ArgumentParser) -> None:
    lora = parser.add_argument_group(
        "LoRA", "train a LoRA adapter (peft) of a pretrained pipeline instead of all UNet weights, e.g. a typeface"
    )
    lora.add_argument(
        "--lora_rank", type=int, default=None,
        help="rank of the LoRA matrices; turns LoRA training on (needs --pretrained_model_name_or_path) and saves "
        f"{LORA_WEIGHT_NAME} instead of a full pipeline",
    )
    lora.add_argument("--lora_alpha", type=float, default=None, help="LoRA scaling numerator (default: the rank)")
    lora.add_argument(
        "--lora_target_modules", default=",".join(DEFAULT_LORA_TARGETS),
        help="comma-separated UNet layer names that get a LoRA: attention projections and resnet convolutions",
    )


def add_diffusion_arguments(parser: argparse.ArgumentParser) -> None:
    diffusion = parser.add_argument_group("diffusion")
    diffusion.add_argument("--num_train_timesteps", type=int, default=None, help="default: 1000")
    diffusion.add_argument(
        "--max_timestep", type=int, default=None,
        help="train on timesteps t < N only (the lower noise levels). For a typeface LoRA used with a "
        "`lora_start`: at lora_start 0.3 of 20 DPM-Solver++ steps the LoRA runs at t <= 699 only, so 700 spends "
        "all its training there (default: every timestep)",
    )
    diffusion.add_argument(
        "--beta_schedule", default=None, choices=["linear", "scaled_linear", "squaredcos_cap_v2"],
        help="default: squaredcos_cap_v2 (cosine, terminal SNR ~ 0; the original used linear)",
    )
    diffusion.add_argument(
        "--prediction_type", default=None, choices=["epsilon", "v_prediction"],
        help="default: v_prediction (the original's epsilon draws grey paper: see glyph_pipeline.schedulers)"
    )
    diffusion.add_argument(
        "--snr_gamma", type=float, default=None,
        help="min-SNR loss weighting (e.g. 5.0): weight min(snr, gamma)/snr (epsilon) or min(snr, gamma)/(snr+1) (v). "
        "Off by default: under v-prediction it leaves the high-noise steps, where a glyph's layout and radical are "
        "chosen, almost no weight (GPU A/B at equal work: held-out radical adherence 0.27 with gamma 5, 0.41 without)",
    )
    diffusion.add_argument(
        "--cond_dropout", type=float, default=0.1,
        help="probability of training a sample on the empty prompt (enables classifier-free guidance)",
    )


def add_optimisation_arguments(parser: argparse.ArgumentParser) -> None:
    optim = parser.add_argument_group("optimisation")
    optim.add_argument(
        "--train_batch_size", type=int, default=16, help="per device (global = this x processes x accumulation)"
    )
    optim.add_argument("--num_train_epochs", type=int, default=100)
    optim.add_argument("--max_train_steps", type=int, default=None, help="overrides --num_train_epochs")
    optim.add_argument("--learning_rate", type=float, default=1e-4)
    optim.add_argument("--lr_scheduler", default="cosine", choices=LR_SCHEDULERS)
    optim.add_argument("--lr_warmup_steps", type=int, default=500)
    optim.add_argument("--adam_beta1", type=float, default=0.9)
    optim.add_argument("--adam_beta2", type=float, default=0.999)
    optim.add_argument("--adam_weight_decay", type=float, default=1e-2)
    optim.add_argument("--adam_epsilon", type=float, default=1e-8)
    optim.add_argument("--gradient_accumulation_steps", type=int, default=1)
    optim.add_argument("--max_grad_norm", type=float, default=1.0, help="gradient clipping (0 disables)")
    optim.add_argument(
        "--mixed_precision", default=None, choices=["no", "fp16", "bf16"],
        help="default: from the accelerate config / `accelerate launch`",
    )
    optim.add_argument("--allow_tf32", action="store_true", help="TF32 matmuls on Ampere+ GPUs")
    optim.add_argument("--gradient_checkpointing", action="store_true", help="trade compute for memory")
    optim.add_argument("--use_ema", action="store_true", help="keep an EMA of the UNet weights (saved at the end)")
    optim.add_argument("--ema_decay", type=float, default=0.9999)
    optim.add_argument("--seed", type=int, default=0, help="seeds init, data order, noise; runs are reproducible")
    optim.add_argument("--dataloader_num_workers", type=int, default=0)
    optim.add_argument(
        "--loss_sync_steps", type=int, default=25,
        help="read the loss on the host (NaN guard, logs, progress bar) every N steps and before every checkpoint "
        "and validation; one host sync per step leaves a GPU waiting",
    )
    optim.add_argument(
        "--compile", action="store_true",
        help="torch.compile the UNet (the warm-up time is reported; if compilation fails the run says why and "
        "continues uncompiled)",
    )


def add_checkpoint_arguments(parser: argparse.ArgumentParser) -> None:
    ckpt = parser.add_argument_group("checkpoints")
    ckpt.add_argument(
        "--checkpointing_steps", type=int, default=500, help="save the training state every N steps (0: never)"
    )
    ckpt.add_argument("--checkpoints_total_limit", type=int, default=None, help="keep only the newest N checkpoints")
    ckpt.add_argument(
        "--resume_from_checkpoint", default=None,
        help="'latest' (newest checkpoint in --output_dir; starts fresh if there is none) or a checkpoint folder",
    )


def add_validation_arguments(parser: argparse.ArgumentParser) -> None:
    val = parser.add_argument_group("validation")
    val.add_argument("--validation_prompts", nargs="+", default=None, help=f"default: {DEFAULT_VALIDATION_PROMPTS}")
    val.add_argument("--validation_steps", type=int, default=500, help="sample every N steps (0: only at the end)")
    val.add_argument("--num_validation_images", type=int, default=4, help="images per prompt")
    val.add_argument("--validation_scheduler", default=RECOMMENDED_SAMPLER, help=f"one of: {', '.join(SCHEDULERS)}")
    val.add_argument("--validation_inference_steps", type=int, default=RECOMMENDED_STEPS)
    val.add_argument("--validation_guidance_scale", type=float, default=RECOMMENDED_GUIDANCE)


def add_evaluation_arguments(parser: argparse.ArgumentParser) -> None:
    ev = parser.add_argument_group(
        "evaluation (`glyffuser evaluate` on the final pipeline; numbers go on the model card)"
    )
    ev.add_argument(
        "--eval_judge", default=None, help="glyph judge folder (`glyffuser train-judge`); enables the evaluation"
    )
    ev.add_argument("--eval_dataset", default=None, help="dataset with a held-out 'test' split (default: --dataset)")
    ev.add_argument("--eval_num_samples", type=int, default=256, help="held-out prompts scored (FGD compares equal n)")
    ev.add_argument(
        "--eval_scheduler", default=RECOMMENDED_SAMPLER,
        help="sampler for the evaluation (a --validation_scheduler name)",
    )
    ev.add_argument("--eval_inference_steps", type=int, default=RECOMMENDED_STEPS)
    ev.add_argument("--eval_guidance_scale", type=float, default=RECOMMENDED_GUIDANCE)
    ev.add_argument(
        "--eval_probe_samples", type=int, default=8, help="samples per probe prompt ('gold' -> 金 ...; 0: skip)"
    )


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    out = parser.add_argument_group("output")
    out.add_argument(
        "--output_dir", default="glyffuser-model", help="checkpoints, logs, validation grids, final pipeline"
    )
    out.add_argument("--logging_dir", default="logs", help="tracker folder, relative to --output_dir")
    default_tracker = "tensorboard" if importlib.util.find_spec("tensorboard") else "none"
    out.add_argument("--report_to", default=default_tracker, choices=["tensorboard", "wandb", "all", "none"])
    out.add_argument("--tracker_project_name", default="glyffuser")


def add_hub_arguments(parser: argparse.ArgumentParser) -> None:
    hub = parser.add_argument_group("hub")
    hub.add_argument("--push_to_hub", action="store_true", help="upload the final pipeline with a model card")
    hub.add_argument(
        "--hub_model_id", default=None, help="'name' or 'user-or-org/name' (default: --output_dir's name)"
    )
    hub.add_argument("--hub_token", default=None, help="default: HF_TOKEN, else the `hf auth login` cache")
    hub.add_argument("--hub_private", action="store_true", help="create the repo private")
    hub.add_argument("--hub_revision", default=None, help="branch to push to (created if missing)")


ARGUMENT_GROUPS = (
    add_data_arguments, add_model_arguments, add_lora_arguments, add_diffusion_arguments, add_optimisation_arguments,
    add_checkpoint_arguments, add_validation_arguments, add_evaluation_arguments, add_output_arguments,
    add_hub_arguments,
)


def lora_targets(args: argparse.Namespace) -> list[str]:
    """The UNet layer names of `--lora_target_modules`."""
    return [t.strip() for t in args.lora_target_modules.split(",") if t.strip()]


def check_arguments(args: argparse.Namespace) -> None:
    """The flags' values on their own (ranges, names, combinations): before any file is opened. A recipe that
    composes only some argument groups gets only their checks."""
    flags = vars(args)
    positive = [
        "train_batch_size", "num_train_epochs", "learning_rate", "gradient_accumulation_steps", "loss_sync_steps",
        "num_validation_images", "validation_inference_steps", "text_encoder_batch_size", "eval_inference_steps",
    ]
    for name in positive:
        if name in flags and flags[name] <= 0:
            raise TrainingSetupError(f"--{name} must be > 0, got {flags[name]}.")
    for name in (
        "max_train_steps", "max_train_samples", "max_text_length", "num_train_timesteps", "checkpoints_total_limit",
        "max_timestep",
    ):
        value = flags.get(name)
        if value is not None and value <= 0:
            raise TrainingSetupError(f"--{name} must be > 0, got {value}.")
    for name in (
        "lr_warmup_steps", "checkpointing_steps", "validation_steps", "max_grad_norm", "dataloader_num_workers"
    ):
        if name in flags and flags[name] < 0:
            raise TrainingSetupError(f"--{name} must be >= 0, got {flags[name]}.")
    if "cond_dropout" in flags and not 0.0 <= args.cond_dropout < 1.0:
        raise TrainingSetupError(f"--cond_dropout must be in [0, 1), got {args.cond_dropout}.")
    if flags.get("snr_gamma") is not None and args.snr_gamma <= 0:
        raise TrainingSetupError(f"--snr_gamma must be > 0 (5.0 is the usual choice), got {args.snr_gamma}.")
    if flags.get("lora_rank") is not None:
        _check_lora_arguments(args)
    if not 0.0 < args.ema_decay < 1.0:
        raise TrainingSetupError(f"--ema_decay must be in (0, 1), got {args.ema_decay}.")
    if flags.get("eval_probe_samples", 0) < 0:
        raise TrainingSetupError(f"--eval_probe_samples must be >= 0, got {args.eval_probe_samples}.")
    for name in ("eval_scheduler", "validation_scheduler"):
        if name in flags and flags[name] not in SCHEDULERS:
            raise TrainingSetupError(f"Unknown --{name} {flags[name]!r}; valid names: {', '.join(SCHEDULERS)}.")


def _check_lora_arguments(args: argparse.Namespace) -> None:
    if args.lora_rank <= 0:
        raise TrainingSetupError(f"--lora_rank must be > 0 (4-16 is usual), got {args.lora_rank}.")
    if args.lora_alpha is not None and args.lora_alpha <= 0:
        raise TrainingSetupError(f"--lora_alpha must be > 0, got {args.lora_alpha}.")
    if not args.pretrained_model_name_or_path:
        raise TrainingSetupError(
            "--lora_rank adapts a trained model: pass --pretrained_model_name_or_path (e.g. pretrained/tiny-32)."
        )
    if not lora_targets(args):
        raise TrainingSetupError("--lora_target_modules is empty; name layers such as to_q,to_k,to_v,conv1.")
    try:
        import peft  # noqa: F401
    except ImportError as err:
        raise TrainingSetupError("LoRA training needs peft: pip install peft") from err
