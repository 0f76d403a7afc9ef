# Copyright 2026 The glyffuser developers. Licensed under the Apache License, Version 2.0.
"""Push a saved pipeline (or LoRA) folder to the Hub with its glyph model card, uploading only what belongs there.

:func:`push_pipeline_folder` (after training, and ``glyffuser push DIR REPO``, :func:`run`) and
:func:`push_pipeline` (an in-memory pipeline) write the card first, then upload; a push that fails leaves the
folder complete and names the one command that retries it. The repo and token are checked by :mod:`.repo`.

The card comes from :mod:`glyph_pipeline.model_card` (beside its template); it states the recommended sampler
settings of :mod:`glyph_pipeline.schedulers`, so writing one loads diffusers. The rest needs only
``huggingface_hub`` and the standard library (PIL only to convert a sample grid).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import re
import shlex
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..atomic import write_bytes, write_text
from ..model_card import CARD_MARKER, METRICS_FILE, TRAINING_CONFIG_FILE, make_model_card, read_json, saved_class_name
from .repo import (
    _LOGIN_HINT,
    HubError,
    HubPushError,
    check_no_token,
    explain_hub_error,
    prepare_hub_repo,
    resolve_token,
)

if TYPE_CHECKING:  # pragma: no cover
    from PIL.Image import Image as PILImage

    from ..pipeline_glyph_diffusion import GlyphDiffusionPipeline

logger = logging.getLogger(__name__)

SAMPLES_FILE = "samples.png"
DEFAULT_COMMIT_MESSAGE = "Upload glyffuser pipeline"
#: Never uploaded: training state, trackers, caches, partial writes, pickled weights. The pipeline itself
#: (model_index.json, component folders with safetensors, the remote-code module), README.md, samples.png,
#: training_config.json (no token: the training script drops token arguments) and metrics.json are.
#: Patterns use huggingface_hub semantics (fnmatch on the relative path, `*` crosses `/`, `dir/` = `dir/*`).
IGNORE_PATTERNS: list[str] = [
    "checkpoint-*",  # accelerate save_state folders (optimizer, EMA, RNG states), incl. checkpoint-N.tmp
    "logs/", "runs/", "wandb/", "*tfevents*",  # trackers
    "validation/",  # intermediate grids: the final one is committed as samples.png
    "*cache*/", "*embeddings*/", "*.npy", "*.npz",  # text-embedding caches
    "*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.pickle", "*optimizer*", "random_states_*",  # pickles
    "*.tmp", "*.tmp/", "*.lock", "*.part", ".*", "*/.*",  # partial/atomic writes, hidden files
    "debug_*", "__pycache__/", "*.pyc",
]  # fmt: skip
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".pkl", ".msgpack", ".h5")
_TEXT_SUFFIXES = (".json", ".md", ".txt", ".py", ".yaml", ".yml", ".cfg", ".jinja", ".csv")
# ============================================================================================ folder checks
def files_to_upload(folder: str | os.PathLike, ignore_patterns: Sequence[str] = IGNORE_PATTERNS) -> list[str]:
    """The relative paths `push_pipeline_folder` would upload (same filter as `upload_folder`)."""
    from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects

    root = Path(folder)
    paths = sorted(p.relative_to(root).as_posix() for p in root.glob("**/*") if p.is_file())
    return list(filter_repo_objects(paths, ignore_patterns=list(ignore_patterns) + list(DEFAULT_IGNORE_PATTERNS)))


def is_lora_folder(folder: str | os.PathLike) -> bool:
    """A LoRA adapter folder (the training script's `--lora_rank` output) rather than a whole pipeline."""
    from ..lora import LORA_WEIGHT_NAME

    root = Path(folder)
    return (root / LORA_WEIGHT_NAME).is_file() and not (root / "model_index.json").exists()


def make_card(
    folder: Path, repo_id: str, tc: Mapping[str, Any] | None, metrics: Mapping[str, Any] | None,
    sample_grid: str | None, sample_caption: str | None, dataset_id: str | None, base_model: str | None = None,
):
    """The card of a pipeline folder, of a LoRA folder (base model, typeface and its licence, how to load it) or of
    an upscaler folder."""
    if is_lora_folder(folder):
        from ..model_card.lora import make_lora_card

        return make_lora_card(folder, repo_id, tc, metrics, sample_grid, sample_caption, base_model)
    if saved_class_name(folder) == "GlyphUpscalePipeline":
        from ..model_card.upscaler import make_upscaler_card

        return make_upscaler_card(folder, repo_id, tc, metrics, sample_grid, sample_caption)
    return make_model_card(folder, repo_id, tc, metrics, sample_grid, sample_caption, dataset_id)


def check_pipeline_folder(folder: str | os.PathLike, files: Sequence[str] | None = None) -> dict[str, Any]:
    """Make sure `folder` is a saved glyph pipeline (or LoRA) that loads from the Hub; returns its model_index.json
    ({} for a LoRA)."""
    root = Path(folder)
    if not root.is_dir():
        raise HubError(f"{root} is not a folder. Pass the folder a pipeline was saved to (the training --output_dir).")
    if is_lora_folder(root):
        return {}
    index = read_json(root / "model_index.json")
    if index is None:
        raise HubError(
            f"{root} has no readable model_index.json, so it is not a saved pipeline. Save one with "
            "`pipe.save_pretrained(DIR)`, or let training finish (it saves the pipeline at the end)."
        )
    name = index.get("_class_name")
    if not (isinstance(name, list) and len(name) == 2 and (root / f"{name[0]}.py").is_file()):
        raise HubError(
            f"{root}/model_index.json names the pipeline class as {name!r} without its module file next to it, so "
            "`DiffusionPipeline.from_pretrained(repo, trust_remote_code=True)` could not load it. Re-save it with "
            "`GlyphDiffusionPipeline.from_pretrained(DIR).save_pretrained(DIR)` (writes the module and the list-form "
            "_class_name)."
        )
    files = files_to_upload(root) if files is None else files
    for component, spec in index.items():
        if component.startswith("_") or not isinstance(spec, list) or spec[0] is None:
            continue
        sub = root / component
        if not sub.is_dir():
            raise HubError(
                f"{root} lacks the folder of component {component!r} listed in model_index.json; re-save it."
            )
        local = [p.name for p in sub.iterdir() if p.is_file()]
        if any(n.endswith(_WEIGHT_SUFFIXES) for n in local) and not any(
            f.startswith(f"{component}/") and f.endswith(".safetensors") for f in files
        ):
            raise HubError(
                f"{sub} holds weights but no .safetensors file; only safetensors are published. Re-save the pipeline "
                "with `save_pretrained(DIR)` (safetensors is the default)."
            )
    return index


def _stage(root: Path, files: Sequence[str], stage: Path) -> None:
    """Mirror `files` of `root` into `stage`: symlinks (no copy of the weights), except the JSON run records,
    which are written without local paths."""
    for rel in files:
        src, dst = root / rel, stage / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if rel in (TRAINING_CONFIG_FILE, METRICS_FILE):
            data = read_json(src)
            if data is not None:
                dst.write_text(
                    json.dumps(without_local_paths(data), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
                )
                continue
        try:
            os.symlink(src.absolute(), dst)
        except OSError:  # e.g. Windows without symlink rights
            shutil.copy2(src, dst)


def _scan_files_for_tokens(stage: Path, files: Sequence[str], token: str | None, shown_root: Path) -> None:
    """The token must not be in any published file; token-looking strings must not be in small text files."""
    needle = token.encode() if token else None
    for rel in files:
        path = stage / rel
        if path.suffix == ".safetensors" or path.stat().st_size > 10 * 1024 * 1024:
            continue
        data = path.read_bytes()
        if needle and needle in data:
            raise HubError(
                f"Refusing to upload {shown_root / rel}: it contains the Hub token in use. Remove it and retry."
            )
        if path.suffix in _TEXT_SUFFIXES and Path(rel).name != "tokenizer.json":
            check_no_token(data.decode("utf-8", "replace"), None, str(shown_root / rel))


# ============================================================================================ published records
def _is_local_path(value: str) -> bool:
    return value.startswith(("/", "~", "./", "../", "\\")) or bool(re.match(r"^[A-Za-z]:[\\/]", value)) or (
        ("/" in value or os.sep in value) and os.path.exists(value)
    )


def without_local_paths(value: Any) -> Any:
    """`value` with every string that is a local path replaced: what is published must not show the machine."""
    if isinstance(value, Mapping):
        return {k: without_local_paths(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [without_local_paths(v) for v in value]
    if isinstance(value, str) and _is_local_path(value):
        return "<local path>"
    return value


# ============================================================================================ push
def _png_bytes(grid: str | os.PathLike | PILImage) -> bytes:
    from PIL import Image

    if isinstance(grid, (str, os.PathLike)):
        path = Path(grid)
        if not path.is_file():
            raise HubError(f"Sample grid {path} does not exist.")
        data = path.read_bytes()
        if data.startswith(b"\x89PNG\r\n\x1a\n"):
            return data
        grid = Image.open(io.BytesIO(data))
    buffer = io.BytesIO()
    grid.save(buffer, format="PNG")
    return buffer.getvalue()


def retry_command(
    folder: str | os.PathLike, repo_id: str, revision: str | None = None, private: bool = False, **flags: str | None
) -> str:
    """The shell command that re-uploads `folder` (no token in it: it comes from HF_TOKEN or the login)."""
    parts = ["glyffuser", "push", str(Path(folder).absolute()), repo_id]
    if revision:
        parts += ["--revision", revision]
    if private:
        parts.append("--private")
    for name, value in flags.items():
        if value:
            parts += [f"--{name.replace('_', '-')}", str(value)]
    return shlex.join(parts)


def _load_training_config(folder: Path, training_config: Mapping[str, Any] | str | os.PathLike | None) -> dict | None:
    if isinstance(training_config, Mapping):
        return dict(training_config)
    path = Path(training_config) if training_config is not None else folder / TRAINING_CONFIG_FILE
    if not path.is_file():
        if training_config is not None:
            raise HubError(f"training_config {path} does not exist.")
        return None
    data = read_json(path)
    if data is None:
        raise HubError(f"{path} is not a JSON object; fix or remove it.")
    return data


def push_pipeline_folder(
    folder: str | os.PathLike,
    repo_id: str,
    token: str | None = None,
    revision: str | None = None,
    commit_message: str = DEFAULT_COMMIT_MESSAGE,
    training_config: Mapping[str, Any] | str | os.PathLike | None = None,
    sample_grid: str | os.PathLike | PILImage | None = None,
    *,
    private: bool = False,
    create_pr: bool = False,
    metrics: Mapping[str, Any] | None = None,
    sample_caption: str | None = None,
    dataset_id: str | None = None,
    card: str = "auto",
    retry_hint: bool = True,
) -> str:
    """Write the model card (+ `samples.png`) into a saved pipeline folder, then upload what belongs on the Hub.

    The card and grid are written atomically before any network call, so the folder is complete (and the
    card reviewable) even if the upload fails; the :class:`HubPushError` then carries the retry command.
    Uploaded: the pipeline (safetensors weights, configs, tokenizer, the remote-code module), README.md,
    samples.png, training_config.json, metrics.json. Never: see :data:`IGNORE_PATTERNS`. Stale files of the
    pipeline's component folders on the Hub are deleted in the same commit; other repo files are kept.

    Args:
        folder: output of `GlyphDiffusionPipeline.save_pretrained` (e.g. the training `--output_dir`).
        repo_id: `name` or `user-or-org/name`; created if needed.
        token: explicit token, else HF_TOKEN, else the cached login. Passed explicitly to every Hub call.
        revision: branch to commit to (created from main if missing).
        training_config: dict or path; default `folder/training_config.json` if present (adds the training table).
        sample_grid: PNG path or PIL image; default `folder/samples.png`, else `folder/validation/final.png`.
        private: create the repo private (ignored if it exists).
        create_pr: open a pull request instead of committing to the branch.
        metrics: evaluation numbers for the card; saved as `metrics.json` (default: read from it).
        sample_caption: caption under the grid (default: from training_config's validation settings).
        dataset_id: Hub dataset for the card metadata (default: the training dataset if it is a Hub id).
        card: "auto" (write ours unless README.md was written by a person), "regenerate", or "keep".
        retry_hint: put the `glyffuser push` retry command in the error (off when `folder` is temporary).

    Returns:
        The commit URL (a `huggingface_hub.CommitInfo`, which is a `str`).
    """
    root = Path(folder)
    retry = (
        retry_command(root, repo_id, revision, private, dataset=dataset_id, commit_message=None)
        if retry_hint
        else None
    )
    if card not in ("auto", "regenerate", "keep"):
        raise ValueError(f"card must be 'auto', 'regenerate' or 'keep', got {card!r}.")

    # 1. local: checks, card, grid (no network; errors here need a fix, not a retry)
    index = check_pipeline_folder(root)
    token = resolve_token(token)
    if not token:
        raise HubPushError(f"No Hugging Face token found to push to {repo_id!r}: {_LOGIN_HINT}.", retry)
    tc = _load_training_config(root, training_config)
    if metrics is None:
        metrics = read_json(root / METRICS_FILE)
    elif metrics:
        write_text(root / METRICS_FILE, json.dumps(dict(metrics), indent=2, sort_keys=True) + "\n")
    if sample_grid is None:
        sample_grid = _default_grid(root)
    grid_png = _png_bytes(sample_grid) if sample_grid is not None else None
    content, write_card = _card_content(root, repo_id, token, tc, metrics, grid_png, sample_caption, dataset_id, card)

    # 2. stage exactly what is published (links; JSON records without local paths) and scan it, then write the
    # card and grid into the output folder: a refused push leaves the folder untouched.
    card_files = {"README.md"} | ({SAMPLES_FILE} if grid_png is not None else set())
    files = [f for f in files_to_upload(root) if f not in card_files]
    stage = Path(tempfile.mkdtemp(prefix="glyph-upload-"))
    try:
        _stage(root, files, stage)
        _scan_files_for_tokens(stage, files, token, root)
        if grid_png is not None and (
            not (root / SAMPLES_FILE).is_file() or (root / SAMPLES_FILE).read_bytes() != grid_png
        ):
            write_bytes(root / SAMPLES_FILE, grid_png)
        if write_card:
            write_text(root / "README.md", content)
        _stage(root, sorted(card_files), stage)
        # 3. network
        num_files = len(files) + len(card_files)
        info = _upload(stage, num_files, repo_id, token, revision, private, commit_message, create_pr, index, retry)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    logger.info(f"Pushed {root} to {info}")
    return info


def _default_grid(root: Path) -> Path | None:
    """The committed grid, else the training script's final validation grid."""
    return next((p for p in (root / SAMPLES_FILE, root / "validation" / "final.png") if p.is_file()), None)


def _card_content(
    root: Path, repo_id: str, token: str, tc: Mapping[str, Any] | None, metrics: Mapping[str, Any] | None,
    grid_png: bytes | None, sample_caption: str | None, dataset_id: str | None, card: str,
) -> tuple[str, bool]:
    """The card to publish and whether to write it: ours, unless a person wrote README.md (or `card='keep'`)."""
    from huggingface_hub import ModelCard

    readme = root / "README.md"
    existing = readme.read_text(encoding="utf-8") if readme.is_file() else None
    if card == "keep" and existing is None:
        raise HubError(f"card='keep' but {readme} does not exist.")
    write_card = card == "regenerate" or existing is None or (card == "auto" and CARD_MARKER in existing)
    if write_card:
        content = make_card(
            root, repo_id, tc, metrics, SAMPLES_FILE if grid_png else None, sample_caption, dataset_id
        ).content
    else:
        content = existing
        logger.info(f"Keeping the hand-written {readme} (card='{card}').")
    try:
        ModelCard(content)  # the YAML header must parse
    except Exception as err:
        raise HubError(f"{readme} has invalid YAML metadata ({err}); fix it or push with card='regenerate'.") from err
    check_no_token(content, token, "the model card")
    return content, write_card


def _upload(
    stage: Path, num_files: int, repo_id: str, token: str, revision: str | None, private: bool, commit_message: str,
    create_pr: bool, index: Mapping[str, Any], retry: str | None,
) -> str:
    """One commit of the staged folder; the pipeline's component folders are mirrored, other repo files kept."""
    from huggingface_hub import HfApi

    try:
        full_id = prepare_hub_repo(repo_id, token=token, private=private, revision=revision)
    except HubError as err:
        raise HubPushError(str(err), retry) from err
    components = [k for k, v in index.items() if not k.startswith("_") and isinstance(v, list) and v[0] is not None]
    logger.info(f"Uploading {num_files} files to {full_id}{'@' + revision if revision else ''}.")
    try:
        return HfApi(token=token).upload_folder(
            repo_id=full_id,
            folder_path=stage,
            token=token,
            revision=revision,
            commit_message=commit_message,
            create_pr=create_pr,
            ignore_patterns=list(IGNORE_PATTERNS),
            delete_patterns=[f"{c}/*" for c in components],
        )
    except Exception as err:
        raise HubPushError(explain_hub_error(err, "upload to", full_id), retry) from err


def sample_grid(pipe: GlyphDiffusionPipeline, prompts: Sequence[str], per_prompt: int = 4) -> tuple[PILImage, str]:
    """A seeded grid (one row per prompt) with the recommended sampler settings, and its caption, for the card."""
    import torch
    from diffusers.utils import make_image_grid

    from ..schedulers import RECOMMENDED_GUIDANCE, RECOMMENDED_STEPS

    prompts = list(prompts)
    generators = [torch.Generator().manual_seed(i) for i in range(len(prompts) * per_prompt)]
    images = pipe(
        prompts, num_images_per_prompt=per_prompt, num_inference_steps=RECOMMENDED_STEPS,
        guidance_scale=RECOMMENDED_GUIDANCE, generator=generators,
    ).images  # fmt: skip
    grid = make_image_grid(images, rows=len(prompts), cols=per_prompt, resize=max(images[0].size[0], 64))
    quoted = ", ".join(f"“{p}”" for p in prompts)
    caption = (
        f"Samples, one row per prompt ({quoted}), {per_prompt} seeds each; `{type(pipe.scheduler).__name__}`, "
        f"{RECOMMENDED_STEPS} steps, guidance scale {RECOMMENDED_GUIDANCE}."
    )
    return grid, caption


def push_pipeline(
    pipe: GlyphDiffusionPipeline,
    repo_id: str,
    *,
    token: str | None = None,
    revision: str | None = None,
    commit_message: str = DEFAULT_COMMIT_MESSAGE,
    private: bool = False,
    create_pr: bool = False,
    training_config: Mapping[str, Any] | None = None,
    sample_prompts: Sequence[str] | None = None,
    metrics: Mapping[str, Any] | None = None,
    variant: str | None = None,
) -> str:
    """Push an in-memory pipeline with the glyph model card (`pipe.push_to_hub` gives diffusers' generic card).

    `sample_prompts` renders :func:`sample_grid` (4 seeds per prompt) into the card as `samples.png`. The folder
    is temporary, so a failed push is retried by calling this again. Returns the commit URL.
    """
    with tempfile.TemporaryDirectory(prefix="glyph-push-") as tmp:
        folder = os.path.join(tmp, "pipeline")
        pipe.save_pretrained(folder, variant=variant)
        grid = caption = None
        if sample_prompts:
            grid, caption = sample_grid(pipe, sample_prompts)
        try:
            return push_pipeline_folder(
                folder, repo_id, token=token, revision=revision, commit_message=commit_message,
                training_config=training_config, sample_grid=grid, private=private, create_pr=create_pr,
                metrics=metrics, sample_caption=caption, card="regenerate", retry_hint=False,
            )  # fmt: skip
        except HubPushError as err:
            raise HubError(f"{err.reason} Call push_pipeline again to retry.") from err


# ============================================================================================ CLI
def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Flags of `glyffuser push DIR REPO`."""
    parser.add_argument("folder", type=Path, help="a saved pipeline folder (e.g. the training --output_dir)")
    parser.add_argument("repo_id", help="Hub model repo, 'name' or 'user-or-org/name' (created if needed)")
    parser.add_argument("--revision", default=None, help="branch to push to (created from main if missing)")
    parser.add_argument("--private", action="store_true", help="create the repo private (if it does not exist)")
    parser.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    parser.add_argument(
        "--token", default=None,
        help="Hub token (default: HF_TOKEN, else the `hf auth login` cache; "
        "prefer those: flags end up in shell history)",
    )  # fmt: skip
    parser.add_argument("--commit-message", default=DEFAULT_COMMIT_MESSAGE)
    parser.add_argument(
        "--training-config", type=Path, default=None, help="default: DIR/training_config.json if present"
    )
    parser.add_argument(
        "--sample-grid", type=Path, default=None,
        help="PNG shown in the card (default: DIR/samples.png or DIR/validation/final.png)",
    )  # fmt: skip
    parser.add_argument("--metrics", type=Path, default=None, help="JSON object of evaluation metrics for the card")
    parser.add_argument("--dataset", default=None, help="Hub dataset id for the card (default: from training_config)")
    parser.add_argument(
        "--card", choices=["auto", "regenerate", "keep"], default="auto",
        help="auto: write the glyffuser card unless README.md was written by hand; keep: upload README.md as is",
    )  # fmt: skip
    parser.add_argument("--dry-run", action="store_true", help="write the card, list the files, upload nothing")


def run(args: argparse.Namespace) -> int:
    """`glyffuser push`: upload a saved pipeline folder (also the retry of a failed push after training)."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")  # not INFO: the HTTP client logs every request
    logger.setLevel(logging.INFO)
    prog = "glyffuser push"
    try:
        metrics = None
        if args.metrics is not None:
            metrics = read_json(args.metrics)
            if metrics is None:
                raise HubError(f"--metrics {args.metrics} is not a readable JSON object.")
        if args.dry_run:
            root = Path(args.folder)
            check_pipeline_folder(root)
            tc = _load_training_config(root, args.training_config)
            grid = args.sample_grid or _default_grid(root)
            content = make_card(root, args.repo_id, tc, metrics or read_json(root / METRICS_FILE),
                                SAMPLES_FILE if grid else None, None, args.dataset).content  # fmt: skip
            check_no_token(content, resolve_token(args.token), "the model card")
            print(content)
            files = sorted(set(files_to_upload(root)) | {"README.md"} | ({SAMPLES_FILE} if grid else set()))
            print("Would upload:\n  " + "\n  ".join(files))
            return 0
        url = push_pipeline_folder(
            args.folder, args.repo_id, token=args.token, revision=args.revision,
            commit_message=args.commit_message, training_config=args.training_config,
            sample_grid=args.sample_grid, private=args.private, create_pr=args.create_pr, metrics=metrics,
            dataset_id=args.dataset, card=args.card,
        )  # fmt: skip
    except HubPushError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 1
    except HubError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    print(f"Pushed to {url}")
    return 0
