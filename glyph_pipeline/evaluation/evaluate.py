"""``glyffuser evaluate``: score a glyph pipeline against held-out real glyphs with the radical judge.

:func:`evaluate_pipeline` checks its inputs (:func:`prepare_evaluation`), chooses the held-out prompts and
runs the checks of `glyph_pipeline.evaluation.checks` one after the other; :func:`format_report` renders the
result as a table and :func:`write_json` saves it (the model card reads that file).

Command line: ``glyffuser evaluate --model DIR --judge DIR --dataset DIR [--num-samples 256 ...]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..atomic import write_text
from ..data.dataset import as_dataset_dict
from ..data.images import NUM_RADICALS, column, decode_split, require_columns
from ..hub.pretrained import NotAPipelineError, add_lora_args, load_glyph_pipeline
from ..schedulers import RECOMMENDED_GUIDANCE, RECOMMENDED_STEPS
from .checks import (
    EvaluationRun,
    check_copy_rate,
    check_held_out,
    check_probes,
    check_real_floor,
    check_sensitivity,
    check_train_prompts,
    check_typeface,
)
from .judge import GlyphJudge, GlyphJudgeError, load_judge, load_judge_metrics
from .metrics import GlyphMetricsError, radical_symbol

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

    from ..pipeline_glyph_diffusion import GlyphDiffusionPipeline

DEFAULT_NUM_SAMPLES = 256


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


def _load_typeface_judge(typeface: str, typeface_judge: GlyphJudge | str | os.PathLike | None) -> GlyphJudge:
    from .typeface import load_typeface_judge

    if typeface_judge is None:
        raise GlyphMetricsError(
            "--typeface needs --typeface-judge DIR (train one with `glyffuser train-typeface-judge`)."
        )
    return typeface_judge if isinstance(typeface_judge, GlyphJudge) else load_typeface_judge(typeface_judge, typeface)


def _judge_info(judge: GlyphJudge, path: str | None) -> dict[str, Any]:
    info = {"path": path, "size": judge.config.sample_size, "parameters": judge.num_parameters()}
    if path:
        saved = load_judge_metrics(path)
        if "held_out_accuracy" in saved:
            info["held_out_accuracy"] = saved["held_out_accuracy"]
    return info


@contextlib.contextmanager
def _sampling_with(pipe: GlyphDiffusionPipeline, scheduler: str | None) -> Iterator[None]:
    """`pipe` with the `scheduler` sampler (a `SCHEDULERS` name; None: its own) for the evaluation only."""
    from ..schedulers import sampling_scheduler

    original = pipe.scheduler
    if scheduler is not None:
        pipe.scheduler = sampling_scheduler(scheduler, dict(pipe.scheduler.config))
    try:
        yield
    finally:
        pipe.scheduler = original


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
    `scheduler` (a `glyph_pipeline.schedulers.SCHEDULERS` name) swaps the sampler for this call only.
    Generated images are resized to the judge's resolution if they differ (area averaging down, bilinear up).
    Returns a JSON-ready dict; `format_report(result)` renders it as a table.

    The checks (`glyph_pipeline.evaluation.checks`), each skipped by its own argument:

    * held-out prompts: FGD, KID, radical adherence, ink next to the real glyphs' (always);
    * *train-prompt adherence* on `train_prompt_samples` training definitions (default `num_samples`; 0 skips);
    * *typeface*: with a `typeface_judge` (`glyph_pipeline.evaluation.typeface`), the share of samples read as
      `typeface`;
    * *prompt sensitivity* on `sensitivity_prompts` held-out definitions x `sensitivity_seeds` shared seeds;
    * *copy rate* (`copy_rate`, needs `reference_split`): samples nearer a training glyph than 99 % of real
      held-out glyphs are to theirs;
    * *real floor*: FGD/KID of `num_samples` real `reference_split` glyphs against the same real set;
    * *probes*: `probe_samples` glyphs for each single-word prompt of `PROBES` ("gold" -> 金 ...).
    """
    t0 = time.perf_counter()
    judge_path = None if isinstance(judge, GlyphJudge) else str(judge)
    copy_split = reference_split if copy_rate else None
    if copy_rate and reference_split is None:
        raise GlyphMetricsError("The copy rate needs reference_split (the training split); or pass copy_rate=False.")
    if typeface is not None:  # fail fast, before sampling
        typeface_judge = _load_typeface_judge(typeface, typeface_judge)
    judge, splits = prepare_evaluation(judge, dataset, num_samples, held_out_split, copy_split)
    held = decode_split(splits[held_out_split], judge.config.sample_size)
    # Fixed prompt subset (seed 0), independent of the sampling seed: models are compared on the same prompts.
    chosen = np.sort(np.random.default_rng(0).permutation(len(held))[:num_samples])
    run = EvaluationRun(
        pipe, judge, splits, held, chosen, num_inference_steps, guidance_scale, seed, batch_size, kid_subsets,
        kid_subset_size, log,
    )
    num_train = num_samples if train_prompt_samples is None else train_prompt_samples
    num_sensitivity = min(sensitivity_prompts, num_samples)
    has_reference = bool(reference_split) and reference_split in splits

    with _sampling_with(pipe, scheduler):
        sampler = type(pipe.scheduler).__name__
        result: dict[str, Any] = {
            "judge": _judge_info(judge, judge_path),
            "sampler": {
                "scheduler": scheduler or sampler,
                "class": sampler,
                "num_inference_steps": num_inference_steps,
                "guidance_scale": guidance_scale,
                "seed": seed,
                "batch_size": batch_size,
            },
        }
        result.update(check_held_out(run))
        if num_train and has_reference:
            result.update(check_train_prompts(run, reference_split, num_train))
        if typeface is not None:
            result.update(check_typeface(run, typeface_judge, typeface))
        if num_sensitivity >= 2 and sensitivity_seeds >= 2:
            result.update(check_sensitivity(run, num_sensitivity, sensitivity_seeds))
        if copy_split is not None:
            result.update(check_copy_rate(run, copy_split))
        if has_reference:
            result.update(check_real_floor(run, reference_split))
        if probe_samples > 0:
            result.update(check_probes(run, probe_samples))
    result["seconds"] = {"sampling": run.sampling_seconds, "total": time.perf_counter() - t0}
    return result


