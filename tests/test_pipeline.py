"""GlyphDiffusionPipeline's contract with diffusers, on tiny real components (CPU)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from conftest import tiny_pipeline, tiny_text_encoder
from diffusers import DDPMScheduler, DiffusionPipeline
from PIL import Image

from glyph_pipeline import SCHEDULERS, GlyphDiffusionPipeline, build_unet, sampling_scheduler

PROMPTS = ["gold; metal", "water", "a tree"]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def run(pipe, prompt=PROMPTS[0], **kwargs):
    kwargs.setdefault("num_inference_steps", 3)
    kwargs.setdefault("output_type", "np")
    kwargs.setdefault("generator", gen())
    return pipe(prompt, **kwargs).images


# ----------------------------------------------------------------------------- outputs
def test_pil_output_is_greyscale_at_unet_size(pipe):
    images = pipe(PROMPTS[:2], num_inference_steps=2, generator=gen()).images
    assert len(images) == 2
    assert all(isinstance(im, Image.Image) and im.mode == "L" and im.size == (16, 16) for im in images)


def test_output_types_agree(pipe):
    as_np = run(pipe)
    as_pt = run(pipe, output_type="pt")
    as_pil = run(pipe, output_type="pil")
    assert as_np.shape == (1, 16, 16, 1) and as_np.dtype == np.float32
    assert tuple(as_pt.shape) == (1, 1, 16, 16)
    assert 0.0 <= as_np.min() and as_np.max() <= 1.0
    np.testing.assert_array_equal(as_pt.permute(0, 2, 3, 1).numpy(), as_np)
    np.testing.assert_array_equal(np.asarray(as_pil[0]), (as_np[0, ..., 0] * 255).round().astype(np.uint8))


def test_dict_and_tuple_outputs_equal(pipe):
    as_dict = pipe(PROMPTS[0], num_inference_steps=2, generator=gen(), output_type="np").images
    (as_tuple,) = pipe(PROMPTS[0], num_inference_steps=2, generator=gen(), output_type="np", return_dict=False)
    np.testing.assert_array_equal(as_dict, as_tuple)


def test_pixels_map_white_paper_to_plus_one(pipe):
    # Starting latents of +1 everywhere with a callback that pins them keep a white page: +1 -> 255.
    def pin(p, i, t, kw):
        return {"latents": torch.ones_like(kw["latents"])}

    image = pipe(PROMPTS[0], num_inference_steps=2, callback_on_step_end=pin, output_type="pil").images[0]
    assert np.asarray(image).min() == 255

    def ink(p, i, t, kw):
        return {"latents": -torch.ones_like(kw["latents"])}

    image = pipe(PROMPTS[0], num_inference_steps=2, callback_on_step_end=ink, output_type="pil").images[0]
    assert np.asarray(image).max() == 0


def test_height_width_override(pipe):
    assert run(pipe, height=32, width=16).shape == (1, 32, 16, 1)


# ----------------------------------------------------------------------------- determinism and batching
def test_same_seed_same_image_different_seed_different_image(pipe):
    a, b, c = run(pipe, generator=gen(1)), run(pipe, generator=gen(1)), run(pipe, generator=gen(2))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3


def test_batch_equals_single_calls(pipe):
    batch = run(pipe, PROMPTS, generator=[gen(i) for i in range(3)])
    singles = np.concatenate([run(pipe, p, generator=gen(i)) for i, p in enumerate(PROMPTS)])
    np.testing.assert_allclose(batch, singles, atol=1e-4)


def test_num_images_per_prompt(pipe):
    images = run(pipe, PROMPTS[:2], num_images_per_prompt=3, generator=gen())
    assert images.shape == (6, 16, 16, 1)
    # Different noise per image of the same prompt.
    assert np.abs(images[0] - images[1]).max() > 1e-3


def test_prompt_embeds_equal_prompt(pipe):
    embeds, mask, neg, neg_mask = pipe.encode_prompt(PROMPTS[0], do_classifier_free_guidance=True)
    from_text = run(pipe, PROMPTS[0])
    from_embeds = pipe(
        prompt_embeds=embeds, prompt_attention_mask=mask, negative_prompt_embeds=neg,
        negative_prompt_attention_mask=neg_mask, num_inference_steps=3, generator=gen(), output_type="np",
    ).images
    np.testing.assert_allclose(from_text, from_embeds, atol=1e-4)


def test_encode_prompt_alone(pipe):
    embeds, mask, neg, neg_mask = pipe.encode_prompt(["gold", "water"], num_images_per_prompt=2)
    assert embeds.shape == (4, 24, 32) and mask.shape == (4, 24)
    assert neg.shape == embeds.shape and neg_mask.shape == mask.shape
    # Padded to max_sequence_length with a mask that marks the real tokens ("gold" = 4 bytes + </s>).
    assert mask[0].sum().item() == 5 and mask[0, 5:].sum().item() == 0
    torch.testing.assert_close(embeds[0], embeds[1])
    no_cfg = pipe.encode_prompt("gold", do_classifier_free_guidance=False)
    assert no_cfg[2] is None and no_cfg[3] is None


# ----------------------------------------------------------------------------- guidance
def test_cfg_changes_output_and_scale_one_equals_no_cfg(pipe):
    calls = []
    forward = pipe.unet.forward

    def counting(*args, **kwargs):
        calls.append(args[0].shape[0])
        return forward(*args, **kwargs)

    pipe.unet.forward = counting
    guided = run(pipe, guidance_scale=5.0)
    assert set(calls) == {2}  # cond + uncond in one UNet call per step
    calls.clear()
    scale_one = run(pipe, guidance_scale=1.0)
    assert set(calls) == {1}  # guidance off: one pass
    scale_zero = run(pipe, guidance_scale=0.0)
    pipe.unet.forward = forward
    assert np.abs(guided - scale_one).max() > 1e-3
    np.testing.assert_array_equal(scale_one, scale_zero)


def test_negative_prompt_changes_output(pipe):
    base = run(pipe, guidance_scale=4.0)
    steered = run(pipe, guidance_scale=4.0, negative_prompt="water")
    assert np.abs(base - steered).max() > 1e-4


# ----------------------------------------------------------------------------- schedulers
@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_every_scheduler_swaps_in_one_line(pipe, name):
    cls = SCHEDULERS[name][0]
    pipe.scheduler = cls.from_config(pipe.scheduler.config)
    # The explicit noise schedule travels with the swap (no silent scaled_linear betas).
    assert (pipe.scheduler.config.beta_schedule, pipe.scheduler.config.prediction_type) == (
        "squaredcos_cap_v2", "v_prediction",
    )
    # PNDM's Runge-Kutta warm-up needs >= 4 steps; KDPM2-A draws NaN below 11 steps on this schedule (see below).
    steps = {"pndm": 4, "kdpm2-a": 11}.get(name, 4)
    images = pipe(PROMPTS[:2], num_inference_steps=steps, generator=gen(), output_type="pil").images
    arrays = np.stack([np.asarray(im) for im in images])
    assert all(im.mode == "L" and im.size == (16, 16) for im in images)
    assert np.isfinite(arrays).all() and arrays.min() >= 0 and arrays.max() <= 255
    assert arrays.std() > 0  # not a constant page


def test_swap_from_reloaded_pipeline_keeps_betas(saved_pipeline_dir):
    pipe = GlyphDiffusionPipeline.from_pretrained(saved_pipeline_dir)
    from diffusers import DPMSolverSDEScheduler

    sde = DPMSolverSDEScheduler.from_config(pipe.scheduler.config)
    # The saved schedule (cosine), not DPMSolverSDE's own default (scaled_linear 0.00085 -> 0.012).
    torch.testing.assert_close(sde.betas, DDPMScheduler(beta_schedule="squaredcos_cap_v2").betas)
    assert sde.config.prediction_type == "v_prediction"


def test_dpmsolver_sde_is_reproducible_from_generator(pipe):
    pipe.scheduler = SCHEDULERS["dpmsolver-sde"][0].from_config(pipe.scheduler.config)
    a, b, c = run(pipe, generator=gen(3)), run(pipe, generator=gen(3)), run(pipe, generator=gen(4))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3
    batch = run(pipe, PROMPTS[:2], generator=[gen(5), gen(6)])
    singles = np.concatenate([run(pipe, PROMPTS[0], generator=gen(5)), run(pipe, PROMPTS[1], generator=gen(6))])
    np.testing.assert_allclose(batch, singles, atol=1e-4)


def test_custom_timesteps_and_sigmas(pipe):
    pipe.scheduler = SCHEDULERS["ddpm"][0].from_config(pipe.scheduler.config)
    seen = []
    pipe(PROMPTS[0], timesteps=[900, 500, 100], output_type="np",
         callback_on_step_end=lambda p, i, t, kw: seen.append(int(t)) or {})
    assert seen == [900, 500, 100]
    pipe.scheduler = SCHEDULERS["euler"][0].from_config(pipe.scheduler.config)
    images = pipe(PROMPTS[0], sigmas=[10.0, 3.0, 1.0, 0.3], output_type="np").images
    assert pipe.num_timesteps == 3 and np.isfinite(images).all()  # the last sigma is the end point


def test_scheduler_that_cannot_take_the_steps_fails_clearly(pipe):
    pipe.scheduler = SCHEDULERS["pndm"][0].from_config(pipe.scheduler.config)
    with pytest.raises(ValueError, match="PNDMScheduler cannot sample with 2 inference step"):
        pipe(PROMPTS[0], num_inference_steps=2)


@pytest.mark.parametrize("name", ["kdpm2-a", "euler-a"])
def test_sampler_that_would_draw_nan_fails_clearly_before_the_unet(pipe, name):
    # On the default cosine schedule (σ_max ≈ 2e4) these ancestral samplers compute NaN at 3 steps (float32
    # rounding inside diffusers' step); the pre-flight dry run says so instead of returning black images.
    pipe.scheduler = SCHEDULERS[name][0].from_config(pipe.scheduler.config)
    calls = []
    pipe.unet.register_forward_hook(lambda *a: calls.append(1))
    with pytest.raises(ValueError, match="NaN/inf.*Use more steps"):
        pipe(PROMPTS[0], num_inference_steps=3)
    assert calls == []
    images = pipe(PROMPTS[0], num_inference_steps=20, generator=gen(), output_type="np").images
    assert np.isfinite(images).all()


# ----------------------------------------------------------------------------- callbacks
def test_callback_sees_and_modifies_tensors(pipe):
    seen = []

    def callback(p, step, t, tensors):
        seen.append((step, sorted(tensors), tensors["latents"].shape))
        assert tensors["pred_original_sample"].abs().max() <= 1.0
        if step == 1:
            return {"latents": torch.zeros_like(tensors["latents"])}
        return {}

    names = ["latents", "prompt_embeds", "noise_pred", "pred_original_sample"]
    modified = run(
        pipe, num_inference_steps=2, callback_on_step_end=callback, callback_on_step_end_tensor_inputs=names
    )
    assert [s[0] for s in seen] == [0, 1]
    assert seen[0][1] == sorted(names) and seen[0][2] == (1, 1, 16, 16)
    np.testing.assert_allclose(modified, 0.5, atol=1e-6)  # zero pixels = mid grey


def test_callback_interrupt_stops_early(pipe):
    steps = []

    def stop(p, step, t, tensors):
        steps.append(step)
        p._interrupt = True
        return {}

    run(pipe, num_inference_steps=5, callback_on_step_end=stop)
    assert steps == [0]


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_pred_original_sample_recovers_clean_image(pipe, prediction_type):
    """x̂0 is exact when the 'model' returns the true target: check it for an alpha- and a sigma-space sampler."""
    from glyph_pipeline import noise_schedule

    clean = torch.linspace(-1, 1, 16 * 16).reshape(1, 1, 16, 16)
    for name in ("ddpm", "euler"):
        pipe.scheduler = sampling_scheduler(
            name, noise_schedule(prediction_type=prediction_type), timestep_spacing="trailing"
        )
        pipe.scheduler.set_timesteps(10)
        t = pipe.scheduler.timesteps[3]
        noise = torch.randn(1, 1, 16, 16, generator=gen())
        noisy = pipe.scheduler.add_noise(clean, noise, t.reshape(1)) if name == "ddpm" else None
        if name == "euler":
            pipe.scheduler._init_step_index(t)
            sigma = pipe.scheduler.sigmas[pipe.scheduler.step_index]
            noisy = pipe.scheduler.scale_model_input(clean + sigma * noise, t)
        alpha = pipe.scheduler.alphas_cumprod[int(t)]  # trailing spacing: integer training timesteps
        target = noise if prediction_type == "epsilon" else alpha.sqrt() * noise - (1 - alpha).sqrt() * clean
        x0 = pipe._predict_original_sample(noisy, target, t)
        torch.testing.assert_close(x0, clean, atol=2e-3, rtol=0)


# ----------------------------------------------------------------------------- save / load
def test_save_load_round_trip_identical(pipe, tmp_path):
    before = run(pipe)
    pipe.save_pretrained(tmp_path / "p")
    files = sorted(os.listdir(tmp_path / "p"))
    assert files == [
        "model_index.json", "pipeline_glyph_diffusion.py", "scheduler", "text_encoder", "tokenizer", "unet"
    ]
    assert os.path.exists(tmp_path / "p" / "unet" / "diffusion_pytorch_model.safetensors")
    index = json.loads((tmp_path / "p" / "model_index.json").read_text())
    assert index["_class_name"] == ["pipeline_glyph_diffusion", "GlyphDiffusionPipeline"]
    assert index["max_sequence_length"] == 24
    loaded = GlyphDiffusionPipeline.from_pretrained(tmp_path / "p")
    loaded.set_progress_bar_config(disable=True)
    assert type(loaded) is GlyphDiffusionPipeline
    np.testing.assert_array_equal(before, run(loaded))


def test_save_variants_shards_and_pickles_load_back_like_diffusers(pipe, tmp_path):
    before = run(pipe)
    pipe.save_pretrained(tmp_path / "v", variant="fp16", max_shard_size="300KB")
    unet_files = sorted(os.listdir(tmp_path / "v" / "unet"))
    assert "diffusion_pytorch_model.safetensors.index.fp16.json" in unet_files
    shards = [f for f in unet_files if f.startswith("diffusion_pytorch_model.fp16-") and f.endswith(".safetensors")]
    assert len(shards) > 1  # sharded, variant-named
    loaded = GlyphDiffusionPipeline.from_pretrained(
        tmp_path / "v", variant="fp16", dtype={"unet": torch.bfloat16, "default": torch.float32}
    )
    assert loaded.unet.dtype == torch.bfloat16 and loaded.text_encoder.dtype == torch.float32
    loaded.set_progress_bar_config(disable=True)
    np.testing.assert_allclose(run(loaded), before, atol=0.1)  # bfloat16 UNet: same image, coarser numbers
    full = GlyphDiffusionPipeline.from_pretrained(tmp_path / "v", variant="fp16", dtype=torch.float32)
    full.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(run(full), before)

    pipe.save_pretrained(tmp_path / "bin", safe_serialization=False)  # saving pickles is the user's choice
    assert os.path.exists(tmp_path / "bin" / "unet" / "diffusion_pytorch_model.bin")
    assert not os.path.exists(tmp_path / "bin" / "unet" / "diffusion_pytorch_model.safetensors")
    # diffusers' default (use_safetensors=None) falls back to the pickle where no safetensors exist; transformers 5
    # writes the text encoder as safetensors whatever the flag.
    from_bin = GlyphDiffusionPipeline.from_pretrained(tmp_path / "bin")
    from_bin.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(run(from_bin), before)


def test_cross_attention_kwargs_reach_the_attention_processors(pipe):
    from diffusers.models.attention_processor import AttnProcessor

    class ScaledOutput(AttnProcessor):
        def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, gain=1.0):
            return gain * super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb)

    pipe.unet.set_attn_processor(ScaledOutput())
    plain = run(pipe)
    np.testing.assert_array_equal(run(pipe, cross_attention_kwargs={"gain": 1.0}), plain)
    assert np.abs(run(pipe, cross_attention_kwargs={"gain": 0.0}) - plain).max() > 1e-3


def test_freeu_changes_the_output_and_disabling_restores_it_exactly(pipe):
    before = run(pipe)
    pipe.enable_freeu(s1=0.9, s2=0.2, b1=1.4, b2=1.6)
    assert np.abs(run(pipe) - before).max() > 1e-3
    pipe.disable_freeu()
    np.testing.assert_array_equal(run(pipe), before)


def test_fused_qkv_projections_same_images_and_unfusing_restores_exactly(pipe):
    from diffusers.models.attention_processor import FusedAttnProcessor2_0

    before = run(pipe)
    original = {type(p) for p in pipe.unet.attn_processors.values()}
    pipe.fuse_qkv_projections()
    assert {type(p) for p in pipe.unet.attn_processors.values()} == {FusedAttnProcessor2_0}
    np.testing.assert_allclose(run(pipe), before, atol=1e-5)  # one matmul instead of three: float rounding only
    pipe.unfuse_qkv_projections()
    assert {type(p) for p in pipe.unet.attn_processors.values()} == original
    np.testing.assert_array_equal(run(pipe), before)


def test_example_docstring_is_filled_in():
    doc = GlyphDiffusionPipeline.__call__.__doc__
    assert "pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config)" in doc
    assert doc.count("Examples:") == 1


def test_save_is_atomic_and_keeps_unrelated_files(pipe, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    pipe.save_pretrained(out)
    pipe.save_pretrained(out)  # overwrite in place
    assert (out / "notes.txt").read_text() == "mine"
    leftovers = [p for p in os.listdir(tmp_path) if p.startswith(".glyph-save-")]
    assert leftovers == [] and not [p for p in os.listdir(out) if p.startswith(".")]


def test_installed_class_loads_a_saved_folder_without_running_its_code(pipe, tmp_path):
    """The installed class loads its own folders without `trust_remote_code` and runs nothing from them (the reason
    for the pipeline's `_dict_from_json_file`)."""
    out = tmp_path / "out"
    pipe.save_pretrained(out)
    (out / "pipeline_glyph_diffusion.py").write_text("raise RuntimeError('the folder code ran')\n")
    loaded = GlyphDiffusionPipeline.from_pretrained(out)
    assert type(loaded) is GlyphDiffusionPipeline
    np.testing.assert_array_equal(run(loaded), run(pipe))


def test_plain_diffusers_refuses_without_trust_remote_code(saved_pipeline_dir):
    with pytest.raises(ValueError, match="trust_remote_code"):
        DiffusionPipeline.from_pretrained(saved_pipeline_dir)


def test_plain_diffusers_loads_remote_code_without_package(saved_pipeline_dir, tmp_path):
    """In a process that cannot import glyph_pipeline, plain diffusers loads the folder's own module."""
    reference = run(GlyphDiffusionPipeline.from_pretrained(saved_pipeline_dir))
    np.save(tmp_path / "reference.npy", reference)
    script = textwrap.dedent(
        f"""
        import importlib.abc, importlib.util, sys

        class BlockPackage(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name == "glyph_pipeline" or name.startswith("glyph_pipeline."):
                    raise ModuleNotFoundError(name)

        sys.meta_path.insert(0, BlockPackage())
        try:
            import glyph_pipeline  # noqa
            raise SystemExit("glyph_pipeline is importable: the test would prove nothing")
        except ModuleNotFoundError:
            pass
        import numpy as np, torch
        from diffusers import DiffusionPipeline
        pipe = DiffusionPipeline.from_pretrained({str(saved_pipeline_dir)!r}, trust_remote_code=True)
        assert type(pipe).__name__ == "GlyphDiffusionPipeline", type(pipe)
        assert not type(pipe).__module__.startswith("glyph_pipeline"), type(pipe).__module__
        pipe.set_progress_bar_config(disable=True)
        out = pipe("gold; metal", num_inference_steps=3, output_type="np",
                   generator=torch.Generator().manual_seed(0)).images
        np.testing.assert_array_equal(out, np.load({str(tmp_path / "reference.npy")!r}))
        print("REMOTE-OK", type(pipe).__module__)
        """
    )
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "REMOTE-OK" in result.stdout


def test_optional_components_embeds_only(pipe, tmp_path):
    embeds, mask, neg, neg_mask = pipe.encode_prompt(PROMPTS[0])
    bare = GlyphDiffusionPipeline(pipe.unet, pipe.scheduler, max_sequence_length=24)
    bare.set_progress_bar_config(disable=True)
    out = bare(prompt_embeds=embeds, prompt_attention_mask=mask, negative_prompt_embeds=neg,
               negative_prompt_attention_mask=neg_mask, num_inference_steps=3, generator=gen(), output_type="np")
    np.testing.assert_allclose(out.images, run(pipe), atol=1e-4)
    with pytest.raises(ValueError, match="no text_encoder/tokenizer"):
        bare(PROMPTS[0], num_inference_steps=1)
    bare.save_pretrained(tmp_path / "bare")
    reloaded = GlyphDiffusionPipeline.from_pretrained(tmp_path / "bare")
    assert reloaded.text_encoder is None and reloaded.tokenizer is None


def test_to_dtype(pipe):
    pipe.to(torch.float64)
    assert pipe.unet.dtype == torch.float64
    images = run(pipe, output_type="pt")
    assert images.dtype == torch.float64 and torch.isfinite(images).all()


def test_attention_slicing_same_output(pipe):
    before = run(pipe)
    pipe.enable_attention_slicing(1)
    np.testing.assert_allclose(run(pipe), before, atol=1e-4)


# ----------------------------------------------------------------------------- encoders through presets
def test_bert_style_encoder_through_preset():
    """A BERT-style encoder (hidden 384, like the offline MiniLM) drives the tiny-32 preset."""
    from transformers import BertConfig, BertModel, ByT5Tokenizer

    torch.manual_seed(0)
    bert = BertModel(
        BertConfig(vocab_size=384, hidden_size=384, num_hidden_layers=1, num_attention_heads=6, intermediate_size=64)
    ).eval()
    unet = build_unet("tiny-32", bert.config.hidden_size)
    assert unet.config.encoder_hid_dim == 384 and unet.config.sample_size == 32
    pipe = GlyphDiffusionPipeline(unet, sampling_scheduler(), bert, ByT5Tokenizer(), max_sequence_length=16)
    pipe.set_progress_bar_config(disable=True)
    image = pipe("fire", num_inference_steps=2, generator=gen()).images[0]
    assert image.mode == "L" and image.size == (32, 32)


def test_unknown_preset_lists_valid_ones():
    with pytest.raises(ValueError, match="glyffuser-128.*tiny-32"):
        build_unet("huge", 512)


def test_glyffuser_128_preset_matches_original_with_encoder_width():
    from glyph_pipeline import unet_config

    config = unet_config("glyffuser-128", 512)  # t5-small
    assert config["block_out_channels"] == (128, 256, 512, 512) and config["sample_size"] == 128
    assert config["encoder_hid_dim"] == 512 and config["in_channels"] == config["out_channels"] == 1
    assert unet_config("glyffuser-128", 1024)["encoder_hid_dim"] == 1024  # t5-large: no mismatch possible


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(prompt=None), ValueError, "either `prompt`"),
        (dict(prompt_embeds=torch.zeros(1, 24, 32)), ValueError, "only one of `prompt` or `prompt_embeds`"),
        (dict(negative_prompt=["a", "b"]), ValueError, "2 entries but there are 1 prompts"),
        (dict(negative_prompt=3), TypeError, "negative_prompt"),
        (dict(prompt=7), TypeError, "str or a list of str"),
        (dict(num_inference_steps=0), ValueError, "num_inference_steps"),
        (dict(guidance_scale=-1.0), ValueError, "guidance_scale"),
        (dict(guidance_scale=float("nan")), ValueError, "guidance_scale"),
        (dict(generator=[torch.Generator()] * 2), ValueError, "2 generators for 1 images"),
        (dict(height=18), ValueError, "multiple of 4"),
        (dict(callback_on_step_end_tensor_inputs=["bogus"]), ValueError, "Unknown callback tensor"),
        (dict(output_type="jpeg"), ValueError, "output_type"),
        (dict(num_images_per_prompt=0), ValueError, "num_images_per_prompt"),
        (dict(latents=torch.zeros(1, 1, 8, 8)), ValueError, "latents"),
    ],
)
def test_bad_input_is_refused_clearly(pipe, kwargs, error, match):
    kwargs = {"prompt": PROMPTS[0], "num_inference_steps": 2, **kwargs}
    calls = []
    pipe.unet.register_forward_pre_hook(lambda *a: calls.append(1))
    with pytest.raises(error, match=match):
        pipe(**kwargs)
    assert calls == []  # refused before any UNet work


