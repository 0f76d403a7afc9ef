"""The 128 px stage, measured side by side in one run: real glyphs per typeface, the base model's samples, and speed.

Run: python benchmarks/bench_upscale.py [--upscaler pretrained/glyph-upscaler-128] [--regression DIR]
         [--n 200] [--out benchmarks/results/upscale]

a. Real held-out glyphs (the pair datasets' test splits: the font's own 32 px render in, its 128 px render as the
   truth), per typeface: PSNR, SSIM, grey-pixel share (0.1 < v < 0.9; the real glyphs' own share beside it) and
   the output box-reduced to 32 px against the input (RMS; the real pair's beside it), for bicubic, Lanczos,
   bicubic thresholded at 0.5, the regression baseline (`train_glyph_upscaler.py --objective regression`, if given)
   and the diffusion stage: every step count at the default noise level and every noise level at the default steps
   on the first typeface, the defaults on the others.
b. The shipped base model's samples for held-out definitions, upscaled: a picture of 64 (32 px, bicubic, upscaled).
c. Speed: seconds per glyph of the base model at its defaults and of the upscaler at its defaults, same batch.

Writes OUT.json (every number) and OUT-real.png / OUT-samples.png (look at them).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from skimage.metrics import peak_signal_noise_ratio, structural_similarity  # noqa: E402

from glyph_pipeline.data.dataset import LOW_RES_COLUMN, load_glyph_dataset  # noqa: E402
from glyph_pipeline.figures.layout import labelled_grid  # noqa: E402
from glyph_pipeline.pipeline_glyph_upscale import (  # noqa: E402
    DEFAULT_NOISE_LEVEL,
    DEFAULT_UPSCALE_STEPS,
    GlyphUpscalePipeline,
)
from glyph_pipeline.upscale import SHIPPED_UPSCALER, load_upscaler  # noqa: E402

PAIRS = ["data/pairs-noto-sans", "data/pairs-ukai", "data/pairs-uming", "data/pairs-noto-serif"]


def grey_share(images: np.ndarray) -> float:
    return float(((images > 0.1) & (images < 0.9)).mean())


def specks(images: np.ndarray, ink_of: np.ndarray | None = None) -> float:
    """Stray grey on the paper: the share of pixels more than 3 px from any ink (< 0.5) of `ink_of` (default: the
    image itself) that are darker than 0.95. Clean paper scores 0; anti-aliased stroke edges never count."""
    ink = torch.from_numpy(((images if ink_of is None else ink_of) < 0.5).astype(np.float32))[:, None]
    near = torch.nn.functional.max_pool2d(ink, 7, stride=1, padding=3)[:, 0].numpy() > 0
    return float((images[~near] < 0.95).mean())


def box_reduce(images: np.ndarray, factor: int) -> np.ndarray:
    n, h, w = images.shape
    return images.reshape(n, h // factor, factor, w // factor, factor).mean(axis=(2, 4))


def finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def scores(out: np.ndarray, real: np.ndarray, low: np.ndarray) -> dict[str, float]:
    """PSNR/SSIM against the real 128 px glyphs, grey share, and RMS of the output reduced to the input's size."""
    factor = out.shape[-1] // low.shape[-1]
    return {
        # Mean of per-glyph PSNR; None (infinite) when some glyph is matched exactly, e.g. both sides blank: AR PL
        # UKai draws nothing for a few characters it maps.
        "psnr": finite(np.mean([peak_signal_noise_ratio(r, o, data_range=1.0) for r, o in zip(real, out)])),
        "ssim": float(np.mean([structural_similarity(r, o, data_range=1.0) for r, o in zip(real, out)])),
        "grey": grey_share(out),
        "specks": specks(out, real),
        "rms32": float(np.sqrt(((box_reduce(out, factor) - low) ** 2).mean())),
    }


def resize(low: np.ndarray, size: int, method: Image.Resampling) -> np.ndarray:
    return np.stack([
        np.asarray(Image.fromarray((g * 255).round().astype(np.uint8)).resize((size, size), method), np.float32) / 255
        for g in low
    ])  # fmt: skip


