"""Cached text embeddings: encode every distinct caption once, reuse the tensors for every epoch and run.

The text encoder is frozen, so re-running it for every batch (as the original glyffuser did) spends most of
a training step on work whose result never changes. This module encodes the *distinct* captions once with
the pipeline's own `encode_prompt` -- the exact tensors the UNet sees at sampling time, padded to
`max_sequence_length` -- and stores them in a safetensors file keyed by everything that determines them:

* the captions themselves (a content fingerprint of the distinct texts),
* the encoder's identity (config, weights and tokenizer vocabulary, hashed -- not its path),
* `max_sequence_length` and the storage dtype, plus any extra `key_parts` the caller adds.

Padding positions are kept (not trimmed): a UNet with diffusers' pooled text embedding
(`addition_embed_type="text"`, the original's; the presets use the masked sentence embedding instead) attends
over all positions without a mask, so there the padded tail is part of the conditioning.

The empty prompt's embedding (the unconditional input for classifier-free guidance) is cached alongside.
Writes are atomic (temporary file + rename), so a killed run never leaves a truncated cache behind.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ..atomic import atomic_output

CACHE_FORMAT_VERSION = 1
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def default_cache_dir() -> Path:
    """`$GLYFFUSER_CACHE/text-embeddings`, else `$XDG_CACHE_HOME/glyffuser/...`, else `~/.cache/glyffuser/...`."""
    root = os.environ.get("GLYFFUSER_CACHE")
    if not root:
        root = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "glyffuser")
    return Path(root) / "text-embeddings"


@dataclasses.dataclass
class TextEmbeddingCache:
    """Embeddings of the distinct texts plus the map from dataset rows to them."""

    embeds: torch.Tensor  # (unique, max_sequence_length, hidden)
    masks: torch.Tensor  # (unique, max_sequence_length), int64 0/1 as returned by encode_prompt
    row_to_unique: torch.Tensor  # (rows,) int64: row i uses embeds[row_to_unique[i]]
    empty_embeds: torch.Tensor  # (1, max_sequence_length, hidden): the empty prompt (unconditional input)
    empty_mask: torch.Tensor  # (1, max_sequence_length)
    unique_texts: list[str]
    path: Path
    from_cache: bool  # True when the file already existed (nothing was encoded)

    def __iter__(self):
        # `embeds, masks, row_to_unique = cache` works like a plain tuple.
        return iter((self.embeds, self.masks, self.row_to_unique))

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.embeds, self.masks, self.row_to_unique))

    def to(self, device: torch.device | str) -> TextEmbeddingCache:
        """The same cache with its tensors on `device` (lookups then gather there)."""
        return dataclasses.replace(
            self, embeds=self.embeds.to(device), masks=self.masks.to(device),
            row_to_unique=self.row_to_unique.to(device),
        )

    def lookup(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(embeds, mask) for a batch of dataset row indices."""
        unique = self.row_to_unique[rows]
        return self.embeds[unique], self.masks[unique]


# --------------------------------------------------------------------------------------------- identity
def _hash_tensor(h: Any, tensor: torch.Tensor) -> None:
    t = tensor.detach().to("cpu").contiguous()
    h.update(str((tuple(t.shape), str(t.dtype))).encode())
    h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def encoder_fingerprint(tokenizer: Any, text_encoder: torch.nn.Module) -> str:
    """Content hash of an encoder: its config, every weight and the tokenizer's vocabulary.

    Two copies of the same model in different folders share a fingerprint; a fine-tuned or re-initialised
    encoder does not. Hashing ~25M parameters takes a fraction of a second.
    """
    h = hashlib.blake2b(digest_size=16)
    config = getattr(text_encoder, "config", None)
    if config is not None:
        items = {k: v for k, v in config.to_dict().items() if k not in ("_name_or_path", "transformers_version")}
        h.update(json.dumps(items, sort_keys=True, default=str).encode())
    h.update(type(text_encoder).__name__.encode())
    for name, tensor in sorted(text_encoder.state_dict().items()):
        h.update(name.encode())
        _hash_tensor(h, tensor)
    h.update(type(tokenizer).__name__.encode())
    try:
        vocab = tokenizer.get_vocab()
    except (AttributeError, NotImplementedError):
        vocab = {}
    h.update(json.dumps(sorted(vocab.items()), ensure_ascii=False).encode())
    return h.hexdigest()