def test_wrong_embed_shapes_are_refused(pipe):
    with pytest.raises(ValueError, match=r"shape \(batch, tokens, 32\)"):
        pipe(prompt_embeds=torch.zeros(1, 24, 16))
    with pytest.raises(ValueError, match="same shape"):
        pipe(prompt_embeds=torch.zeros(1, 24, 32), negative_prompt_embeds=torch.zeros(1, 12, 32))
    with pytest.raises(ValueError, match="prompt_attention_mask"):
        pipe(prompt_embeds=torch.zeros(1, 24, 32), prompt_attention_mask=torch.ones(1, 5))


def test_long_prompt_is_truncated_with_one_warning(pipe, caplog):
    from diffusers.utils import logging as dlogging

    long_prompt = "a very long definition " * 10
    dlogging.get_logger("diffusers").propagate = True
    with caplog.at_level(logging.WARNING):
        embeds, mask, _, _ = pipe.encode_prompt([long_prompt, long_prompt], do_classifier_free_guidance=False)
        pipe.encode_prompt(long_prompt, do_classifier_free_guidance=False)
    assert embeds.shape[1] == 24 and mask.sum(1).tolist() == [24, 24]
    warnings = [r for r in caplog.records if "truncated" in r.getMessage()]
    assert len(warnings) == 1 and "max_sequence_length=24" in warnings[0].getMessage()


