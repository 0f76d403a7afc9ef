"""Glyph quality metrics: Fréchet glyph distance (FGD), KID and radical adherence.

* **FGD** is FID with the glyph judge (`glyph_pipeline.evaluation.judge.GlyphJudge`) in place of Inception: the
  Fréchet distance between Gaussians fitted to the judge's penultimate-layer features of generated and of
  held-out real glyphs. Computed in float64 with an eigen-decomposition matrix square root. FGD is biased
  by the sample count, so it is only comparable at equal `n`; every result carries its `n` and a *real
  floor* (FGD between two real sets of the same size) that says how small FGD can get at that `n`.
* **KID**: unbiased MMD² with the cubic polynomial kernel `(x·y / d + 1)³`, averaged over random subsets;
  unbiased, so it is usable with few samples and ≈ 0 for two samples of one distribution.
* **Radical adherence**: prompts are the definitions of held-out characters; the share of generated
  glyphs whose radical (as the judge reads it) is the prompted character's Kangxi radical. Context: the
  judge's accuracy on the real glyphs of the same characters (the ceiling) and the base rate of the most
  common radical among those characters (the best a prompt-blind model can do). A probe set in the spirit
  of the original article ("gold" -> 金 ...) reports the same share for single-word prompts.
* **Copy rate**: the share of samples nearer some training glyph (RMS pixel distance) than 99 % of real
  held-out glyphs are to theirs — real unseen characters calibrate what "a copy" means.

Command line: ``glyffuser evaluate --model DIR --judge DIR --dataset DIR [--num-samples 256 ...]``.
Python: :func:`evaluate_pipeline` (a pipeline) or :func:`glyph_scores` (any images).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..atomic import write_text
from ..data.dataset import as_dataset_dict
from ..hub.pretrained import NotAPipelineError, load_glyph_pipeline
from ..lora import add_lora_args
from ..schedulers import RECOMMENDED_GUIDANCE, RECOMMENDED_STEPS
from .judge import (
    NUM_RADICALS,
    GlyphJudge,
    GlyphJudgeError,
    column,
    decode_split,
    load_judge,
    load_judge_metrics,
    require_columns,
    resize_glyphs,
    to_judge_tensor,
)

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

    from ..pipeline_glyph_diffusion import GlyphDiffusionPipeline

# Single-word prompts and the Kangxi radical each should produce (simplified/side forms count: the
# radical number is the same, e.g. 氵 is 85, 钅 is 167). In the spirit of the original article's "Gold".
PROBES: dict[str, int] = {
    "gold": 167,  # 金 (釒, 钅)
    "metal": 167,
    "water": 85,  # 水 (氵)
    "tree": 75,  # 木
    "fire": 86,  # 火 (灬)
    "speech": 149,  # 言 (讠)
    "woman": 38,  # 女
    "hand": 64,  # 手 (扌)
    "heart": 61,  # 心 (忄)
    "grass": 140,  # 艸 (艹)
}
PROBE_CHARACTERS = {167: "金", 85: "水", 75: "木", 86: "火", 149: "言", 38: "女", 64: "手", 61: "心", 140: "艸"}
PROBE_SEED_OFFSET = 1_000_000  # probe images use seeds disjoint from the held-out prompts' seeds
DEFAULT_NUM_SAMPLES = 256
SENSITIVITY_SEED_OFFSET = 2_000_000  # seeds of the prompt-sensitivity grid
TRAIN_PROMPT_SEED_OFFSET = 3_000_000  # seeds of the train-prompt samples
KID_FULL_KERNEL_MAX = 4096  # up to this many samples per set, KID precomputes the full kernel matrices


class GlyphMetricsError(ValueError):
    """Input the metrics cannot score meaningfully (too few samples, wrong shapes, not a pipeline...)."""


def radical_symbol(radical: int) -> str:
    """The Kangxi Radicals block character for radical 1..214 (e.g. 167 -> ⾦)."""
    return chr(0x2F00 + int(radical) - 1) if 1 <= int(radical) <= 214 else "?"


# --------------------------------------------------------------------------------------------------
# Fréchet distance and KID (float64, numpy)
# --------------------------------------------------------------------------------------------------


def sqrtm_psd(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix by eigen-decomposition (float64).

    The input is symmetrised and eigenvalues below zero (rounding noise of a singular covariance) are
    clamped to 0, so the result is real and symmetric: no complex parts to discard as with `sqrtm`.
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise GlyphMetricsError(f"sqrtm_psd needs a square matrix, got shape {m.shape}.")
    m = (m + m.T) / 2
    values, vectors = np.linalg.eigh(m)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr((Σ1 Σ2)^½) for PSD Σ1, Σ2, symmetric in its arguments by construction.

    tr((Σ1 Σ2)^½) is the nuclear norm (sum of singular values) of Σ1^½ Σ2^½; swapping the arguments
    transposes that product, which has the same singular values. With singular covariances (fewer samples
    than feature dimensions) each one-sided evaluation carries rounding of order √eps from the clamped
    eigenvalues, and which way it falls depends on the machine's BLAS kernels; averaging both orders makes
    the result bit-for-bit symmetric on every machine (float addition commutes).
    """
    root1, root2 = sqrtm_psd(sigma1), sqrtm_psd(sigma2)
    forward = np.linalg.svd(root1 @ root2, compute_uv=False).sum()
    backward = np.linalg.svd(root2 @ root1, compute_uv=False).sum()
    return float((forward + backward) / 2)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2):
    |mu1 - mu2|² + tr(Σ1) + tr(Σ2) - 2 tr((Σ1 Σ2)^½)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise GlyphMetricsError(
            f"Mismatched statistics: means {mu1.shape} / {mu2.shape}, covariances {sigma1.shape} / {sigma2.shape}."
        )
    for name, value in (("mu1", mu1), ("sigma1", sigma1), ("mu2", mu2), ("sigma2", sigma2)):
        if not np.all(np.isfinite(value)):
            raise GlyphMetricsError(f"{name} contains NaN or inf (were the images NaN?).")
    diff = mu1 - mu2
    distance = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2)
    return max(float(distance), 0.0)  # exact result is >= 0; clamp rounding noise of ~1e-12


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of (n, d) features in float64."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise GlyphMetricsError(f"Features must be (n, d), got shape {x.shape}.")
    if x.shape[0] < 2:
        raise GlyphMetricsError(
            f"FGD needs at least 2 samples per set to estimate a covariance, got {x.shape[0]}. "
            "Use more samples (FGD is only comparable at equal sample counts; >= 256 is a sensible minimum)."
        )
    return x.mean(axis=0), np.cov(x, rowvar=False)


