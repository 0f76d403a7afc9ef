# Copyright 2026 The glyffuser developers. Licensed under the Apache License, Version 2.0.
"""The model card of a glyph pipeline: `README.md.jinja` beside this module, filled from the saved files.

`make_model_card` reads the pipeline folder (configs, safetensors headers), the training record
(`training_config.json`) and evaluation results, and renders the template with huggingface_hub's
`ModelCard.from_template`. No network. Pushing lives in `glyph_pipeline.hub.push`. This package ships inside the
wheel as `glyph_pipeline.model_card` (see pyproject.toml).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from huggingface_hub import ModelCard

#: Card template, beside this module.
CARD_TEMPLATE = "README.md.jinja"
#: First line of the card body; a README.md without it was written by a person and is kept by default.
CARD_MARKER = "<!-- glyffuser-model-card:"
LICENSE = "apache-2.0"
#: The records a card is written from: the training run (written by the training script) and the evaluation.
TRAINING_CONFIG_FILE = "training_config.json"
METRICS_FILE = "metrics.json"
#: Tags of every glyph model card.
CARD_TAGS = ("diffusers", "text-to-image", "glyffuser", "chinese", "cjk", "glyphs", "pixel-space", "custom_code",
             "diffusers:GlyphDiffusionPipeline")  # fmt: skip
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`, or None if it is missing, unreadable or not an object."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def saved_class_name(folder: str | os.PathLike) -> str | None:
    """The pipeline class a saved folder's model_index.json names (either form: "Name" or [module, "Name"])."""
    name = (read_json(Path(folder) / "model_index.json") or {}).get("_class_name")
    return name[-1] if isinstance(name, list) and name else name if isinstance(name, str) else None


def _hub_id(value: Any) -> str | None:
    """`value` if it names a Hub repo (not a local path), after mapping the packaged encoder alias."""
    if not isinstance(value, str):
        return None
    from ..text_encoders import encoder_hub_id

    value = encoder_hub_id(value)  # the packaged copy -> the Hub model it copies
    if _HUB_ID.match(value) and not value.startswith((".", "/", "~")) and not os.path.exists(value):
        return value
    return None


def _dataset_id(tc: Mapping[str, Any]) -> str | None:
    """The training dataset's Hub id; None for a local folder (recorded at training time, where the path existed)."""
    data = tc.get("dataset") or {}
    return None if data.get("local") else _hub_id(data.get("source"))


def _dataset_link(dataset_id: str) -> str:
    from huggingface_hub import constants

    return f"[`{dataset_id}`]({constants.ENDPOINT.rstrip('/')}/datasets/{dataset_id})"


def _count(n: int | None) -> str | None:
    if not n:
        return None
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(n)


def _safetensors_parameters(folder: Path) -> int | None:
    """Parameter count from the safetensors headers alone (shapes only: no torch, no weights read)."""
    from safetensors import SafetensorError, safe_open

    groups: dict[str | None, list[Path]] = {}
    for path in sorted(folder.glob("*.safetensors")):
        parts = path.name.split(".")
        variant = parts[-2] if len(parts) > 2 else None
        groups.setdefault(variant, []).append(path)
    if not groups:
        return None
    total = 0
    for path in groups.get(None) or next(iter(groups.values())):
        try:
            with safe_open(str(path), framework="np") as f:
                total += sum(math.prod(f.get_slice(name).get_shape()) for name in f.keys())
        except (OSError, SafetensorError):
            return None
    return total