def test_tiny_pipeline_helper_is_deterministic():
    a, b = tiny_pipeline(), tiny_pipeline()
    np.testing.assert_array_equal(run(a), run(b))
    tokenizer, encoder = tiny_text_encoder()
    assert not encoder.training


@pytest.mark.parametrize("base", ["deis", "dpmsolver-singlestep", "unipc", "ddim"])
def test_sampling_scheduler_carries_only_the_noise_schedule(base):
    """Any sampler rebuilt from any other's config keeps the model's betas and none of the other's options."""
    from glyph_pipeline import noise_schedule

    source = sampling_scheduler(base, base_config=noise_schedule(beta_schedule="linear", prediction_type="epsilon"))
    for name in SCHEDULERS:
        scheduler = sampling_scheduler(name, base_config=source.config)
        # An ε model stays an ε model (and linear) whatever sampler it is swapped to, never the v default.
        assert scheduler.config.beta_schedule == "linear" and scheduler.config.prediction_type == "epsilon"
        scheduler.set_timesteps(10)
        assert len(scheduler.timesteps) >= 10


def test_ddim_single_step_starts_from_pure_noise():
    ddim = sampling_scheduler("ddim")
    ddim.set_timesteps(1)
    assert ddim.timesteps.tolist() == [999]


def test_samplers_that_support_it_clip_predictions_to_the_pixel_range():
    for name in ("ddpm", "ddim", "dpmsolver++", "dpmsolver-singlestep", "deis", "unipc"):
        config = sampling_scheduler(name).config
        assert config.thresholding and config.sample_max_value == 1.0, name


