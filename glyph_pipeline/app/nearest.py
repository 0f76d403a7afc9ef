# Copyright 2026 The glyffuser developers. Licensed under the Apache License, Version 2.0.
"""Nearest real glyphs: the training glyphs closest to a generated one, so the app shows whether the model
invents or copies.

The training split is decoded once (uint8, at the dataset's own resolution) and searched by RMS pixel
difference; without a dataset the app builds the 32 px one once into the cache (offline, seconds).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch

DATASET_SIZE = 32  # px of the training glyphs the nearest-glyph panel compares with
NEAREST_K = 3


@dataclass(frozen=True)
class Neighbour:
    """A training glyph near a generated one, with what the page shows of it."""

    character: str
    text: str
    radical: int
    distance: float  # RMS pixel difference, pixels in [0, 1]
    image: Image.Image


class RealGlyphs:
    """The training split decoded once (uint8) with a nearest-neighbour search by pixel distance."""

    def __init__(self, images: torch.Tensor, characters: Sequence[str], texts: Sequence[str], radicals: Sequence[int]):
        import torch

        if not (len(images) == len(characters) == len(texts) == len(radicals)) or len(images) == 0:
            raise ValueError("RealGlyphs needs as many characters, texts and radicals as images (and at least one).")
        self.images = images
        self.characters = list(characters)
        self.texts = list(texts)
        self.radicals = [int(r) for r in radicals]
        self.size = int(images.shape[-1])
        self._flat = images.reshape(len(images), -1).to(torch.float32) / 255.0
        self._sq_norms = (self._flat * self._flat).sum(dim=1)

    def __len__(self) -> int:
        return len(self.characters)

    @classmethod
    def from_dataset(cls, source: str | os.PathLike, split: str = "train") -> RealGlyphs:
        """Decode `split` of a glyph dataset (save_to_disk folder, parquet file or Hub name) at its own size."""
        from ..data.dataset import load_glyph_dataset
        from ..data.images import decode_split

        splits = load_glyph_dataset(source)
        if split not in splits:
            raise ValueError(f"Dataset {source} has no {split!r} split (has {', '.join(splits)}).")
        ds = splits[split]
        size = ds[0]["image"].size[0]
        arrays = decode_split(ds, size)
        if not arrays.characters or not arrays.texts:
            raise ValueError(f"Dataset {source} needs the columns 'character' and 'text' for the nearest-glyph panel.")
        return cls(arrays.images, arrays.characters, arrays.texts, arrays.radicals.tolist())

    def nearest(self, images: Sequence[Image.Image], k: int = NEAREST_K) -> list[list[Neighbour]]:
        """The `k` training glyphs closest to each image (RMS pixel difference at the dataset's size)."""
        import torch

        from ..data.images import to_glyph_size
        from ..evaluation.metrics import nearest_glyphs

        x = torch.from_numpy(np.stack([np.asarray(to_glyph_size(im, self.size)) for im in images]))
        x = x.reshape(len(images), -1).to(torch.float32) / 255.0
        rms, indices = nearest_glyphs(x, self._flat, k, self._sq_norms)
        return [
            [
                Neighbour(
                    self.characters[i], self.texts[i], self.radicals[i], float(d),
                    Image.fromarray(self.images[i, 0].numpy()),
                )
                for i, d in zip(row.tolist(), dist.tolist())
            ]
            for row, dist in zip(indices, rms)
        ]


def cache_dir() -> Path:
    """$GLYFFUSER_CACHE, else $XDG_CACHE_HOME/glyffuser, else ~/.cache/glyffuser."""
    if os.environ.get("GLYFFUSER_CACHE"):
        return Path(os.environ["GLYFFUSER_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "glyffuser"


def ensure_dataset(dataset: str | os.PathLike | None = None, size: int = DATASET_SIZE) -> str:
    """`dataset` as given, or the 32 px glyph dataset in the cache, built once (offline, seconds)."""
    if dataset is not None:
        return os.fspath(dataset)
    target = cache_dir() / f"glyphs-{size}"
    if not (target / "dataset_dict.json").is_file():
        from ..data.dataset import build_glyph_dataset, save_dataset

        print(f"glyffuser app: building the {size} px glyph dataset once, into {target} ...", file=sys.stderr)
        save_dataset(build_glyph_dataset(size=size, progress=False), target, overwrite=True)
    return str(target)