# --------------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------------


def _fmt(v: float | None, scale: float = 1.0, digits: int = 3) -> str:
    return "-" if v is None else f"{v * scale:.{digits}f}"


def _report_header(result: dict[str, Any]) -> list[str]:
    s, j = result["sampler"], result["judge"]
    acc = j.get("held_out_accuracy")
    return [
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


def _report_held_out(result: dict[str, Any]) -> list[str]:
    floor = result.get("real_floor", {})
    kid = f"{result['kid']:.3g}±{result['kid_std']:.2g}"
    floor_kid = f"{floor['kid']:.3g}±{floor['kid_std']:.2g}" if floor else "-"
    lines = [
        f"{'FGD (lower is better)':<28}{_fmt(result['fgd']):>14}{_fmt(floor.get('fgd')):>16}",
        f"{'KID (lower is better)':<28}{kid:>14}{floor_kid:>16}",
        f"{'radical adherence':<28}{_fmt(result['adherence']):>14}{_fmt(result.get('judge_accuracy_real')):>16}"
        "   (real: the judge on these characters' real glyphs = ceiling)",
        f"{'  base rate (prompt-blind)':<28}{_fmt(result['base_rate']):>14}"
        f"{'':>16}   most common radical {result['base_radical']} {result['base_character']}",
        f"{'distinct radicals read':<28}{result['distinct_radicals_generated']:>14}"
        f"{result['distinct_radicals_real']:>16}",
    ]
    if "ink" in result:
        gen, real = result["ink"]["generated"], result["ink"]["real"]
        lines += [
            f"{'mean pixel (white = 1)':<28}{_fmt(gen['mean_pixel']):>14}{_fmt(real['mean_pixel']):>16}"
            "   (real: held-out glyphs)",
            f"{'ink fraction':<28}{_fmt(gen['ink_fraction']):>14}{_fmt(real['ink_fraction']):>16}",
        ]
    return lines


def _report_train_prompts(t: dict[str, Any]) -> list[str]:
    return [
        f"{'train-prompt adherence':<28}{_fmt(t['adherence']):>14}{'':>16}   "
        f"n = {t['num']} training definitions; prompt-blind base rate {t['base_rate']:.3f}"
    ]


def _report_sensitivity(v: dict[str, Any]) -> list[str]:
    return [
        f"{'prompt sensitivity':<28}{_fmt(v['prompt_sensitivity']):>14}{'':>16}   "
        f"|Δpixel| prompt-only {v['delta_prompt']:.3f} / seed-only {v['delta_seed']:.3f} "
        f"({v['num_prompts']} prompts x {v['num_seeds']} seeds; ≈ 0: the text is ignored)"
    ]


def _report_copies(c: dict[str, Any]) -> list[str]:
    lines = [
        f"{'copy rate, held-out prompts':<28}{_fmt(c['held_out_prompts']['copy_rate']):>14}{'':>16}   "
        f"nearer a training glyph than {100 - c['percentile']:g} % of real held-out glyphs "
        f"(RMS < {c['threshold']:.3f}, of {c['num_training']:,} training glyphs)"
    ]
    if "train_prompts" in c:
        lines.append(f"{'copy rate, train prompts':<28}{_fmt(c['train_prompts']['copy_rate']):>14}")
    lines.append(
        f"{'median nearest-train RMS':<28}{_fmt(c['held_out_prompts']['median_distance']):>14}"
        f"{_fmt(c['held_out_real']['median_distance']):>16}   (real: held-out glyphs"
        + (f"; train prompts {c['train_prompts']['median_distance']:.3f}" if "train_prompts" in c else "")
        + ")"
    )
    return lines


def _report_typeface(t: dict[str, Any]) -> list[str]:
    return [
        f"{'read as ' + t['typeface']:<28}{_fmt(t['share']):>14}{_fmt(t['real_share']):>16}   "
        "(typeface judge; samples: " + ", ".join(f"{k} {v:.2f}" for k, v in t["shares"].items()) + ")"
    ]


def _report_probes(result: dict[str, Any]) -> list[str]:
    lines = [
        "",
        f"probe adherence ({result['probe_samples']} samples per prompt): mean {result['probe_adherence']:.3f} "
        f"(prompt-blind best: {result['probe_base_rate']:.2f}, always drawing 金)",
    ]
    for word, p in result["probes"].items():
        recall = p.get("judge_recall_held_out")
        context = f"judge recall on held-out {p['num_held_out']:>2}: " + ("  -" if recall is None else f"{recall:.2f}")
        bare = {True: f", reads {p['character']} ✓", False: f", misreads {p['character']} ✗"}.get(
            p.get("judge_reads_character"), ""
        )
        lines.append(
            f"  {word:<7}-> {radical_symbol(p['radical'])} {p['radical']:>3}: {p['adherence']:.2f}  "
            f"read as {''.join(radical_symbol(r) for r in p['predicted'])}  ({context}{bare})"
        )
    return lines


def format_report(result: dict[str, Any]) -> str:
    """A plain-text table of an `evaluate_pipeline` result: a line per metric, a section per optional check."""
    lines = _report_header(result) + _report_held_out(result)
    for key, section in (
        ("train_prompts", _report_train_prompts),
        ("sensitivity", _report_sensitivity),
        ("copies", _report_copies),
        ("typeface", _report_typeface),
    ):
        if key in result:
            lines += section(result[key])
    if "probes" in result:
        lines += _report_probes(result)
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


__all__ = ["DEFAULT_NUM_SAMPLES", "evaluate_pipeline", "format_report", "prepare_evaluation", "write_json"]
