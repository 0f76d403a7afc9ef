# Copyright 2026 The glyffuser developers. Licensed under the Apache License, Version 2.0.
"""`glyffuser app`: a Gradio page to play with a glyph model (Spaces: the repository's `app.py` runs it).

Type English definitions (one per line), pick a sampler, steps, guidance, seed and images per prompt; the
page shows

* the glyphs, each labelled with its definition, seed and the radical the judge reads in it;
* the denoising animation of the first glyph (x_t beside the predicted clean glyph x̂0) and the model's
  one-step x̂0 from pure noise — the article's figures (`glyph_pipeline.figures.animation`, `.diffusion`);
* for every glyph, the Kangxi radical the glyph judge (`artifacts/judge-32`) reads and the 3 nearest real
  glyphs of the training set (pixel distance at the dataset's resolution, with their definitions), so you
  can see whether the model invents or copies.

The page only lays out `app.core`, which does the work (checks, sampling, judge readings, nearest glyphs)
and is usable and testable without Gradio. Bad input is refused with a message on the page before any
compute. Needs the `[app]` extra: ``pip install 'glyph-pipeline[app]'``.
"""

from __future__ import annotations

import argparse
import base64
import gc
import html
import io
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from ..figures.layout import FigureError, shorten
from ..hub.pretrained import SHIPPED_KAI_LORA_START
from ..upscale import add_upscaler_args
from .core import DEFAULT_JUDGE, EXAMPLE_PROMPTS, AppInputError, GlyphApp, GlyphResults, Limits, radical_character

logger = logging.getLogger(__name__)

APP_HINT = "pip install 'glyph-pipeline[app]'"

CSS = """
#glyph-gallery img, .glyph-card img { image-rendering: pixelated; }
#glyph-gallery .caption-label { max-width: 96%; }
.glyph-cards { display: flex; flex-direction: column; gap: 6px; }
.glyph-card { display: flex; gap: 14px; align-items: center; padding: 6px 8px; border: 1px solid #ddd;
  border-radius: 6px; }
.glyph-card .gen { display: flex; flex-direction: column; align-items: center; min-width: 110px; }
.glyph-card .gen img { width: 72px; height: 72px; border: 1px solid #ccc; background: #fff; }
.glyph-card .caption { font-size: 0.85em; text-align: center; }
.glyph-card .judge { min-width: 150px; }
.glyph-card .judge .radical { font-size: 1.5em; }
.glyph-card .match { color: #117a2e; } .glyph-card .miss { color: #a33; }
.glyph-card ol.nearest { display: flex; gap: 10px; list-style: none; margin: 0; padding: 0; }
.glyph-card ol.nearest li { display: flex; gap: 6px; align-items: center; max-width: 230px; }
.glyph-card ol.nearest img { width: 48px; height: 48px; border: 1px solid #ccc; background: #fff; }
.glyph-card ol.nearest .char { font-size: 1.6em; }
.glyph-card ol.nearest .def { font-size: 0.8em; }
.glyph-card ol.nearest .dist { font-size: 0.75em; color: #666; }
"""


# ----------------------------------------------------------------------------------------------------
# Presenting results
# ----------------------------------------------------------------------------------------------------


