# Copyright 2026 The glyffuser developers. Licensed under the Apache License, Version 2.0.
"""Training batches: the data decoded once, gathered by row, in an order and with noise that replay exactly.

Images are decoded once into a uint8 tensor and the captions encoded once (`glyph_pipeline.data.embeddings`),
so a step only indexes two tensors. The data order of epoch `e` is a permutation seeded by `(seed, e)`, and each
batch's randomness comes from a generator seeded by `(seed, epoch, batch, process)`: a resumed run sees exactly
the batches and noise of the uninterrupted one.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from PIL import Image
from tqdm.auto import tqdm

from ..data.embeddings import TextEmbeddingCache, cache_text_embeddings, encoder_fingerprint
from ..data.images import open_images
from ..pipeline_glyph_diffusion import GlyphDiffusionPipeline
from .loss import to_model_pixels


def _to_grey(image: Image.Image, resolution: int, resize: bool = True) -> np.ndarray:
    if not resize and image.size != (resolution, resolution):
        raise ValueError(f"a {image.size[0]}x{image.size[1]} px image where {resolution} px are needed")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        page = Image.new("RGBA", rgba.size, (255, 255, 255, 255))  # transparent = white paper
        image = Image.alpha_composite(page, rgba)
    image = image.convert("L")
    if image.size != (resolution, resolution):
        image = image.resize((resolution, resolution), Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.uint8)


def decode_images(dataset, column: str, resolution: int, progress: bool, resize: bool = True) -> torch.Tensor:
    """All images as one (N, 1, H, W) uint8 tensor, white = 255 (pixels map to [-1, 1] per batch). Images of another
    size are resized (Lanczos), or with `resize=False` refused (`ValueError`: pairs must not be resized)."""
    out = np.empty((len(dataset), 1, resolution, resolution), dtype=np.uint8)
    images = tqdm(
        open_images(dataset, column, batch_size=1024), total=len(dataset), desc="Decoding images", unit="img",
        disable=not progress,
    )  # fmt: skip
    for i, image in enumerate(images):
        out[i, 0] = _to_grey(image, resolution, resize)
    return torch.from_numpy(out)


def embed_captions(
    accelerator: Accelerator, texts: Sequence[str], parts: dict[str, Any], cache_dir: str | None, batch_size: int,
    dtype: str, log: Callable[[str], Any],
) -> TextEmbeddingCache:
    """The captions encoded once with the pipeline's own `encode_prompt` (the exact tensors sampling feeds the
    UNet), from the on-disk cache when it has them; the main process writes the cache, the others read it."""
    encode_pipe = GlyphDiffusionPipeline(
        unet=None, scheduler=None, text_encoder=parts["text_encoder"], tokenizer=parts["tokenizer"],
        max_sequence_length=parts["max_len"],
    )
    with accelerator.main_process_first():
        return cache_text_embeddings(
            encode_pipe, texts, cache_dir, batch_size=batch_size, dtype=dtype, device=accelerator.device,
            encoder_id=encoder_fingerprint(parts["tokenizer"], parts["text_encoder"]),
            progress=accelerator.is_local_main_process, log=log,
        )


def data_fits_on(device: torch.device, nbytes: int) -> bool:
    """Whether the training data (uint8 images + text embeddings) can live on `device` for the whole run: on a
    CUDA device when it takes at most a quarter of the free memory (the model, its optimiser state and the
    activations need the rest); the CPU holds it anyway; other devices keep it on the host."""
    if device.type == "cpu":
        return True
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= free // 4


@dataclasses.dataclass
class TrainingData:
    """The decoded images and the cached text embeddings, gathered by row index (no per-item collation)."""

    images: torch.Tensor  # (N, 1, H, W) uint8, white = 255
    cache: TextEmbeddingCache
    embed_seconds: float = 0.0  # time spent encoding (or loading) the captions, for the run record

    def __len__(self) -> int:
        return len(self.images)

    @property
    def nbytes(self) -> int:
        return self.images.numel() + self.cache.nbytes

    def placed(self, device: torch.device) -> TrainingData:
        """On `device` when it fits there (`data_fits_on`): batches are then gathered without a host copy."""
        if data_fits_on(device, self.nbytes):
            return dataclasses.replace(self, images=self.images.to(device), cache=self.cache.to(device))
        return self

    def gather(self, rows: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(pixels in [-1, 1], float32 text embeddings, attention mask) of `rows`, on `device`."""
        rows = rows.to(self.images.device)
        x0 = to_model_pixels(self.images[rows].to(device, non_blocking=True))
        text, mask = self.cache.lookup(rows.to(self.cache.embeds.device))
        return x0, text.to(device, torch.float32, non_blocking=True), mask.to(device, non_blocking=True)


