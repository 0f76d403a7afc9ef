"""The glyph judge: a small CNN that reads a glyph and names its Kangxi radical.

It is the feature network behind the glyph metrics (`glyph_pipeline.evaluation.metrics`): its penultimate layer
(globally pooled conv features) plays the role Inception-v3 plays for FID, and its radical prediction
turns "does the prompt steer the glyph?" into a number. Inception never saw a CJK glyph; a network
trained on the glyphs themselves measures what matters here (strokes, components, layout).

Conventions: the judge takes greyscale images in [0, 1] with white paper = 1 (what
`GlyphDiffusionPipeline(..., output_type="pt")` returns). Images at another resolution are resized to
the judge's `sample_size` inside `forward` (area averaging when shrinking, bilinear when enlarging), so a
32 px judge also scores 64/128 px models. Classes are `radical - 1` (Kangxi radicals 1..214).

Command line: ``glyffuser train-judge --dataset DIR --out DIR --epochs E --size 32``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from ..atomic import atomic_output
from ..data.dataset import as_dataset_dict
from ..data.images import NUM_RADICALS, GlyphArrays, concat_arrays, decode_split

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

METRICS_NAME = "judge_metrics.json"
DEFAULT_CHANNELS = (16, 32, 64, 128)


class GlyphJudgeError(ValueError):
    """Unusable judge input: images of the wrong shape, a missing split, a radical judge for a typeface judge..."""


def _conv(cin: int, cout: int, stride: int, batch_norm: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.ReLU(inplace=True))
    return layers


class GlyphJudge(ModelMixin, ConfigMixin):
    r"""
    Radical classifier and glyph feature extractor (~320k parameters with the default channels).

    A 3x3 stem at full resolution keeps thin strokes, then each stage halves the resolution with a
    strided conv followed by a second conv; global average pooling gives the feature vector
    (`feature_dim` = last channel count) that the Fréchet glyph distance compares.

    Args:
        sample_size (`int`): resolution the judge works at; other sizes are resized in `forward`.
        num_classes (`int`): output classes (214 Kangxi radicals; class = radical - 1).
        block_out_channels (`tuple[int]`): stem width, then one entry per down-sampling stage.
        batch_norm (`bool`): BatchNorm after the strided convs (faster convergence; cheap at inference).
        dropout (`float`): dropout before the classifier (features are taken before it).
        class_names (`list[str]`, *optional*): names of the classes when they are not radicals (the typeface
            judge of `glyph_pipeline.evaluation.typeface` names its fonts).
    """

    @register_to_config
    def __init__(
        self,
        sample_size: int = 32,
        num_classes: int = NUM_RADICALS,
        block_out_channels: Sequence[int] = DEFAULT_CHANNELS,
        batch_norm: bool = True,
        dropout: float = 0.1,
        class_names: Sequence[str] | None = None,
    ):
        super().__init__()
        channels = list(block_out_channels)
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class_names for {num_classes} classes.")
        if len(channels) < 2:
            raise ValueError("block_out_channels needs a stem width and at least one stage, e.g. (16, 32, 64, 128).")
        layers = _conv(1, channels[0], 1, False)
        for cin, cout in zip(channels[:-1], channels[1:]):
            # BatchNorm only after the strided convs: on CPU a BN backward costs about as much as a conv.
            layers += _conv(cin, cout, 2, batch_norm) + _conv(cout, cout, 1, False)
        self.body = nn.Sequential(*layers)
        self.head_dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(channels[-1], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    @property
    def feature_dim(self) -> int:
        return self.classifier.in_features

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 1:
            raise GlyphJudgeError(
                f"The judge takes greyscale images shaped (batch, 1, height, width), got {tuple(images.shape)}; "
                "convert with glyph_pipeline.evaluation.judge.to_judge_tensor()."
            )
        x = resize_glyphs(images.to(device=self.device, dtype=self.dtype), self.config.sample_size)
        return 1.0 - x  # ink = 1, paper = 0: zero padding then looks like paper

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features (batch, feature_dim): globally pooled, post-ReLU conv activations."""
        return self.body(self._prepare(images)).mean(dim=(2, 3))

    def forward(self, images: torch.Tensor, return_features: bool = False):
        """Radical logits (batch, num_classes), and the features too if `return_features`."""
        feats = self.features(images)
        logits = self.classifier(self.head_dropout(feats))
        return (logits, feats) if return_features else logits

    @torch.no_grad()
    def predict_radicals(self, images: torch.Tensor) -> torch.Tensor:
        """Predicted Kangxi radical numbers (1..214) for a batch of [0, 1] images."""
        return self(images).argmax(dim=1) + 1


