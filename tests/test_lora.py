"""LoRA adapters: trained by our training script through `accelerate launch`, loaded the diffusers way
(`load_lora_weights`, `set_adapters`, `fuse_lora`/`unfuse_lora`, `cross_attention_kwargs={"scale": s}`), by the
CLI (`--lora`, `--lora-scale`) and by plain diffusers through the remote-code file; bad input refused early."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ENV, launch, tiny_pipeline
from PIL import Image
from safetensors.torch import load_file, save_file

from glyph_pipeline import GlyphDiffusionPipeline
from glyph_pipeline.lora import LORA_WEIGHT_NAME

UKAI = Path("/usr/share/fonts/truetype/arphic/ukai.ttc")
PROMPTS = ["gold; metal", "water"]


def sample(pipe, **kwargs) -> np.ndarray:
    generator = torch.Generator().manual_seed(0)
    return pipe(PROMPTS, num_inference_steps=3, generator=generator, output_type="np", **kwargs).images


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, saved_pipeline_dir):
    """A 4-step LoRA of the tiny saved pipeline on 24 UKai glyphs (checkpoints at 2 and 4), and a second run
    resumed from the first one's checkpoint-2."""
    from glyph_pipeline.data.dataset import build_glyph_dataset, save_dataset

    if not UKAI.is_file():
        pytest.skip("Debian's fonts-arphic-ukai is not installed (bash run.sh test installs it)")
    root = tmp_path_factory.mktemp("lora")
    data = build_glyph_dataset(
        font=UKAI, size=16, limit=200, num_chars=24, test_fraction=0.1, num_workers=0, progress=False
    )
    dataset = save_dataset(data, root / "ukai")
    args = [
        "--dataset", str(dataset), "--pretrained_model_name_or_path", str(saved_pipeline_dir),
        "--lora_rank", "4", "--train_batch_size", "8", "--max_train_steps", "4", "--learning_rate", "1e-2",
        "--lr_warmup_steps", "0", "--use_ema", "--checkpointing_steps", "2", "--validation_steps", "0",
        "--validation_prompts", *PROMPTS, "--num_validation_images", "1", "--validation_inference_steps", "2",
        "--embedding_cache_dir", str(root / "cache"), "--report_to", "none",
    ]
    out = root / "run"
    launch([*args, "--output_dir", str(out)])
    resumed = root / "resumed"
    resumed.mkdir()
    shutil.copytree(out / "checkpoint-2", resumed / "checkpoint-2")
    launch([*args, "--output_dir", str(resumed), "--resume_from_checkpoint", "latest"])
    return out, resumed


def test_lora_training_saves_a_small_diffusers_lora_file(lora_run, saved_pipeline_dir):
    out, _ = lora_run
    weights = load_file(str(out / LORA_WEIGHT_NAME))
    # diffusers' format (its training scripts' convert_state_dict_to_diffusers): lora.down/up or lora_A/B keys
    assert weights and all(k.startswith("unet.") and (".lora." in k or ".lora_" in k) for k in weights)
    assert any(".to_q.lora" in k for k in weights) and any(".conv1.lora" in k for k in weights)
    assert not (out / "unet").exists() and not (out / "model_index.json").exists()  # the adapter only
    record = json.loads((out / "training_config.json").read_text())
    assert record["lora"]["rank"] == 4 and record["lora"]["base_model"] == str(saved_pipeline_dir)
    assert record["trained_parameters"] == sum(t.numel() for t in weights.values())
    assert record["trained_parameters"] < record["unet_parameters"] / 4
    assert record["steps"] == 4 and record["total_steps"] == 4  # the LoRA's own training, not the base's


def test_lora_resume_is_exact(lora_run):
    out, resumed = lora_run
    a, b = load_file(str(out / LORA_WEIGHT_NAME)), load_file(str(resumed / LORA_WEIGHT_NAME))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_load_lora_weights_scale_fuse_unfuse(lora_run, saved_pipeline_dir):
    out, _ = lora_run
    pipe = GlyphDiffusionPipeline.from_pretrained(saved_pipeline_dir)
    pipe.set_progress_bar_config(disable=True)
    base = sample(pipe)
    pipe.load_lora_weights(out, adapter_name="kai")
    adapted = sample(pipe)
    assert np.abs(adapted - base).max() > 1e-3  # the adapter changes the glyphs
    assert np.array_equal(sample(pipe, cross_attention_kwargs={"scale": 0.0}), base)  # scale 0: bit-exact base
    pipe.set_adapters(["kai"], [0.5])
    half = sample(pipe)
    assert 0 < np.abs(half - base).max() and not np.array_equal(half, adapted)
    pipe.set_adapters(["kai"], [1.0])
    pipe.fuse_lora()
    assert np.abs(sample(pipe) - adapted).max() < 1e-4  # fused = adapter applied on the fly
    pipe.unfuse_lora()
    assert np.array_equal(sample(pipe, cross_attention_kwargs={"scale": 0.0}), base)  # weights restored exactly
    pipe.unload_lora_weights()
    assert np.array_equal(sample(pipe), base)