def frechet_glyph_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """FGD between two sets of judge features (n_a, d) and (n_b, d). Symmetric; 0 for identical sets."""
    return frechet_distance(*feature_statistics(features_a), *feature_statistics(features_b))


def kernel_distance(
    features_a: np.ndarray,
    features_b: np.ndarray,
    num_subsets: int = 100,
    subset_size: int | None = None,
    seed: int = 0,
) -> tuple[float, float]:
    """KID: unbiased MMD² with the kernel (x·y / d + 1)³, mean and std over `num_subsets` random subsets.

    `subset_size` defaults to half the smaller set (at least 2), so subsets differ and the std says how
    stable the estimate is. Unbiased: two samples of one distribution give ≈ 0 (slightly negative is fine).
    """
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise GlyphMetricsError(f"KID needs (n, d) features of equal d, got {a.shape} and {b.shape}.")
    n = min(len(a), len(b))
    m = max(2, n // 2) if subset_size is None else min(int(subset_size), n)
    if n < 2 or m < 2:
        raise GlyphMetricsError(f"KID needs at least 2 samples per set (subsets of >= 2), got {len(a)} and {len(b)}.")
    d = a.shape[1]

    def kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        k = x @ y.T / d + 1
        return k * k * k  # much faster than k ** 3 (a pow() per element)

    # Up to a few thousand samples, three full kernel matrices beat hundreds of small products.
    full = max(len(a), len(b)) <= KID_FULL_KERNEL_MAX
    if full:
        kaa, kbb, kab = kernel(a, a), kernel(b, b), kernel(a, b)
    rng = np.random.default_rng(seed)
    values = np.empty(num_subsets)
    for i in range(num_subsets):
        ia, ib = rng.choice(len(a), m, replace=False), rng.choice(len(b), m, replace=False)
        if full:
            kxx, kyy, kxy = kaa[np.ix_(ia, ia)], kbb[np.ix_(ib, ib)], kab[np.ix_(ia, ib)]
        else:
            x, y = a[ia], b[ib]
            kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
        values[i] = (
            (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
            + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
            - 2 * kxy.mean()
        )
    return float(values.mean()), float(values.std())


# --------------------------------------------------------------------------------------------------
# Judge readings
# --------------------------------------------------------------------------------------------------


@torch.no_grad()
def judge_readings(judge: GlyphJudge, images: Any, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(float64 features (n, d), predicted Kangxi radicals (n,)) for images in [0, 1], white = 1.

    Images of another resolution are resized to the judge's (see `GlyphJudge`); accepted types as in
    `to_judge_tensor` (PIL list, numpy NHWC, torch NCHW; uint8 or float).
    """
    x = (
        images
        if isinstance(images, torch.Tensor) and images.ndim == 4 and images.shape[1] == 1
        else to_judge_tensor(images)
    )
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    judge.eval()
    feats, preds = [], []
    for start in range(0, len(x), batch_size):
        logits, f = judge(x[start : start + batch_size].float(), return_features=True)
        feats.append(f.double().cpu().numpy())
        preds.append((logits.argmax(dim=1) + 1).cpu().numpy())
    return np.concatenate(feats), np.concatenate(preds).astype(np.int64)


def radical_adherence(predicted: Sequence[int], target: Sequence[int]) -> float:
    """Share of glyphs whose predicted radical equals the target radical."""
    p, t = np.asarray(predicted), np.asarray(target)
    if p.shape != t.shape or p.size == 0:
        raise GlyphMetricsError(f"Need one target radical per glyph, got {p.size} predictions and {t.size} targets.")
    return float((p == t).mean())


def majority_rate(radicals: Sequence[int]) -> tuple[int, float]:
    """(most common radical, its share): the adherence ceiling of a model that ignores the prompt."""
    radical, count = Counter(int(r) for r in radicals).most_common(1)[0]
    return radical, count / len(radicals)


def ink_statistics(images: Any) -> dict[str, float]:
    """Mean pixel and ink fraction (share of pixels darker than mid-grey) of images in [0, 1], white = 1.

    The first thing to compare with the real glyphs: a model whose first sampling steps fix a wrong
    global brightness (ε-prediction at high noise) draws grey or dark paper, whatever its strokes.
    """
    x = torch.as_tensor(images).float()
    return {"mean_pixel": float(x.mean()), "ink_fraction": float((x < 0.5).float().mean())}


def nearest_glyphs(
    queries: torch.Tensor, reference: torch.Tensor, k: int = 1, reference_sq_norms: torch.Tensor | None = None,
    chunk: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(RMS pixel distances (n, k), indices (n, k)) of the `k` reference glyphs nearest to each query.

    `queries` (n, D) and `reference` (m, D) are flattened float glyphs in [0, 1] at one size; pass the
    reference's squared row norms when searching the same reference often (the app does). One search for the
    app's nearest-glyph panel and the copy rate, so both read the same distance.
    """
    norms = (reference * reference).sum(dim=1) if reference_sq_norms is None else reference_sq_norms
    values, indices = [], []
    for start in range(0, len(queries), chunk):
        x = queries[start : start + chunk]
        squared = (x * x).sum(dim=1, keepdim=True) - 2 * x @ reference.T + norms[None]
        v, i = torch.topk(squared.clamp_min(0), min(k, len(reference)), dim=1, largest=False)
        values.append((v / x.shape[1]).sqrt())
        indices.append(i)
    return torch.cat(values), torch.cat(indices)


def flat_glyphs(images: torch.Tensor, size: int) -> torch.Tensor:
    """(n, size*size) float in [0, 1] of (n, 1, H, W) glyphs (uint8 or float), resized as the judge resizes."""
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    return resize_glyphs(x, size).reshape(len(x), -1)


COPY_PERCENTILE = 1.0  # the copy threshold: this percentile of real held-out glyphs' nearest-training distance


def copy_statistics(
    samples: dict[str, torch.Tensor], training: torch.Tensor, held_out: torch.Tensor,
    percentile: float = COPY_PERCENTILE,
) -> dict[str, Any]:
    """Does the model invent glyphs or copy its training set?

    Held-out real glyphs copy nothing by construction, so their distances to the nearest training glyph
    calibrate the threshold: a sample closer to a training glyph than `percentile` % of them is counted as a
    copy. `samples` maps a name (e.g. "held_out_prompts") to flattened glyphs; `training` and `held_out` are
    flattened real glyphs at the same size (see `flat_glyphs`).
    """
    real = nearest_glyphs(held_out, training)[0][:, 0]
    threshold = float(np.percentile(real.numpy(), percentile))
    out: dict[str, Any] = {
        "threshold": threshold,
        "percentile": percentile,
        "num_training": len(training),
        "held_out_real": {"num": len(held_out), "median_distance": float(real.median())},
    }
    for name, x in samples.items():
        d = nearest_glyphs(x, training)[0][:, 0]
        copy_rate = float((d < threshold).float().mean())
        out[name] = {"num": len(x), "copy_rate": copy_rate, "median_distance": float(d.median())}
    return out


def prompt_sensitivity(images: torch.Tensor, num_prompts: int, num_seeds: int) -> dict[str, float]:
    """How much samples change with the prompt, relative to how much they change with the seed.

    `images` are (num_prompts * num_seeds, 1, H, W), prompt-major, seed j of every prompt sharing one
    noise. Mean |Δpixel| over pairs that differ only in the prompt, divided by the same over pairs that
    differ only in the seed: ≈ 0 when the text is ignored, ≈ 1 when the prompt matters as much as the noise.
    """
    x = torch.as_tensor(images).float().reshape(num_prompts, num_seeds, -1)
    if num_prompts < 2 or num_seeds < 2:
        raise GlyphMetricsError(
            f"Prompt sensitivity needs >= 2 prompts and >= 2 seeds, got {num_prompts} and {num_seeds}."
        )

    def mean_pair_distance(groups: torch.Tensor) -> float:  # groups: (g, k, d): pairs within each group
        d = (groups[:, :, None, :] - groups[:, None, :, :]).abs().mean(-1)
        k = groups.shape[1]
        return float(d.sum() / (groups.shape[0] * k * (k - 1)))

    across_prompts = mean_pair_distance(x.transpose(0, 1))  # same seed, different prompts
    across_seeds = mean_pair_distance(x)  # same prompt, different seeds
    return {
        "prompt_sensitivity": across_prompts / across_seeds if across_seeds > 0 else float("nan"),
        "delta_prompt": across_prompts,
        "delta_seed": across_seeds,
        "num_prompts": num_prompts,
        "num_seeds": num_seeds,
    }


def glyph_scores(
    judge: GlyphJudge,
    generated: Any,
    real: Any,
    target_radicals: Sequence[int] | None = None,
    real_radicals: Sequence[int] | None = None,
    kid_subsets: int = 100,
    kid_subset_size: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """FGD / KID of `generated` against `real` glyphs, plus radical adherence if targets are given.

    `target_radicals[i]` is the radical the prompt of `generated[i]` asks for; `real_radicals` are the true
    radicals of `real` (gives `judge_accuracy_real`, the ceiling for adherence).
    """
    gen_feats, gen_pred = judge_readings(judge, generated)
    real_feats, real_pred = judge_readings(judge, real)
    kid_mean, kid_std = kernel_distance(gen_feats, real_feats, kid_subsets, kid_subset_size, seed)
    out: dict[str, Any] = {
        "num_generated": len(gen_feats),
        "num_real": len(real_feats),
        "fgd": frechet_glyph_distance(gen_feats, real_feats),
        "kid": kid_mean,
        "kid_std": kid_std,
        "distinct_radicals_generated": len(set(gen_pred.tolist())),
        "distinct_radicals_real": len(set(real_pred.tolist())),
    }
    if target_radicals is not None:
        radical, rate = majority_rate(target_radicals)
        out.update(
            adherence=radical_adherence(gen_pred, target_radicals),
            base_rate=rate,
            base_radical=radical,
        )
    if real_radicals is not None:
        out["judge_accuracy_real"] = radical_adherence(real_pred, real_radicals)
    return out


# --------------------------------------------------------------------------------------------------
# Sampling a pipeline
# --------------------------------------------------------------------------------------------------


def generate_glyphs(
    pipe: GlyphDiffusionPipeline,
    prompts: Sequence[str],
    num_inference_steps: int = RECOMMENDED_STEPS,
    guidance_scale: float = RECOMMENDED_GUIDANCE,
    seed: int = 0,
    batch_size: int = 32,
    seeds: Sequence[int] | None = None,
    log: Callable[[str], None] | None = None,
) -> torch.Tensor:
    """Sample one glyph per prompt: float (n, 1, H, W) in [0, 1].

    Image i uses its own generator seeded `seed + i` (or `seeds[i]`), so results do not depend on the batch size.
    """
    seeds = list(seeds) if seeds is not None else [seed + i for i in range(len(prompts))]
    out = []
    t0 = time.perf_counter()
    for start in range(0, len(prompts), batch_size):
        chunk = list(prompts[start : start + batch_size])
        generators = [torch.Generator().manual_seed(int(s)) for s in seeds[start : start + len(chunk)]]
        images = pipe(
            chunk,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            generator=generators,
            output_type="pt",
        ).images
        out.append(images.float().cpu())
        if log:
            done = start + len(chunk)
            log(f"  sampled {done}/{len(prompts)} ({time.perf_counter() - t0:.0f}s)")
    return torch.cat(out)


def _find_characters(splits: DatasetDict, wanted: set[str], size: int) -> dict[str, torch.Tensor]:
    """Real glyphs of a few characters (the probe targets), from whichever split holds them."""
    found: dict[str, torch.Tensor] = {}
    for ds in splits.values():
        if "character" not in ds.column_names:
            continue
        chars = column(ds, "character")
        idx = [i for i, c in enumerate(chars) if c in wanted and c not in found]
        if idx:
            arrays = decode_split(ds.select(idx), size, with_text=False)
            for c, img in zip(arrays.characters, arrays.images):
                found[c] = img
    return found


def prepare_evaluation(
    judge: GlyphJudge | str | os.PathLike,
    dataset: str | os.PathLike | Dataset | DatasetDict,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    held_out_split: str = "test",
    copy_split: str | None = "train",
) -> tuple[GlyphJudge, DatasetDict]:
    """Load and check what an evaluation needs, without sampling anything.

    The training script calls this before step 1 (`--eval_judge`), so a wrong judge folder, a dataset
    without a held-out split or radicals, a copy rate without the training glyphs to compare with
    (`copy_split`; None: no copy rate), or too large an `n` fails in seconds, not after hours of training.
    """
    if not isinstance(judge, GlyphJudge):
        judge = load_judge(judge)
    splits = as_dataset_dict(dataset, single_split="test")
    if held_out_split not in splits:
        raise GlyphMetricsError(
            f"The dataset has no {held_out_split!r} split (has {list(splits)}); evaluation needs held-out glyphs. "
            "Build one with `glyffuser build-dataset` (it writes train/test splits)."
        )
    held_ds = splits[held_out_split]
    require_columns(held_ds, ["image", "text", "radical"], "Evaluation")
    if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 2:
        raise GlyphMetricsError(f"num_samples must be an integer >= 2 (FGD needs a covariance), got {num_samples!r}.")
    scorable = sum(r is not None and 1 <= int(r) <= NUM_RADICALS for r in column(held_ds, "radical"))
    if num_samples > scorable:
        raise GlyphMetricsError(
            f"num_samples={num_samples} exceeds the {scorable} held-out glyphs with a radical; "
            f"use --num-samples {scorable} or fewer (FGD compares equal-size sets)."
        )
    if copy_split is not None and copy_split not in splits:
        raise GlyphMetricsError(
            f"The copy rate needs the training glyphs: the dataset has no {copy_split!r} split (has {list(splits)}). "
            f"Pass the dataset the model was trained on (with its {copy_split!r} split), or skip the copy rate "
            "(--no-copy-rate; copy_rate=False)."
        )
    return judge, splits


def evaluate_pipeline(
    pipe: GlyphDiffusionPipeline,
    judge: GlyphJudge | str | os.PathLike,
    dataset: str | os.PathLike | Dataset | DatasetDict,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    num_inference_steps: int = RECOMMENDED_STEPS,
    guidance_scale: float = RECOMMENDED_GUIDANCE,
    seed: int = 0,
    batch_size: int = 32,
    scheduler: str | None = None,
    probe_samples: int = 8,
    held_out_split: str = "test",
    reference_split: str | None = "train",
    kid_subsets: int = 100,
    kid_subset_size: int | None = None,
    log: Callable[[str], None] | None = None,
    train_prompt_samples: int | None = None,
    sensitivity_prompts: int = 16,
    sensitivity_seeds: int = 4,
    copy_rate: bool = True,
    typeface: str | None = None,
    typeface_judge: GlyphJudge | str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Score a glyph pipeline against held-out real glyphs with the radical judge.

    Prompts are the definitions of `num_samples` held-out characters (a fixed, seed-independent choice, so
    two models are scored on the same prompts); the real set is those characters' glyphs (equal `n`).
    `reference_split` (train) gives the *real floor*: FGD/KID of `num_samples` real training glyphs against
    the same real set. `scheduler` (a `glyph_pipeline.schedulers.SCHEDULERS` name) swaps the sampler for
    this call only. Generated images are resized to the judge's resolution if they differ (area averaging
    down, bilinear up). Returns a JSON-ready dict; `format_report(result)` renders it as a table.

    Three checks catch a model that draws well but ignores the text, or draws on the wrong paper: the
    samples' mean pixel / ink fraction next to the real glyphs'; *train-prompt adherence* (definitions of
    `train_prompt_samples` training characters, default `num_samples`; 0 skips) — a model that learned
    the text at all gets those right before held-out ones; and *prompt sensitivity* on a grid of
    `sensitivity_prompts` held-out definitions x `sensitivity_seeds` shared seeds (0 skips).

    `copy_rate` (needs `reference_split`, the training glyphs) adds `copies`: the share of samples, for
    held-out and for training prompts, whose nearest training glyph is closer than 99 % of real held-out
    glyphs are to theirs (`copy_statistics`) — the article's glyphs are meant to be new.

    `typeface` with a `typeface_judge` (`glyph_pipeline.evaluation.typeface`) adds the share of held-out samples read as
    that typeface (and of the real held-out glyphs, for reference): did a typeface LoRA take?
    """
    from ..schedulers import sampling_scheduler

    t0 = time.perf_counter()
    judge_path = None if isinstance(judge, GlyphJudge) else str(judge)
    copy_split = reference_split if copy_rate else None
    if copy_rate and reference_split is None:
        raise GlyphMetricsError("The copy rate needs reference_split (the training split); or pass copy_rate=False.")
    if typeface is not None:
        from .typeface import load_typeface_judge

        if typeface_judge is None:
            raise GlyphMetricsError(
                "--typeface needs --typeface-judge DIR (train one with `glyffuser train-typeface-judge`)."
            )
        if not isinstance(typeface_judge, GlyphJudge):
            typeface_judge = load_typeface_judge(typeface_judge, typeface)
    judge, splits = prepare_evaluation(judge, dataset, num_samples, held_out_split, copy_split)
    judge_info = {"path": judge_path, "size": judge.config.sample_size, "parameters": judge.num_parameters()}
    if judge_path:
        saved = load_judge_metrics(judge_path)
        if "held_out_accuracy" in saved:
            judge_info["held_out_accuracy"] = saved["held_out_accuracy"]
    size = judge.config.sample_size
    held = decode_split(splits[held_out_split], size)
    # Fixed prompt subset (seed 0), independent of the sampling seed: models are compared on the same prompts.
    chosen = np.sort(np.random.default_rng(0).permutation(len(held))[:num_samples])
    prompts = [held.texts[i] for i in chosen]
    targets = held.radicals[chosen]
    real_images = held.float_images(torch.from_numpy(chosen))

    original_scheduler = pipe.scheduler
    if scheduler is not None:
        pipe.scheduler = sampling_scheduler(scheduler, dict(pipe.scheduler.config))
    sampler = type(pipe.scheduler).__name__
    try:
        if log:
            log(
                f"sampling {num_samples} held-out prompts with {sampler}, {num_inference_steps} steps, "
                f"guidance {guidance_scale}"
            )
        t_gen = time.perf_counter()
        generated = generate_glyphs(pipe, prompts, num_inference_steps, guidance_scale, seed, batch_size, log=log)
        gen_seconds = time.perf_counter() - t_gen
        probe_images = None
        if probe_samples > 0:
            if log:
                log(f"sampling {probe_samples} glyphs for each of {len(PROBES)} probe prompts")
            probe_prompts = [w for w in PROBES for _ in range(probe_samples)]
            probe_seeds = [seed + PROBE_SEED_OFFSET + i for i in range(len(probe_prompts))]
            probe_images = generate_glyphs(
                pipe, probe_prompts, num_inference_steps, guidance_scale, batch_size=batch_size, seeds=probe_seeds
            )
        train_images = train_targets = None
        n_train = num_samples if train_prompt_samples is None else train_prompt_samples
        if n_train and reference_split and reference_split in splits:
            train_ds = splits[reference_split]
            pick = np.sort(np.random.default_rng(2).permutation(len(train_ds))[: min(n_train, len(train_ds))])
            train_rows = decode_split(train_ds.select(pick.tolist()), size)
            train_targets = train_rows.radicals
            if log:
                log(f"sampling {len(pick)} training-set prompts (train-prompt adherence)")
            train_images = generate_glyphs(
                pipe, train_rows.texts, num_inference_steps, guidance_scale, batch_size=batch_size,
                seeds=[seed + TRAIN_PROMPT_SEED_OFFSET + i for i in range(len(pick))],
            )
        sensitivity_images = None
        n_sens = min(sensitivity_prompts, len(prompts))
        if n_sens >= 2 and sensitivity_seeds >= 2:
            if log:
                log(f"sampling {n_sens} prompts x {sensitivity_seeds} shared seeds (prompt sensitivity)")
            sensitivity_images = generate_glyphs(
                pipe, [p for p in prompts[:n_sens] for _ in range(sensitivity_seeds)], num_inference_steps,
                guidance_scale, batch_size=batch_size,
                seeds=[seed + SENSITIVITY_SEED_OFFSET + j for _ in range(n_sens) for j in range(sensitivity_seeds)],
            )
    finally:
        pipe.scheduler = original_scheduler

    scores = glyph_scores(
        judge, generated, real_images, targets, held.radicals[chosen], kid_subsets, kid_subset_size, seed
    )
    result: dict[str, Any] = {
        "judge": judge_info,
        "sampler": {
            "scheduler": scheduler or sampler,
            "class": sampler,
            "num_inference_steps": num_inference_steps,
            "guidance_scale": guidance_scale,
            "seed": seed,
            "batch_size": batch_size,
        },
        "image_size": list(generated.shape[-2:]),
        "resized_to_judge": tuple(generated.shape[-2:]) != (size, size),
        **scores,
    }
    result["base_character"] = radical_symbol(result["base_radical"])
    result["ink"] = {"generated": ink_statistics(generated), "real": ink_statistics(real_images)}
    if train_images is not None:
        _, train_pred = judge_readings(judge, train_images)
        radical, rate = majority_rate(train_targets)
        result["train_prompts"] = {
            "num": len(train_targets),
            "adherence": radical_adherence(train_pred, train_targets),
            "base_rate": rate,
            "base_radical": radical,
        }
    if typeface is not None:
        from .typeface import typeface_statistics

        result["typeface"] = typeface_statistics(typeface_judge, typeface, generated, real_images)
    if sensitivity_images is not None:
        result["sensitivity"] = prompt_sensitivity(sensitivity_images, n_sens, sensitivity_seeds)
    if copy_split is not None:
        training = decode_split(splits[copy_split], size, with_text=False).images
        samples = {"held_out_prompts": generated}
        if train_images is not None:
            samples["train_prompts"] = train_images
        result["copies"] = copy_statistics(
            {k: flat_glyphs(v, size) for k, v in samples.items()},
            flat_glyphs(training, size), flat_glyphs(held.images, size),
        )

    if reference_split and reference_split in splits:
        ref_ds = splits[reference_split]
        pick = np.sort(np.random.default_rng(1).permutation(len(ref_ds))[:num_samples])
        ref = decode_split(ref_ds.select(pick.tolist()), size, with_text=False)
        ref_feats, _ = judge_readings(judge, ref.float_images())
        real_feats, _ = judge_readings(judge, real_images)
        floor_kid, floor_kid_std = kernel_distance(ref_feats, real_feats, kid_subsets, kid_subset_size, seed)
        result["real_floor"] = {
            "split": reference_split,
            "num": len(ref),
            "fgd": frechet_glyph_distance(ref_feats, real_feats),
            "kid": floor_kid,
            "kid_std": floor_kid_std,
        }

    if probe_images is not None:
        _, probe_pred = judge_readings(judge, probe_images)
        _, held_pred = judge_readings(judge, held.float_images())
        real_probe = _find_characters(splits, set(PROBE_CHARACTERS.values()), size)
        probes = {}
        for k, (word, radical) in enumerate(PROBES.items()):
            pred = probe_pred[k * probe_samples : (k + 1) * probe_samples]
            char = PROBE_CHARACTERS[radical]
            mask = held.radicals == radical
            entry: dict[str, Any] = {
                "radical": radical,
                "character": char,
                "adherence": radical_adherence(pred, [radical] * len(pred)),
                "predicted": [int(p) for p in pred],
                # Context: how well the judge reads this radical on real held-out glyphs (mostly side
                # forms such as 氵 钅 扌), and whether it reads the bare radical character itself.
                "judge_recall_held_out": float((held_pred[mask] == radical).mean()) if mask.any() else None,
                "num_held_out": int(mask.sum()),
            }
            if char in real_probe:
                _, real_pred = judge_readings(judge, real_probe[char][None].float() / 255.0)
                entry["judge_reads_character"] = bool(real_pred[0] == radical)
            probes[word] = entry
        result["probes"] = probes
        result["probe_samples"] = probe_samples
        result["probe_adherence"] = float(np.mean([p["adherence"] for p in probes.values()]))
        # A prompt-blind model drawing only 金 matches "gold" and "metal": 2 of the 10 probes.
        result["probe_base_rate"] = majority_rate(list(PROBES.values()))[1]
    result["seconds"] = {"sampling": gen_seconds, "total": time.perf_counter() - t0}
    return result


def format_report(result: dict[str, Any]) -> str:
    """A plain-text table of an `evaluate_pipeline` result."""
    s = result["sampler"]
    j = result["judge"]
    acc = j.get("held_out_accuracy")
    lines = [
        f"Glyph metrics: {s['scheduler']} ({s['class']}), {s['num_inference_steps']} steps, "
        f"guidance {s['guidance_scale']}, seed {s['seed']}",
        f"judge: {j['size']}px, {j['parameters']:,} params"
        + (f", held-out radical accuracy {acc:.3f}" if acc is not None else "")
        + (
            f"; generated {result['image_size'][0]}px images resized to {j['size']}px"
            if result["resized_to_judge"]
            else ""
        ),
        f"n = {result['num_generated']} generated vs {result['num_real']} held-out real glyphs "
        "(FGD is comparable only at equal n)",
        "",
        f"{'metric':<28}{'model':>14}{'real floor':>16}",
    ]
    floor = result.get("real_floor", {})

    def fmt(v: float | None, scale: float = 1.0, digits: int = 3) -> str:
        return "-" if v is None else f"{v * scale:.{digits}f}"

    lines.append(f"{'FGD (lower is better)':<28}{fmt(result['fgd']):>14}{fmt(floor.get('fgd')):>16}")
    kid = f"{result['kid']:.3g}±{result['kid_std']:.2g}"
    floor_kid = f"{floor['kid']:.3g}±{floor['kid_std']:.2g}" if floor else "-"
    lines.append(f"{'KID (lower is better)':<28}{kid:>14}{floor_kid:>16}")
    lines.append(
        f"{'radical adherence':<28}{fmt(result['adherence']):>14}{fmt(result.get('judge_accuracy_real')):>16}"
        "   (real: the judge on these characters' real glyphs = ceiling)"
    )
    lines.append(
        f"{'  base rate (prompt-blind)':<28}{fmt(result['base_rate']):>14}"
        f"{'':>16}   most common radical {result['base_radical']} {result['base_character']}"
    )
    lines.append(
        f"{'distinct radicals read':<28}{result['distinct_radicals_generated']:>14}"
        f"{result['distinct_radicals_real']:>16}"
    )
    if "ink" in result:
        gen, real = result["ink"]["generated"], result["ink"]["real"]
        lines.append(
            f"{'mean pixel (white = 1)':<28}{fmt(gen['mean_pixel']):>14}{fmt(real['mean_pixel']):>16}"
            "   (real: held-out glyphs)"
        )
        lines.append(f"{'ink fraction':<28}{fmt(gen['ink_fraction']):>14}{fmt(real['ink_fraction']):>16}")
    if "train_prompts" in result:
        t = result["train_prompts"]
        lines.append(
            f"{'train-prompt adherence':<28}{fmt(t['adherence']):>14}{'':>16}   "
            f"n = {t['num']} training definitions; prompt-blind base rate {t['base_rate']:.3f}"
        )
    if "sensitivity" in result:
        v = result["sensitivity"]
        lines.append(
            f"{'prompt sensitivity':<28}{fmt(v['prompt_sensitivity']):>14}{'':>16}   "
            f"|Δpixel| prompt-only {v['delta_prompt']:.3f} / seed-only {v['delta_seed']:.3f} "
            f"({v['num_prompts']} prompts x {v['num_seeds']} seeds; ≈ 0: the text is ignored)"
        )
    if "copies" in result:
        c = result["copies"]
        lines.append(
            f"{'copy rate, held-out prompts':<28}{fmt(c['held_out_prompts']['copy_rate']):>14}{'':>16}   "
            f"nearer a training glyph than {100 - c['percentile']:g} % of real held-out glyphs "
            f"(RMS < {c['threshold']:.3f}, of {c['num_training']:,} training glyphs)"
        )
        if "train_prompts" in c:
            lines.append(f"{'copy rate, train prompts':<28}{fmt(c['train_prompts']['copy_rate']):>14}")
        lines.append(
            f"{'median nearest-train RMS':<28}{fmt(c['held_out_prompts']['median_distance']):>14}"
            f"{fmt(c['held_out_real']['median_distance']):>16}   (real: held-out glyphs"
            + (f"; train prompts {c['train_prompts']['median_distance']:.3f}" if "train_prompts" in c else "")
            + ")"
        )
    if "typeface" in result:
        t = result["typeface"]
        lines.append(
            f"{'read as ' + t['typeface']:<28}{fmt(t['share']):>14}{fmt(t['real_share']):>16}   "
            "(typeface judge; samples: " + ", ".join(f"{k} {v:.2f}" for k, v in t["shares"].items()) + ")"
        )
    if "probes" in result:
        lines.append("")
        lines.append(
            f"probe adherence ({result['probe_samples']} samples per prompt): mean {result['probe_adherence']:.3f} "
            f"(prompt-blind best: {result['probe_base_rate']:.2f}, always drawing 金)"
        )
        for word, p in result["probes"].items():
            recall = p.get("judge_recall_held_out")
            context = f"judge recall on held-out {p['num_held_out']:>2}: " + (
                "  -" if recall is None else f"{recall:.2f}"
            )
            bare = {True: f", reads {p['character']} ✓", False: f", misreads {p['character']} ✗"}.get(
                p.get("judge_reads_character"), ""
            )
            lines.append(
                f"  {word:<7}-> {radical_symbol(p['radical'])} {p['radical']:>3}: {p['adherence']:.2f}  "
                f"read as {''.join(radical_symbol(r) for r in p['predicted'])}  ({context}{bare})"
            )
    lines.append(
        f"\n{result['seconds']['total']:.0f}s ({result['seconds']['sampling']:.0f}s sampling held-out prompts)"
    )
    return "\n".join(lines)


def write_json(result: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write `result` as JSON via a temporary file + rename (never a truncated file)."""
    return write_text(path, json.dumps(result, indent=2, ensure_ascii=False) + "\n")


# --------------------------------------------------------------------------------------------------
# Command line: `glyffuser evaluate`
# --------------------------------------------------------------------------------------------------


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Flags of ``glyffuser evaluate``."""
    from ..schedulers import RECOMMENDED_SAMPLER, SCHEDULERS

    parser.add_argument("--model", required=True, help="saved glyph pipeline folder or Hub repo id")
    parser.add_argument("--judge", required=True, help="judge folder from `glyffuser train-judge`")
    parser.add_argument("--dataset", required=True, help="glyph dataset with a held-out 'test' split")
    parser.add_argument("--num-samples", type=int, default=DEFAULT_NUM_SAMPLES, help="held-out prompts (default: 256)")
    parser.add_argument("--scheduler", default=RECOMMENDED_SAMPLER, choices=list(SCHEDULERS), help="sampler")
    parser.add_argument(
        "--steps", type=int, default=RECOMMENDED_STEPS, help=f"inference steps (default: {RECOMMENDED_STEPS})"
    )
    parser.add_argument(
        "--guidance", type=float, default=RECOMMENDED_GUIDANCE,
        help=f"classifier-free guidance scale (default: {RECOMMENDED_GUIDANCE:g}; <= 1: off)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--probe-samples", type=int, default=8, help="samples per probe prompt (0: skip probes)")
    parser.add_argument("--kid-subsets", type=int, default=100)
    parser.add_argument(
        "--train-prompt-samples", type=int, default=None,
        help="training-set definitions sampled for train-prompt adherence (default: --num-samples; 0: skip)",
    )
    parser.add_argument(
        "--sensitivity-prompts", type=int, default=16, help="prompts of the sensitivity grid (0: skip)"
    )
    parser.add_argument("--sensitivity-seeds", type=int, default=4, help="shared seeds of the sensitivity grid")
    parser.add_argument(
        "--no-copy-rate", dest="copy_rate", action="store_false",
        help="skip the copy rate (it compares samples with the dataset's 'train' split)",
    )
    parser.add_argument(
        "--typeface", help="report the share of samples read as this typeface (e.g. ukai), with --typeface-judge"
    )
    parser.add_argument("--typeface-judge", help="typeface judge folder from `glyffuser train-typeface-judge`")
    add_lora_args(parser)
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument(
        "--threads", type=int, help="torch CPU threads (default: torch's choice; 1 is fastest on a busy shared CPU)"
    )


def run(args: argparse.Namespace) -> int:
    """Entry point of ``glyffuser evaluate``."""
    prog = "glyffuser evaluate"
    try:
        if args.threads:
            torch.set_num_threads(args.threads)
        if args.typeface and not args.typeface_judge:
            raise GlyphMetricsError("--typeface needs --typeface-judge DIR (`glyffuser train-typeface-judge`).")
        judge = load_judge(args.judge)  # fail fast, before loading the model
        # on the CPU, like the judge
        pipe = load_glyph_pipeline(
            args.model, device="cpu", lora=args.lora, lora_scale=args.lora_scale, lora_start=args.lora_start
        )
        pipe.set_progress_bar_config(disable=True)
        result = evaluate_pipeline(
            pipe,
            judge,
            args.dataset,
            num_samples=args.num_samples,
            num_inference_steps=args.steps,
            guidance_scale=args.guidance,
            seed=args.seed,
            batch_size=args.batch_size,
            scheduler=args.scheduler,
            probe_samples=args.probe_samples,
            kid_subsets=args.kid_subsets,
            log=lambda msg: print(msg, file=sys.stderr),
            train_prompt_samples=args.train_prompt_samples,
            sensitivity_prompts=args.sensitivity_prompts,
            sensitivity_seeds=args.sensitivity_seeds,
            copy_rate=args.copy_rate,
            typeface=args.typeface,
            typeface_judge=args.typeface_judge,
        )
        saved = load_judge_metrics(args.judge)
        result["judge"].update(path=str(args.judge), held_out_accuracy=saved.get("held_out_accuracy"))
        result["model"] = str(args.model)
        if args.lora:
            result["lora"] = {"path": str(args.lora), "scale": args.lora_scale, "start": args.lora_start}
        result["dataset"] = str(args.dataset)
    except (GlyphMetricsError, GlyphJudgeError, NotAPipelineError, FileNotFoundError, ValueError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    print(format_report(result))
    if args.out:
        print(f"wrote {write_json(result, args.out)}")
    return 0


__all__ = [
    "PROBES",
    "GlyphMetricsError",
    "copy_statistics",
    "evaluate_pipeline",
    "format_report",
    "frechet_distance",
    "frechet_glyph_distance",
    "generate_glyphs",
    "glyph_scores",
    "judge_readings",
    "kernel_distance",
    "load_glyph_pipeline",
    "nearest_glyphs",
    "prepare_evaluation",
    "radical_adherence",
    "sqrtm_psd",
    "write_json",
]
