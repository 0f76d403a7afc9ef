"""training/train_glyph_upscaler.py on a tiny real pair dataset: it trains, saves a pipeline that upscales, resumes
exactly, crops align the target with its condition, and bad input stops it before anything is written."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import UPSCALER_SCRIPT, launch, load_training_script

from glyph_pipeline.data.dataset import LOW_RES_COLUMN, build_glyph_dataset, save_dataset
from glyph_pipeline.pipeline_glyph_upscale import GlyphUpscalePipeline

# A x4 stage for 8 px glyphs: 32 px targets, 16 px crops, a two-level UNet.
UNET = json.dumps({"sample_size": 32, "block_out_channels": [8, 16]})


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    dsd = build_glyph_dataset(size=32, low_res_size=8, limit=40, test_fraction=0.1, num_workers=0, progress=False)
    return save_dataset(dsd, root / "pairs")


def args_for(pairs, out, *extra):
    return [
        "--dataset", str(pairs), "--unet_config", UNET, "--low_res_size", "8", "--crop_size", "16",
        "--train_batch_size", "4", "--max_train_steps", "6", "--checkpointing_steps", "3", "--validation_steps", "3",
        "--num_validation_images", "2", "--validation_inference_steps", "2", "--use_ema", "--ema_decay", "0.9",
        "--lr_warmup_steps", "1", "--report_to", "none", "--output_dir", str(out), *extra,
    ]


def test_pairs_hold_the_fonts_own_small_render(pairs):
    from glyph_pipeline.data.dataset import load_glyph_dataset

    train = load_glyph_dataset(pairs, "train")
    assert train.features[LOW_RES_COLUMN].__class__.__name__ == "Image"
    small = build_glyph_dataset(size=8, limit=40, test_fraction=0.1, num_workers=0, progress=False)["train"]
    assert train["character"] == small["character"]
    for a, b in zip(train[LOW_RES_COLUMN][:5], small["image"][:5]):
        assert a.size == (8, 8) and np.array_equal(np.asarray(a), np.asarray(b))
    assert train[0]["image"].size == (32, 32)


def test_training_saves_an_upscaler_and_resumes_exactly(pairs, tmp_path):
    env = {"GLYFFUSER_DEBUG_WEIGHT_HASHES": "1"}
    launch(args_for(pairs, tmp_path / "a"), config=None, script=UPSCALER_SCRIPT, env=env)
    # B: the same run, resumed from A's checkpoint-3 (a copy), must end with A's weights and EMA.
    (tmp_path / "b").mkdir()
    import shutil

    shutil.copytree(tmp_path / "a" / "checkpoint-3", tmp_path / "b" / "checkpoint-3")
    launch(args_for(pairs, tmp_path / "b", "--resume_from_checkpoint", "latest"), config=None,
           script=UPSCALER_SCRIPT, env=env)
    hashes = [json.loads((tmp_path / run / "debug_weight_hashes.json").read_text()) for run in "ab"]
    assert hashes[0] == hashes[1]

    record = json.loads((tmp_path / "a" / "training_config.json").read_text())
    assert record["command"].startswith("accelerate launch training/train_glyph_upscaler.py")
    assert record["steps"] == 6 and record["samples_seen"] == 24 and record["objective"] == "diffusion"
    assert (tmp_path / "a" / "validation" / "step-000003.png").is_file()
    pipe = GlyphUpscalePipeline.from_pretrained(tmp_path / "a")
    pipe.set_progress_bar_config(disable=True)
    out = pipe(np.ones((8, 8), np.float32), num_inference_steps=2, output_type="np").images
    assert out.shape == (1, 32, 32, 1)


def test_crops_align_the_target_with_its_condition():
    """A 16 px ramp (each pixel its own value), its nearest 4x copy as the target: every interior 4x4 block of a
    crop of the target and of the (bilinearly upsampled) condition has the same mean. A crop shifted by even one
    low-resolution pixel would differ by a ramp step."""
    script = load_training_script(UPSCALER_SCRIPT)
    i, j = np.meshgrid(np.arange(16), np.arange(16), indexing="ij")
    low = torch.from_numpy((20 + 10 * i + 3 * j).astype(np.uint8))[None, None].repeat(6, 1, 1, 1)
    high = low.repeat_interleave(4, 2).repeat_interleave(4, 3)
    x0, cond = script.crops(high, low, 32, 4, torch.Generator().manual_seed(0))
    assert x0.shape == cond.shape == (6, 1, 32, 32)
    pool = torch.nn.functional.avg_pool2d
    inner = (slice(None), slice(None), slice(1, -1), slice(1, -1))
    torch.testing.assert_close(pool(cond, 4)[inner], pool(x0, 4)[inner], atol=1e-4, rtol=0)
    assert len({float(x0[k, 0, 0, 0]) for k in range(6)}) > 1  # the crops are not all in one place


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--low_res_column", "missing"], "low-res-size"),
        (["--crop_size", "10"], "--crop_size"),
        (["--low_res_size", "0"], "--low_res_size 0"),
        (["--low_res_size", "16"], "16 px"),
        (["--unet_preset", "nope"], "upscaler-128"),
    ],
)
def test_bad_input_stops_before_anything_is_written(pairs, tmp_path, extra, message):
    """In process (the checks run before the Accelerator exists); the script turns the error into exit code 2."""
    script = load_training_script(UPSCALER_SCRIPT)
    with pytest.raises(script.TrainingSetupError, match=message):
        script.main(script.parse_args(args_for(pairs, tmp_path / "out", *extra)))
    assert not (tmp_path / "out").exists()
