"""Glyph statistics: Fréchet glyph distance (FGD), KID, radical adherence, prompt sensitivity and copy rate.

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

These functions score images of any origin (:func:`glyph_scores`); `glyph_pipeline.evaluation.checks` samples a
pipeline for each of them and `glyph_pipeline.evaluation.evaluate` runs the checks (``glyffuser evaluate``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .judge import GlyphJudge, resize_glyphs, to_judge_tensor

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


__all__ = [
    "COPY_PERCENTILE",
    "PROBES",
    "PROBE_CHARACTERS",
    "GlyphMetricsError",
    "copy_statistics",
    "feature_statistics",
    "flat_glyphs",
    "frechet_distance",
    "frechet_glyph_distance",
    "glyph_scores",
    "ink_statistics",
    "judge_readings",
    "kernel_distance",
    "majority_rate",
    "nearest_glyphs",
    "prompt_sensitivity",
    "radical_adherence",
    "radical_symbol",
    "sqrtm_psd",
    "trace_sqrt_product",
]