# --------------------------------------------------------------------------------------------------
# Images in, tensors out
# --------------------------------------------------------------------------------------------------


def resize_glyphs(x: torch.Tensor, size: int) -> torch.Tensor:
    """Float glyphs (N, 1, H, W) at `size` px: area averaging down, bilinear up (as the dataset is decoded)."""
    if x.shape[-2:] == (size, size):
        return x
    shrink = x.shape[-1] > size
    return F.interpolate(
        x, size=(size, size), mode="area" if shrink else "bilinear", align_corners=None if shrink else False
    )


def to_judge_tensor(images: Any) -> torch.Tensor:
    """Any common image batch -> float32 (N, 1, H, W) in [0, 1], white = 1.

    Accepts a list of PIL images, a uint8/float numpy array (N, H, W[, 1]) as from `output_type="np"`, or a
    torch tensor (N, 1, H, W) / (N, H, W) as from `output_type="pt"`. uint8 is scaled by 1/255; floats are
    taken to be in [0, 1] already (use `(x + 1) / 2` for pipeline-internal [-1, 1] pixels).
    """
    if isinstance(images, (list, tuple)):
        if not images:
            raise GlyphJudgeError("No images given.")
        if hasattr(images[0], "convert"):  # PIL
            images = np.stack([np.asarray(im.convert("L")) for im in images])
        else:
            images = torch.stack([torch.as_tensor(np.asarray(im)) for im in images])
    x = torch.as_tensor(np.asarray(images)) if isinstance(images, np.ndarray) else images
    if not isinstance(x, torch.Tensor):
        raise GlyphJudgeError(f"Unsupported image batch type {type(images).__name__}.")
    if x.ndim == 3:
        x = x.unsqueeze(1)
    elif x.ndim == 4 and x.shape[1] != 1 and x.shape[-1] == 1:
        x = x.permute(0, 3, 1, 2)  # NHWC (numpy output) -> NCHW
    if x.ndim != 4 or x.shape[1] != 1:
        raise GlyphJudgeError(f"Expected a batch of greyscale images, got shape {tuple(x.shape)}.")
    if x.dtype == torch.uint8:
        return x.float() / 255.0
    return x.float()


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator, fill: int = 255) -> torch.Tensor:
    """Translate each image by an independent integer offset in [-max_shift, max_shift] (no flips:
    a mirrored glyph is a different glyph). Exact (no resampling); the uncovered border is paper."""
    if max_shift <= 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, value=fill)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, :, None]
    cols = (dx[:, None] + torch.arange(w))[:, None, :]
    return padded[torch.arange(n)[:, None, None], 0, rows, cols].unsqueeze(1)


def fit_classifier(
    judge: GlyphJudge,
    images: torch.Tensor,
    targets: torch.Tensor,
    generator: torch.Generator,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    weight_decay: float,
    label_smoothing: float,
    max_shift: int,
    held_out: Any = None,
    held_out_name: str | None = "test",
    log: Any = print,
) -> list[dict[str, float]]:
    """Train `judge` on uint8 glyphs (N, 1, S, S) and class `targets`: AdamW, one-cycle LR, label smoothing,
    random shifts. `held_out()` (optional) returns an accuracy after each epoch. Returns the epoch history."""
    steps_per_epoch = math.ceil(len(images) / batch_size)
    opt = torch.optim.AdamW(judge.parameters(), lr=learning_rate, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=learning_rate, total_steps=epochs * steps_per_epoch, pct_start=0.15
    )
    history = []
    for epoch in range(1, epochs + 1):
        judge.train()
        perm = torch.randperm(len(images), generator=generator)
        loss_sum = correct = 0.0
        t_epoch = time.perf_counter()
        for start in range(0, len(images), batch_size):
            idx = perm[start : start + batch_size]
            x = random_shift(images[idx], max_shift, generator).float() / 255.0
            logits = judge(x)
            loss = F.cross_entropy(logits, targets[idx], label_smoothing=label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == targets[idx]).sum())
        row = {
            "epoch": epoch,
            "loss": loss_sum / len(images),
            "train_accuracy": correct / len(images),
            "seconds": time.perf_counter() - t_epoch,
        }
        if held_out is not None:
            judge.eval()
            row["held_out_accuracy"] = held_out()
        history.append(row)
        log(
            f"epoch {epoch}/{epochs}: loss {row['loss']:.3f}, train acc {row['train_accuracy']:.3f}"
            + (f", {held_out_name} acc {row['held_out_accuracy']:.3f}" if held_out is not None else "")
            + f" ({row['seconds']:.0f}s)"
        )
    judge.eval()
    return history


