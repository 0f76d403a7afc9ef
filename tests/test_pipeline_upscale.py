"""GlyphUpscalePipeline: inputs of every kind, batches, scheduler swaps, save/load/remote code, bad input, and the
chain from the base pipeline (tiny but real components)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import tiny_pipeline, tiny_upscaler
from diffusers import (
    DDIMScheduler,
    DiffusionPipeline,
    DPMSolverSDEScheduler,
    EulerDiscreteScheduler,
    UniPCMultistepScheduler,
)
from PIL import Image

from glyph_pipeline.hub.pretrained import NotAPipelineError, load_glyph_pipeline
from glyph_pipeline.pipeline_glyph_upscale import GlyphUpscalePipeline
from glyph_pipeline.upscale import UpscaledPipeline, check_upscaler_settings, load_upscaler


@pytest.fixture
def upscaler():
    return tiny_upscaler()


def glyph(seed: int = 0, size: int = 16) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((size, size)) > 0.3).astype(np.float32)


def run(pipe, image, seed=0, **kwargs):
    generator = [torch.Generator().manual_seed(seed + i) for i in range(kwargs.pop("n", 1))]
    return pipe(image, generator=generator if len(generator) > 1 else generator[0], output_type="np", **kwargs).images


def test_pil_numpy_and_torch_inputs_give_the_same_glyph(upscaler):
    array = glyph()
    pil = Image.fromarray((array * 255).astype(np.uint8), mode="L")
    reference = run(upscaler, pil)
    assert reference.shape == (1, 32, 32, 1)
    for image in (array, array[:, :, None], array[None, :, :, None], torch.from_numpy(array)[None], [pil]):
        np.testing.assert_allclose(run(upscaler, image), reference, atol=1e-6)
    # Different input, different output: the condition is used.
    assert np.abs(run(upscaler, 1.0 - array) - reference).max() > 1e-3


def test_a_batch_equals_single_calls_with_per_image_generators(upscaler):
    images = [glyph(i) for i in range(3)]
    batch = run(upscaler, np.stack(images)[..., None], n=3)
    for i, image in enumerate(images):
        np.testing.assert_allclose(run(upscaler, image, seed=i), batch[i : i + 1], atol=1e-5)


def test_the_base_pipelines_pt_output_goes_in_as_is(upscaler):
    pipe = tiny_pipeline()
    low = pipe(["water", "fire"], num_inference_steps=2, output_type="pt",
               generator=[torch.Generator().manual_seed(i) for i in range(2)]).images
    assert low.shape == (2, 1, 16, 16)
    out = upscaler(low, num_inference_steps=2, output_type="pil").images
    assert [im.size for im in out] == [(32, 32)] * 2 and {im.mode for im in out} == {"L"}

    chained = UpscaledPipeline(pipe, upscaler, num_inference_steps=2)
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    images = chained(["water", "fire"], num_inference_steps=2, generator=gens).images
    assert [im.size for im in images] == [(32, 32)] * 2
    assert chained.unet is pipe.unet  # figures read the base pipeline through the chain


def test_the_sde_scheduler_is_seeded_by_the_generator(upscaler):
    upscaler.scheduler = DPMSolverSDEScheduler.from_config(upscaler.scheduler.config)
    images = [glyph(i) for i in range(2)]
    batch = run(upscaler, np.stack(images)[..., None], n=2, num_inference_steps=2)
    for i, image in enumerate(images):
        np.testing.assert_allclose(run(upscaler, image, seed=i, num_inference_steps=2), batch[i : i + 1], atol=1e-5)


@pytest.mark.parametrize("cls", [UniPCMultistepScheduler, DDIMScheduler, EulerDiscreteScheduler])
def test_every_scheduler_swaps_in_one_line(upscaler, cls):
    upscaler.scheduler = cls.from_config(upscaler.scheduler.config)
    assert upscaler.scheduler.config.prediction_type == "v_prediction"
    out = run(upscaler, glyph(), num_inference_steps=3)
    assert out.shape == (1, 32, 32, 1) and np.isfinite(out).all()


def test_noise_level_zero_and_high_differ_and_callbacks_see_the_condition(upscaler):
    seen = []

    def callback(pipe, step, t, tensors):
        seen.append(tuple(tensors["image_cond"].shape))
        return {}

    a = run(upscaler, glyph(), noise_level=0, callback_on_step_end=callback,
            callback_on_step_end_tensor_inputs=["latents", "image_cond"])
    b = run(upscaler, glyph(), noise_level=900)
    assert seen == [(1, 1, 32, 32)] * upscaler.num_timesteps
    assert np.abs(a - b).max() > 1e-3


def test_save_load_and_remote_code(upscaler, tmp_path):
    reference = run(upscaler, glyph())
    upscaler.save_pretrained(tmp_path / "up")
    index = json.loads((tmp_path / "up" / "model_index.json").read_text())
    assert index["_class_name"] == ["pipeline_glyph_upscale", "GlyphUpscalePipeline"]
    # The file imports the base pipeline's helpers: both travel, so plain diffusers can run it.
    files = {p.name for p in (tmp_path / "up").iterdir()}
    assert {"pipeline_glyph_upscale.py", "pipeline_glyph_diffusion.py"} <= files
    installed = GlyphUpscalePipeline.from_pretrained(tmp_path / "up")
    assert type(installed) is GlyphUpscalePipeline
    remote = DiffusionPipeline.from_pretrained(tmp_path / "up", trust_remote_code=True)
    assert type(remote).__module__.startswith("diffusers_modules")
    for pipe in (installed, remote):
        pipe.set_progress_bar_config(disable=True)
        np.testing.assert_allclose(run(pipe, glyph()), reference, atol=1e-6)
    with pytest.raises(ValueError, match="trust_remote_code"):
        DiffusionPipeline.from_pretrained(tmp_path / "up")


@pytest.mark.parametrize(
    ("image", "kwargs", "message"),
    [
        (Image.new("RGB", (16, 16), "white"), {}, "greyscale"),
        (Image.new("F", (16, 16), 0.5), {}, "greyscale"),
        ([np.ones((16, 16), np.float32), np.ones((8, 8), np.float32)], {}, "takes 16x16"),
        (np.ones((3, 16, 16, 3), np.float32), {}, "3 channels"),
        (np.ones((32, 32), np.float32), {}, "takes 16x16"),
        (np.full((16, 16), 255.0, np.float32), {}, r"\[0, 1\]"),
        (np.ones((16, 16), np.float32), {"noise_level": 1000}, "noise_level"),
        (np.ones((16, 16), np.float32), {"num_inference_steps": 0}, "num_inference_steps"),
        ("gold", {}, "PIL, numpy or torch"),
    ],
)
def test_bad_input_is_refused_before_any_compute(upscaler, image, kwargs, message):
    calls = []
    upscaler.unet.register_forward_hook(lambda *a: calls.append(1))
    with pytest.raises(ValueError, match=message):
        upscaler(image, **kwargs)
    assert not calls


def test_an_upscaler_and_a_base_model_each_refuse_the_others_flag(upscaler, tmp_path, saved_pipeline_dir):
    upscaler.save_pretrained(tmp_path / "up")
    with pytest.raises(NotAPipelineError, match="--upscaler"):
        load_glyph_pipeline(tmp_path / "up")
    with pytest.raises(NotAPipelineError, match="--model"):
        load_upscaler(saved_pipeline_dir)
    assert type(load_upscaler(tmp_path / "up", "cpu")) is GlyphUpscalePipeline
    assert check_upscaler_settings("none", None, None) is None
    with pytest.raises(ValueError, match="--upscale-steps"):
        check_upscaler_settings(None, 0, None)