def test_lora_start_leaves_the_first_steps_to_the_base_model(lora_run, saved_pipeline_dir):
    """`lora_start=0.5` of 4 steps: steps 1-2 by the base model, 3-4 with the LoRA — the same images as switching
    the LoRA's scale from 0 to 1 after step 2 by a callback; afterwards the LoRA is on again, gradients flags as
    before. Bad values and states are refused with the fix."""
    out, _ = lora_run
    pipe = GlyphDiffusionPipeline.from_pretrained(saved_pipeline_dir)
    pipe.set_progress_bar_config(disable=True)
    with pytest.raises(ValueError, match="none is loaded: call `pipe.load_lora_weights"):
        sample(pipe, lora_start=0.5)
    pipe.load_lora_weights(out, adapter_name="kai")
    flags = [p.requires_grad for p in pipe.unet.parameters()]

    def run(**kwargs):
        generator = torch.Generator().manual_seed(0)
        return pipe(PROMPTS, num_inference_steps=4, generator=generator, output_type="np", **kwargs).images

    def switch_on_after_two(p, i, t, tensors):
        if i == 1:
            p._cross_attention_kwargs = {"scale": 1.0}
        return {}

    late = run(lora_start=0.5)
    expected = run(cross_attention_kwargs={"scale": 0.0}, callback_on_step_end=switch_on_after_two)
    full, base = run(), run(cross_attention_kwargs={"scale": 0.0})
    assert np.array_equal(late, expected)
    assert not np.array_equal(late, full) and not np.array_equal(late, base)
    assert np.array_equal(run(), full)  # the LoRA is on again after the call
    assert [p.requires_grad for p in pipe.unet.parameters()] == flags
    with pytest.raises(ValueError, match=r"`lora_start` must be a fraction of the steps in \[0, 1\), got 1.0"):
        run(lora_start=1.0)
    pipe.fuse_lora()
    with pytest.raises(ValueError, match=r"fused into the UNet: call `pipe.unfuse_lora\(\)` first"):
        run(lora_start=0.5)


def test_remote_code_pipeline_loads_the_lora(lora_run, saved_pipeline_dir):
    """Plain diffusers with the saved folder's own pipeline file (as from the Hub): the same API works."""
    from diffusers import DiffusionPipeline

    out, _ = lora_run
    pipe = DiffusionPipeline.from_pretrained(saved_pipeline_dir, trust_remote_code=True)
    assert type(pipe).__module__ != GlyphDiffusionPipeline.__module__
    pipe.set_progress_bar_config(disable=True)
    base = sample(pipe)
    pipe.load_lora_weights(out)
    assert np.abs(sample(pipe) - base).max() > 1e-3
    assert np.array_equal(sample(pipe, cross_attention_kwargs={"scale": 0.0}), base)


def other_base_pipeline():
    """A tiny pipeline whose UNet has other widths than the one the LoRA was trained on."""
    from conftest import TINY_UNET, tiny_text_encoder

    from glyph_pipeline import build_unet, sampling_scheduler

    tokenizer, encoder = tiny_text_encoder()
    unet = build_unet("tiny-32", 32, **{**TINY_UNET, "block_out_channels": (16, 32, 64)})
    return GlyphDiffusionPipeline(unet, sampling_scheduler("dpmsolver++"), encoder, tokenizer, max_sequence_length=24)