def _duration(seconds: Any) -> str | None:
    if not isinstance(seconds, (int, float)):
        return None
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def _num(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _cell(value: Any) -> str:
    return " ".join(str(value).split()).replace("|", "\\|")


def _noise_text(schedule: Mapping[str, Any]) -> str:
    """'1000 timesteps, linear betas 0.0001 → 0.02' / '1000 timesteps, cosine betas' (cosine ignores
    beta_start/end)."""
    betas = schedule.get("beta_schedule", "?")
    if betas == "squaredcos_cap_v2":
        betas = "cosine (squaredcos_cap_v2) betas"
    else:
        betas = f"{betas} betas {schedule.get('beta_start', '?')} → {schedule.get('beta_end', '?')}"
    return f"{schedule.get('num_train_timesteps', '?')} timesteps, {betas}"


def pipeline_facts(folder: str | os.PathLike, training_config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What the card says about the model, read from the saved files (configs and safetensors headers)."""
    root = Path(folder)
    tc = training_config or {}
    index = read_json(root / "model_index.json") or {}
    unet = read_json(root / "unet" / "config.json") or {}
    sched = read_json(root / "scheduler" / "scheduler_config.json") or {}
    enc = read_json(root / "text_encoder" / "config.json") or {}
    name = index.get("_class_name")
    pipeline_class = name[1] if isinstance(name, list) else name or "GlyphDiffusionPipeline"

    te_tc = tc.get("text_encoder") or {}
    te_id = (
        _hub_id(index.get("text_encoder_source"))
        or _hub_id(te_tc.get("name_or_path"))
        or _hub_id(enc.get("_name_or_path"))
    )
    # The saved files describe the published weights; the training record only adds the encoder's name.
    te_class = (
        (enc.get("architectures") or [None])[0]
        or (index.get("text_encoder") or [None, None])[1]
        or te_tc.get("class")
    )
    hidden = enc.get("d_model") or enc.get("hidden_size") or te_tc.get("hidden_size")
    details = ", ".join(x for x in (te_class, f"hidden size {hidden}" if hidden else None) if x)
    te_label = f"`{te_id}` ({details})" if te_id else (f"`{te_class}`" + (f" (hidden size {hidden})" if hidden else "")
                                                      if te_class else "custom")

    notes = []
    if sched.get("algorithm_type"):
        notes.append(f"{sched['algorithm_type']}, order {sched.get('solver_order', '?')}")
    if sched.get("thresholding"):
        notes.append(f"thresholding at {sched.get('sample_max_value', 1.0)}")
    if sched.get("timestep_spacing"):
        notes.append(f"{sched['timestep_spacing']} timesteps")
    noise = f"{_noise_text(sched)}, {sched.get('prediction_type', 'epsilon')} prediction"
    resolution = (tc.get("dataset") or {}).get("resolution") or unet.get("sample_size") or "?"
    blocks = unet.get("block_out_channels")
    return {
        "pipeline_class": pipeline_class,
        "remote_code_file": f"{name[0]}.py" if isinstance(name, list) else "pipeline_glyph_diffusion.py",
        "resolution": resolution,
        "channels": unet.get("in_channels", 1),
        "block_out_channels": "(" + ", ".join(map(str, blocks)) + ")" if blocks else None,
        "unet_parameters": _count(tc.get("unet_parameters") or _safetensors_parameters(root / "unet")),
        "text_encoder_id": te_id,
        "text_encoder_label": te_label,
        "text_encoder_parameters": _count(_safetensors_parameters(root / "text_encoder")),
        "max_sequence_length": index.get("max_sequence_length") or te_tc.get("max_sequence_length") or "?",
        "scheduler_class": sched.get("_class_name", "?"),
        "scheduler_notes": ", ".join(notes),
        "noise_schedule": noise,
    }


def training_compute(tc: Mapping[str, Any]) -> dict[str, float]:
    """Compute behind a training record, summed over its resumed and continued runs: CPU-thread-seconds (training
    time x torch threads on CPU runs) and GPU-seconds (training time x processes on accelerator runs).

    Records written before `gpu_seconds` existed counted every run as CPU time; if such a record was made on a
    GPU, all of its time is taken as GPU time.
    """
    train = float(tc.get("train_seconds") or 0.0)
    threads = float(tc.get("thread_seconds") or 0.0)
    if "gpu_seconds" in tc:
        return {"thread_seconds": threads, "gpu_seconds": float(tc["gpu_seconds"] or 0.0)}
    if (tc.get("hardware") or {}).get("gpu"):
        return {"thread_seconds": 0.0, "gpu_seconds": train * int(tc.get("world_size") or 1)}
    return {"thread_seconds": threads, "gpu_seconds": 0.0}


def _processes(n: Any) -> str:
    return f"{n} process" if n == 1 else f"{n} processes"


def _training_rows(tc: Mapping[str, Any], facts: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The training table, from training_config.json; missing entries are skipped, local paths never shown."""
    args = tc.get("args") or {}
    hw = tc.get("hardware") or {}
    data = tc.get("dataset") or {}
    noise = tc.get("noise_schedule") or {}
    rows: list[tuple[str, Any]] = []

    def add(name: str, value: Any) -> None:
        if value not in (None, "", [], {}):
            rows.append((name, value))

    pretrained = args.get("pretrained_model_name_or_path")
    add("Preset", f"`{tc['preset']}`" if tc.get("preset") else None)
    if pretrained:
        add("Initialised from", f"`{_hub_id(pretrained)}`" if _hub_id(pretrained) else "a local glyph pipeline")
    add("Resolution", f"{data['resolution']} px" if data.get("resolution") else None)
    if tc.get("steps") is not None:
        epochs, total = tc.get("epochs"), tc.get("total_steps", tc["steps"])
        notes = [f"{epochs:.2f} epochs"] if isinstance(epochs, (int, float)) else []
        if total != tc["steps"]:
            notes.append(f"{_num(total - tc['steps'])} of them before the initial weights were saved")
        add("Training steps", _num(total) + (f" ({'; '.join(notes)})" if notes else ""))
    if tc.get("global_batch_size"):
        parts = [f"{tc['global_batch_size']} global"]
        if args.get("train_batch_size"):
            parts.append(
                f"= {args['train_batch_size']} per process × {_processes(tc.get('world_size', 1))} × "
                f"{args.get('gradient_accumulation_steps', 1)} accumulation"
            )
        add("Batch size", " ".join(parts))
    if args.get("learning_rate") is not None:
        add("Learning rate", f"{args['learning_rate']:g}")
    if args.get("lr_scheduler"):
        add("LR schedule", f"{args['lr_scheduler']}, {args.get('lr_warmup_steps', 0)} warm-up steps")
    if "adam_beta1" in args:
        add(
            "Optimiser",
            f"AdamW (β = {args.get('adam_beta1')}, {args.get('adam_beta2')}; "
            f"weight decay {args.get('adam_weight_decay')}; ε {args.get('adam_epsilon')}), "
            f"gradient clipping {args.get('max_grad_norm') or 'off'}",
        )
    if noise:
        add("Noise schedule", f"DDPM, {_noise_text(noise)}")
        if args.get("max_timestep"):
            add("Timesteps trained", f"t < {args['max_timestep']} only (`--max_timestep`: the lower noise levels)")
        prediction = noise.get("prediction_type")
        if args.get("snr_gamma"):
            prediction = f"{prediction}, min-SNR weighting γ = {args['snr_gamma']}"
        add("Prediction type", prediction)
    if args.get("cond_dropout") is not None:
        add("Condition dropout", f"{args['cond_dropout']} (empty prompt; enables classifier-free guidance)")
    if "ema" in tc:
        add("EMA", f"yes, decay {args.get('ema_decay')}" if tc["ema"] else "no")
    add("Mixed precision", hw.get("mixed_precision"))
    te = tc.get("text_encoder") or {}
    if te:
        add("Text encoder", f"{facts['text_encoder_label']}, frozen, {te.get('max_sequence_length', '?')} tokens")
    add("UNet parameters", _count(tc.get("unet_parameters")))
    if data.get("rows"):
        source = _dataset_id(tc)
        text = f"{_num(data['rows'])} glyphs"
        if data.get("distinct_captions"):
            text += f", {_num(data['distinct_captions'])} distinct definitions"
        add("Data", text + (f" from {_dataset_link(source)}" if source else ""))
    if hw:
        device = hw.get("gpu") or hw.get("cpu") or hw.get("device")
        kind = hw.get("distributed_type")
        add(
            "Hardware",
            f"{_processes(tc.get('world_size', hw.get('num_processes', 1)))} on {device}"
            + (f" ({kind})" if kind and kind != "NO" else ""),
        )
    several_runs = tc.get("resumed_from") or tc.get("total_steps", tc.get("steps")) != tc.get("steps")
    if tc.get("train_seconds"):
        compute = _duration(tc["train_seconds"]) + " of training"
        spent = training_compute(tc)
        parts = []
        if spent["gpu_seconds"]:
            parts.append(f"GPU time {_duration(spent['gpu_seconds'])}")
        if spent["thread_seconds"]:
            parts.append(f"{spent['thread_seconds'] / 3600:.2f} CPU-thread-hours")
        compute += f" ({' + '.join(parts)})" if parts else ""
        if several_runs:
            compute += ", over resumed and continued runs"
        add("Training compute", compute)
    if tc.get("samples_seen"):
        add("Samples seen", tc["samples_seen"])
    add("Wall time" + (" (last run)" if several_runs else ""), _duration(tc.get("wall_time_seconds")))
    if tc.get("samples_per_second"):
        add("Throughput", f"{tc['samples_per_second']:.1f} samples/s")
    if isinstance(tc.get("final_loss"), (int, float)):
        first = tc.get("initial_loss")
        add(
            "Final loss",
            f"{tc['final_loss']:.4f} (mean of the last steps"
            + (f"; first steps {first:.4f})" if isinstance(first, (int, float)) else ")"),
        )
    add("Seed", args.get("seed"))
    versions = hw.get("versions") or {}
    add("Library versions", ", ".join(f"{k} {v}" for k, v in versions.items()))
    return [(name, _cell(_num(value) if not isinstance(value, str) else value)) for name, value in rows]


# `glyffuser evaluate` result keys -> (card name, how to read it). Other numeric top-level keys get a plain row.
_METRICS = {
    "fgd": ("Fréchet glyph distance (FGD)", "lower is better"),
    "kid": ("Kernel distance (KID)", "lower is better"),
    "adherence": ("Radical adherence", "higher is better"),
    "probe_adherence": ("Probe-prompt adherence", "higher is better"),
}
_METRIC_ALIASES = {"frechet_glyph_distance": "fgd", "radical_adherence": "adherence"}
# Shown inside other rows, or not numbers worth a row (and never strings: they can be local paths).
_METRIC_SKIP = {
    "kid_std", "real_floor", "base_rate", "base_radical", "base_character", "judge_accuracy_real",
    "probe_base_rate", "probe_samples", "probes", "seconds", "judge", "model", "dataset", "sampler",
    "image_size", "resized_to_judge", "num_generated", "num_real", "ink", "train_prompts", "sensitivity",
    "copies", "typeface", "lora",
}  # fmt: skip


def _text_and_ink_rows(m: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """Rows that expose a prompt-blind model or wrong paper: train-prompt adherence, sensitivity, ink."""
    rows = []
    train = m.get("train_prompts") if isinstance(m.get("train_prompts"), Mapping) else {}
    if isinstance(train.get("adherence"), (int, float)):
        note = f"higher is better; definitions of {train.get('num', '?')} training characters"
        if isinstance(train.get("base_rate"), (int, float)):
            note += f"; prompt-blind base rate {_num(train['base_rate'])}"
        rows.append(("Train-prompt adherence", _num(train["adherence"]), _cell(note)))
    sens = m.get("sensitivity") if isinstance(m.get("sensitivity"), Mapping) else {}
    if isinstance(sens.get("prompt_sensitivity"), (int, float)):
        rows.append((
            "Prompt sensitivity", _num(sens["prompt_sensitivity"]),
            "change when only the prompt changes / when only the seed changes; ≈ 0: the text is ignored",
        ))
    copies = m.get("copies") if isinstance(m.get("copies"), Mapping) else {}
    real = copies.get("held_out_real") or {}
    for key, name in (
        ("held_out_prompts", "Copy rate, held-out prompts"), ("train_prompts", "Copy rate, train prompts")
    ):
        entry = copies.get(key) or {}
        if isinstance(entry.get("copy_rate"), (int, float)):
            note = (
                f"lower is better; share of samples nearer a training glyph (RMS pixel distance "
                f"< {copies.get('threshold', float('nan')):.3f}) than {100 - copies.get('percentile', 1):g} % of "
                f"real held-out glyphs are; median nearest-training distance {_num(entry.get('median_distance'))}"
            )
            if isinstance(real.get("median_distance"), (int, float)):
                note += f" (real held-out glyphs {_num(real['median_distance'])})"
            rows.append((name, _num(entry["copy_rate"]), _cell(note)))
    face = m.get("typeface") if isinstance(m.get("typeface"), Mapping) else {}
    if isinstance(face.get("share"), (int, float)):
        shares = ", ".join(f"{k} {_num(v)}" for k, v in (face.get("shares") or {}).items())
        note = f"share of samples the typeface judge reads as {face.get('typeface')} (samples: {shares})"
        if isinstance(face.get("real_share"), (int, float)):
            note += f"; real held-out glyphs {_num(face['real_share'])}"
        rows.append((_cell(f"Read as {face.get('typeface')}"), _num(face["share"]), _cell(note)))
    ink = m.get("ink") if isinstance(m.get("ink"), Mapping) else {}
    gen, real = ink.get("generated") or {}, ink.get("real") or {}
    for key, name in (("mean_pixel", "Mean pixel (white = 1)"), ("ink_fraction", "Ink fraction")):
        if isinstance(gen.get(key), (int, float)):
            note = f"real glyphs {_num(real[key])}" if isinstance(real.get(key), (int, float)) else ""
            rows.append((name, _num(gen[key]), note))
    return rows


def _metric_rows(metrics: Mapping[str, Any] | None) -> tuple[list[tuple[str, str, str]], str | None]:
    """Rows of the evaluation table (a plain dict or a `glyffuser evaluate` result) and a note on how it was scored."""
    m = {_METRIC_ALIASES.get(str(k).lower(), str(k).lower()): v for k, v in (metrics or {}).items()}
    floor = m.get("real_floor") if isinstance(m.get("real_floor"), Mapping) else {}
    rows = []
    for key, (name, note) in _METRICS.items():
        value = m.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        text = _num(value)
        if key == "kid" and isinstance(m.get("kid_std"), (int, float)):
            text += f" ± {m['kid_std']:.2g}"
        extra = []
        if key in ("fgd", "kid") and isinstance(floor.get(key), (int, float)):
            extra.append(f"real-vs-real floor {_num(floor[key])}")
        if key == "adherence":
            if isinstance(m.get("base_rate"), (int, float)):
                extra.append(f"prompt-blind base rate {_num(m['base_rate'])}")
            if isinstance(m.get("judge_accuracy_real"), (int, float)):
                extra.append(f"judge on real glyphs {_num(m['judge_accuracy_real'])}")
        if key == "probe_adherence" and isinstance(m.get("probe_base_rate"), (int, float)):
            extra.append(f"prompt-blind base rate {_num(m['probe_base_rate'])}")
        rows.append((name, text, _cell("; ".join([note, *extra]))))
    rows.extend(_text_and_ink_rows(m))
    for key, value in m.items():
        if key in _METRICS or key in _METRIC_SKIP or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        rows.append((_cell(key.replace("_", " ")), _num(value), ""))
    sampler = m.get("sampler") if isinstance(m.get("sampler"), Mapping) else {}
    note = None
    if sampler:
        note = (
            f"Scored on {_num(m['num_generated']) + ' ' if isinstance(m.get('num_generated'), int) else ''}held-out "
            f"definitions with `{_cell(sampler.get('class', '?'))}`, {sampler.get('num_inference_steps', '?')} steps, "
            f"guidance scale {sampler.get('guidance_scale', '?')}, seed {sampler.get('seed', '?')} "
            "(`glyffuser evaluate`)."
        )
    return rows, note


def _sample_caption(tc: Mapping[str, Any], facts: Mapping[str, Any]) -> str:
    args = tc.get("args") or {}
    prompts = args.get("validation_prompts")
    if not prompts:
        return "Samples from the model."
    quoted = ", ".join(f"“{_cell(p)}”" for p in prompts)
    return (
        f"End-of-training samples, one row per prompt ({quoted}), "
        f"{args.get('num_validation_images', '?')} seeds each; "
        f"`{facts['scheduler_class']}`, {args.get('validation_inference_steps', '?')} steps, guidance scale "
        f"{args.get('validation_guidance_scale', '?')}."
    )


def _training_commands(tc: Mapping[str, Any]) -> str | None:
    """The launch command(s) that made the weights: one block, each continued run after its predecessor."""
    commands = [c for c in (tc.get("commands") or [tc.get("command")]) if isinstance(c, str)]
    return "\n# then, continuing from the weights saved above:\n".join(commands) or None


def make_model_card(
    folder: str | os.PathLike,
    repo_id: str,
    training_config: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    sample_grid: str | None = None,
    sample_caption: str | None = None,
    dataset_id: str | None = None,
) -> ModelCard:
    """Fill the card template (`README.md.jinja`, beside this module) for the pipeline saved in `folder` (no network).

    Args:
        folder: a saved pipeline (configs and safetensors headers are read for the facts).
        repo_id: where it goes; used in the snippets.
        training_config: the training run's `training_config.json` (adds the training table).
        metrics: e.g. `{"fgd": ..., "kid": ..., "adherence": ...}` (adds the evaluation table).
        sample_grid: file name of the sample grid in the repo (e.g. `samples.png`), shown in the card.
        sample_caption: caption of the grid (default: from the training run's validation settings).
        dataset_id: Hub dataset the model was trained on (default: the training dataset if it is a Hub id).
    """
    from huggingface_hub import ModelCard, ModelCardData

    from .. import __version__
    from ..schedulers import RECOMMENDED_GUIDANCE, RECOMMENDED_SAMPLER_DESCRIPTION, RECOMMENDED_STEPS

    tc = dict(training_config or {})
    facts = pipeline_facts(folder, tc)
    dataset_id = dataset_id or _dataset_id(tc)
    base_model = _hub_id((tc.get("args") or {}).get("pretrained_model_name_or_path"))
    data = ModelCardData(
        library_name="diffusers",
        pipeline_tag="text-to-image",
        license=LICENSE,
        language=["en"],
        tags=list(CARD_TAGS),
        datasets=[dataset_id] if dataset_id else None,
        base_model=base_model,  # only a glyph pipeline this was fine-tuned from, never the frozen text encoder
        text_encoder=facts["text_encoder_id"],  # custom key: the frozen encoder bundled in text_encoder/
    )
    small = isinstance(facts["resolution"], int) and facts["resolution"] <= 32
    metric_rows, metrics_note = _metric_rows(metrics)
    return ModelCard.from_template(
        data,
        template_path=str(Path(__file__).with_name(CARD_TEMPLATE)),
        title=repo_id.split("/")[-1],
        repo_id=repo_id,
        license=LICENSE,
        facts=facts,
        remote_code_file=facts["remote_code_file"],
        glyffuser_version=__version__,
        recommended={
            "steps": RECOMMENDED_STEPS, "guidance": RECOMMENDED_GUIDANCE, "sampler": RECOMMENDED_SAMPLER_DESCRIPTION
        },
        sample_grid=sample_grid,
        sample_caption=sample_caption or _sample_caption(tc, facts),
        training_rows=_training_rows(tc, facts) if tc else [],
        training_command=_training_commands(tc),
        training_notes=[_cell(n) for n in tc.get("notes") or [] if isinstance(n, str)],
        has_copy_rate=any(name.startswith("Copy rate") for name, _, _ in metric_rows),
        metric_rows=metric_rows,
        metrics_note=metrics_note,
        dataset_label=_dataset_link(dataset_id) if dataset_id else None,
        small_model_note=(
            f"This is a small {facts['resolution']} px model: expect soft, simplified strokes. "
            "The original glyffuser architecture is the `glyffuser-128` preset (a GPU job)."
            if small
            else None
        ),
    )