def _data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.convert("L").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def readings_html(results: GlyphResults, app: GlyphApp) -> str:
    """One card per glyph: the glyph, its judge reading (checked against the article's probe words) and its
    nearest training glyphs with their definitions."""
    esc = html.escape
    cards = []
    for i, g in enumerate(results.glyphs):
        if g.radical is not None:
            reading = (
                f'judge reads <span class="radical" data-radical="{g.radical}">'
                f"{esc(radical_character(g.radical))}</span>"
                f" radical {g.radical}"
            )
            for word, radical in g.expected.items():
                ok = radical == g.radical
                reading += (
                    f'<br><span class="{"match" if ok else "miss"}">{"✓" if ok else "✗"} “{esc(word)}” is radical '
                    f"{radical} ({esc(radical_character(radical))})</span>"
                )
        else:
            reading = "no judge loaded"
        if g.nearest:
            items = "".join(
                f'<li data-character="{esc(n.character)}"><img src="{_data_uri(n.image)}" alt="{esc(n.character)}">'
                f'<span><span class="char">{esc(n.character)}</span> '
                f'<span class="def">{esc(shorten(n.text, 70))}</span>'
                f'<br><span class="dist">RMS distance {n.distance:.3f}</span></span></li>'
                for n in g.nearest
            )
            nearest = f'<ol class="nearest">{items}</ol>'
        else:
            nearest = '<span class="nearest-missing">no training glyphs loaded</span>'
        cards.append(
            f'<div class="glyph-card" data-index="{i}">'
            f'<div class="gen"><img src="{_data_uri(g.image)}" alt="glyph {i}">'
            f'<span class="caption">{esc(g.prompt)} · seed {g.seed}</span></div>'
            f'<div class="judge">{reading}</div>{nearest}</div>'
        )
    real = f"{len(app.real):,} training glyphs at {app.real.size} px" if app.real is not None else "no training glyphs"
    head = (
        f'<p class="readings-head">Nearest real glyphs: smallest RMS pixel difference among {real} — a '
        "distance near 0 means the model copied a training glyph.</p>"
    )
    return f'<div id="glyph-readings-panel">{head}<div class="glyph-cards">{"".join(cards)}</div></div>'


def readings_json(results: GlyphResults) -> list[dict[str, Any]]:
    return [
        {
            "prompt": g.prompt,
            "seed": g.seed,
            "radical": g.radical,
            "radical_character": radical_character(g.radical) if g.radical else None,
            "expected_radicals": g.expected,
            "nearest": [
                {
                    "character": n.character, "definition": n.text, "radical": n.radical,
                    "distance": round(n.distance, 5),
                }
                for n in g.nearest
            ],
        }
        for g in results.glyphs
    ]


def summary_markdown(results: GlyphResults) -> str:
    r = results.request
    neg = f" · negative “{r.negative_prompt}”" if r.negative_prompt else ""
    return (
        f"**{len(results.glyphs)} glyph{'s' * (len(results.glyphs) > 1)}** · {r.sampler} · {r.steps} steps · "
        f"guidance {r.guidance:g} · seeds {r.seed}–{r.seed + r.images_per_prompt - 1}{neg} · "
        f"{results.seconds:.1f} s"
    )


# The page
# ----------------------------------------------------------------------------------------------------


def _import_gradio():
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no phoning home from an offline machine
    try:
        import gradio as gr
    except ImportError as err:
        raise ImportError(f"The app needs Gradio: {APP_HINT}") from err
    return gr


def _intro(app: GlyphApp) -> str:
    """The page's head: which model, on what, what each glyph is compared with, and the per-run limits."""
    limits = app.limits
    size = app.pipe.unet.config.sample_size
    judge_text = "the glyph judge (a CNN that reads a glyph's Kangxi radical)" if app.judge is not None else "no judge"
    intro = (
        f"# glyffuser: new Chinese glyphs from English definitions\n"
        f"Model `{app.model_name}` ({size}×{size} px) on {app.pipe.device.type}. Each glyph is labelled with the "
        f"radical that {judge_text} reads in it, and compared with the 3 nearest real glyphs of the training set."
        f" At most {limits.max_images} glyphs and {limits.max_steps} steps a run."
    )
    if app.notes:
        intro += "\n\n" + "\n".join(f"* {n}" for n in app.notes)
    return intro