def test_a_lora_of_another_base_is_refused_before_loading(lora_run):
    out, _ = lora_run
    other = other_base_pipeline()
    before = {k: v.clone() for k, v in other.unet.state_dict().items()}
    # Our LoRA files name their base architecture: both are named.
    with pytest.raises(ValueError, match=r"trained for a UNet with block_out_channels \[16, 32, 32\]; this pipeline's "
                       r"UNet has block_out_channels \[16, 32, 64\].*base_model"):
        other.load_lora_weights(out)
    # A LoRA without that metadata (here: a state dict) is checked layer by layer.
    match = r"does not fit.*its layer down_blocks.*to_k expects 32 input features, this UNet has 64"
    with pytest.raises(ValueError, match=match):
        other.load_lora_weights(load_file(str(out / LORA_WEIGHT_NAME)))
    assert not getattr(other.unet, "peft_config", None)  # nothing was added
    assert all(torch.equal(before[k], v) for k, v in other.unet.state_dict().items())


def test_pickled_lora_files_are_refused(lora_run, tmp_path):
    out, _ = lora_run
    weights = load_file(str(out / LORA_WEIGHT_NAME))
    torch.save(weights, tmp_path / "pytorch_lora_weights.bin")  # the same weights, pickled
    pipe = tiny_pipeline()
    with pytest.raises(ValueError, match="pickle"):
        pipe.load_lora_weights(tmp_path, weight_name="pytorch_lora_weights.bin")
    with pytest.raises(OSError, match="pytorch_lora_weights.safetensors"):
        pipe.load_lora_weights(tmp_path)  # only a .bin there: not unpickled
    save_file(weights, str(tmp_path / "style.safetensors"))
    pipe.load_lora_weights(tmp_path, weight_name="style.safetensors")  # the same weights as safetensors load


def test_cli_lora_and_scale(lora_run, saved_pipeline_dir, tmp_path):
    out, _ = lora_run

    def generate(*extra: str) -> subprocess.CompletedProcess:
        cmd = [
            sys.executable, "-m", "glyph_pipeline.cli", "generate", "water", "--model", str(saved_pipeline_dir),
            "--steps", "2", "--cell-size", "16", "--device", "cpu", *extra,
        ]
        return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)

    runs = {
        "base": generate("-o", str(tmp_path / "base.png")),
        "lora": generate("--lora", str(out), "-o", str(tmp_path / "lora.png")),
        "zero": generate("--lora", str(out / LORA_WEIGHT_NAME), "--lora-scale", "0", "-o", str(tmp_path / "zero.png")),
        "late": generate("--lora", str(out), "--lora-start", "0.5", "-o", str(tmp_path / "late.png")),
    }
    assert all(r.returncode == 0 for r in runs.values()), {k: r.stderr[-800:] for k, r in runs.items()}
    png = {k: (tmp_path / f"{k}.png").read_bytes() for k in runs}
    assert png["zero"] == png["base"] and png["lora"] != png["base"]
    assert png["late"] not in (png["base"], png["lora"])
    bad = generate("--lora-scale", "0.5", "-o", str(tmp_path / "bad.png"))
    assert bad.returncode == 2 and "--lora-scale needs --lora" in bad.stderr and not (tmp_path / "bad.png").exists()
    bad = generate("--lora-start", "0.3", "-o", str(tmp_path / "bad.png"))
    assert bad.returncode == 2 and "--lora-start needs --lora" in bad.stderr and not (tmp_path / "bad.png").exists()


def test_lora_training_refuses_bad_settings(tmp_path, saved_pipeline_dir):
    from conftest import load_training_script

    train = load_training_script()

    base = ["--dataset", str(tmp_path), "--output_dir", str(tmp_path / "out")]
    with pytest.raises(train.TrainingSetupError, match="--pretrained_model_name_or_path"):
        train.main(train.parse_args([*base, "--lora_rank", "4"]))
    with pytest.raises(train.TrainingSetupError, match="--lora_rank must be > 0"):
        train.main(train.parse_args([*base, "--lora_rank", "0", "--pretrained_model_name_or_path", "x"]))
    args = [*base, "--lora_rank", "4", "--pretrained_model_name_or_path", str(saved_pipeline_dir)]
    with pytest.raises(train.TrainingSetupError, match="to_qq.*its linear and conv layers are called: .*to_q"):
        train.main(train.parse_args([*args, "--lora_target_modules", "to_qq,conv1"]))
    assert not (tmp_path / "out").exists()


