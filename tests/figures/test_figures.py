"""The article's figures as tools: every `glyffuser` figure command on tiny models and datasets (CPU)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_pipeline, tiny_upscaler
from PIL import Image, ImageSequence

from glyph_pipeline import noise_schedule, sampling_scheduler
from glyph_pipeline.cli import main
from glyph_pipeline.figures import commands
from glyph_pipeline.figures.animation import animation_frame_size, denoising_frames, denoising_trajectory
from glyph_pipeline.figures.diffusion import single_step_grid, steps_grid
from glyph_pipeline.figures.layout import (
    MARGIN,
    FigureError,
    caption_height,
    fit_lines,
    font_px,
    label_font,
    line_height,
    tile_size,
    title_height,
)
from glyph_pipeline.hub.pretrained import load_glyph_pipeline
from glyph_pipeline.schedulers import use_scheduler

# A few dozen characters with varied radicals, for the tiny glyph dataset.
CHARACTERS = "永金木水火土日月山川人口手心女子田目石竹米糸言貝車門雨馬魚鳥大小上下中王玉白赤青"
CELL = 32


@pytest.fixture(scope="module")
def glyph_dataset(tmp_path_factory) -> Path:
    try:
        from glyph_pipeline.data.dataset import build_glyph_dataset, save_dataset
    except ImportError as err:  # the dataset builder is developed in parallel
        pytest.skip(f"glyph_pipeline.data.dataset is not importable yet: {err}")
    try:
        dsd = build_glyph_dataset(characters=CHARACTERS, size=16, test_fraction=0.1, num_workers=0, progress=False)
    except (FileNotFoundError, OSError, ValueError) as err:  # no CJK font / Unihan on this machine
        pytest.skip(f"cannot build a glyph dataset here (needs a CJK font and Unihan): {err}")
    return save_dataset(dsd, tmp_path_factory.mktemp("data") / "glyphs")


def only_entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def caption_strip(image: Image.Image, left: int, top: int, cell: int = CELL, lines: int = 1) -> np.ndarray:
    """Pixels of the caption under the tile whose top-left corner is (left, top)."""
    w, _ = tile_size(cell, lines)
    y = top + cell + 2 * MARGIN
    return np.asarray(image.crop((left, y, left + w, y + caption_height(cell, lines))))


def body_top(grid: Image.Image, rows: int, tile_height: int, cell: int = CELL) -> int:
    """Height of the title strip (one or two lines), checking the rest is exactly `rows` tiles."""
    top = grid.height - rows * tile_height
    one_line = title_height(10**6, cell, "x")
    line = line_height(label_font(font_px(cell) + 1))
    assert top in (one_line, one_line + line), (top, one_line, line)
    return top


def assert_drawn_and_distinct(strips: list[np.ndarray]) -> None:
    for s in strips:
        assert (s < 128).any(), "a caption is blank"
    assert any(not np.array_equal(strips[0], s) for s in strips[1:]), "captions are identical across cells"


# ----------------------------------------------------------------------------------------------------- generate
def test_generate_grid_layout_captions_and_pixels(saved_pipeline_dir, tmp_path):
    out = tmp_path / "new" / "dir" / "grid.png"  # missing parents are created
    prompts = ["gold; metal", "water", "a tree"]
    args = ["generate", *prompts, "--model", str(saved_pipeline_dir), "--steps", "2", "--cell-size", str(CELL)]
    assert main([*args, "-o", str(out)]) == 0
    assert only_entries(out.parent) == ["grid.png"]  # atomic: no temporary file left behind
    grid = Image.open(out)
    tw, th = tile_size(CELL, 2)
    top = body_top(grid, 1, th)
    assert grid.width == 3 * tw  # 1 row x 3 prompts
    assert_drawn_and_distinct([caption_strip(grid, c * tw, top, lines=2) for c in range(3)])

    # The cell is the pipeline's own image for that seed (NEAREST-upscaled), not a re-implementation.
    pipe = load_glyph_pipeline(saved_pipeline_dir, "dpmsolver++", "cpu")
    expected = pipe("water", num_inference_steps=2, generator=torch.Generator().manual_seed(0)).images[0]
    m = MARGIN
    cell = grid.crop((tw + m, top + m, tw + m + CELL, top + m + CELL))
    np.testing.assert_array_equal(np.asarray(cell), np.asarray(expected.resize((CELL, CELL), Image.NEAREST)))


def test_generate_upscales_with_the_upscaler_named_and_refuses_one_of_another_size(
    saved_pipeline_dir, tmp_path, capsys
):
    from glyph_pipeline.upscale import UpscaledPipeline, load_upscaler

    tiny_upscaler().save_pretrained(tmp_path / "x2")  # 16 px -> 32 px, the tiny model's size
    tiny_upscaler(low=8).save_pretrained(tmp_path / "x2-8px")
    out = tmp_path / "grid.png"
    args = ["generate", "water", "--model", str(saved_pipeline_dir), "--steps", "2", "--cell-size", "32"]
    assert main([*args, "--upscaler", str(tmp_path / "x2"), "--upscale-steps", "2", "-o", str(out)]) == 0
    chained = UpscaledPipeline(
        load_glyph_pipeline(saved_pipeline_dir, "dpmsolver++", "cpu"), load_upscaler(tmp_path / "x2", "cpu"), 2
    )
    expected = chained("water", num_inference_steps=2, generator=torch.Generator().manual_seed(0)).images[0]
    assert expected.size == (32, 32)
    grid = Image.open(out)
    top = body_top(grid, 1, tile_size(32, 2)[1])
    cell = grid.crop((MARGIN, top + MARGIN, MARGIN + 32, top + MARGIN + 32))
    np.testing.assert_array_equal(np.asarray(cell), np.asarray(expected))

    assert main([*args, "--upscaler", str(tmp_path / "x2-8px"), "-o", str(tmp_path / "no.png")]) == 2
    assert "takes 8 px glyphs, but the model draws 16 px" in capsys.readouterr().err
    assert not (tmp_path / "no.png").exists()


def test_generate_several_images_per_prompt(saved_pipeline_dir, tmp_path):
    out = tmp_path / "grid.png"
    args = ["generate", "gold", "fire", "--model", str(saved_pipeline_dir), "--steps", "1", "--num-images", "3"]
    assert main([*args, "--cell-size", str(CELL), "--scheduler", "ddim", "-o", str(out)]) == 0
    grid = Image.open(out)
    tw, th = tile_size(CELL, 1)
    top = body_top(grid, 2, th)
    assert grid.width == (1 + 3) * tw  # a prompt-label column + 3 seeds; 2 rows
    assert_drawn_and_distinct([caption_strip(grid, c * tw, top) for c in range(1, 4)])  # "seed 0/1/2"
    labels = [np.asarray(grid.crop((0, top + r * th, tw, top + (r + 1) * th))) for r in range(2)]
    assert_drawn_and_distinct(labels)  # row labels: the two prompts


# ----------------------------------------------------------------------------------------------------- animate
def test_animate_gif_has_one_frame_per_timestep_plus_one(saved_pipeline_dir, tmp_path):
    out = tmp_path / "anim.gif"
    args = ["animate", "gold", "--model", str(saved_pipeline_dir), "--scheduler", "ddim", "--steps", "3"]
    assert main([*args, "--frame-size", "48", "-o", str(out)]) == 0
    gif = Image.open(out)
    frames = [f.convert("L").copy() for f in ImageSequence.Iterator(gif)]
    assert len(frames) == 3 + 1
    assert all(f.size == animation_frame_size(48) for f in frames)
    footers = [np.asarray(f.crop((0, f.height - 30, f.width, f.height))) for f in frames]
    assert_drawn_and_distinct(footers)  # "step i/n · t = ..." differs per frame
    durations = [f.info["duration"] for f in ImageSequence.Iterator(Image.open(out))]
    assert durations[-1] > durations[0]  # the final glyph is held


def test_trajectory_uses_the_pipeline_loop_for_any_scheduler(saved_pipeline_dir):
    pipe = load_glyph_pipeline(saved_pipeline_dir, "heun", "cpu")
    traj = denoising_trajectory(pipe, "gold", num_inference_steps=3, seed=5)
    assert len(traj.timesteps) == len(traj.inputs) == len(traj.predictions) == pipe.num_timesteps == 5  # Heun: 2n-1
    frames = denoising_frames(pipe, "gold", num_inference_steps=3, seed=5, frame_size=32)
    assert len(frames) == pipe.num_timesteps + 1
    # Same seed, same image as a plain call: the animation shows the real sampling run.
    plain = pipe("gold", num_inference_steps=3, generator=torch.Generator().manual_seed(5), output_type="pt").images
    torch.testing.assert_close((traj.final.clamp(-1, 1) + 1) / 2, plain, atol=1e-5, rtol=0)
    # The first input is the starting noise; x̂0 are pixel images.
    assert traj.inputs[0].std() > 0.5 and all(p.abs().max() <= 1 for p in traj.predictions)
    # Also for an ancestral sampler, whose step noise comes from the same generator.
    use_scheduler(pipe, "euler-a")
    traj = denoising_trajectory(pipe, "gold", num_inference_steps=2, seed=5)
    plain = pipe("gold", num_inference_steps=2, generator=torch.Generator().manual_seed(5), output_type="pt").images
    torch.testing.assert_close((traj.final.clamp(-1, 1) + 1) / 2, plain, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["ddim", "euler", "heun", "euler-a"])
def test_trajectory_with_an_oracle_denoiser(pipe, monkeypatch, name):
    # A UNet that returns the true target (v by default) for a known glyph: x̂0 must be that glyph at every step,
    # and x_t must be shown on the DDPM scale (std ~1) also for Karras samplers, whose raw latents reach std ~2e4.
    glyph = -torch.ones(1, 1, 16, 16)
    glyph[..., 4:12, 4:12] = 1.0
    alpha_bar = pipe.scheduler.alphas_cumprod.double().numpy()
    sigmas = np.sqrt((1 - alpha_bar) / alpha_bar)

    def oracle(sample, t, *args, **kwargs):
        # Fractional timesteps (Karras samplers) mean σ interpolated linearly in t, as diffusers does.
        a = 1 / (1 + float(np.interp(float(t), np.arange(len(sigmas)), sigmas)) ** 2)
        eps = (sample - a**0.5 * glyph) / (1 - a) ** 0.5
        assert pipe.scheduler.config.prediction_type == "v_prediction"
        return (a**0.5 * eps - (1 - a) ** 0.5 * glyph,)

    monkeypatch.setattr(pipe.unet, "forward", oracle)
    use_scheduler(pipe, name)
    traj = denoising_trajectory(pipe, "gold", num_inference_steps=5, seed=0)
    for x0 in traj.predictions:
        torch.testing.assert_close(x0, glyph, atol=1e-4, rtol=0)
    torch.testing.assert_close(traj.final, glyph, atol=1e-4, rtol=0)
    shown = traj.inputs
    if name == "heun":
        # Heun's corrector multiplies the derivative at σ1 ≈ 2.4 by Δσ ≈ 2e4 on the first step of the cosine
        # schedule (σ_max ≈ 2e4): float32 rounding of ~1e-4 puts its intermediate x_t units off the path
        # (x̂0 and the final glyph above stay exact). Only its first-order states are checked.
        shown = shown[:2]
    assert all(0.7 < x.std() < 1.3 for x in shown), [round(float(x.std()), 3) for x in traj.inputs]


# ----------------------------------------------------------------------------------------------------- steps grid
def test_steps_grid_reports_impossible_cells(saved_pipeline_dir, tmp_path, capsys):
    out = tmp_path / "steps.png"
    args = ["steps-grid", "gold", "--model", str(saved_pipeline_dir), "--scheduler", "pndm", "ddim"]
    assert main([*args, "--steps-list", "1", "2", "4", "--cell-size", str(CELL), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "skipped pndm with 1 step(s)" in err and "skipped pndm with 2 step(s)" in err and "PNDM needs >= 4" in err
    assert "with 4 step" not in err
    grid = Image.open(out)
    tw, th = tile_size(CELL, 2)
    top = body_top(grid, 2, th)
    assert grid.width == (1 + 3) * tw
    assert_drawn_and_distinct([caption_strip(grid, c * tw, top + th, lines=2) for c in range(1, 4)])
    m = MARGIN
    skipped = np.asarray(grid.crop((tw + m + 2, top + m + 8, tw + m + 6, top + m + 12)))
    assert (skipped == 225).all()  # the crossed-out placeholder


def test_steps_grid_fails_when_nothing_can_be_sampled(saved_pipeline_dir):
    pipe = load_glyph_pipeline(saved_pipeline_dir, None, "cpu")
    with pytest.raises(FigureError, match="No cell can be sampled.*PNDM needs >= 4"):
        steps_grid(pipe, "gold", [1, 2], ["pndm"], progress=False)


# ----------------------------------------------------------------------------------------------------- noising
def test_noising_strip_from_dataset_linear_vs_cosine(glyph_dataset, tmp_path):
    out = tmp_path / "noising.png"
    args = ["noising", "--dataset", str(glyph_dataset), "--character", "永", "--cell-size", str(CELL)]
    args += ["--beta-schedules", "linear", "squaredcos_cap_v2", "--num-columns", "5", "-o", str(out)]
    assert main(args) == 0
    strip = Image.open(out)
    tw, th = tile_size(CELL, 2)
    top = body_top(strip, 2, th)
    assert strip.width == (1 + 5) * tw
    assert_drawn_and_distinct([caption_strip(strip, c * tw, top, lines=2) for c in range(1, 6)])
    m = MARGIN

    def cell(r: int, c: int) -> np.ndarray:
        x, y = (1 + c) * tw + m, top + r * th + m
        return np.asarray(strip.crop((x, y, x + CELL, y + CELL)), dtype=float)

    from glyph_pipeline.data.dataset import load_glyph_dataset

    ds = load_glyph_dataset(glyph_dataset, split="train")
    clean = np.asarray(ds[ds["character"].index("永")]["image"].resize((CELL, CELL), Image.NEAREST), dtype=float)
    assert np.abs(cell(0, 0) - clean).mean() < 8  # t = 0: still the glyph
    assert np.abs(cell(0, 4) - clean).mean() > 60  # t = T-1: noise
    assert np.abs(cell(0, 2) - cell(1, 2)).mean() > 5  # linear and cosine differ mid-way


def test_noising_strip_snr_labels_and_any_image(tmp_path):
    image = Image.new("L", (16, 16), 255)
    image.paste(0, (4, 4, 12, 12))
    path = tmp_path / "square.png"
    image.save(path)
    out = tmp_path / "strip.png"
    assert (
        main(["noising", "--image", str(path), "--timesteps", "0 500 999", "--cell-size", "24", "-o", str(out)]) == 0
    )
    strip = Image.open(out)
    assert strip.width == 4 * tile_size(24, 2)[0]
    body_top(strip, 1, tile_size(24, 2)[1], cell=24)
    alpha_bar = sampling_scheduler("ddpm", noise_schedule()).alphas_cumprod
    snr_db = [10 * np.log10(float(a / (1 - a))) for a in alpha_bar[[0, 500, 999]]]
    assert snr_db[0] > 30 > 0 > snr_db[1] > snr_db[2]  # what the labels print, high to low


# ----------------------------------------------------------------------------------------------------- single step
def test_single_step_grid(saved_pipeline_dir, tmp_path):
    out = tmp_path / "single.png"
    args = ["single-step", "gold", "--model", str(saved_pipeline_dir), "--seeds", "0", "1,2", "--cell-size", str(CELL)]
    assert main([*args, "--compare-steps", "2", "-o", str(out)]) == 0
    grid = Image.open(out)
    tw, th = tile_size(CELL, 1)
    top = body_top(grid, 3, th)
    assert grid.width == (1 + 3) * tw  # noise / one-step x̂0 / 2-step sample, 3 seeds
    m = MARGIN
    cells = [
        [
            np.asarray(grid.crop((c * tw + m, top + r * th + m, c * tw + m + CELL, top + r * th + m + CELL)))
            for c in (1, 2)
        ]
        for r in range(3)
    ]
    assert not np.array_equal(cells[0][0], cells[0][1])  # seeds differ
    assert not np.array_equal(cells[0][0], cells[1][0])  # x̂0 is not the noise
    labels = [np.asarray(grid.crop((0, top + r * th, tw, top + (r + 1) * th))) for r in range(3)]
    assert_drawn_and_distinct(labels)


def test_single_step_prediction_is_one_unet_call_at_the_last_timestep(pipe):
    calls = []
    hook = pipe.unet.register_forward_hook(lambda mod, args, kwargs_out: calls.append(int(args[1])))
    try:
        single_step_grid(pipe, "gold", seeds=[0, 1], cell_size=CELL)
    finally:
        hook.remove()
    assert calls == [999]
    assert type(pipe.scheduler).__name__ == "DPMSolverMultistepScheduler"  # the pipeline's sampler is restored


# ----------------------------------------------------------------------------------------------------- dataset map
def test_dataset_map_umap_one_point_per_glyph(glyph_dataset, tmp_path):
    # UMAP is JIT-compiled by numba (~20-60 s per process on a loaded 2-core box); pure Python is faster for
    # 40 points. A subprocess keeps that setting away from the rest of the suite and runs the real CLI entry.
    png, coords = tmp_path / "map.png", tmp_path / "map.csv"
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "glyph_pipeline.cli", "dataset-map", "--dataset", str(glyph_dataset)]
    cmd += ["--epochs", "30", "--coords", str(coords), "--no-progress", "-o", str(png)]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert only_entries(tmp_path) == ["map.csv", "map.html", "map.png"]
    assert Image.open(png).size[0] > 500
    rows = list(csv.DictReader(coords.open(encoding="utf-8")))
    assert sorted(r["character"] for r in rows) == sorted(CHARACTERS)  # one point per glyph, all splits
    assert all(np.isfinite(float(r["x"])) and 1 <= int(r["radical"]) <= 214 for r in rows)
    page = (tmp_path / "map.html").read_text(encoding="utf-8")
    assert '<script src="http' not in page and len(page) > 1_000_000  # plotly.js is inline: works offline
    assert all(json.dumps(c)[1:-1] in page or c in page for c in CHARACTERS)  # hover data per glyph


def test_dataset_map_api_pca_and_colour_by_any_column(glyph_dataset, tmp_path):
    from glyph_pipeline.figures.dataset_map import dataset_map, save_html, save_png

    m = dataset_map(glyph_dataset, method="pca", color_by="block", limit=20, progress=False)
    assert m.coords.shape == (20, 2) and len(set(m.characters)) == 20 and m.density is not None
    assert not m.numeric_colors
    save_png(m, tmp_path / "m.png")
    save_html(m, tmp_path / "m.html")
    assert Image.open(tmp_path / "m.png").size[0] > 500 and (tmp_path / "m.html").stat().st_size > 1_000_000


# ----------------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "argv, message",
    [
        (["generate", "gold", "--scheduler", "nope"], "Unknown scheduler 'nope'; valid names: ddpm, ddim"),
        (["generate", "gold", "--steps", "0"], "--steps must be an integer >= 1"),
        (["generate", "  "], "Empty prompt"),
        (["generate", "gold", "--num-images", "0"], "--num-images must be an integer >= 1"),
        (["animate", "gold", "--scheduler", "pndm", "--steps", "2"], "PNDM needs >= 4"),
        (["animate", "gold", "-o", "x.png"], "must end in one of .gif, .mp4"),
        (["steps-grid", "gold", "--scheduler", "ddim", "bad"], "Unknown scheduler 'bad'"),
        (["steps-grid", "gold", "--steps-list", "0 2"], "--steps-list entries must be an integer >= 1"),
        (["single-step", "", "--seeds", "0"], "Empty prompt"),
        (["generate", "gold", "--guidance", "-1"], "guidance must be a number >= 0"),
    ],
)
def test_bad_input_fails_before_any_work(saved_pipeline_dir, tmp_path, capsys, monkeypatch, argv, message):
    loads = []
    real_load = commands.load_glyph_pipeline

    def tracking_load(*args, **kwargs):
        loads.append("load")
        return real_load(*args, **kwargs)

    monkeypatch.setattr(commands, "load_glyph_pipeline", tracking_load)
    out = tmp_path / ("out.gif" if argv[0] == "animate" else "out.png")
    if "-o" not in argv:
        argv = [*argv, "-o", str(out)]
    if argv[0] != "noising":
        argv = [*argv, "--model", str(saved_pipeline_dir)]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not out.exists() and only_entries(tmp_path) == []
    if "PNDM" not in message:  # everything but the scheduler/step check fails before the model is even loaded
        assert loads == []


@pytest.mark.parametrize("kind", ["missing", "not-a-pipeline", "file"])
def test_model_that_is_not_a_pipeline_fails_clearly(tmp_path, capsys, kind):
    model = tmp_path / "model"
    if kind == "not-a-pipeline":
        model.mkdir()
        (model / "unet").mkdir()
    elif kind == "file":
        model.write_text("not a model")
    else:
        model = Path("./no/such/model")
    assert main(["generate", "gold", "--model", str(model), "-o", str(tmp_path / "g.png")]) == 2
    err = capsys.readouterr().err
    assert ("does not exist" if kind == "missing" else "no model_index.json") in err
    assert not (tmp_path / "g.png").exists()


def test_noising_bad_inputs(glyph_dataset, tmp_path, capsys):
    out = str(tmp_path / "n.png")
    assert main(["noising", "--dataset", str(glyph_dataset), "--character", "鑫", "-o", out]) == 2
    assert "鑫 (U+946B) is not in dataset" in capsys.readouterr().err
    assert main(["noising", "--character", "永", "--beta-schedules", "sigmoid", "-o", out]) == 2
    assert "beta_schedule 'sigmoid' is not supported" in capsys.readouterr().err
    assert main(["noising", "-o", out]) == 2
    assert "exactly one source" in capsys.readouterr().err
    assert main(["noising", "--image", str(tmp_path / "none.png"), "-o", out]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert only_entries(tmp_path) == []


def test_dataset_map_bad_inputs(glyph_dataset, tmp_path, capsys):
    out = str(tmp_path / "m.png")
    assert main(["dataset-map", "--dataset", str(glyph_dataset), "--color-by", "colour", "-o", out]) == 2
    assert "no column(s) colour" in capsys.readouterr().err
    assert main(["dataset-map", "--dataset", str(glyph_dataset), "--limit", "2", "-o", out]) == 2
    assert "--limit must be an integer >= 5" in capsys.readouterr().err
    assert main(["dataset-map", "--dataset", str(tmp_path / "nowhere"), "-o", out]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert only_entries(tmp_path) == []


def test_mp4_needs_imageio_ffmpeg(saved_pipeline_dir, tmp_path, capsys):
    try:
        import imageio_ffmpeg  # noqa: F401

        pytest.skip("imageio-ffmpeg is installed: MP4 output works here")
    except ImportError:
        pass
    assert main(["animate", "gold", "--model", str(saved_pipeline_dir), "-o", str(tmp_path / "a.mp4")]) == 2
    assert "pip install imageio imageio-ffmpeg" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------- helpers
def test_scheduler_swap_keeps_the_models_schedule_and_drops_solver_keys():
    pipe = tiny_pipeline("deis")
    pipe.scheduler = sampling_scheduler("deis", noise_schedule(beta_schedule="squaredcos_cap_v2"))
    for name in ("dpmsolver-singlestep", "heun", "kdpm2", "dpmsolver-sde", "ddim"):
        use_scheduler(pipe, name)  # chained swaps: DEIS's algorithm_type must not break singlestep
        assert pipe.scheduler.config.beta_schedule == "squaredcos_cap_v2"
    with pytest.raises(ValueError, match="valid names: ddpm"):
        use_scheduler(pipe, "dpm")


def test_fit_lines_wraps_and_shortens():
    font = label_font(12)
    lines = fit_lines("a very long definition " * 10, font, 80, 2)
    assert len(lines) == 2 and lines[-1].endswith("…") and all(font.getlength(line) <= 80 for line in lines)
    assert fit_lines("gold", font, 80, 2) == ["gold"]
    assert all(font.getlength(line) <= 40 for line in fit_lines("x" * 40, font, 40, 5))