@torch.no_grad()
def judge_accuracy(judge: GlyphJudge, data: GlyphArrays, batch_size: int = 512) -> dict[str, float]:
    """Top-1 / top-5 radical accuracy of `judge` on decoded real glyphs."""
    judge.eval()
    top1 = top5 = 0
    for start in range(0, len(data), batch_size):
        logits = judge(data.float_images(slice(start, start + batch_size)))
        target = torch.from_numpy(data.radicals[start : start + batch_size] - 1)
        top = logits.topk(5, dim=1).indices
        top1 += int((top[:, 0] == target).sum())
        top5 += int((top == target[:, None]).any(dim=1).sum())
    return {"top1": top1 / len(data), "top5": top5 / len(data)}


def train_judge(
    dataset: str | os.PathLike | Dataset | DatasetDict | Sequence[str | os.PathLike | Dataset | DatasetDict],
    size: int = 32,
    epochs: int = 8,
    batch_size: int = 256,
    learning_rate: float = 3e-3,
    weight_decay: float = 0.05,
    label_smoothing: float = 0.1,
    max_shift: int | None = None,
    block_out_channels: Sequence[int] = DEFAULT_CHANNELS,
    seed: int = 0,
    train_split: str = "train",
    eval_split: str | None = "test",
    log: Any = print,
) -> tuple[GlyphJudge, dict[str, Any]]:
    """Train a radical judge on `train_split`, report held-out accuracy on `eval_split`.

    Images are decoded once to a uint8 tensor (an epoch then costs only the network). Augmentation is a
    random translation of up to `max_shift` px (default size // 16). AdamW with a one-cycle schedule and
    label smoothing: a few epochs reach most of the accuracy. Returns `(judge in eval mode, metrics)`.

    Several datasets (e.g. the same characters rendered in several typefaces) are trained on together; the
    held-out accuracy is then also reported per dataset (`held_out_accuracy_per_dataset`).
    """
    if epochs < 1:
        raise GlyphJudgeError(f"epochs must be >= 1, got {epochs}.")
    sources = list(dataset) if isinstance(dataset, (list, tuple)) else [dataset]
    t0 = time.perf_counter()
    trains, held_outs = [], []
    for source in sources:
        splits = as_dataset_dict(source, single_split="train")
        if train_split not in splits:
            raise GlyphJudgeError(f"Split {train_split!r} not in the dataset {source} (has {list(splits)}).")
        trains.append(decode_split(splits[train_split], size, with_text=False))
        if eval_split and eval_split in splits:
            held_outs.append(decode_split(splits[eval_split], size, with_text=False))
    train = concat_arrays(trains)
    held_out = concat_arrays(held_outs) if held_outs else None
    t_decode = time.perf_counter() - t0
    log(
        f"decoded {len(train):,} train" + (f" + {len(held_out):,} {eval_split}" if held_out else "")
        + f" glyphs at {size}px in {t_decode:.1f}s"
        + (f" (dropped {train.dropped} without a radical)" if train.dropped else "")
    )

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    judge = GlyphJudge(sample_size=size, block_out_channels=tuple(block_out_channels))
    max_shift = max(1, size // 16) if max_shift is None else max_shift
    t_train, cpu_train = time.perf_counter(), time.process_time()
    history = fit_classifier(
        judge, train.images, torch.from_numpy(train.radicals - 1), gen, epochs=epochs, batch_size=batch_size,
        learning_rate=learning_rate, weight_decay=weight_decay, label_smoothing=label_smoothing,
        max_shift=max_shift, held_out=(lambda: judge_accuracy(judge, held_out)["top1"]) if held_out else None,
        held_out_name=eval_split, log=log,
    )
    judge.eval()
    counts = Counter(train.radicals.tolist())
    top_radical, top_count = counts.most_common(1)[0]
    metrics: dict[str, Any] = {
        "size": size,
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "max_shift": max_shift,
        "seed": seed,
        "parameters": sum(p.numel() for p in judge.parameters()),
        "num_train": len(train),
        "train_radicals": len(counts),
        "majority_radical": int(top_radical),
        "majority_rate": top_count / len(train),
        "train_seconds": time.perf_counter() - t_train,
        "train_cpu_seconds": time.process_time() - cpu_train,  # wall time is misleading on a shared CPU
        "torch_threads": torch.get_num_threads(),
        "history": history,
    }
    if held_out is not None:
        acc = judge_accuracy(judge, held_out)
        metrics.update(
            held_out_split=eval_split,
            num_held_out=len(held_out),
            held_out_accuracy=acc["top1"],
            held_out_top5=acc["top5"],
        )
        if len(held_outs) > 1:
            metrics["held_out_accuracy_per_dataset"] = [judge_accuracy(judge, h)["top1"] for h in held_outs]
    return judge, metrics


# --------------------------------------------------------------------------------------------------
# Saving / loading
# --------------------------------------------------------------------------------------------------


def save_judge(judge: GlyphJudge, out_dir: str | os.PathLike, metrics: dict[str, Any] | None = None) -> Path:
    """`save_pretrained` (config.json + safetensors) plus `judge_metrics.json`, into a temporary sibling
    folder that is then renamed over `out_dir`: readers never see a half-written judge."""
    target = Path(out_dir).absolute()
    with atomic_output(target) as tmp:
        judge.save_pretrained(tmp, safe_serialization=True)
        if metrics is not None:
            (tmp / METRICS_NAME).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        _relax_permissions(tmp)
    return target


def _relax_permissions(folder: Path) -> None:
    """Some writers (diffusers' safetensors save) create owner-only files; give the judge normal umask permissions."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for file in folder.iterdir():
        file.chmod(0o666 & ~umask)


def load_judge(path: str | os.PathLike) -> GlyphJudge:
    """Load a judge folder written by `save_judge` / `glyffuser train-judge`, in eval mode."""
    folder = Path(path)
    if not (folder / "config.json").is_file():
        what = "does not exist" if not folder.exists() else "has no config.json"
        raise FileNotFoundError(
            f"Judge folder {folder} {what}; train one with `glyffuser train-judge --dataset DIR --out {folder}`."
        )
    return GlyphJudge.from_pretrained(str(folder)).eval()


def load_judge_metrics(path: str | os.PathLike) -> dict[str, Any]:
    """The training metrics saved next to a judge ({} if absent)."""
    file = Path(path) / METRICS_NAME
    return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else {}


# --------------------------------------------------------------------------------------------------
# Command line: `glyffuser train-judge`
# --------------------------------------------------------------------------------------------------


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Flags of ``glyffuser train-judge``."""
    parser.add_argument(
        "--dataset", required=True, action="append",
        help="glyph dataset (save_to_disk folder, parquet file or Hub name); repeat it to train on several, e.g. "
        "the same characters in several typefaces",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder (written atomically)")
    parser.add_argument("--size", type=int, default=32, help="judge resolution in px (default: 32)")
    parser.add_argument("--epochs", type=int, default=8, help="training epochs (default: 8)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate of the one-cycle schedule")
    parser.add_argument(
        "--channels", default=",".join(map(str, DEFAULT_CHANNELS)),
        help="stem,stage1,... widths (default: 16,32,64,128)",
    )
    parser.add_argument("--max-shift", type=int, help="random translation in px (default: size // 16)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, help="torch CPU threads (default: torch's choice; 1 is fastest on a busy shared CPU)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``glyffuser train-judge``."""
    prog = "glyffuser train-judge"
    try:
        if args.out.exists() and not args.overwrite:
            raise FileExistsError(f"{args.out} already exists; pass --overwrite to replace it.")
        channels = tuple(int(c) for c in str(args.channels).split(","))
        if args.threads:
            torch.set_num_threads(args.threads)
        judge, metrics = train_judge(
            args.dataset if len(args.dataset) > 1 else args.dataset[0],
            size=args.size,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.lr,
            max_shift=args.max_shift,
            block_out_channels=channels,
            seed=args.seed,
        )
        metrics["dataset"] = ", ".join(map(str, args.dataset))
        out = save_judge(judge, args.out, metrics)
    except (GlyphJudgeError, FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    acc = metrics.get("held_out_accuracy")
    summary = f"judge ({metrics['parameters']:,} params, {args.size}px) saved to {out}"
    if acc is not None:
        summary += (
            f"\nheld-out radical accuracy: {acc:.3f} top-1, {metrics['held_out_top5']:.3f} top-5 "
            f"on {metrics['num_held_out']:,} {metrics['held_out_split']} glyphs "
            f"(majority-radical baseline {metrics['majority_rate']:.3f})"
        )
        for source, per in zip(args.dataset, metrics.get("held_out_accuracy_per_dataset", [])):
            summary += f"\n  {source}: {per:.3f}"
    print(summary)
    return 0