def texts_fingerprint(unique_texts: Sequence[str]) -> str:
    """Content fingerprint of the caption set (order-independent: the texts are sorted first)."""
    h = hashlib.blake2b(digest_size=16)
    for text in sorted(unique_texts):
        h.update(text.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


def cache_key(
    unique_texts: Sequence[str],
    encoder_id: str,
    max_sequence_length: int,
    dtype: torch.dtype,
    key_parts: Sequence[Any] = (),
) -> str:
    """The file key: captions x encoder x max length x dtype x caller extras."""
    parts = [
        f"v{CACHE_FORMAT_VERSION}",
        texts_fingerprint(unique_texts),
        encoder_id,
        str(int(max_sequence_length)),
        str(dtype).replace("torch.", ""),
        *map(str, key_parts),
    ]
    return hashlib.blake2b("|".join(parts).encode(), digest_size=12).hexdigest()


# --------------------------------------------------------------------------------------------- encoding
def _as_pipeline(pipeline_or_encoder: Any, max_sequence_length: int | None):
    """Accept a GlyphDiffusionPipeline or a (tokenizer, text_encoder) pair."""
    if hasattr(pipeline_or_encoder, "encode_prompt"):
        return pipeline_or_encoder
    from ..pipeline_glyph_diffusion import GlyphDiffusionPipeline

    tokenizer, text_encoder = pipeline_or_encoder
    if max_sequence_length is None:
        raise ValueError("Pass max_sequence_length when caching with a (tokenizer, text_encoder) pair.")
    return GlyphDiffusionPipeline(
        unet=None, scheduler=None, text_encoder=text_encoder, tokenizer=tokenizer,
        max_sequence_length=max_sequence_length,
    )


@torch.inference_mode()
def encode_texts(
    pipeline: Any,
    texts: Sequence[str],
    max_sequence_length: int,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode `texts` with `pipeline.encode_prompt`, in batches of similar token length; results in input order.

    Every prompt is padded to `max_sequence_length` (as at sampling time), so sorting by length only groups
    similar prompts (and makes truncation warnings deterministic); it cannot shorten the padded sequences.
    """
    from tqdm.auto import tqdm

    device = torch.device(device) if device is not None else pipeline.text_encoder.device
    lengths = [len(ids) for ids in pipeline.tokenizer(list(texts), truncation=False)["input_ids"]]
    order = sorted(range(len(texts)), key=lambda i: (lengths[i], i))
    embeds: torch.Tensor | None = None
    masks = torch.zeros(len(texts), max_sequence_length, dtype=torch.long)
    batches = range(0, len(order), batch_size)
    for start in tqdm(batches, desc="Encoding captions", unit="batch", disable=not progress):
        idx = order[start : start + batch_size]
        emb, mask, _, _ = pipeline.encode_prompt(
            [texts[i] for i in idx], device=device, num_images_per_prompt=1,
            do_classifier_free_guidance=False, max_sequence_length=max_sequence_length,
        )
        if embeds is None:
            embeds = torch.empty(len(texts), *emb.shape[1:], dtype=dtype)
        index = torch.tensor(idx)
        embeds[index] = emb.to("cpu", dtype)
        masks[index] = mask.to("cpu", torch.long)
    if embeds is None:
        raise ValueError("No texts to encode.")
    return embeds, masks


def _read_texts(path: Path) -> list[str] | None:
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        return json.loads(meta["texts"])
    except Exception:  # unreadable/partial/foreign file: treat as a miss and rebuild
        return None


def cache_text_embeddings(
    pipeline_or_encoder: Any,
    texts: Sequence[str],
    cache_dir: str | os.PathLike | None = None,
    key_parts: Sequence[Any] = (),
    batch_size: int = 256,
    *,
    max_sequence_length: int | None = None,
    dtype: torch.dtype | str = torch.float32,
    device: torch.device | str | None = None,
    encoder_id: str | None = None,
    progress: bool = True,
    log: Any = print,
) -> TextEmbeddingCache:
    """Embeddings for every row of `texts`, computed once per distinct text and cached on disk.

    Args:
        pipeline_or_encoder: a `GlyphDiffusionPipeline` (its `encode_prompt` is used) or a
            `(tokenizer, text_encoder)` pair.
        texts: one caption per dataset row (duplicates are encoded once).
        cache_dir: folder for `text-embeds-<key>.safetensors` (default: `default_cache_dir()`).
        key_parts: extra values that should invalidate the cache (e.g. a dataset fingerprint).
        batch_size: prompts per encoder call.
        max_sequence_length: padding length (default: the pipeline's config).
        dtype: storage dtype (float32 reproduces sampling exactly; float16 halves memory).
        encoder_id: precomputed `encoder_fingerprint` (else computed here).

    In multi-process training call this inside `accelerator.main_process_first()`: the main process encodes
    and writes, the others then find the file.
    """
    if isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise ValueError(f"Unknown embedding dtype {dtype!r}; choose from {', '.join(_DTYPES)}.")
        dtype = _DTYPES[dtype]
    texts = list(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"Captions must be strings; row {bad[0]} is {type(texts[bad[0]]).__name__}.")
    pipeline = _as_pipeline(pipeline_or_encoder, max_sequence_length)
    max_len = int(max_sequence_length or pipeline.config.max_sequence_length)

    unique_texts = list(dict.fromkeys(texts))  # first-appearance order
    position = {t: i for i, t in enumerate(unique_texts)}
    row_to_unique = torch.tensor([position[t] for t in texts], dtype=torch.long)

    encoder_id = encoder_id or encoder_fingerprint(pipeline.tokenizer, pipeline.text_encoder)
    key = cache_key(unique_texts, encoder_id, max_len, dtype, key_parts)
    path = Path(cache_dir if cache_dir is not None else default_cache_dir()) / f"text-embeds-{key}.safetensors"

    if path.exists():
        stored = _read_texts(path)
        if stored is not None and sorted(stored) == sorted(unique_texts):
            tensors = load_file(str(path))
            where = {t: i for i, t in enumerate(stored)}
            perm = torch.tensor([where[t] for t in unique_texts], dtype=torch.long)
            log(f"Text embeddings: {len(unique_texts):,} distinct captions loaded from {path}")
            return TextEmbeddingCache(
                tensors["embeds"][perm], tensors["masks"][perm].long(), row_to_unique,
                tensors["empty_embeds"], tensors["empty_mask"].long(), unique_texts, path, True,
            )
        log(f"Text embeddings: ignoring unreadable or mismatched cache file {path}; re-encoding.")

    log(f"Text embeddings: encoding {len(unique_texts):,} distinct captions ({len(texts):,} rows) once -> {path}")
    embeds, masks = encode_texts(pipeline, unique_texts, max_len, batch_size, device, dtype, progress)
    empty_embeds, empty_mask = encode_texts(pipeline, [""], max_len, 1, device, dtype, progress=False)
    metadata = {
        "format": str(CACHE_FORMAT_VERSION),
        "encoder": encoder_id,
        "max_sequence_length": str(max_len),
        "dtype": str(dtype),
        "key_parts": json.dumps([str(p) for p in key_parts]),
        "texts": json.dumps(unique_texts, ensure_ascii=False),
    }
    tensors = {
        "embeds": embeds, "masks": masks.to(torch.int8), "empty_embeds": empty_embeds,
        "empty_mask": empty_mask.to(torch.int8),
    }
    with atomic_output(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    return TextEmbeddingCache(embeds, masks, row_to_unique, empty_embeds, empty_mask, unique_texts, path, False)