def test_push_lora_folder_then_load_it_from_the_hub(lora_run, saved_pipeline_dir, local_hub, tmp_path):
    """`glyffuser push` of a LoRA run: the adapter, a LoRA card and the record go up, checkpoints do not; a user
    loads it by repo id onto the base model and gets the same glyphs as from the local folder."""
    from hub_fixtures import HUB_TOKEN, hub_env, run_hub_python
    from huggingface_hub import ModelCard

    out, _ = lora_run
    repo = "user/kai-lora"
    env = hub_env(local_hub, tmp_path / "pusher")
    proc = subprocess.run(
        [sys.executable, "-m", "glyph_pipeline.cli", "push", str(out), repo], env=env, capture_output=True, text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    files = local_hub.list_files(repo)
    assert files == sorted([".gitattributes", "README.md", LORA_WEIGHT_NAME, "samples.png", "training_config.json"])
    card_text = local_hub.read_file(repo, "README.md").decode()
    card = ModelCard(card_text)
    assert {"lora", "glyffuser", "text-to-image"} <= set(card.data.tags) and card.data.license == "apache-2.0"
    assert f'pipe.load_lora_weights("{repo}"' in card_text and "| LoRA | rank 4, alpha 4," in card_text
    assert "| Typeface | AR PL UKai CN |" in card_text and "Arphic Public License" in card_text
    assert HUB_TOKEN not in card_text and str(tmp_path) not in card_text

    npz = tmp_path / "hub.npz"
    code = f"""
    import numpy as np, torch
    from glyph_pipeline import GlyphDiffusionPipeline
    pipe = GlyphDiffusionPipeline.from_pretrained({str(saved_pipeline_dir)!r})
    pipe.set_progress_bar_config(disable=True)
    pipe.load_lora_weights({repo!r})
    images = pipe({PROMPTS!r}, num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="np")
    np.savez({str(npz)!r}, images=images.images)
    """
    run_hub_python(code, hub_env(local_hub, tmp_path / "reader"), timeout=300)
    local = GlyphDiffusionPipeline.from_pretrained(saved_pipeline_dir)
    local.set_progress_bar_config(disable=True)
    local.load_lora_weights(out)
    assert np.array_equal(np.load(npz)["images"], sample(local))


def test_app_offers_the_typeface_and_draws_with_it(lora_run, saved_pipeline_dir):
    """The app's typeface choice: the base model draws what it draws without the LoRA, the LoRA's typeface
    differs; an unknown typeface is a message, not a run."""
    from glyph_pipeline.app.core import BASE_TYPEFACE, AppInputError, GlyphApp, Limits
    from glyph_pipeline.lora import apply_lora, lora_typeface

    out, _ = lora_run
    assert lora_typeface(out) == "AR PL UKai CN"
    plain = GlyphDiffusionPipeline.from_pretrained(saved_pipeline_dir)
    pipe = GlyphDiffusionPipeline.from_pretrained(saved_pipeline_dir)
    apply_lora(pipe, out)
    app = GlyphApp(pipe, limits=Limits(max_images=4), lora_typeface="AR PL UKai CN (LoRA)")
    assert app.typefaces == (BASE_TYPEFACE, "AR PL UKai CN (LoRA)")
    inputs = ("water", "", "dpmsolver++", 3, 3.0, 0, 1)
    images = {}
    for typeface in app.typefaces:
        request, _ = app.validate(*inputs, typeface=typeface)
        images[typeface] = np.asarray(app.generate(request).glyphs[0].image)
    plain.set_progress_bar_config(disable=True)
    expected = plain("water", num_inference_steps=3, guidance_scale=3.0, generator=torch.Generator().manual_seed(0))
    assert np.array_equal(images[BASE_TYPEFACE], np.asarray(expected.images[0]))
    assert not np.array_equal(images["AR PL UKai CN (LoRA)"], images[BASE_TYPEFACE])
    # with a lora_start, the LoRA typeface is drawn with it (the shipped LoRA's setting is applied this way)
    late_app = GlyphApp(pipe, limits=Limits(max_images=4), lora_typeface="AR PL UKai CN (LoRA)", lora_start=0.5)
    request, _ = late_app.validate(*inputs, typeface="AR PL UKai CN (LoRA)")
    late = np.asarray(late_app.generate(request).glyphs[0].image)
    pipe.set_progress_bar_config(disable=True)
    expected_late = pipe(
        "water", num_inference_steps=3, guidance_scale=3.0, generator=torch.Generator().manual_seed(0), lora_start=0.5
    )
    assert np.array_equal(late, np.asarray(expected_late.images[0]))
    assert not np.array_equal(late, images["AR PL UKai CN (LoRA)"])
    with pytest.raises(AppInputError, match="Unknown typeface 'Comic Sans'; choose one of Base model, AR PL"):
        app.validate(*inputs, typeface="Comic Sans")
    with pytest.raises(AppInputError, match="No typeface LoRA is loaded; start the app with --lora"):
        GlyphApp(plain, limits=Limits(max_images=4)).validate(*inputs, typeface="AR PL UKai CN (LoRA)")


def test_export_writes_a_lora_folder_with_its_card(lora_run, tmp_path, capsys):
    from glyph_pipeline.cli import main as cli_main
    from glyph_pipeline.hub.pretrained import SHIPPED_MODEL

    out, _ = lora_run
    dest = tmp_path / "kai-lora"
    metrics = tmp_path / "metrics.json"  # as `glyffuser evaluate --lora ... --lora-start 0.3` writes them
    lora = {"path": str(out), "scale": 1.0, "start": 0.3}
    metrics.write_text(json.dumps({"fgd": 20.0, "adherence": 0.3, "lora": lora}))
    code = cli_main([
        "export", str(out), "--out", str(dest), "--repo-id", "glyffuser/tiny-32-kai-lora",
        "--base-model", "glyffuser/tiny-32", "--note", "Trained on two CPU cores.", "--metrics", str(metrics),
    ])
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in dest.iterdir()) == [
        "README.md", "metrics.json", LORA_WEIGHT_NAME, "samples.png", "training_config.json"
    ]
    assert (dest / LORA_WEIGHT_NAME).read_bytes() == (out / LORA_WEIGHT_NAME).read_bytes()
    card = (dest / "README.md").read_text()
    assert "base_model: glyffuser/tiny-32" in card and 'from_pretrained("glyffuser/tiny-32")' in card
    assert 'load_lora_weights("glyffuser/tiny-32-kai-lora"' in card and "- Trained on two CPU cores." in card
    # the evaluated setting is the one the card recommends
    assert 'pipe("gold; metal", lora_start=0.3)' in card and "--lora-start 0.3" in card
    assert "scored at scale 1, `lora_start=0.3`" in card
    record = json.loads((dest / "training_config.json").read_text())
    assert record["notes"] == ["Trained on two CPU cores."] and str(tmp_path) not in json.dumps(record)
    # the default --out is the shipped base model: a LoRA never replaces it
    assert cli_main(["export", str(out)]) == 2
    assert "is a LoRA: pass --out" in capsys.readouterr().err and (SHIPPED_MODEL / "model_index.json").is_file()


