"""Sharing on the Hub: `glyffuser push` / `push_pipeline_folder` / `push_pipeline`, and diffusers' own
`push_to_hub`, proven against `LocalHub` with the real clients.

Client code runs in subprocesses (`hub_env` sets HF_ENDPOINT before anything imports huggingface_hub, and
disables Xet); the test process builds folders, inspects the server and compares images. Subprocesses that
import diffusers cost ~8 s each, so each one does as much honest work as it can.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import hub_fixtures  # tests/ is on sys.path (its conftest.py)
import numpy as np
import pytest
import torch
from conftest import REPO
from hub_server import LocalHub

from glyph_pipeline import model_card
from glyph_pipeline.hub import push as hub

run_hub_python = hub_fixtures.run_hub_python
HUB_TOKEN, READ_TOKEN, HUB_USER = hub_fixtures.HUB_TOKEN, hub_fixtures.READ_TOKEN, hub_fixtures.HUB_USER

REPO_ROOT = REPO
TRAIN_SCRIPT = REPO_ROOT / "training" / "train_glyph_diffusion.py"
PROMPT, STEPS = "water", 4
TOKEN_LIKE = re.compile(rb"hf_[A-Za-z0-9]{30,}")
REQUIRED_TAGS = {"diffusers", "text-to-image", "glyffuser", "chinese", "cjk", "glyphs", "pixel-space"}

# What the training script writes (shape of its `training_config.json`), consistent with the tiny pipeline.
# The local paths in it must never reach the card.
TRAINING_CONFIG = {
    "args": {
        "dataset": "user/glyphs", "dataset_split": "train", "unet_preset": "tiny-32",
        "text_encoder_name_or_path": "/home/alice/models/tiny-t5", "train_batch_size": 32,
        "num_train_epochs": 100, "max_train_steps": 2000, "learning_rate": 5e-4, "lr_scheduler": "cosine",
        "lr_warmup_steps": 100, "adam_beta1": 0.9, "adam_beta2": 0.999, "adam_weight_decay": 0.01,
        "adam_epsilon": 1e-8, "gradient_accumulation_steps": 1, "max_grad_norm": 1.0, "use_ema": True,
        "ema_decay": 0.9999, "cond_dropout": 0.1, "snr_gamma": None, "seed": 0,
        "output_dir": "/home/alice/runs/glyffuser-tiny", "validation_prompts": ["water", "fire"],
        "num_validation_images": 2, "validation_inference_steps": 20, "validation_guidance_scale": 3.0,
        "validation_scheduler": "dpmsolver++",
    },
    "preset": "tiny-32",
    "model_source": "preset tiny-32",
    "unet_config": {"sample_size": 16},
    "unet_parameters": 123456,
    "ema": True,
    "text_encoder": {
        "name_or_path": "/home/alice/models/tiny-t5", "class": "T5EncoderModel", "hidden_size": 32,
        "max_sequence_length": 24,
    },
    "noise_schedule": {
        "num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear",
        "prediction_type": "epsilon",
    },
    "dataset": {
        "source": "user/glyphs", "split": "train", "rows": 20812, "distinct_captions": 16402, "resolution": 16,
        "embedding_cache": "/home/alice/.cache/glyffuser/text-embeddings/3f2a", "embedding_cache_hit": True,
    },
    "hardware": {
        "device": "cpu", "distributed_type": "MULTI_CPU", "num_processes": 2, "mixed_precision": "no",
        "cpu": "Test CPU @ 2.0GHz", "cpu_count": 2, "torch_threads": 1, "python": "3.11.7",
        "versions": {"torch": "2.13.0", "diffusers": "0.42.1"},
    },
    "world_size": 2,
    "global_batch_size": 64,
    "steps": 2000,
    "epochs": 6.15,
    "samples_seen": 128000,
    "train_seconds": 3700.5,
    "samples_per_second": 34.6,
    "wall_time_seconds": 3850.2,
    "text_embedding_seconds": 0.4,
    "initial_loss": 0.9876,
    "final_loss": 0.0712,
    "final_step_loss": 0.07,
    "resumed_from": None,
    "validation_grid": "/home/alice/runs/glyffuser-tiny/validation/final.png",
}  # fmt: skip

# Shape of a `glyffuser evaluate --out` result (local paths included, as it writes them).
EVALUATION = {
    "judge": {"path": "/home/alice/judge", "size": 32, "held_out_accuracy": 0.8},
    "sampler": {"scheduler": "dpmsolver++", "class": "DPMSolverMultistepScheduler", "num_inference_steps": 20,
                "guidance_scale": 3.0, "seed": 0, "batch_size": 32},
    "num_generated": 256, "distinct_radicals_generated": 40, "fgd": 12.5, "kid": 0.0123, "kid_std": 0.0011,
    "adherence": 0.41, "base_rate": 0.05,
    "base_radical": 85, "judge_accuracy_real": 0.9, "real_floor": {"split": "train", "fgd": 3.1, "kid": 0.001},
    "probes": {"water": {"radical": 85, "adherence": 0.5}}, "probe_adherence": 0.5, "probe_base_rate": 0.2,
    "seconds": {"total": 12.0}, "model": "/home/alice/runs/glyffuser-tiny", "dataset": "/home/alice/data/glyphs",
}  # fmt: skip

# Things a training run leaves next to the pipeline that must never be uploaded.
JUNK = [
    "checkpoint-1/optimizer.bin", "checkpoint-1/model.safetensors", "checkpoint-1/random_states_0.pkl",
    "checkpoint-3.tmp/optimizer.bin", "logs/glyffuser/events.out.tfevents.1700000000.host.1.0",
    "validation/step-000010.png", "text-embeddings-cache/3f2a.safetensors", ".README.md.x1y2.tmp",
    "debug_weight_hashes.json", "unet/diffusion_pytorch_model.bin",
]  # fmt: skip


def hub_env(hub_: LocalHub, path, token=hub_fixtures._DEFAULT, **kwargs) -> dict[str, str]:
    """`hub_fixtures.hub_env` with one torch thread: on a shared, loaded CPU two spinning OpenMP threads make
    the tiny UNet ~20x slower."""
    extra = {"OMP_NUM_THREADS": "1", **(kwargs.pop("extra", None) or {})}
    return hub_fixtures.hub_env(hub_, path, token, extra=extra, **kwargs)


def _last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def _cli(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`glyffuser ARGS` (as `python -m glyph_pipeline.cli`, same entry point as the console script)."""
    return subprocess.run(
        [sys.executable, "-m", "glyph_pipeline.cli", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.rglob("*")
        if p.is_file()
    }


def _make_run_dir(saved: Path, dest: Path) -> Path:
    """A training --output_dir: the saved pipeline, its training record, a final grid, and junk."""
    from PIL import Image

    shutil.copytree(saved, dest)
    (dest / "training_config.json").write_text(json.dumps(TRAINING_CONFIG, indent=2))
    (dest / "validation").mkdir()
    Image.new("L", (128, 128), 230).save(dest / "validation" / "final.png")
    for rel in JUNK:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes(b"junk " + rel.encode())
    return dest


def _check_card(text: str, repo_id: str) -> dict:
    """The card parses as a Hub model card, has the metadata and the usage we promise, and no secrets."""
    from huggingface_hub import ModelCard

    card = ModelCard(text)
    data = card.data.to_dict()
    assert data["library_name"] == "diffusers"
    assert data["pipeline_tag"] == "text-to-image"
    assert data["license"] == "apache-2.0"
    assert REQUIRED_TAGS <= set(data["tags"])
    assert "pip install glyph-pipeline" in text
    assert f'GlyphDiffusionPipeline.from_pretrained("{repo_id}")' in text
    assert f'DiffusionPipeline.from_pretrained("{repo_id}", trust_remote_code=True)' in text
    assert f'path = snapshot_download("{repo_id}")' in text  # offline recipe for plain diffusers
    assert "pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config)" in text
    assert "DPM-Solver++ 2M" in text and "about 20 steps, guidance scale about 3.0" in text
    assert "Open Font License 1.1" in text and "Unicode License v3" in text and "## Limitations" in text
    assert HUB_TOKEN not in text and not TOKEN_LIKE.search(text.encode())
    assert "/home/alice" not in text
    return data


# ============================================================================================ fixtures
@pytest.fixture(scope="module")
def pipeline_files(saved_pipeline_dir: Path) -> list[str]:
    return sorted(_snapshot(saved_pipeline_dir))


@pytest.fixture(scope="module")
def reference_image(saved_pipeline_dir: Path) -> np.ndarray:
    """The local pipeline's output for the call every download test repeats."""
    from glyph_pipeline import GlyphDiffusionPipeline

    pipe = GlyphDiffusionPipeline.from_pretrained(saved_pipeline_dir)
    pipe.set_progress_bar_config(disable=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the subprocesses (see hub_env)
    try:
        return pipe(
            PROMPT, num_inference_steps=STEPS, generator=torch.Generator().manual_seed(0), output_type="np"
        ).images
    finally:
        torch.set_num_threads(threads)


# ============================================================================================ card, no network
def test_model_card_and_upload_list_without_network(saved_pipeline_dir, pipeline_files, tmp_path):
    from huggingface_hub import metadata_load

    run_dir = _make_run_dir(saved_pipeline_dir, tmp_path / "run")
    assert hub.files_to_upload(run_dir) == sorted(pipeline_files + ["training_config.json"])

    card = model_card.make_model_card(
        run_dir, "user/glyffuser-tiny", TRAINING_CONFIG, EVALUATION, sample_grid="samples.png"
    )
    text = card.content
    data = _check_card(text, "user/glyffuser-tiny")
    assert data["datasets"] == ["user/glyphs"]
    assert "text_encoder" not in data  # a local encoder path is not a Hub id: not in the metadata, not in the card
    assert "base_model" not in data  # trained from scratch
    assert "![Samples from user/glyffuser-tiny](samples.png)" in text
    assert "one row per prompt (“water”, “fire”), 2 seeds each" in text
    # The training table comes from training_config.json.
    for row in [
        "| Preset | `tiny-32` |",
        "| Resolution | 16 px |",
        "| Training steps | 2,000 (6.15 epochs) |",
        "| Batch size | 64 global = 32 per process × 2 processes × 1 accumulation |",
        "| Learning rate | 0.0005 |",
        "| LR schedule | cosine, 100 warm-up steps |",
        "| Noise schedule | DDPM, 1000 timesteps, linear betas 0.0001 → 0.02 |",
        "| Prediction type | epsilon |",
        "| EMA | yes, decay 0.9999 |",
        "| Text encoder | `T5EncoderModel` (hidden size 32), frozen, 24 tokens |",
        "| Hardware | 2 processes on Test CPU @ 2.0GHz (MULTI_CPU) |",
        "| Wall time | 1 h 04 min |",
        "| Final loss | 0.0712 (mean of the last steps; first steps 0.9876) |",
        "| Fréchet glyph distance (FGD) | 12.5 | lower is better; real-vs-real floor 3.1 |",
        "| Kernel distance (KID) | 0.0123 ± 0.0011 | lower is better; real-vs-real floor 0.001 |",
        "| Radical adherence | 0.41 | higher is better; prompt-blind base rate 0.05; judge on real glyphs 0.9 |",
        "| Probe-prompt adherence | 0.5 | higher is better; prompt-blind base rate 0.2 |",
        "| distinct radicals generated | 40 |  |",
        "Scored on 256 held-out definitions with `DPMSolverMultistepScheduler`, 20 steps, guidance scale 3.0, seed 0",
    ]:
        assert row in text, row
    # The YAML header also reads back through the Hub's file-level helper.
    (tmp_path / "README.md").write_text(text, encoding="utf-8")
    assert metadata_load(tmp_path / "README.md") == data

    # The packaged-encoder alias and a fine-tuning source that is a Hub repo become metadata.
    config = json.loads(json.dumps(TRAINING_CONFIG))
    config["text_encoder"]["name_or_path"] = "minilm"
    config["args"]["pretrained_model_name_or_path"] = "user/glyffuser-base"
    data = model_card.make_model_card(run_dir, "user/x", config).data.to_dict()
    assert data["text_encoder"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert data["base_model"] == "user/glyffuser-base"

    # Without a training record the card still describes the saved model (what push_pipeline gets without a record).
    bare = model_card.make_model_card(saved_pipeline_dir, "user/bare").content
    _check_card(bare, "user/bare")
    assert "## Training\n" not in bare and "![" not in bare
    assert "| Resolution | 16×16 px, 1 channel (ink −1, paper +1) |" in bare


def test_card_states_gpu_compute_notes_and_copy_rate(saved_pipeline_dir, tmp_path):
    run_dir = _make_run_dir(saved_pipeline_dir, tmp_path / "run")
    gpu = {"device": "cuda", "distributed_type": "NO", "num_processes": 1, "mixed_precision": "bf16",
           "gpu": "NVIDIA H200", "torch_threads": 1}  # fmt: skip
    record = {**TRAINING_CONFIG, "hardware": gpu, "world_size": 1, "train_seconds": 363.0,
              "thread_seconds": 363.0, "samples_seen": 557740,
              "notes": ["The encoder weights were fp16-rounded during training."]}  # fmt: skip
    # A record from before `gpu_seconds` existed counted GPU time as CPU-thread time: a GPU record is GPU time.
    assert model_card.training_compute(record) == {"thread_seconds": 0.0, "gpu_seconds": 363.0}
    # New records keep both, e.g. CPU weights continued on a GPU.
    mixed = {**record, "thread_seconds": 7200.0, "gpu_seconds": 90.0}
    assert model_card.training_compute(mixed) == {"thread_seconds": 7200.0, "gpu_seconds": 90.0}
    copies = {
        "threshold": 0.125, "percentile": 1.0, "num_training": 20526,
        "held_out_real": {"num": 419, "median_distance": 0.223},
        "held_out_prompts": {"num": 256, "copy_rate": 0.0117, "median_distance": 0.21},
        "train_prompts": {"num": 128, "copy_rate": 0.0234, "median_distance": 0.2},
    }  # fmt: skip
    text = model_card.make_model_card(run_dir, "user/x", record, {**EVALUATION, "copies": copies}).content
    assert "| Training compute | 6 min 03 s of training (GPU time 6 min 03 s) |" in text
    assert "CPU-thread-hours" not in text
    assert "| Samples seen | 557,740 |" in text and "| Mixed precision | bf16 |" in text
    assert "| Hardware | 1 process on NVIDIA H200 |" in text
    assert "\n- The encoder weights were fp16-rounded during training.\n" in text
    assert "| Copy rate, held-out prompts | 0.0117 | lower is better; share of samples nearer a training glyph" in text
    assert "(RMS pixel distance < 0.125) than 99 % of real held-out glyphs" in text
    assert "| Copy rate, train prompts | 0.0234 |" in text and "(real held-out glyphs 0.223)" in text
    mixed_text = model_card.make_model_card(run_dir, "user/x", mixed).content
    assert "(GPU time 1 min 30 s + 2.00 CPU-thread-hours)" in mixed_text


def test_secrets_and_broken_folders_are_refused_before_any_upload(saved_pipeline_dir, tmp_path):
    with pytest.raises(hub.HubError, match="contains the Hub token"):
        hub.check_no_token(f"token: {HUB_TOKEN}", HUB_TOKEN, "the model card")
    with pytest.raises(hub.HubError, match="looks like a Hugging Face token"):
        hub.check_no_token("use hf_" + "a1B2" * 9, None, "the model card")
    hub.check_no_token("hf_hub_download and hf_transfer are fine", HUB_TOKEN, "the model card")

    run_dir = _make_run_dir(saved_pipeline_dir, tmp_path / "leaky")
    leaky = dict(TRAINING_CONFIG, args={**TRAINING_CONFIG["args"], "hub_token": HUB_TOKEN})
    (run_dir / "training_config.json").write_text(json.dumps(leaky))
    with pytest.raises(hub.HubError, match="training_config.json: it contains the Hub token"):
        hub.push_pipeline_folder(run_dir, "user/leak", token=HUB_TOKEN)
    assert not (run_dir / "README.md").exists()  # refused before anything was written

    not_a_pipeline = tmp_path / "empty"
    not_a_pipeline.mkdir()
    with pytest.raises(hub.HubError, match="no readable model_index.json"):
        hub.push_pipeline_folder(not_a_pipeline, "user/x", token=HUB_TOKEN)
    old_style = _make_run_dir(saved_pipeline_dir, tmp_path / "old")
    index = json.loads((old_style / "model_index.json").read_text())
    (old_style / "model_index.json").write_text(json.dumps({**index, "_class_name": "GlyphDiffusionPipeline"}))
    with pytest.raises(hub.HubError, match="trust_remote_code=True"):
        hub.push_pipeline_folder(old_style, "user/x", token=HUB_TOKEN)
    pickled = _make_run_dir(saved_pipeline_dir, tmp_path / "pickled")
    (pickled / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(hub.HubError, match="no .safetensors file"):
        hub.push_pipeline_folder(pickled, "user/x", token=HUB_TOKEN)


def test_a_hand_written_card_is_kept_unless_regenerate(saved_pipeline_dir, tmp_path):
    # This process runs with HF_HUB_OFFLINE=1 (conftest): the push stops at the first Hub call, after the card step.
    run_dir = _make_run_dir(saved_pipeline_dir, tmp_path / "run")
    mine = "---\nlicense: apache-2.0\nlibrary_name: diffusers\n---\n# My own card\n"
    (run_dir / "README.md").write_text(mine)
    with pytest.raises(hub.HubPushError, match="HF_HUB_OFFLINE is set") as err:
        hub.push_pipeline_folder(run_dir, "user/mine", token=HUB_TOKEN)
    assert err.value.retry_command == shlex.join(["glyffuser", "push", str(run_dir.absolute()), "user/mine"])
    assert (run_dir / "README.md").read_text() == mine
    assert (run_dir / "samples.png").read_bytes() == (run_dir / "validation" / "final.png").read_bytes()
    with pytest.raises(hub.HubPushError):
        hub.push_pipeline_folder(run_dir, "user/mine", token=HUB_TOKEN, card="regenerate")
    assert hub.CARD_MARKER in (run_dir / "README.md").read_text()


def test_card_template_ships_as_package_data():
    from importlib import resources

    template = (
        resources.files("glyph_pipeline.model_card").joinpath(model_card.CARD_TEMPLATE).read_text(encoding="utf-8")
    )
    assert template.startswith("---\n{{ card_data }}\n---\n") and model_card.CARD_MARKER in template


# ============================================================================================ end to end
def test_push_then_load_with_plain_diffusers_in_a_fresh_cache_then_offline(
    local_hub: LocalHub, tmp_path, saved_pipeline_dir, pipeline_files, reference_image
):
    repo = "user/glyffuser-tiny"
    run_dir = _make_run_dir(saved_pipeline_dir, tmp_path / "run")
    before = _snapshot(run_dir)
    proc = _cli(["push", str(run_dir), repo], hub_env(local_hub, tmp_path / "pusher"))
    assert proc.returncode == 0, proc.stderr
    commit = local_hub.commits(repo)[0]["oid"]
    assert f"Pushed to {local_hub.endpoint}/{repo}/commit/{commit}" in proc.stdout

    # Exactly the pipeline + card + grid + training record went up; the local output is intact.
    files = local_hub.list_files(repo)
    assert files == sorted([".gitattributes", "README.md", "samples.png", "training_config.json", *pipeline_files])
    after = _snapshot(run_dir)
    assert {k: after[k] for k in before} == before and set(after) - set(before) == {"README.md", "samples.png"}
    assert local_hub.read_file(repo, "samples.png") == (run_dir / "validation" / "final.png").read_bytes()
    assert local_hub.file_info(repo, "unet/diffusion_pytorch_model.safetensors")["lfs"]
    module = Path(sys.modules["glyph_pipeline.pipeline_glyph_diffusion"].__file__).read_bytes()
    assert local_hub.read_file(repo, "pipeline_glyph_diffusion.py") == module
    for name in files:
        content = local_hub.read_file(repo, name)
        assert HUB_TOKEN.encode() not in content and not TOKEN_LIKE.search(content), name
    published = json.loads(local_hub.read_file(repo, "training_config.json"))
    assert published == hub.without_local_paths(TRAINING_CONFIG)  # the run record, minus the machine's paths
    assert published["args"]["output_dir"] == "<local path>" and published["dataset"]["source"] == "user/glyphs"
    assert json.loads((run_dir / "training_config.json").read_text()) == TRAINING_CONFIG  # local copy untouched
    for name in files:
        assert b"/home/alice" not in local_hub.read_file(repo, name), name
    card = local_hub.read_file(repo, "README.md").decode()
    assert card == (run_dir / "README.md").read_text(encoding="utf-8")
    _check_card(card, repo)
    assert "| Training steps | 2,000 (6.15 epochs) |" in card
    assert any(r.path == "/api/validate-yaml" and r.status == 200 for r in local_hub.requests)

    # Someone without glyffuser installed, empty cache: plain diffusers + remote code gives the same image.
    reader = tmp_path / "reader"
    out = reader / "images.npz"
    load = f"""
    import json, sys
    import numpy as np, torch
    sys.modules["glyph_pipeline"] = None  # never installed
    from diffusers import DiffusionPipeline
    pipe = DiffusionPipeline.from_pretrained({repo!r}, trust_remote_code=True)
    pipe.set_progress_bar_config(disable=True)
    call = dict(num_inference_steps={STEPS}, generator=torch.Generator().manual_seed(0), output_type="np")
    np.savez({str(out)!r}, remote=pipe({PROMPT!r}, **call).images)
    from huggingface_hub import snapshot_download
    snapshot_download({repo!r})  # the card's recipe for plain diffusers offline: fetch the whole snapshot once
    print(json.dumps({{"class": type(pipe).__name__, "module": type(pipe).__module__}}))
    """
    first = _last_json(run_hub_python(load, hub_env(local_hub, reader)).stdout)
    assert first["class"] == "GlyphDiffusionPipeline" and not first["module"].startswith("glyph_pipeline")
    np.testing.assert_allclose(np.load(out)["remote"], reference_image, rtol=0, atol=1e-6)

    # Offline from that cache: the installed class by repo id, plain diffusers from the snapshot folder (the card's
    # recipes). diffusers 0.42 itself looks the repo's commit up online before it imports remote code by repo id
    # (dynamic_modules_utils -> model_info), so that one form may fail offline, but only with that error.
    n_requests = len(local_hub.requests)
    offline = f"""
    import json, traceback
    import numpy as np, torch
    from diffusers import DiffusionPipeline
    from huggingface_hub import snapshot_download
    from glyph_pipeline import GlyphDiffusionPipeline
    images, out = {{}}, {{}}
    for name, load in [
        ("installed", lambda: GlyphDiffusionPipeline.from_pretrained({repo!r})),
        ("snapshot", lambda: DiffusionPipeline.from_pretrained(snapshot_download({repo!r}), trust_remote_code=True)),
        ("repo_id", lambda: DiffusionPipeline.from_pretrained({repo!r}, trust_remote_code=True)),
    ]:
        try:
            pipe = load()
        except Exception as e:
            out[name] = [type(e).__name__, [frame.filename for frame in traceback.extract_tb(e.__traceback__)]]
            continue
        pipe.set_progress_bar_config(disable=True)
        call = dict(num_inference_steps={STEPS}, generator=torch.Generator().manual_seed(0), output_type="np")
        images[name] = pipe({PROMPT!r}, **call).images
        out[name] = type(pipe).__module__
    np.savez({str(out)!r}, **images)
    print(json.dumps(out))
    """
    second = _last_json(run_hub_python(offline, hub_env(local_hub, reader, offline=True)).stdout)
    assert len(local_hub.requests) == n_requests, "offline mode must not contact the Hub"
    assert second["installed"] == "glyph_pipeline.pipeline_glyph_diffusion"
    assert second["snapshot"].startswith("diffusers_modules.")
    if isinstance(second["repo_id"], list):  # the upstream limitation, and nothing else
        name, frames = second["repo_id"]
        assert name == "OfflineModeIsEnabled" and any("dynamic_modules_utils" in f for f in frames), second
    images = np.load(out)
    for name in images.files:
        np.testing.assert_allclose(images[name], reference_image, rtol=0, atol=1e-6, err_msg=name)
    assert {"installed", "snapshot"} <= set(images.files)


def test_push_pipeline_writes_the_glyph_card_and_pipe_push_to_hub_is_plain_diffusers(
    local_hub: LocalHub, tmp_path, saved_pipeline_dir, pipeline_files
):
    code = f"""
    import json
    from glyph_pipeline import GlyphDiffusionPipeline
    from glyph_pipeline.hub.push import push_pipeline
    pipe = GlyphDiffusionPipeline.from_pretrained({str(saved_pipeline_dir)!r})
    pipe.set_progress_bar_config(disable=True)
    out = {{"full": push_pipeline(pipe, "user/repo2", sample_prompts=["water", "fire"], metrics={{"fgd": 1.5}})}}
    pipe.save_pretrained({str(tmp_path / "saved")!r}, push_to_hub=True, repo_id="user/repo4")
    out["plain"] = pipe.push_to_hub("repo3", commit_message="plain diffusers")
    print(json.dumps(out))
    """
    out = _last_json(run_hub_python(code, hub_env(local_hub, tmp_path / "client")).stdout)
    assert out["full"].startswith(f"{local_hub.endpoint}/user/repo2/commit/")
    module = Path(sys.modules["glyph_pipeline.pipeline_glyph_diffusion"].__file__).read_bytes()
    base = [".gitattributes", "README.md", *pipeline_files]

    assert local_hub.list_files("user/repo2") == sorted(base + ["metrics.json", "samples.png"])
    card = local_hub.read_file("user/repo2", "README.md").decode()
    _check_card(card, "user/repo2")
    assert hub.CARD_MARKER in card and "(samples.png)" in card and "one row per prompt (“water”, “fire”)" in card
    assert "| Fréchet glyph distance (FGD) | 1.5 | lower is better |" in card
    assert local_hub.read_file("user/repo2", "pipeline_glyph_diffusion.py") == module
    assert local_hub.read_file("user/repo2", "samples.png").startswith(b"\x89PNG")
    assert json.loads(local_hub.read_file("user/repo2", "metrics.json")) == {"fgd": 1.5}

    # pipe.push_to_hub and save_pretrained(push_to_hub=True) are diffusers' own: its generic card, our atomic save
    # with the remote-code module, so plain diffusers loads the repo.
    from huggingface_hub import ModelCard

    for repo in ("user/repo3", "user/repo4"):
        assert local_hub.list_files(repo) == sorted(base), repo
        assert local_hub.read_file(repo, "pipeline_glyph_diffusion.py") == module
        index = json.loads(local_hub.read_file(repo, "model_index.json"))
        assert index["_class_name"] == ["pipeline_glyph_diffusion", "GlyphDiffusionPipeline"]
        plain = local_hub.read_file(repo, "README.md").decode()
        assert ModelCard(plain).data.to_dict()["library_name"] == "diffusers" and hub.CARD_MARKER not in plain
        assert ModelCard(plain).data.pipeline_tag == "text-to-image"  # the Hub cannot infer it for our class
    assert local_hub.commits("user/repo3")[0]["title"] == "plain diffusers"
    for repo in ("user/repo2", "user/repo3", "user/repo4"):
        for name in local_hub.list_files(repo):
            assert HUB_TOKEN.encode() not in local_hub.read_file(repo, name), (repo, name)


def test_the_upscaler_pushes_with_its_task_and_loads_from_the_hub_as_remote_code(local_hub: LocalHub, tmp_path):
    from conftest import tiny_upscaler

    saved = tmp_path / "upscaler"
    upscaler = tiny_upscaler()
    upscaler.save_pretrained(saved)
    low = np.random.default_rng(0).random((2, 16, 16, 1)).astype(np.float32)
    np.save(tmp_path / "low.npy", low)
    reference = upscaler(low, generator=[torch.Generator().manual_seed(i) for i in range(2)], output_type="np").images
    code = f"""
    import json, numpy as np, torch
    from diffusers import DiffusionPipeline
    from glyph_pipeline import GlyphUpscalePipeline
    pipe = GlyphUpscalePipeline.from_pretrained({str(saved)!r})
    pipe.push_to_hub("user/upscaler")
    remote = DiffusionPipeline.from_pretrained("user/upscaler", trust_remote_code=True)
    remote.set_progress_bar_config(disable=True)
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    out = remote(np.load({str(tmp_path / "low.npy")!r}), generator=gens, output_type="np").images
    np.save({str(tmp_path / "out.npy")!r}, out)
    print(json.dumps({{"module": type(remote).__module__}}))
    """
    out = _last_json(run_hub_python(code, hub_env(local_hub, tmp_path / "client")).stdout)
    assert out["module"].startswith("diffusers_modules.")
    files = local_hub.list_files("user/upscaler")
    assert {"pipeline_glyph_upscale.py", "pipeline_glyph_diffusion.py", "README.md"} <= set(files)
    from huggingface_hub import ModelCard

    card = ModelCard(local_hub.read_file("user/upscaler", "README.md").decode())
    assert card.data.pipeline_tag == "image-to-image" and card.data.library_name == "diffusers"
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), reference, atol=1e-6)


# ============================================================================================ failures
def test_prepare_hub_repo_fails_fast_and_names_the_fix(local_hub: LocalHub, tmp_path):
    code = f"""
    import json, os, time
    from glyph_pipeline.hub.repo import HubError, prepare_hub_repo, resolve_token
    out = {{}}
    def attempt(name, *args, **kwargs):
        start = time.perf_counter()
        try:
            out[name] = ["ok", prepare_hub_repo(*args, **kwargs)]
        except HubError as e:
            out[name] = ["error", str(e)]
        out[name].append(time.perf_counter() - start)
    attempt("no_token", "user/m1")
    attempt("wrong", "user/m1", token="hf_wrong")
    attempt("read_only", "user/m1", token={READ_TOKEN!r})
    attempt("namespace", "other/m1", token={HUB_TOKEN!r})
    # Token resolution: the cached login (what `hf auth login` writes), then HF_TOKEN, then an explicit token.
    with open(os.path.join(os.environ["HF_HOME"], "token"), "w") as f:
        f.write({HUB_TOKEN!r})
    out["from_login"] = resolve_token()
    attempt("login", "m1")
    os.environ["HF_TOKEN"] = "hf_from_env"
    out["from_env"], out["explicit"] = resolve_token(), resolve_token("hf_explicit")
    attempt("branch", "user/m1", token={HUB_TOKEN!r}, private=True, revision="dev")
    attempt("again", "user/m1", token={HUB_TOKEN!r}, revision="dev")
    print(json.dumps(out))
    """
    out = _last_json(run_hub_python(code, hub_env(local_hub, tmp_path, token=None)).stdout)
    for name in ("no_token", "wrong", "read_only", "namespace"):
        assert out[name][0] == "error", name
        assert out[name][2] < 10, f"{name} took {out[name][2]:.1f}s"
    fixes = ("hf auth login", "huggingface-cli login", "--hub_token", "HF_TOKEN")
    assert all(fix in out["no_token"][1] for fix in fixes), out["no_token"][1]
    assert "401 Unauthorized" in out["wrong"][1] and all(fix in out["wrong"][1] for fix in fixes)
    assert f"{local_hub.endpoint}/settings/tokens" in out["wrong"][1]
    assert "read-only" in out["read_only"][1]
    assert "namespace 'other'" in out["namespace"][1] and "'user/m1'" in out["namespace"][1]
    assert out["from_login"] == HUB_TOKEN and out["from_env"] == "hf_from_env" and out["explicit"] == "hf_explicit"
    assert out["login"][:2] == out["branch"][:2] == out["again"][:2] == ["ok", "user/m1"]
    assert set(local_hub.branches("user/m1")) == {"main", "dev"}
    assert not local_hub.repo_exists("other/m1")


def test_failed_upload_keeps_the_output_and_prints_the_retry_command(
    local_hub: LocalHub, tmp_path, saved_pipeline_dir, pipeline_files
):
    repo = "user/flaky"
    run_dir = _make_run_dir(saved_pipeline_dir, tmp_path / "run")
    before = _snapshot(run_dir)
    args = ["push", str(run_dir), repo, "--revision", "dev", "--private"]
    retry = shlex.join(["glyffuser", "push", str(run_dir.absolute()), repo, "--revision", "dev", "--private"])
    env = hub_env(local_hub, tmp_path / "client")

    local_hub.fail_next("/commit/", status=500)  # the commit POST is not retried by the client: fails fast
    server_error = _cli(args, env)
    bad_token = _cli(args, hub_env(local_hub, tmp_path / "client", token="hf_wrong"))
    with LocalHub() as gone:
        down_env = hub_env(gone, tmp_path / "down")
    start = time.perf_counter()
    server_down = _cli(args, down_env)
    assert time.perf_counter() - start < 30
    for proc, reason in [
        (server_error, "(500: Injected failure"),
        (bad_token, "401 Unauthorized"),
        (server_down, f"Could not reach the Hub at {down_env['HF_ENDPOINT']}"),
    ]:
        assert proc.returncode == 1, proc.stderr
        assert reason in proc.stderr and "The local output is complete" in proc.stderr, proc.stderr
        assert proc.stderr.strip().splitlines()[-1].strip() == retry, proc.stderr
    assert "HF_ENDPOINT=" in server_down.stderr and "hf auth login" in bad_token.stderr
    assert HUB_TOKEN not in server_error.stderr + bad_token.stderr + server_down.stderr

    # Nothing was committed; the folder is complete: all of it still there, plus the card and grid.
    assert len(local_hub.commits(repo, revision="dev")) == 1
    after = _snapshot(run_dir)
    assert {k: after[k] for k in before} == before and set(after) - set(before) == {"README.md", "samples.png"}

    # The printed command is the retry.
    command = shlex.split(retry)
    assert command[0] == "glyffuser"
    proc = _cli(command[1:], env)
    assert proc.returncode == 0, proc.stderr
    expected = sorted([".gitattributes", "README.md", "samples.png", "training_config.json", *pipeline_files])
    assert local_hub.list_files(repo, revision="dev") == expected
    assert local_hub.list_files(repo) == [".gitattributes"]  # main untouched
    with pytest.raises(urllib.error.HTTPError) as anonymous:  # --private took effect
        urllib.request.urlopen(f"{local_hub.endpoint}/api/models/{repo}", timeout=10)
    assert anonymous.value.code in (401, 404)


# ============================================================================================ datasets
def test_glyph_dataset_push_and_load_round_trip(local_hub: LocalHub, tmp_path):
    from glyph_pipeline.data import unihan

    try:
        unihan.find_default_unihan()
    except FileNotFoundError:  # pragma: no cover - depends on the machine
        pytest.skip("Unihan not installed (apt-get install unicode-data)")
    local = tmp_path / "glyphs"
    build = [
        "build-dataset", "--characters", "永字八法口田", "--size", "32", "--test-fraction", "0.34",
        "--num-workers", "0", "--no-progress", "--out", str(local), "--push-to-hub", "user/glyphs",
    ]  # fmt: skip
    proc = _cli(build, hub_env(local_hub, tmp_path / "builder"), timeout=300)
    assert proc.returncode == 0, proc.stderr
    files = local_hub.list_files("user/glyphs", "dataset")
    assert "README.md" in files and any(f.endswith(".parquet") for f in files)

    load = f"""
    import json
    import numpy as np
    from glyph_pipeline.data.dataset import load_glyph_dataset
    remote, local = load_glyph_dataset("user/glyphs"), load_glyph_dataset({str(local)!r})
    out = {{"splits": sorted(remote), "local_splits": sorted(local), "features": str(remote["train"].features)}}
    for split in local:
        key = lambda row: row["codepoint"]
        a, b = sorted(local[split], key=key), sorted(remote[split], key=key)
        out[split] = {{
            "rows": len(b),
            "same_text": [r["text"] for r in a] == [r["text"] for r in b],
            "same_meta": [(r["character"], r["radical"], r["strokes"]) for r in a]
            == [(r["character"], r["radical"], r["strokes"]) for r in b],
            "same_pixels": all(np.array_equal(np.asarray(x["image"]), np.asarray(y["image"])) for x, y in zip(a, b)),
            "size": list(b[0]["image"].size),
        }}
    print(json.dumps(out))
    """
    out = _last_json(run_hub_python(load, hub_env(local_hub, tmp_path / "loader")).stdout)
    assert out["splits"] == out["local_splits"] == ["test", "train"]
    assert "Image(" in out["features"]
    assert out["train"]["rows"] + out["test"]["rows"] == 6 and out["test"]["rows"] >= 1
    for split in ("train", "test"):
        assert out[split]["same_text"] and out[split]["same_meta"] and out[split]["same_pixels"], out[split]
        assert out[split]["size"] == [32, 32]


# ============================================================================================ training
@pytest.mark.slow
def test_training_with_a_bad_token_fails_before_the_first_step(local_hub: LocalHub, tmp_path):
    import datasets
    from PIL import Image

    features = datasets.Features({"image": datasets.Image(), "text": datasets.Value("string")})
    images = [Image.new("L", (32, 32), 255) for _ in range(4)]
    datasets.Dataset.from_dict(
        {"image": images, "text": ["water", "fire", "tree; wood", "gold"]}, features=features
    ).save_to_disk(str(tmp_path / "data"))
    output_dir = tmp_path / "out"
    command = [
        sys.executable, str(TRAIN_SCRIPT), "--dataset", str(tmp_path / "data"),
        "--text_encoder_name_or_path", "minilm",
        "--unet_preset", "tiny-32", "--max_train_steps", "2", "--checkpointing_steps", "1", "--validation_steps", "0",
        "--report_to", "none", "--output_dir", str(output_dir), "--push_to_hub", "--hub_model_id", "user/trained",
        "--hub_token", "hf_wrong",
    ]  # fmt: skip
    env = hub_env(local_hub, tmp_path / "trainer", token=None, extra={"GLYFFUSER_CACHE": str(tmp_path / "cache")})
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)
    assert proc.returncode != 0
    assert "401 Unauthorized" in proc.stderr and "hf auth login" in proc.stderr, proc.stderr[-3000:]
    assert "hf_wrong" not in proc.stderr + proc.stdout
    assert not list(output_dir.glob("checkpoint-*")) and not (output_dir / "training_config.json").exists()
    assert not local_hub.repo_exists("user/trained")


def test_upscaler_training_pushes_its_card_to_the_hub(local_hub: LocalHub, tmp_path):
    from conftest import UPSCALER_SCRIPT

    from glyph_pipeline.data.dataset import build_glyph_dataset, save_dataset

    pairs = save_dataset(
        build_glyph_dataset(size=32, low_res_size=8, limit=24, test_fraction=0.2, num_workers=0, progress=False),
        tmp_path / "pairs",
    )
    command = [
        sys.executable, str(UPSCALER_SCRIPT), "--dataset", str(pairs), "--low_res_size", "8", "--crop_size", "16",
        "--unet_config", '{"sample_size": 32, "block_out_channels": [8, 16]}', "--train_batch_size", "4",
        "--max_train_steps", "2", "--checkpointing_steps", "0", "--validation_steps", "0", "--report_to", "none",
        "--num_validation_images", "2", "--validation_inference_steps", "1", "--output_dir", str(tmp_path / "out"),
        "--push_to_hub", "--hub_model_id", "user/upscaler-trained",
    ]  # fmt: skip
    env = hub_env(local_hub, tmp_path / "trainer", extra={"OMP_NUM_THREADS": "1"})
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = set(local_hub.list_files("user/upscaler-trained"))
    assert {"README.md", "samples.png", "training_config.json", "pipeline_glyph_upscale.py"} <= files
    assert not any(f.startswith("checkpoint-") for f in files)
    from huggingface_hub import ModelCard

    card = ModelCard(local_hub.read_file("user/upscaler-trained", "README.md").decode())
    assert card.data.pipeline_tag == "image-to-image" and "diffusers:GlyphUpscalePipeline" in card.data.tags
    assert hub.CARD_MARKER in card.text and "train_glyph_upscaler.py" in card.text
    assert 'DiffusionPipeline.from_pretrained("user/upscaler-trained", trust_remote_code=True)' in card.text
    for name in files:
        assert HUB_TOKEN.encode() not in local_hub.read_file("user/upscaler-trained", name)