def _generate_handler(app: GlyphApp, gr: Any) -> Callable[..., tuple]:
    """The Generate button's callback: every failure becomes a message on the page, never a traceback."""
    import torch

    def generate(definitions, negative_prompt, sampler, steps, guidance, seed, images_per_prompt, typeface=None,
                 progress=gr.Progress(track_tqdm=True)):  # fmt: skip
        try:
            request, warnings = app.validate(
                definitions, negative_prompt, sampler, steps, guidance, seed, images_per_prompt, typeface=typeface
            )
        except AppInputError as err:
            raise gr.Error(str(err), print_exception=False) from None
        for warning in warnings:
            gr.Warning(warning)
        try:
            results = app.generate(request, progress)
        except torch.OutOfMemoryError:
            raise gr.Error(
                "Out of memory on this machine: use fewer definitions or fewer images per prompt.",
                print_exception=False,
            ) from None
        except FigureError as err:
            raise gr.Error(str(err), print_exception=False) from None
        except Exception as err:  # never a traceback on the page; the log keeps it
            logger.exception("generation failed")
            raise gr.Error(
                f"Generation failed ({type(err).__name__}: {err}).", print_exception=False
            ) from None
        gallery = [(g.image, g.caption) for g in results.glyphs]
        return (
            summary_markdown(results), gallery, str(results.animation), results.single_step,
            readings_html(results, app), readings_json(results),
        )

    return generate


