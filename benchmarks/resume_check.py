"""Exact resume on any device: an uninterrupted run against one killed (SIGKILL) right after a checkpoint and
resumed with `--resume_from_checkpoint latest`; the final UNet and EMA weights must be equal, tensor by tensor.

The test suite proves this on CPU (tests/training/test_training.py); this script runs the same check where the suite
cannot, e.g. on a GPU with EMA and bf16 (benchmarks/gpu_check.sh):

    python benchmarks/resume_check.py --dataset data/glyphs-32 --config gpu --steps 100 --checkpoint 50 \\
        --batch 256 --mixed-precision bf16
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "training" / "train_glyph_diffusion.py"


def launch_command(config: str) -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
            str(REPO / "training" / "accelerate_configs" / f"{config}.yaml"), str(SCRIPT)]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, required=True, help="glyph dataset (e.g. data/glyphs-32)")
    parser.add_argument("--config", default="gpu", choices=["gpu", "cpu"], help="accelerate config in training/")
    parser.add_argument("--preset", default="tiny-32")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--checkpoint", type=int, default=50, help="kill the second run right after this step")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--mixed-precision", default="bf16", choices=["no", "bf16", "fp16"])
    parser.add_argument("--text-encoder", default="minilm")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args(argv)
    if not 0 < args.checkpoint < args.steps:
        parser.error("need 0 < --checkpoint < --steps")
    work = args.work or Path(tempfile.mkdtemp(prefix="resume-check-"))
    common = [
        "--dataset", str(args.dataset), "--unet_preset", args.preset, "--text_encoder_name_or_path", args.text_encoder,
        "--embedding_cache_dir", str(work / "cache"), "--train_batch_size", str(args.batch),
        "--max_train_steps", str(args.steps), "--checkpointing_steps", str(args.checkpoint),
        "--learning_rate", "1e-3", "--lr_scheduler", "constant_with_warmup", "--lr_warmup_steps", "10",
        "--use_ema", "--mixed_precision", args.mixed_precision, "--validation_steps", "0",
        "--num_validation_images", "1", "--validation_prompts", "water", "--validation_inference_steps", "2",
        "--report_to", "none", "--seed", "0",
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GLYFFUSER_DEBUG_WEIGHT_HASHES": "1"}
    cmd = launch_command(args.config)
    a, b = work / "a", work / "b"
    work.mkdir(parents=True, exist_ok=True)
    log = open(work / "training.log", "a")  # the runs' progress bars and logs

    t0 = time.perf_counter()
    subprocess.run([*cmd, *common, "--output_dir", str(a)], env=env, check=True, stdout=log, stderr=log)
    print(f"uninterrupted run: {args.steps} steps in {time.perf_counter() - t0:.0f}s", flush=True)

    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [*cmd, *common, "--output_dir", str(b)], env={**env, "GLYFFUSER_DEBUG_PAUSE_AFTER_CHECKPOINT": "1"},
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True,
    )
    try:
        for line in proc.stdout:
            if line.startswith("PAUSED-AFTER-CHECKPOINT"):
                break
        else:
            print("the second run exited before its first checkpoint", file=sys.stderr)
            return 1
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    print(f"second run killed (SIGKILL) after checkpoint-{args.checkpoint}", flush=True)
    subprocess.run([*cmd, *common, "--output_dir", str(b), "--resume_from_checkpoint", "latest"], env=env,
                   check=True, stdout=log, stderr=log)  # fmt: skip
    print(f"resumed and finished in {time.perf_counter() - t0:.0f}s (with the killed part)", flush=True)

    record = json.loads((b / "training_config.json").read_text())
    hashes = [json.loads((d / "debug_weight_hashes.json").read_text())[0] for d in (a, b)]
    same = hashes[0]["unet"] == hashes[1]["unet"] and hashes[0]["ema"] == hashes[1]["ema"]
    device = record["hardware"].get("gpu") or record["hardware"]["device"]
    print(f"resume on {device} ({args.mixed_precision}, EMA): resumed from {Path(record['resumed_from']).name}; "
          f"final UNet and EMA weights {'IDENTICAL' if same else 'DIFFERENT'} to the uninterrupted run's")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
