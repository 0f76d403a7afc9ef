"""Glyph datasets as tensors: a split decoded once to uint8 (N, 1, S, S), with the columns scoring needs.

The judge trains on these tensors, the metrics score against them and the app searches them for nearest
glyphs: decoding every PNG once and resizing it one way (PIL box filter down, bilinear up) keeps the three
reading the same pixels. Training decodes with the same `open_images`, at its own resolution.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .dataset import GlyphDatasetError

if TYPE_CHECKING:
    from datasets import Dataset
    from PIL.Image import Image as PILImage

NUM_RADICALS = 214  # Kangxi radicals, numbered 1..214 (Unihan kRSUnicode)


@dataclass
class GlyphArrays:
    """A dataset split decoded once: uint8 images (N, 1, S, S) plus the columns the metrics need."""

    images: torch.Tensor
    radicals: np.ndarray  # Kangxi numbers, int64
    texts: list[str] = field(default_factory=list)
    characters: list[str] = field(default_factory=list)
    dropped: int = 0  # rows without a radical

    def __len__(self) -> int:
        return len(self.radicals)

    def float_images(self, index: Any = slice(None)) -> torch.Tensor:
        return self.images[index].float() / 255.0


def concat_arrays(parts: Sequence[GlyphArrays]) -> GlyphArrays:
    """Decoded splits, one after the other (one part is returned as it is)."""
    if len(parts) == 1:
        return parts[0]
    return GlyphArrays(
        images=torch.cat([p.images for p in parts]),
        radicals=np.concatenate([p.radicals for p in parts]),
        texts=[t for p in parts for t in p.texts],
        characters=[c for p in parts for c in p.characters],
        dropped=sum(p.dropped for p in parts),
    )


def require_columns(ds: Dataset, columns: Sequence[str], what: str) -> None:
    """Fail with the missing columns named, and how to build a dataset that has them."""
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        raise GlyphDatasetError(
            f"{what} needs the dataset columns {list(columns)}; missing {missing} (has {ds.column_names}). "
            "Build one with `glyffuser build-dataset`, whose rows carry the Kangxi `radical` from Unihan kRSUnicode."
        )


def column(ds: Dataset, name: str) -> list:
    """One column as a list (datasets 4+ returns a lazy `Column` whose items are slow to index one by one)."""
    return ds.select_columns([name]).to_dict()[name]


def open_images(ds: Dataset, column: str = "image", batch_size: int = 2048) -> Iterator[PILImage]:
    """Each image of `column`, opened from its stored bytes (or path): no decoding pass of `datasets` first."""
    from datasets import Image as ImageFeature
    from PIL import Image

    raw = ds.select_columns([column]).cast_column(column, ImageFeature(decode=False))
    for batch in raw.iter(batch_size=batch_size):
        for item in batch[column]:
            yield Image.open(io.BytesIO(item["bytes"])) if item.get("bytes") else Image.open(item["path"])


def to_glyph_size(image: PILImage, size: int) -> PILImage:
    """Greyscale at `size` px: box filter down, bilinear up (how the judge, the metrics and the app read glyphs)."""
    from PIL import Image

    image = image.convert("L")
    if image.size != (size, size):
        image = image.resize((size, size), Image.BOX if image.size[0] > size else Image.BILINEAR)
    return image


def decode_split(ds: Dataset, size: int, with_text: bool = True) -> GlyphArrays:
    """Decode a glyph split to a uint8 tensor at `size` px once (PIL box filter if resizing).

    Rows without a radical (None) are dropped and counted: they can be neither trained on nor scored.
    """
    require_columns(ds, ["image", "radical"], "The glyph judge")
    radicals = column(ds, "radical")
    keep = [i for i, r in enumerate(radicals) if r is not None and 1 <= int(r) <= NUM_RADICALS]
    dropped = len(radicals) - len(keep)
    if not keep:
        raise GlyphDatasetError("No row of this dataset split has a Kangxi radical (1..214).")
    if dropped:
        ds = ds.select(keep)
    out = np.empty((len(keep), 1, size, size), dtype=np.uint8)
    for i, image in enumerate(open_images(ds)):
        out[i, 0] = np.asarray(to_glyph_size(image, size))
    return GlyphArrays(
        images=torch.from_numpy(out),
        radicals=np.asarray([int(radicals[j]) for j in keep], dtype=np.int64),
        texts=column(ds, "text") if with_text and "text" in ds.column_names else [],
        characters=column(ds, "character") if "character" in ds.column_names else [],
        dropped=dropped,
    )


__all__ = [
    "NUM_RADICALS", "GlyphArrays", "column", "concat_arrays", "decode_split", "open_images", "require_columns",
    "to_glyph_size",
]
