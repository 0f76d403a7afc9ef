"""Reusable parts of training (what diffusers keeps in `training_utils`), one module per job.

`training/train_glyph_diffusion.py` is a thin `main` over these; another entry point (a LoRA or distillation
recipe) imports them instead of copying it:

* `arguments`: the command line in argument groups, and the checks of the flags' values.
* `inputs`: model, text encoder and dataset loaded and checked before anything is written (`TrainingSetupError`).
* `batches`: images decoded once, captions embedded once, gathered by row in a replayable order and noise.
* `loss`: pixels to model space, noise/timesteps/condition dropout, the (min-SNR) denoising loss.
* `progress`: step count, loss summary, compute spent, and the NaN guard (`TrainingDiverged`).
* `checkpoints`: atomic checkpoints, exact resume, the EMA, the float32 weights sampling uses.
* `runtime`: the Accelerator and its logging, optimiser and LR schedule, resuming a prepared run.
* `warmup`: the warm-up step (out-of-memory and `torch.compile` failures before the first real step).
* `validation`: validation grids and the final evaluation, through `GlyphDiffusionPipeline` itself.
* `records`: the run record (`training_config.json`), hardware summary and the end-of-run summary.
"""
