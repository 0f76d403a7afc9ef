"""Shared fixtures: tiny but real components (CPU-sized), an offline, quiet environment, and launches of the real
training script on a tiny real dataset."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

# Nothing in the suite may reach the network; huggingface_hub reads these at import time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny models run fastest on one thread, and a busy 2-core machine makes 2 threads 10-40x slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import psutil  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)
from hub_fixtures import local_hub  # noqa: E402, F401  (LocalHub fixture for the Hub tests)

REPO = Path(__file__).resolve().parents[1]
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


def tiny_upscaler(low: int = 16):
    """A x2 GlyphUpscalePipeline of 16 px glyphs (the tiny base pipeline's size) with a two-level UNet."""
    from glyph_pipeline import GlyphUpscalePipeline, sampling_scheduler
    from glyph_pipeline.presets import build_upscaler_unet
    from glyph_pipeline.schedulers import noise_schedule, training_scheduler

    torch.manual_seed(0)
    unet = build_upscaler_unet("upscaler-128", sample_size=2 * low, block_out_channels=(8, 16)).eval()
    pipe = GlyphUpscalePipeline(
        unet, sampling_scheduler("dpmsolver++"), training_scheduler(**noise_schedule()), low_res_size=low
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


# ============================================================================================ training runs
SCRIPT = REPO / "training" / "train_glyph_diffusion.py"
UPSCALER_SCRIPT = REPO / "training" / "train_glyph_upscaler.py"
CONFIGS = REPO / "training" / "accelerate_configs"
TINY_16 = dict(block_out_channels=[16, 32, 32], norm_num_groups=8, cross_attention_dim=32, sample_size=16)
TINY_32 = {**TINY_16, "sample_size": 32}
# Training subprocesses: offline, one thread per process (oversubscribed OpenMP threads on a shared 2-core
# machine are many times slower; one thread keeps results bit-reproducible across runs).
ENV = {
    **os.environ,
    "OMP_NUM_THREADS": "1",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONUNBUFFERED": "1",
}


def load_training_script(script: Path = SCRIPT):
    """A training script as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location(script.stem, script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module




@pytest.fixture(scope="session")
def assets(tmp_path_factory):
    """One real glyph dataset (128 characters at 32 px), a saved tiny encoder, UNet configs, a shared cache."""
    from glyph_pipeline.data.dataset import build_glyph_dataset, save_dataset

    root = tmp_path_factory.mktemp("training-assets")
    dataset = save_dataset(build_glyph_dataset(size=32, limit=128, num_workers=0, progress=False), root / "glyphs")
    tokenizer, encoder = tiny_text_encoder()
    tokenizer.save_pretrained(root / "encoder")
    encoder.save_pretrained(root / "encoder")
    (root / "unet16.json").write_text(json.dumps(TINY_16))
    (root / "unet32.json").write_text(json.dumps(TINY_32))
    return SimpleNamespace(
        root=root, dataset=dataset, encoder=root / "encoder", unet16=root / "unet16.json",
        unet32=root / "unet32.json", cache=root / "embedding-cache",
    )


def common_args(assets, out: Path, *extra: str, unet: str = "unet16", resolution: int | None = 16) -> list[str]:
    args = [
        "--dataset", str(assets.dataset), "--text_encoder_name_or_path", str(assets.encoder),
        "--unet_config", str(getattr(assets, unet)), "--max_text_length", "24",
        "--embedding_cache_dir", str(assets.cache), "--output_dir", str(out),
        "--lr_warmup_steps", "1", "--validation_prompts", "water", "gold; metal",
        "--num_validation_images", "2", "--validation_inference_steps", "2", "--report_to", "none",
    ]
    if resolution is not None:
        args += ["--resolution", str(resolution)]
    return args + list(extra)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(
    args: list[str], config: str | None = "cpu.yaml", timeout: float = 900, env: dict[str, str] | None = None,
    base_env: dict[str, str] | None = None, script: Path = SCRIPT, check: bool = True,
) -> subprocess.CompletedProcess:
    """`accelerate launch --config_file <config> train_glyph_diffusion.py args` (or plain python if config is None),
    with `env` added to `base_env` (default: ENV, offline and one thread).

    Past `timeout` the whole process tree is killed (the launcher's workers too, which would otherwise keep the
    output pipes open) and the test fails with what the run printed, instead of hanging the suite.
    """
    if config is None:
        cmd = [sys.executable, str(script), *args]
    else:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / config)]
        if "2proc" in config:
            cmd += ["--main_process_port", str(free_port())]
        cmd += [str(script), *args]
    environment = {**(ENV if base_env is None else base_env), **(env or {})}
    proc = subprocess.Popen(cmd, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as hung:
        # torchrun puts each worker in a session of its own: find the tree by parentage, not by process group.
        for p in [*psutil.Process(proc.pid).children(recursive=True), proc]:
            p.kill()
        stdout, stderr = proc.communicate()
        raise AssertionError(
            f"{' '.join(cmd)}\nstill running after {timeout}s\n{stdout[-3000:]}\n{stderr[-6000:]}"
        ) from hung
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)}\nexit {proc.returncode}\n{stdout[-3000:]}\n{stderr[-6000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