# ----------------------------------------------------------------------------- pooled text (class embedding)
def pooled_pipeline(max_sequence_length: int = 24):
    from conftest import TINY_UNET

    tokenizer, encoder = tiny_text_encoder()
    torch.manual_seed(0)
    unet = build_unet("tiny-32", 32, **TINY_UNET, class_embed_type="projection", addition_embed_type=None).eval()
    with torch.no_grad():  # a fresh projection is tiny next to the time embedding: make the text path count
        for p in unet.class_embedding.parameters():
            p.mul_(20)
    pipe = GlyphDiffusionPipeline(
        unet, sampling_scheduler(), encoder, tokenizer, max_sequence_length=max_sequence_length
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_pooled_text_is_the_masked_mean_and_ignores_padding():
    pipe = pooled_pipeline()
    assert pipe.unet.config.projection_class_embeddings_input_dim == 32  # the encoder's width, set by the preset
    short, short_mask, _, _ = pipe.encode_prompt(["water"], do_classifier_free_guidance=False, max_sequence_length=12)
    long, long_mask, _, _ = pipe.encode_prompt(["water"], do_classifier_free_guidance=False, max_sequence_length=40)
    a = GlyphDiffusionPipeline.unet_text_inputs(pipe.unet.config, short, short_mask)["class_labels"]
    b = GlyphDiffusionPipeline.unet_text_inputs(pipe.unet.config, long, long_mask)["class_labels"]
    n = int(short_mask.sum())
    torch.testing.assert_close(a, short[:, :n].mean(1))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)  # padding never enters the sentence embedding
    # A UNet without the class embedding (the original's pooling) gets no class_labels (diffusers would reject them).
    from conftest import TINY_UNET

    original = build_unet("tiny-32", 32, **TINY_UNET, class_embed_type=None, addition_embed_type="text")
    assert original.config.addition_embed_type_num_heads == 32  # the most heads <= 64 that divide the width
    assert "class_labels" not in GlyphDiffusionPipeline.unet_text_inputs(original.config, short, short_mask)
    # The presets' default is the sentence embedding.
    assert tiny_pipeline().unet.config.class_embed_type == "projection"


