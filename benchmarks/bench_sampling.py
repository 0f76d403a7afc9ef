"""Sampling speed: pipeline overhead over bare UNet calls, and DDPM-1000 vs DPM-Solver++-20 images/s.

Run: python benchmarks/bench_sampling.py [--batch 4] [--steps N] [--repeats 5] [--ddpm-steps 1000]

Everything is measured side by side in one run (the machine is noisy; ratios are what count):
  * overhead = (pipeline call with N steps) / (N bare UNet forwards on the same CFG-batched inputs),
    medians over interleaved repeats. Goal <= 1.05.
  * images/s with classifier-free guidance for DDPM (1000 steps) and DPM-Solver++ 2M (the recommended 20).
Model: the tiny-32 preset wired to the offline MiniLM encoder (random UNet weights: speed only).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from glyph_pipeline import GlyphDiffusionPipeline, build_unet, sampling_scheduler  # noqa: E402
from glyph_pipeline.demo import ARTICLE_PROMPTS  # noqa: E402
from glyph_pipeline.schedulers import RECOMMENDED_GUIDANCE, RECOMMENDED_STEPS  # noqa: E402
from glyph_pipeline.text_encoders import hidden_size, load_text_encoder  # noqa: E402


def build(encoder_name: str) -> GlyphDiffusionPipeline:
    tokenizer, encoder = load_text_encoder(encoder_name)
    torch.manual_seed(0)
    unet = build_unet("tiny-32", hidden_size(encoder)).eval()
    pipe = GlyphDiffusionPipeline(unet, sampling_scheduler("dpmsolver++"), encoder, tokenizer, max_sequence_length=32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def bare_unet(pipe, embeds, mask, latents, timesteps) -> None:
    text_inputs = GlyphDiffusionPipeline.unet_text_inputs(pipe.unet.config, embeds, mask)
    for t in timesteps:
        pipe.unet(latents, t, **text_inputs, return_dict=False)


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4, help="prompts per call (x2 UNet batch with CFG)")
    parser.add_argument("--steps", type=int, default=RECOMMENDED_STEPS)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--guidance", type=float, default=RECOMMENDED_GUIDANCE)
    parser.add_argument("--ddpm-steps", type=int, default=1000)
    parser.add_argument("--encoder", default="minilm", help="text encoder name/path (default: offline MiniLM)")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)

    pipe = build(args.encoder)
    prompts = (ARTICLE_PROMPTS * args.batch)[: args.batch]  # real prompts: their token counts are realistic
    embeds, mask, neg, neg_mask = pipe.encode_prompt(prompts)
    cfg_embeds, cfg_mask = torch.cat([neg, embeds]), torch.cat([neg_mask, mask])
    pipe.scheduler.set_timesteps(args.steps)
    timesteps = pipe.scheduler.timesteps.clone()
    size = pipe.unet.config.sample_size
    latents = torch.randn(2 * args.batch, 1, size, size, generator=torch.Generator().manual_seed(0))

    def run_pipeline() -> None:
        pipe(prompts, num_inference_steps=args.steps, guidance_scale=args.guidance,
             generator=torch.Generator().manual_seed(0), output_type="np")

    def run_bare() -> None:
        bare_unet(pipe, cfg_embeds, cfg_mask, latents, timesteps)

    run_pipeline(), run_bare()  # warm-up
    pipe_times, bare_times = [], []
    for _ in range(args.repeats):  # interleaved so drift hits both sides alike
        start = time.perf_counter()
        run_pipeline()
        pipe_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        run_bare()
        bare_times.append(time.perf_counter() - start)
    p, b = statistics.median(pipe_times), statistics.median(bare_times)
    print(f"tiny-32 + {args.encoder}: batch {args.batch} prompts, CFG {args.guidance}, {args.steps} steps, "
          f"{torch.get_num_threads()} threads")
    print(f"  pipeline call (incl. text encoding + post-processing): {p * 1000:8.1f} ms (median of {args.repeats})")
    print(f"  {args.steps} bare UNet forwards on the same inputs:     {b * 1000:8.1f} ms")
    print(f"  overhead ratio pipeline / bare UNet:                   {p / b:8.3f}  (goal <= 1.05)")

    results = {}
    for name, steps in (("dpmsolver++", args.steps), ("ddpm", args.ddpm_steps)):
        pipe.scheduler = sampling_scheduler(name, base_config=pipe.scheduler.config)
        start = time.perf_counter()
        pipe(prompts, num_inference_steps=steps, guidance_scale=args.guidance,
             generator=torch.Generator().manual_seed(0), output_type="np")
        elapsed = time.perf_counter() - start
        results[name] = args.batch / elapsed
        print(f"  {name:12s} {steps:5d} steps + CFG: {results[name]:8.3f} images/s ({elapsed:.1f} s for {args.batch})")
    print(f"  speed-up DPM-Solver++-{args.steps} over DDPM-{args.ddpm_steps}: "
          f"{results['dpmsolver++'] / results['ddpm']:.1f}x")


if __name__ == "__main__":
    main()
