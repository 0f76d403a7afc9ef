"""The text reaches the glyph: the real training script overfits a handful of real glyphs with their
definitions, and sampling each definition gives back its own glyph.

This is the check that a prompt-blind model (one that draws good glyphs but ignores the text) cannot
pass: the same trained model prompted with another glyph's definition, or with the empty prompt, must
fail the very assertion its own definitions pass. Tiny sizes (16 px, a tiny random T5 encoder), one thread.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import common_args, launch

NUM_GLYPHS = 6
MOST = NUM_GLYPHS // 2 + 1  # "most of them": a strict majority


def nearest_real(samples: np.ndarray, real: np.ndarray) -> np.ndarray:
    """Index of the nearest real glyph (pixel MSE) for each sample; both (n, H, W) in [0, 1]."""
    d = ((samples[:, None] - real[None]) ** 2).mean(axis=(2, 3))
    return d.argmin(axis=1)


@pytest.fixture(scope="module")
def overfit(assets, tmp_path_factory):
    from glyph_pipeline import GlyphDiffusionPipeline
    from glyph_pipeline.data.dataset import load_glyph_dataset

    out = tmp_path_factory.mktemp("conditioning") / "model"
    args = common_args(
        assets, out, "--max_train_samples", str(NUM_GLYPHS), "--train_batch_size", str(NUM_GLYPHS),
        "--max_train_steps", "400", "--learning_rate", "2e-3", "--lr_scheduler", "constant",
        "--checkpointing_steps", "0", "--validation_steps", "0", "--seed", "0",
    )
    launch(args, timeout=300)
    pipe = GlyphDiffusionPipeline.from_pretrained(out)
    pipe.set_progress_bar_config(disable=True)
    # The rows the script trained on: --max_train_samples takes a seeded shuffle of the split.
    rows = load_glyph_dataset(assets.dataset)["train"].shuffle(seed=0).select(range(NUM_GLYPHS))
    real = np.stack([np.asarray(im.convert("L").resize((16, 16)), dtype=np.float64) / 255 for im in rows["image"]])
    return pipe, list(rows["text"]), real


def sample(pipe, prompts: list[str]) -> np.ndarray:
    generators = [torch.Generator().manual_seed(100 + i) for i in range(len(prompts))]
    images = pipe(prompts, num_inference_steps=20, guidance_scale=3.0, generator=generators, output_type="np").images
    return images[..., 0].astype(np.float64)


@pytest.mark.slow
def test_each_definition_draws_its_own_glyph(overfit):
    pipe, texts, real = overfit
    assert len(set(texts)) == NUM_GLYPHS  # distinct definitions, or the test would prove nothing
    own = nearest_real(sample(pipe, texts), real)
    hits = int((own == np.arange(NUM_GLYPHS)).sum())
    assert hits >= MOST, f"only {hits}/{NUM_GLYPHS} definitions drew their own glyph (nearest: {own.tolist()})"


@pytest.mark.slow
def test_the_same_assertion_fails_when_the_text_is_ignored_or_swapped(overfit):
    pipe, texts, real = overfit
    target = np.arange(NUM_GLYPHS)
    # Control 1, text swapped: glyph i is asked for with the definition of glyph i+1. A model that uses
    # the text draws glyph i+1, so it fails the assertion above for glyph i...
    shift = np.roll(target, -1)
    swapped = nearest_real(sample(pipe, [texts[j] for j in shift]), real)
    assert int((swapped == target).sum()) < MOST, swapped.tolist()
    assert int((swapped == shift).sum()) >= MOST, swapped.tolist()  # ...because it follows the text
    # Control 2, text removed (the empty prompt, same seeds): nothing says which glyph to draw.
    blind = nearest_real(sample(pipe, [""] * NUM_GLYPHS), real)
    assert int((blind == target).sum()) < MOST, blind.tolist()