def build_demo(app: GlyphApp):
    """The Gradio Blocks page for `app`, with a bounded queue. Launch it with `launch(demo)` (adds the CSS)."""
    gr = _import_gradio()
    from ..schedulers import RECOMMENDED_GUIDANCE, RECOMMENDED_SAMPLER, RECOMMENDED_STEPS, SCHEDULERS

    # gr.Progress(track_tqdm=True) below patches tqdm; progress bars left over from loading would then fail in
    # their __del__ (a harmless but alarming "Exception ignored ... AttributeError" on the console): collect them.
    gc.collect()
    limits = app.limits
    generate = _generate_handler(app, gr)
    with gr.Blocks(title="glyffuser", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown(_intro(app))
        with gr.Row():
            with gr.Column(scale=2, min_width=300):
                definitions = gr.Textbox(
                    label="English definitions, one per line", lines=4, value="gold; metal", elem_id="definitions",
                    placeholder="gold; metal",
                )
                negative = gr.Textbox(label="Negative prompt (optional)", lines=1, elem_id="negative-prompt")
                sampler = gr.Dropdown(list(SCHEDULERS), value=RECOMMENDED_SAMPLER, label="Sampler", elem_id="sampler")
                with gr.Row():
                    steps = gr.Number(
                        value=RECOMMENDED_STEPS, precision=0, label=f"Steps (1–{limits.max_steps})", elem_id="steps"
                    )
                    guidance = gr.Number(value=RECOMMENDED_GUIDANCE, label="Guidance (≤ 1: off)", elem_id="guidance")
                with gr.Row():
                    seed = gr.Number(value=0, precision=0, label="Seed", elem_id="seed")
                    per_prompt = gr.Number(
                        value=4, precision=0, label="Images per prompt", elem_id="images-per-prompt"
                    )
                typeface = None
                if app.typefaces:
                    typeface = gr.Radio(
                        list(app.typefaces), value=app.typefaces[0], label="Typeface (a LoRA of the model)",
                        elem_id="typeface",
                    )
                button = gr.Button("Generate", variant="primary", elem_id="generate")
                gr.Examples([[p] for p in EXAMPLE_PROMPTS], inputs=[definitions], label="The article's prompts")
            with gr.Column(scale=3, min_width=300):
                summary = gr.Markdown("Results appear here.", elem_id="summary")
                gallery = gr.Gallery(
                    label="Glyphs: definition · seed · the radical the judge reads", columns=4, height="auto",
                    object_fit="contain", format="png", elem_id="glyph-gallery", interactive=False,
                )
        with gr.Row():
            with gr.Column():
                gr.Markdown("### Denoising the first glyph\nThe noisy x_t the model sees at each step, beside the "
                            "clean glyph x̂0 it predicts from it.")
                animation = gr.Image(
                    label="denoising animation", show_label=False, type="filepath", elem_id="animation",
                    interactive=False,
                )
            with gr.Column():
                gr.Markdown("### One step from pure noise\nThe model's x̂0 after a single step at t = T−1: the "
                            "blurry average glyph for the first definition (the article's “gold”).")
                single = gr.Image(
                    label="single-step prediction", show_label=False, type="pil", format="png",
                    elem_id="single-step", interactive=False,
                )
        gr.Markdown("### What the judge reads, and the nearest real glyphs")
        readings = gr.HTML(elem_id="glyph-readings")
        with gr.Accordion("Readings as JSON", open=False):
            as_json = gr.JSON(elem_id="readings-json")
        button.click(
            generate,
            inputs=[definitions, negative, sampler, steps, guidance, seed, per_prompt, *filter(None, [typeface])],
            outputs=[summary, gallery, animation, single, readings, as_json],
            api_name="generate",
            concurrency_limit=1,  # one run at a time; the others wait in the bounded queue
        )
    demo.queue(max_size=limits.max_queue, default_concurrency_limit=1)
    return demo


def launch(demo, host: str | None = None, port: int | None = None, **kwargs: Any):
    """`demo.launch` with this page's CSS and a theme without web fonts (works offline). Host and port default
    to Gradio's (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT, as on Spaces)."""
    gr = _import_gradio()
    theme = gr.themes.Default(
        font=("ui-sans-serif", "system-ui", "sans-serif"), font_mono=("ui-monospace", "monospace")
    )
    return demo.launch(server_name=host, server_port=port, css=CSS, theme=theme, footer_links=["api"], **kwargs)


# ----------------------------------------------------------------------------------------------------
# Command line: `glyffuser app`
# ----------------------------------------------------------------------------------------------------


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Flags of ``glyffuser app``."""
    parser.add_argument(
        "--model", help="saved glyph pipeline folder or Hub repo id (default: the shipped pretrained/tiny-32)"
    )
    parser.add_argument("--port", type=int, help="port (default: $GRADIO_SERVER_PORT or 7860)")
    parser.add_argument("--host", help="interface to listen on (default: $GRADIO_SERVER_NAME or 127.0.0.1)")
    parser.add_argument(
        "--dataset", help="glyph dataset for the nearest-glyph panel (default: a 32 px one built once in the cache)"
    )
    parser.add_argument(
        "--judge", type=Path, default=DEFAULT_JUDGE, help="radical judge folder (default: %(default)s)"
    )
    parser.add_argument(
        "--lora", help="typeface LoRA offered beside the base model (default: the shipped Kai-brush LoRA of the "
        "shipped model)",
    )
    parser.add_argument(
        "--lora-start", type=float, help="share of the steps drawn by the base model before the LoRA takes over "
        f"(default: {SHIPPED_KAI_LORA_START} for the shipped LoRA, else 0)",
    )
    add_upscaler_args(parser)
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--max-images", type=int, help="glyphs per run (default: 16 on CPU, 64 on a GPU)")
    parser.add_argument("--max-steps", type=int, help=f"steps per run (default: {Limits.max_steps})")
    parser.add_argument("--max-queue", type=int, help=f"requests waiting in the queue (default: {Limits.max_queue})")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``glyffuser app``: load everything, then serve until interrupted."""
    for name in ("port", "max_images", "max_steps", "max_queue"):
        value = getattr(args, name)
        if value is not None and value < 1:
            print(f"glyffuser app: error: --{name.replace('_', '-')} must be positive, got {value}.", file=sys.stderr)
            return 2
    try:
        _import_gradio()
        app = GlyphApp.load(
            args.model, args.dataset, args.judge, args.device,
            limits={"max_images": args.max_images, "max_steps": args.max_steps, "max_queue": args.max_queue},
            lora=args.lora, lora_start=args.lora_start, upscaler=args.upscaler, upscale_steps=args.upscale_steps,
            upscale_noise_level=args.upscale_noise_level,
        )
    except (ValueError, FileNotFoundError, ImportError) as err:
        print(f"glyffuser app: error: {err}", file=sys.stderr)
        return 2
    for note in app.notes:
        print(f"glyffuser app: note: {note}", file=sys.stderr)
    launch(build_demo(app), args.host, args.port)
    return 0