def load_split(path: str, n: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(real 128 px, input 32 px, characters) of the first `n` test rows (code point order: a fixed sample)."""
    test = load_glyph_dataset(path, "test")
    test = test.select(range(min(n, len(test))))
    real = np.stack([np.asarray(im.convert("L"), np.float32) / 255 for im in test["image"]])
    low = np.stack([np.asarray(im.convert("L"), np.float32) / 255 for im in test[LOW_RES_COLUMN]])
    return real, low, list(test["character"])


@torch.no_grad()
def upscale(pipe: GlyphUpscalePipeline, low: np.ndarray, steps: int, level: int, batch: int = 25) -> np.ndarray:
    out = []
    for start in range(0, len(low), batch):
        chunk = low[start : start + batch]
        generators = [torch.Generator().manual_seed(start + i) for i in range(len(chunk))]
        images = pipe(chunk[..., None], num_inference_steps=steps, noise_level=level, generator=generators,
                      output_type="np").images
        out.append(images[..., 0])
    return np.concatenate(out)


@torch.no_grad()
def regression(unet_dir: str, low: np.ndarray, size: int, batch: int = 25) -> np.ndarray:
    from diffusers import UNet2DModel

    unet = UNet2DModel.from_pretrained(unet_dir, subfolder="unet").eval()
    out = []
    for start in range(0, len(low), batch):
        cond = GlyphUpscalePipeline.upsample(torch.from_numpy(low[start : start + batch, None]) * 2 - 1, size)
        zero = torch.zeros(len(cond), dtype=torch.long)
        pred = unet(torch.cat([torch.zeros_like(cond), cond], 1), zero, class_labels=zero).sample
        out.append(((pred.clamp(-1, 1) + 1) / 2)[:, 0].numpy())
    return np.concatenate(out)


def real_glyphs(pipe, args) -> tuple[dict, list]:
    results, pictures = {}, []
    size = pipe.output_size
    for index, path in enumerate(p for p in args.pairs if Path(p).exists()):
        real, low, chars = load_split(path, args.n)
        name = Path(path).name.removeprefix("pairs-")
        bicubic = resize(low, size, Image.Resampling.BICUBIC)
        rows = {
            "truth (real 128 px)": {"psnr": None, "ssim": 1.0, "grey": grey_share(real), "specks": specks(real),
                                    "rms32": float(np.sqrt(((box_reduce(real, size // low.shape[-1]) - low) ** 2)
                                                           .mean()))},
            "bicubic": scores(bicubic, real, low),
            "lanczos": scores(resize(low, size, Image.Resampling.LANCZOS), real, low),
            "bicubic > 0.5": scores((bicubic > 0.5).astype(np.float32), real, low),
        }
        if args.regression:
            rows["regression (L2, 1 call)"] = scores(regression(args.regression, low, size), real, low)
        settings = [(DEFAULT_UPSCALE_STEPS, DEFAULT_NOISE_LEVEL)]
        if index == 0:
            settings += [(s, DEFAULT_NOISE_LEVEL) for s in args.steps]
            settings += [(DEFAULT_UPSCALE_STEPS, level) for level in args.levels]
        default = None
        for steps, level in dict.fromkeys(settings):
            t0 = time.perf_counter()
            out = upscale(pipe, low, steps, level)
            label = f"diffusion, {steps} steps, noise {level}" + (" (default)" if default is None else "")
            rows[label] = {**scores(out, real, low), "s_per_glyph": (time.perf_counter() - t0) / len(low)}
            default = out if default is None else default
        results[name] = {"n": len(low), "rows": rows}
        print(f"\n{name} (n = {len(low)} held-out characters)")
        print("| method | PSNR dB | SSIM | grey % | specks % | RMS at 32 px |\n|---|---|---|---|---|---|")
        for label, r in rows.items():
            psnr = "∞" if r["psnr"] is None else f"{r['psnr']:.2f}"
            print(f"| {label} | {psnr} | {r['ssim']:.3f} | {100 * r['grey']:.1f} | {100 * r['specks']:.2f} "
                  f"| {r['rms32']:.3f} |")
        pick = np.linspace(0, len(low) - 1, 8).round().astype(int)
        for i in pick:
            pictures.append([
                Image.fromarray((low[i] * 255).astype(np.uint8)).resize((size, size), Image.Resampling.NEAREST),
                Image.fromarray((bicubic[i] * 255).round().astype(np.uint8)),
                Image.fromarray((default[i] * 255).round().astype(np.uint8)),
                Image.fromarray((real[i] * 255).round().astype(np.uint8)),
            ])  # fmt: skip
    return results, pictures


@torch.no_grad()
def model_samples(pipe, args) -> tuple[dict, Image.Image, list]:
    """The shipped model's samples for held-out definitions: 32 px, bicubic and upscaled, and the speed of each."""
    from glyph_pipeline.hub.pretrained import load_glyph_pipeline

    base = load_glyph_pipeline(None, device="cpu")
    base.set_progress_bar_config(disable=True)
    prompts = list(load_glyph_dataset("data/glyphs-32", "test")["text"][: args.samples])
    t0 = time.perf_counter()
    lows = []
    for start in range(0, len(prompts), args.batch):
        chunk = prompts[start : start + args.batch]
        gens = [torch.Generator().manual_seed(start + i) for i in range(len(chunk))]
        lows.append(base(chunk, generator=gens, output_type="pt").images)
    t_base = (time.perf_counter() - t0) / len(prompts)
    low = torch.cat(lows)
    t0 = time.perf_counter()
    ups = []
    for start in range(0, len(low), args.batch):
        chunk = low[start : start + args.batch]
        gens = [torch.Generator().manual_seed(start + i) for i in range(len(chunk))]
        ups.append(pipe(chunk, generator=gens, output_type="np").images[..., 0])
    t_up = (time.perf_counter() - t0) / len(prompts)
    up = np.concatenate(ups)
    low_np = low[:, 0].numpy()
    size = pipe.output_size
    bicubic = resize(low_np, size, Image.Resampling.BICUBIC)
    speed = {"base_s_per_glyph": t_base, "upscale_s_per_glyph": t_up, "ratio": t_up / t_base, "batch": args.batch,
             "threads": torch.get_num_threads()}
    print(f"\nspeed (batch {args.batch}, {torch.get_num_threads()} threads): base model {t_base:.3f} s/glyph "
          f"(defaults), upscaler {t_up:.3f} s/glyph (defaults): {t_up / t_base:.2f}x")
    stats = {"n": len(prompts), "grey_upscaled": grey_share(up), "grey_bicubic": grey_share(bicubic),
             "specks_upscaled": specks(up), **speed}
    print(f"samples: grey {100 * grey_share(up):.1f} % (bicubic {100 * grey_share(bicubic):.1f} %), "
          f"specks {100 * specks(up):.2f} %")
    cells = []
    for i in range(min(64, len(prompts))):
        cells.append(Image.fromarray((up[i] * 255).round().astype(np.uint8)))
    grid = labelled_grid([cells[i : i + 8] for i in range(0, len(cells), 8)], size, title=(
        f"upscaled samples of the shipped model, {len(cells)} held-out definitions"))
    pairs = [
        [Image.fromarray((low_np[i] * 255).round().astype(np.uint8)).resize((size, size), Image.Resampling.NEAREST),
         Image.fromarray((bicubic[i] * 255).round().astype(np.uint8)), cells[i]]
        for i in range(min(8, len(cells)))
    ]  # fmt: skip
    return stats, grid, pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upscaler", default=str(SHIPPED_UPSCALER))
    parser.add_argument("--regression", default=None, help="a --objective regression run's output folder")
    parser.add_argument("--pairs", nargs="+", default=PAIRS)
    parser.add_argument("--n", type=int, default=200, help="held-out characters per typeface")
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 6, 8, 20])
    parser.add_argument("--levels", type=int, nargs="+", default=[0, 100, 250])
    parser.add_argument("--samples", type=int, default=64, help="held-out definitions for part b")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--skip", nargs="*", default=[], choices=["real", "samples"])
    parser.add_argument("--out", default="benchmarks/results/upscale")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    pipe = load_upscaler(args.upscaler, "cpu")
    pipe.set_progress_bar_config(disable=True)
    defaults = {"steps": DEFAULT_UPSCALE_STEPS, "noise_level": DEFAULT_NOISE_LEVEL}
    report = {"upscaler": args.upscaler, "defaults": defaults}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if "real" not in args.skip:
        report["real"], pictures = real_glyphs(pipe, args)
        names = ["32 px input", "bicubic", "upscaled", "real 128 px"]
        title = "held-out glyphs per typeface (8 each): input, bicubic, upscaled, real"
        labelled_grid(pictures, pipe.output_size, [names] * len(pictures), title=title).save(f"{out}-real.png")
    if "samples" not in args.skip:
        report["samples"], grid, pairs = model_samples(pipe, args)
        grid.save(f"{out}-samples.png")
        labelled_grid(pairs, pipe.output_size, [["32 px sample", "bicubic", "upscaled"]] * len(pairs),
                      title="the shipped model's samples").save(f"{out}-samples-side.png")
    Path(f"{out}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out}.json and its pictures")


if __name__ == "__main__":
    main()
