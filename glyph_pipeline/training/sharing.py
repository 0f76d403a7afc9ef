# Copyright 2026 The glyffuser developers. Licensed under the Apache License, Version 2.0.
"""`--push_to_hub` for every training recipe: the token and repo checked before training, the upload after it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from accelerate.logging import get_logger

from .inputs import TrainingSetupError

logger = get_logger(__name__, log_level="INFO")


def check_hub_repo(args: argparse.Namespace) -> str | None:
    """The repo `--push_to_hub` will upload to (created if needed), or None without the flag.

    Every process checks (cheap): all fail alike before any training, none waits at a barrier.
    """
    if not args.push_to_hub:
        return None
    from ..hub.repo import HubError, prepare_hub_repo

    try:
        return prepare_hub_repo(
            args.hub_model_id or Path(args.output_dir).absolute().name, token=args.hub_token,
            private=args.hub_private, revision=args.hub_revision,
        )
    except HubError as err:
        raise TrainingSetupError(str(err)) from err


def push_run(
    args: argparse.Namespace, repo: str, record: dict[str, Any], commit_message: str, grid: Path | None = None
) -> None:
    """Upload the saved `--output_dir` with its card (main process, after training). A failed upload does not fail
    the run: the folder is complete, the log ends with the retry command, `record["hub_push_error"]` says why."""
    from ..hub.push import push_pipeline_folder
    from ..hub.repo import HubPushError

    try:
        url = push_pipeline_folder(
            Path(args.output_dir), repo, token=args.hub_token, revision=args.hub_revision,
            commit_message=commit_message, training_config=record, sample_grid=grid, private=args.hub_private,
        )
        print(f"Pushed to {url}", flush=True)
    except HubPushError as err:
        logger.error(str(err))
        record["hub_push_error"] = err.reason
