"""`glyffuser demo`: the article's figures from the shipped model, and the `--train` loop (dataset -> training
script -> reload like a user -> labelled grid). Tiny real pipelines stand in for the shipped and trained models;
the training itself is the training script's own tests (test_training.py, test_conditioning.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

from glyph_pipeline import GlyphDiffusionPipeline, demo
from glyph_pipeline.cli import main
from glyph_pipeline.figures.animation import animation_frame_size
from glyph_pipeline.figures.layout import MARGIN, tile_size
from glyph_pipeline.hub import pretrained
from glyph_pipeline.schedulers import RECOMMENDED_GUIDANCE, RECOMMENDED_STEPS


def cell(grid: Image.Image, row: int, col: int, cell_size: int, caption_lines: int, head: int) -> np.ndarray:
    """Pixels of the glyph in tile (row, col) of a `labelled_grid` whose title strip is `head` px high."""
    width, height = tile_size(cell_size, caption_lines)
    left, top = col * width + MARGIN, head + row * height + MARGIN
    return np.asarray(grid.convert("L").crop((left, top, left + cell_size, top + cell_size)), dtype=np.int16)


def fitted(image: Image.Image, cell_size: int) -> np.ndarray:
    return np.asarray(image.convert("L").resize((cell_size, cell_size), Image.Resampling.NEAREST), dtype=np.int16)


def test_article_figures_come_from_the_shipped_model(saved_pipeline_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pretrained, "SHIPPED_MODEL", saved_pipeline_dir)  # the tiny pipeline plays the shipped one
    out = tmp_path / "figures"
    assert main(["demo", "--out", str(out), "--images-per-prompt", "2", "--threads", "1"]) == 0
    assert f"from {saved_pipeline_dir} " in capsys.readouterr().out
    files = ["article-grid.png", "denoising-gold.gif", "single-step-gold.png", "steps-grid-gold.png"]
    assert sorted(p.name for p in out.iterdir()) == files

    # The grid: one row per article prompt, seeds 0 and 1, sampled like a plain seeded pipeline call.
    grid = Image.open(out / "article-grid.png")
    width, height = tile_size(96, 1)
    head = grid.height - len(demo.ARTICLE_PROMPTS) * height
    assert grid.width == 3 * width and 0 < head < 60  # label column + 2 seeds; a title strip
    pipe = GlyphDiffusionPipeline.from_pretrained(saved_pipeline_dir)
    pipe.set_progress_bar_config(disable=True)
    prompts = [p for p in demo.ARTICLE_PROMPTS for _ in range(2)]
    expected = pipe(prompts, num_inference_steps=RECOMMENDED_STEPS, guidance_scale=RECOMMENDED_GUIDANCE,
                    generator=[torch.Generator().manual_seed(i % 2) for i in range(len(prompts))]).images  # fmt: skip
    for i, image in enumerate(expected):
        diff = np.abs(cell(grid, i // 2, 1 + i % 2, 96, 1, head) - fitted(image, 96))
        assert diff.max() <= 2, (prompts[i], i % 2, diff.max())  # batch-size rounding at most

    gif = Image.open(out / "denoising-gold.gif")
    assert gif.size == animation_frame_size(192)
    assert sum(1 for _ in ImageSequence.Iterator(gif)) == RECOMMENDED_STEPS + 1  # x_T ... x_1, then the final sample
    steps_grid = Image.open(out / "steps-grid-gold.png")
    assert steps_grid.width == 7 * tile_size(96, 2)[0]  # sampler labels + 1, 2, 3, 5, 10, 20 steps
    assert Image.open(out / "single-step-gold.png").width == 9 * tile_size(96, 1)[0]  # labels + 8 seeds


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model", "./no/such/model"], "does not exist"),
        (["--images-per-prompt", "0"], "--images-per-prompt must be an integer >= 1"),
        (["--train", "--steps", "0"], "--steps must be >= 1"),
    ],
)
def test_bad_input_fails_before_any_work(tmp_path, capsys, argv, message):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--threads", "1", *argv]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.filterwarnings("ignore:Should have tb<=t1:UserWarning")  # torchsde's float32 vs float64 times
def test_train_loop_builds_data_runs_the_training_script_and_samples_its_model(tmp_path, monkeypatch, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--train", "--out", str(out), "--steps", "2", "--batch-size", "4", "--num-chars", "16",
            "--ddpm-steps", "2", "--sde-steps", "2", "--threads", "1"]  # fmt: skip
    assert main(argv) == 0  # the real training script, launched with accelerate, 2 steps
    log = capsys.readouterr().out
    assert "[1/4] dataset: 16 glyphs at 32 px" in log and "[4/4] grid:" in log

    # The training script's own record: the demo dataset, tiny-32 with the offline encoder, resumable.
    record = json.loads((out / "model" / "training_config.json").read_text())
    assert record["steps"] == 2 and record["dataset"]["rows"] < 16 and record["preset"] == "tiny-32"
    args = record["args"]
    assert args["dataset"] == str(out / "dataset") and args["resume_from_checkpoint"] == "latest"
    assert args["text_encoder_name_or_path"] == "minilm"

    # The grid: a row per prompt (training, held-out, new), the font's glyph, then DDPM and DPMSolverSDE samples.
    columns = demo.pick_columns(out / "dataset", 0)
    assert [c["note"].split(",")[0] for c in columns] == [
        "seen in training", "seen in training", "seen in training", "held out", "new prompt", "new prompt"
    ]  # fmt: skip
    grid = Image.open(out / "demo-grid.png")
    width, height = tile_size(96, 2)
    head = grid.height - len(columns) * height
    assert grid.width == 4 * width and 0 < head < 60
    assert np.array_equal(cell(grid, 0, 1, 96, 2, head), fitted(columns[0]["truth"], 96))
    assert cell(grid, 5, 1, 96, 2, head)[10, 50] == 225  # no font glyph for a new prompt: a crossed-out cell
    from diffusers import DDPMScheduler

    pipe = GlyphDiffusionPipeline.from_pretrained(out / "model")
    pipe.scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    ddpm = pipe([c["prompt"] for c in columns], num_inference_steps=2, guidance_scale=RECOMMENDED_GUIDANCE,
                generator=[torch.Generator().manual_seed(i) for i in range(len(columns))]).images  # fmt: skip
    for row, image in enumerate(ddpm):
        assert np.abs(cell(grid, row, 2, 96, 2, head) - fitted(image, 96)).max() <= 2, columns[row]["prompt"]

    # A re-run reuses the dataset and resumes; a failing training run (a NaN loss at step 3) is an error, not
    # a grid of the old model.
    monkeypatch.setenv("GLYFFUSER_DEBUG_NAN_AT_STEP", "3")
    (out / "demo-grid.png").unlink()
    argv[argv.index("--steps") + 1] = "4"
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "[1/4] dataset: reusing" in captured.out and "training failed (exit code 1)" in captured.err
    assert not (out / "demo-grid.png").exists()
