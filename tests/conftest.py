"""Shared fixtures: tiny but real components (CPU-sized), and an offline, quiet environment."""

from __future__ import annotations

import os

# Nothing in the suite may reach the network; huggingface_hub reads these at import time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny models run fastest on one thread, and a busy 2-core machine makes 2 threads 10-40x slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)
from hub_fixtures import local_hub  # noqa: E402, F401  (LocalHub fixture for the Hub tests)

TINY_UNET = dict(block_out_channels=(16, 32, 32), norm_num_groups=8, cross_attention_dim=32, sample_size=16)


def tiny_text_encoder(hidden: int = 32):
    """ByT5 tokenizer (needs no files) + a tiny random T5 encoder, in eval mode (no dropout)."""
    from transformers import ByT5Tokenizer, T5Config, T5EncoderModel

    torch.manual_seed(0)
    config = T5Config(vocab_size=384, d_model=hidden, d_ff=2 * hidden, num_layers=1, num_heads=2, d_kv=16)
    return ByT5Tokenizer(), T5EncoderModel(config).eval()


def tiny_pipeline(scheduler_name: str = "dpmsolver++", hidden: int = 32, max_sequence_length: int = 24):
    from glyph_pipeline import GlyphDiffusionPipeline, build_unet, sampling_scheduler

    tokenizer, encoder = tiny_text_encoder(hidden)
    torch.manual_seed(0)
    unet = build_unet("tiny-32", hidden, **TINY_UNET).eval()
    pipe = GlyphDiffusionPipeline(
        unet, sampling_scheduler(scheduler_name), encoder, tokenizer, max_sequence_length=max_sequence_length
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture
def pipe():
    return tiny_pipeline()


@pytest.fixture(scope="session")
def saved_pipeline_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("saved") / "glyph-pipe"
    tiny_pipeline().save_pretrained(path)
    return path
