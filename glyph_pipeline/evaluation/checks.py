"""The checks of ``glyffuser evaluate``: each samples the pipeline for its own prompts and scores the samples.

Every check takes the shared :class:`EvaluationRun` (the pipeline, the judge, the held-out glyphs and the
prompts chosen from them) and returns the keys it adds to the result, so a new metric is a new function
here and one line in `glyph_pipeline.evaluation.evaluate.evaluate_pipeline`. Each check draws from seeds of
its own (`seed + *_SEED_OFFSET + i`): one check's numbers do not depend on which other checks ran.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..data.images import GlyphArrays, column, decode_split
from ..schedulers import RECOMMENDED_GUIDANCE, RECOMMENDED_STEPS
from .judge import GlyphJudge
from .metrics import (
    PROBE_CHARACTERS,
    PROBES,
    copy_statistics,
    flat_glyphs,
    frechet_glyph_distance,
    glyph_scores,
    ink_statistics,
    judge_readings,
    kernel_distance,
    majority_rate,
    prompt_sensitivity,
    radical_adherence,
    radical_symbol,
)
from .typeface import typeface_statistics

if TYPE_CHECKING:
    from datasets import DatasetDict

    from ..pipeline_glyph_diffusion import GlyphDiffusionPipeline

PROBE_SEED_OFFSET = 1_000_000  # probe images use seeds disjoint from the held-out prompts' seeds
SENSITIVITY_SEED_OFFSET = 2_000_000  # seeds of the prompt-sensitivity grid
TRAIN_PROMPT_SEED_OFFSET = 3_000_000  # seeds of the train-prompt samples
HELD_OUT_PROMPTS = "held_out_prompts"
TRAIN_PROMPTS = "train_prompts"


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


@dataclass
class EvaluationRun:
    """What the checks share: the pipeline and how to sample it, the judge, the decoded held-out glyphs and
    the rows of them (`chosen`) whose definitions are the prompts. `samples` keeps the glyphs sampled for the
    held-out and the training prompts, which the copy rate compares with the training set."""

    pipe: GlyphDiffusionPipeline
    judge: GlyphJudge
    splits: DatasetDict
    held: GlyphArrays
    chosen: np.ndarray
    num_inference_steps: int = RECOMMENDED_STEPS
    guidance_scale: float = RECOMMENDED_GUIDANCE
    seed: int = 0
    batch_size: int = 32
    kid_subsets: int = 100
    kid_subset_size: int | None = None
    log: Callable[[str], None] | None = None
    samples: dict[str, torch.Tensor] = field(default_factory=dict)
    sampling_seconds: float = 0.0  # sampling the held-out prompts, the cost of the evaluation's main set

    @property
    def size(self) -> int:
        return self.judge.config.sample_size

    @cached_property
    def prompts(self) -> list[str]:
        return [self.held.texts[i] for i in self.chosen]

    @cached_property
    def real_images(self) -> torch.Tensor:
        """The real glyphs of the prompted characters: the set the samples are compared with (equal `n`)."""
        return self.held.float_images(torch.from_numpy(self.chosen))

    def say(self, message: str) -> None:
        if self.log:
            self.log(message)

    def sample(self, prompts: Sequence[str], seeds: Sequence[int], progress: bool = False) -> torch.Tensor:
        return generate_glyphs(
            self.pipe, prompts, self.num_inference_steps, self.guidance_scale, batch_size=self.batch_size,
            seeds=seeds, log=self.log if progress else None,
        )


def check_held_out(run: EvaluationRun) -> dict[str, Any]:
    """FGD, KID and radical adherence of samples for the held-out definitions, and their ink next to the real
    glyphs' (a model whose first steps fix a wrong brightness draws grey or dark paper)."""
    sampler = type(run.pipe.scheduler).__name__
    run.say(
        f"sampling {len(run.prompts)} held-out prompts with {sampler}, {run.num_inference_steps} steps, "
        f"guidance {run.guidance_scale}"
    )
    t_gen = time.perf_counter()
    generated = run.sample(run.prompts, [run.seed + i for i in range(len(run.prompts))], progress=True)
    run.sampling_seconds = time.perf_counter() - t_gen
    run.samples[HELD_OUT_PROMPTS] = generated
    radicals = run.held.radicals[run.chosen]  # what each prompt asks for, and what each real glyph has
    scores = glyph_scores(
        run.judge, generated, run.real_images, radicals, radicals, run.kid_subsets, run.kid_subset_size, run.seed
    )
    return {
        "image_size": list(generated.shape[-2:]),
        "resized_to_judge": tuple(generated.shape[-2:]) != (run.size, run.size),
        **scores,
        "base_character": radical_symbol(scores["base_radical"]),
        "ink": {"generated": ink_statistics(generated), "real": ink_statistics(run.real_images)},
    }


