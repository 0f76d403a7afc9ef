"""Reusable parts of training (what diffusers keeps in `training_utils`): loss, batches, progress, checkpoints."""