def prepare_training_data(
    accelerator: Accelerator, dataset, parts: dict[str, Any], args: argparse.Namespace, resolution: int,
    log: Callable[[str], Any],
) -> TrainingData:
    """The training split as tensors: captions embedded once (`embed_captions`), images decoded once, both on
    the training device when they fit there."""
    t0 = time.perf_counter()
    cache = embed_captions(
        accelerator, dataset[args.caption_column], parts, args.embedding_cache_dir, args.text_encoder_batch_size,
        args.embedding_dtype, log=log,
    )
    embed_seconds = time.perf_counter() - t0
    images = decode_images(dataset, args.image_column, resolution, progress=accelerator.is_local_main_process)
    data = TrainingData(images, cache, embed_seconds).placed(accelerator.device)
    log(
        f"  Images ({images.numel() / 2**20:.0f} MiB) and text embeddings ({cache.nbytes / 2**20:.0f} MiB) "
        f"live on {data.images.device}"
    )
    return data


class GlyphRows(torch.utils.data.Dataset):
    """Row i -> i. The loader yields row indices only: images and text embeddings are gathered from whole
    tensors by row, on the device when they fit there (no per-item collation, no host copy per step)."""

    def __init__(self, num_rows: int):
        self.num_rows = num_rows

    def __len__(self) -> int:
        return self.num_rows

    def __getitem__(self, i: int) -> int:
        return i


class EpochPermutationSampler(torch.utils.data.Sampler):
    """Epoch `e` visits the rows in `randperm(n)` seeded by `(seed, e)`: a pure function of the epoch.

    Deliberately not a RandomSampler (accelerate would swap in its own) and without `set_epoch` (accelerate
    would call it): the training loop sets `epoch` explicitly, so a resumed run replays the same order.
    """

    def __init__(self, num_rows: int, seed: int):
        self.num_rows, self.seed, self.epoch = num_rows, seed, 0

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        yield from torch.randperm(self.num_rows, generator=generator).tolist()

    def __len__(self) -> int:
        return self.num_rows


def batch_generator(
    seed: int, epoch: int, batch_index: int, process_index: int, device: torch.device | str = "cpu"
) -> torch.Generator:
    """The generator for one batch's noise, timesteps and dropout: a pure function of where we are.

    It lives on the training device, so the noise is drawn there (a 128 px batch of 256 is 16 MB a step that
    would otherwise be drawn by the CPU and copied); CPU and CUDA streams differ, each is reproducible.
    """
    state = np.random.SeedSequence([seed, epoch, batch_index, process_index]).generate_state(2, np.uint32)
    return torch.Generator(device=device).manual_seed(int(state[0]) << 31 ^ int(state[1]))


def row_loader(
    num_rows: int, batch_size: int, seed: int, num_workers: int = 0
) -> tuple[torch.utils.data.DataLoader, EpochPermutationSampler]:
    """Batches of row indices in the epoch's seeded order, and the sampler (the loop sets its `epoch`)."""
    sampler = EpochPermutationSampler(num_rows, seed)
    loader = torch.utils.data.DataLoader(
        GlyphRows(num_rows), batch_size=batch_size, sampler=sampler, num_workers=num_workers, drop_last=False
    )
    return loader, sampler