def check_train_prompts(run: EvaluationRun, split: str, num_samples: int) -> dict[str, Any]:
    """Radical adherence for definitions of `num_samples` training characters: a model that learned the text
    at all gets those right before held-out ones."""
    train_ds = run.splits[split]
    pick = np.sort(np.random.default_rng(2).permutation(len(train_ds))[: min(num_samples, len(train_ds))])
    rows = decode_split(train_ds.select(pick.tolist()), run.size)
    run.say(f"sampling {len(pick)} training-set prompts (train-prompt adherence)")
    images = run.sample(rows.texts, [run.seed + TRAIN_PROMPT_SEED_OFFSET + i for i in range(len(pick))])
    run.samples[TRAIN_PROMPTS] = images
    _, predicted = judge_readings(run.judge, images)
    radical, rate = majority_rate(rows.radicals)
    return {
        "train_prompts": {
            "num": len(rows.radicals),
            "adherence": radical_adherence(predicted, rows.radicals),
            "base_rate": rate,
            "base_radical": radical,
        }
    }


def check_typeface(run: EvaluationRun, typeface_judge: GlyphJudge, typeface: str) -> dict[str, Any]:
    """The share of held-out samples the typeface judge reads as `typeface`: did a typeface LoRA take?"""
    return {"typeface": typeface_statistics(typeface_judge, typeface, run.samples[HELD_OUT_PROMPTS], run.real_images)}


def check_sensitivity(run: EvaluationRun, num_prompts: int, num_seeds: int) -> dict[str, Any]:
    """Prompt sensitivity on a grid of the first `num_prompts` held-out definitions x `num_seeds` shared seeds:
    ≈ 0 for a model that draws well but ignores the text."""
    run.say(f"sampling {num_prompts} prompts x {num_seeds} shared seeds (prompt sensitivity)")
    images = run.sample(
        [p for p in run.prompts[:num_prompts] for _ in range(num_seeds)],
        [run.seed + SENSITIVITY_SEED_OFFSET + j for _ in range(num_prompts) for j in range(num_seeds)],
    )
    return {"sensitivity": prompt_sensitivity(images, num_prompts, num_seeds)}


def check_copy_rate(run: EvaluationRun, split: str) -> dict[str, Any]:
    """The share of samples nearer a glyph of the training `split` than 99 % of real held-out glyphs are: the
    article's glyphs are meant to be new."""
    training = decode_split(run.splits[split], run.size, with_text=False).images
    return {
        "copies": copy_statistics(
            {k: flat_glyphs(v, run.size) for k, v in run.samples.items()},
            flat_glyphs(training, run.size), flat_glyphs(run.held.images, run.size),
        )
    }


def check_real_floor(run: EvaluationRun, split: str) -> dict[str, Any]:
    """FGD/KID of as many real glyphs of `split` against the same real set: how small FGD can get at this `n`."""
    ref_ds = run.splits[split]
    pick = np.sort(np.random.default_rng(1).permutation(len(ref_ds))[: len(run.chosen)])
    ref = decode_split(ref_ds.select(pick.tolist()), run.size, with_text=False)
    ref_feats, _ = judge_readings(run.judge, ref.float_images())
    real_feats, _ = judge_readings(run.judge, run.real_images)
    kid, kid_std = kernel_distance(ref_feats, real_feats, run.kid_subsets, run.kid_subset_size, run.seed)
    return {
        "real_floor": {
            "split": split,
            "num": len(ref),
            "fgd": frechet_glyph_distance(ref_feats, real_feats),
            "kid": kid,
            "kid_std": kid_std,
        }
    }


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


def check_probes(run: EvaluationRun, samples_per_probe: int) -> dict[str, Any]:
    """Radical adherence of single-word prompts (`PROBES`: "gold" -> 金 ...), with how well the judge reads
    each radical on real glyphs for context."""
    run.say(f"sampling {samples_per_probe} glyphs for each of {len(PROBES)} probe prompts")
    prompts = [w for w in PROBES for _ in range(samples_per_probe)]
    images = run.sample(prompts, [run.seed + PROBE_SEED_OFFSET + i for i in range(len(prompts))])
    _, probe_pred = judge_readings(run.judge, images)
    _, held_pred = judge_readings(run.judge, run.held.float_images())
    real_probe = _find_characters(run.splits, set(PROBE_CHARACTERS.values()), run.size)
    probes = {}
    for k, (word, radical) in enumerate(PROBES.items()):
        pred = probe_pred[k * samples_per_probe : (k + 1) * samples_per_probe]
        char = PROBE_CHARACTERS[radical]
        mask = run.held.radicals == radical
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
            _, real_pred = judge_readings(run.judge, real_probe[char][None].float() / 255.0)
            entry["judge_reads_character"] = bool(real_pred[0] == radical)
        probes[word] = entry
    return {
        "probes": probes,
        "probe_samples": samples_per_probe,
        "probe_adherence": float(np.mean([p["adherence"] for p in probes.values()])),
        # A prompt-blind model drawing only 金 matches "gold" and "metal": 2 of the 10 probes.
        "probe_base_rate": majority_rate(list(PROBES.values()))[1],
    }


__all__ = [
    "EvaluationRun",
    "check_copy_rate",
    "check_held_out",
    "check_probes",
    "check_real_floor",
    "check_sensitivity",
    "check_train_prompts",
    "check_typeface",
    "generate_glyphs",
]