def test_app_api_draws_the_chosen_typeface(lora_run, saved_pipeline_dir, tmp_path):
    """`glyffuser app --lora DIR`: the page's typeface choice reaches the pipeline (API, as the browser sends it)."""
    gradio_client = pytest.importorskip("gradio_client", reason="the app test needs the [app] extra")
    from test_app import running_app

    from glyph_pipeline.app.core import BASE_TYPEFACE

    out, _ = lora_run
    with running_app(saved_pipeline_dir, "--lora", str(out), "--judge", str(tmp_path / "no-judge")) as url:
        client = gradio_client.Client(url, verbose=False, download_files=str(tmp_path))
        glyphs = {}
        for typeface in (BASE_TYPEFACE, "AR PL UKai CN (LoRA)"):
            summary, gallery, *_ = client.predict(
                "water", "", "dpmsolver++", 3, 3.0, 0, 1, typeface, api_name="/generate"
            )
            glyphs[typeface] = np.asarray(Image.open(gallery[0]["image"]))
        with pytest.raises(Exception, match=r"not in the list of choices: \['Base model', 'AR PL UKai CN"):
            client.predict("water", "", "dpmsolver++", 3, 3.0, 0, 1, "Comic Sans", api_name="/generate")
    plain = GlyphDiffusionPipeline.from_pretrained(saved_pipeline_dir)
    plain.set_progress_bar_config(disable=True)
    expected = plain("water", num_inference_steps=3, guidance_scale=3.0, generator=torch.Generator().manual_seed(0))
    assert np.array_equal(glyphs[BASE_TYPEFACE], np.asarray(expected.images[0]))
    assert not np.array_equal(glyphs["AR PL UKai CN (LoRA)"], glyphs[BASE_TYPEFACE])
