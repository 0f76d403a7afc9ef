"""The typeface judge: which font does a glyph look drawn in? (Noto Sans CJK, AR PL UKai, AR PL UMing, ...)

A `GlyphJudge` (the radical judge's small CNN) with one class per typeface, trained on the same characters
rendered in each font and scored on held-out characters (the glyph dataset's test split). It turns "did the
LoRA learn the brush style?" into a number: the share of generated glyphs read as the target typeface
(`glyffuser evaluate --typeface ukai`).

Command line: ``glyffuser train-typeface-judge --dataset data/glyphs-32 --out artifacts/typeface-judge-32``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.dataset import as_dataset_dict
from ..data.images import column
from ..data.render import DEFAULT_SCALE, FontError, GlyphRenderer, load_font
from .judge import (
    DEFAULT_CHANNELS,
    GlyphJudge,
    GlyphJudgeError,
    fit_classifier,
    load_judge,
    save_judge,
    to_judge_tensor,
)

# Debian's AR PL fonts (fonts-arphic-ukai, fonts-arphic-uming); None = the packaged Noto Sans CJK.
ARPHIC = "/usr/share/fonts/truetype/arphic"
DEFAULT_TYPEFACES: dict[str, str | None] = {
    "noto-sans": None,
    "ukai": f"{ARPHIC}/ukai.ttc",
    "uming": f"{ARPHIC}/uming.ttc",
}
TYPEFACE_LICENSES = {
    "noto-sans": "SIL Open Font License 1.1",
    "ukai": "Arphic Public License",
    "uming": "Arphic Public License",
}
DEFAULT_MAX_CHARS = 3000
MIN_CHARS = 50


class TypefaceError(ValueError):
    """Unusable typeface-judge input: a font that is missing or covers too few of the characters."""


def typeface_font(name: str, fonts: Mapping[str, str | os.PathLike | None] | None = None) -> str | None:
    """The font file of a typeface name (None: the default Noto Sans CJK), with the package that ships it."""
    fonts = DEFAULT_TYPEFACES if fonts is None else fonts
    if name not in fonts:
        raise TypefaceError(f"Unknown typeface {name!r}; known: {', '.join(fonts)} (or pass --font NAME=PATH).")
    path = fonts[name]
    if path is not None and not Path(path).is_file():
        hint = f" (Debian: apt-get install fonts-arphic-{name})" if name in ("ukai", "uming") else ""
        raise TypefaceError(f"The {name} font {path} does not exist{hint}.")
    try:
        load_font(path)
    except FontError as err:
        raise TypefaceError(f"The {name} typeface: {err}") from err
    return None if path is None else str(path)


def render_typefaces(
    characters: Sequence[str], fonts: Mapping[str, str | None], size: int, scale: float = DEFAULT_SCALE
) -> dict[str, np.ndarray]:
    """uint8 glyphs (N, 1, size, size) of `characters` in every font (all fonts must cover them)."""
    out = {}
    for name, path in fonts.items():
        renderer = GlyphRenderer(load_font(path), size, scale)
        out[name] = np.stack([np.asarray(renderer.render(c))[None] for c in characters])
    return out


def shared_characters(candidates: Sequence[str], fonts: Mapping[str, str | None]) -> list[str]:
    """The candidates every font covers, in the given order; a font covering too few is named."""
    keep = list(candidates)
    for name, path in fonts.items():
        font = load_font(path)
        covered = [c for c in keep if ord(c) in font.codepoints]
        if len(covered) < min(MIN_CHARS, len(candidates)):
            raise TypefaceError(
                f"The {name} font ({font.path}) covers {len(covered)} of {len(candidates)} characters: not a CJK "
                "font for these glyphs. Pass a font with CJK ideographs."
            )
        keep = covered
    return keep


def train_typeface_judge(
    dataset: Any,
    fonts: Mapping[str, str | os.PathLike | None] | None = None,
    size: int = 32,
    scale: float = DEFAULT_SCALE,
    max_chars: int = DEFAULT_MAX_CHARS,
    epochs: int = 4,
    batch_size: int = 256,
    learning_rate: float = 3e-3,
    block_out_channels: Sequence[int] = DEFAULT_CHANNELS,
    seed: int = 0,
    log: Any = print,
) -> tuple[GlyphJudge, dict[str, Any]]:
    """Train a typeface classifier on the dataset's train characters (a seeded `max_chars`), rendered in every
    font; report its accuracy on the test characters (never trained on), overall and per typeface."""
    fonts = {name: typeface_font(name, fonts or DEFAULT_TYPEFACES) for name in (fonts or DEFAULT_TYPEFACES)}
    if len(fonts) < 2:
        raise TypefaceError("A typeface judge needs at least two typefaces.")
    splits = as_dataset_dict(dataset, single_split="train")
    for split in ("train", "test"):
        if split not in splits or "character" not in splits[split].column_names:
            raise TypefaceError(
                f"The dataset needs a '{split}' split with a 'character' column (build one with "
                "`glyffuser build-dataset`): the typeface judge is scored on characters it never saw."
            )
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    train_chars = shared_characters(column(splits["train"], "character"), fonts)
    train_chars = [train_chars[i] for i in np.sort(rng.permutation(len(train_chars))[:max_chars])]
    test_chars = shared_characters(column(splits["test"], "character"), fonts)
    names = list(fonts)
    train = render_typefaces(train_chars, fonts, size, scale)
    test = render_typefaces(test_chars, fonts, size, scale)
    log(
        f"rendered {len(train_chars):,} train + {len(test_chars):,} held-out characters in {len(names)} typefaces "
        f"({', '.join(names)}) at {size}px in {time.perf_counter() - t0:.1f}s"
    )
    images = torch.from_numpy(np.concatenate([train[n] for n in names]))
    targets = torch.arange(len(names)).repeat_interleave(len(train_chars))
    test_images = {n: torch.from_numpy(test[n]) for n in names}

    def held_out() -> float:
        return float(np.mean([typeface_accuracy(judge, test_images[n], k) for k, n in enumerate(names)]))

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    judge = GlyphJudge(
        sample_size=size, num_classes=len(names), block_out_channels=tuple(block_out_channels), class_names=names
    )
    t_train, cpu_train = time.perf_counter(), time.process_time()
    history = fit_classifier(
        judge, images, targets, gen, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
        weight_decay=0.05, label_smoothing=0.1, max_shift=max(1, size // 16), held_out=held_out, log=log,
    )
    per_typeface = {n: typeface_accuracy(judge, test_images[n], k) for k, n in enumerate(names)}
    metrics = {
        "kind": "typeface",
        "typefaces": names,
        "fonts": {n: str(load_font(p).path) for n, p in fonts.items()},
        "size": size,
        "epochs": epochs,
        "seed": seed,
        "parameters": sum(p.numel() for p in judge.parameters()),
        "num_train_characters": len(train_chars),
        "num_held_out_characters": len(test_chars),
        "train_characters": "".join(train_chars),
        "held_out_accuracy": float(np.mean(list(per_typeface.values()))),
        "held_out_accuracy_per_typeface": per_typeface,
        "train_seconds": time.perf_counter() - t_train,
        "train_cpu_seconds": time.process_time() - cpu_train,
        "history": history,
    }
    return judge, metrics


@torch.no_grad()
def read_typefaces(judge: GlyphJudge, images: Any, batch_size: int = 512) -> np.ndarray:
    """Class index (into `judge.config.class_names`) of each glyph; images as for `to_judge_tensor`."""
    judge.eval()
    x = images if isinstance(images, torch.Tensor) and images.dtype == torch.uint8 else to_judge_tensor(images)
    out = []
    for start in range(0, len(x), batch_size):
        chunk = x[start : start + batch_size]
        chunk = chunk.float() / 255.0 if chunk.dtype == torch.uint8 else chunk
        out.append(judge(chunk).argmax(dim=1).cpu().numpy())
    return np.concatenate(out)


def typeface_accuracy(judge: GlyphJudge, images: Any, index: int) -> float:
    return float((read_typefaces(judge, images) == index).mean())


def typeface_shares(judge: GlyphJudge, images: Any) -> dict[str, float]:
    """Share of `images` read as each typeface of the judge."""
    names = typeface_names(judge)
    reads = read_typefaces(judge, images)
    return {n: float((reads == k).mean()) for k, n in enumerate(names)}


def typeface_names(judge: GlyphJudge) -> list[str]:
    names = judge.config.get("class_names")
    if not names:
        raise GlyphJudgeError(
            "This judge names radicals, not typefaces; train a typeface judge with `glyffuser train-typeface-judge`."
        )
    return list(names)


def typeface_statistics(judge: GlyphJudge, typeface: str, generated: Any, real: Any) -> dict[str, Any]:
    """How the typeface judge reads the samples (and, for reference, the real held-out glyphs)."""
    names = typeface_names(judge)
    if typeface not in names:
        raise GlyphJudgeError(f"The typeface judge knows {', '.join(names)}, not {typeface!r}.")
    shares, real_shares = typeface_shares(judge, generated), typeface_shares(judge, real)
    return {
        "typeface": typeface,
        "share": shares[typeface],
        "shares": shares,
        "real_share": real_shares[typeface],
        "real_shares": real_shares,
    }


def load_typeface_judge(path: str | os.PathLike, typeface: str | None = None) -> GlyphJudge:
    """Load a typeface judge; with `typeface`, check that it knows that typeface."""
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"Typeface judge {folder} not found; train one with "
            f"`glyffuser train-typeface-judge --dataset data/glyphs-32 --out {folder}`."
        )
    judge = load_judge(folder)
    names = typeface_names(judge)
    if typeface is not None and typeface not in names:
        raise GlyphJudgeError(f"The typeface judge {folder} knows {', '.join(names)}, not {typeface!r}.")
    return judge


# --------------------------------------------------------------------------------------------------
# Command line: `glyffuser train-typeface-judge`
# --------------------------------------------------------------------------------------------------


def _font_arg(value: str) -> tuple[str, str]:
    name, sep, path = value.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"--font takes NAME=PATH (e.g. ukai={ARPHIC}/ukai.ttc), got {value!r}")
    return name, path


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="glyph dataset whose train/test characters are rendered")
    parser.add_argument("--out", required=True, type=Path, help="judge folder to write (replaced atomically)")
    parser.add_argument(
        "--font", action="append", type=_font_arg, metavar="NAME=PATH",
        help="typefaces to tell apart, repeatable (default: " + ", ".join(DEFAULT_TYPEFACES) + "; noto-sans is "
        "the packaged Noto Sans CJK, ukai/uming Debian's fonts-arphic-ukai/-uming)",
    )
    parser.add_argument("--size", type=int, default=32, help="glyph size in px")
    parser.add_argument("--max-chars", type=int, default=DEFAULT_MAX_CHARS, help="training characters per typeface")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    fonts = dict(args.font) if args.font else None
    try:
        if args.out.exists() and not (args.out / "config.json").is_file():
            raise TypefaceError(f"--out {args.out} exists and is not a judge folder; choose another path.")
        if args.max_chars < 1 or args.epochs < 1:
            raise TypefaceError("--max-chars and --epochs must be >= 1.")
        judge, metrics = train_typeface_judge(
            args.dataset, fonts, size=args.size, max_chars=args.max_chars, epochs=args.epochs, seed=args.seed
        )
    except (TypefaceError, GlyphJudgeError, FontError, FileNotFoundError) as err:
        print(f"glyffuser train-typeface-judge: error: {err}", file=sys.stderr)
        return 2
    save_judge(judge, args.out, metrics)
    per = ", ".join(f"{n} {a:.3f}" for n, a in metrics["held_out_accuracy_per_typeface"].items())
    print(
        f"held-out accuracy {metrics['held_out_accuracy']:.3f} ({per}) on {metrics['num_held_out_characters']} "
        f"characters never trained on; saved to {args.out}"
    )
    return 0