def test_pooled_text_reaches_the_unet():
    pipe = pooled_pipeline()
    water, fire = run(pipe, "water", guidance_scale=1.0), run(pipe, "fire", guidance_scale=1.0)
    assert np.abs(water - fire).mean() > 1e-3
    # Through the class embedding alone: with cross-attention cut, the prompt still changes the glyph.
    for block in (*pipe.unet.down_blocks, pipe.unet.mid_block, *pipe.unet.up_blocks):
        for attn in getattr(block, "attentions", []):
            for tb in attn.transformer_blocks:
                tb.attn2.to_out[0].weight.data.zero_()
                tb.attn2.to_out[0].bias.data.zero_()
    water, fire = run(pipe, "water", guidance_scale=1.0), run(pipe, "fire", guidance_scale=1.0)
    assert np.abs(water - fire).mean() > 1e-3


# ----------------------------------------------------------------------------- slim save (encoder by name)
def test_slim_save_loads_the_encoder_by_name(tmp_path):
    pipe = pooled_pipeline()
    encoder_dir = tmp_path / "encoder"  # stands in for a Hub id: anything from_pretrained accepts
    pipe.tokenizer.save_pretrained(encoder_dir)
    pipe.text_encoder.save_pretrained(encoder_dir)
    pipe.register_to_config(text_encoder_source=str(encoder_dir))
    out = tmp_path / "slim"
    pipe.save_pretrained(out, include_text_encoder=False)
    index = json.loads((out / "model_index.json").read_text())
    assert index["text_encoder"] == [None, None] and index["text_encoder_source"] == str(encoder_dir)
    assert not (out / "text_encoder").exists() and not (out / "tokenizer").exists()
    assert pipe.text_encoder is not None  # the live pipeline keeps its encoder
    expected = run(pipe, "water")
    for loaded in (
        GlyphDiffusionPipeline.from_pretrained(out),
        DiffusionPipeline.from_pretrained(out, trust_remote_code=True),
    ):
        loaded.set_progress_bar_config(disable=True)
        assert loaded.text_encoder is not None
        np.testing.assert_allclose(run(loaded, "water"), expected, atol=1e-5)
    with pytest.raises(ValueError, match="text_encoder_source"):
        tiny_pipeline().save_pretrained(tmp_path / "no-source", include_text_encoder=False)
    assert not (tmp_path / "no-source").exists()
