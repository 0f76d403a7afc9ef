"""The Gradio app (`glyffuser app`, the repository's app.py): input checks, the API through `gradio_client`,
and the page in a real headless browser (Debian's Chromium driven by Playwright; nothing downloads a browser).

The app runs as users start it — the `glyffuser app` command in its own process on a free local port — with a
tiny random pipeline (16 px) and a 16 px dataset of a few dozen glyphs; the radical judge is the shipped one.
Expected nearest glyphs are recomputed here from the dataset in float64 numpy, independently of the app.

`python tests/app/test_app.py --model DIR [--dataset DIR] --out docs/app-screenshot.png` drives the same page in
the browser and saves a screenshot (the README's).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import queue
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from glyph_pipeline.app.core import (
    ANIMATION_FRAME_SIZE,
    EXAMPLE_PROMPTS,
    AppInputError,
    Limits,
    radical_character,
    validate_request,
)
from glyph_pipeline.figures.animation import animation_frame_size
from glyph_pipeline.figures.layout import font_px, label_font, line_height, tile_size

# A few dozen characters with varied radicals (as in test_figures), including the article's 金 水 木 火 言 女 手 心.
CHARACTERS = "永金木水火土日月山川人口手心女子田目石竹米糸言貝車門雨馬魚鳥大小上下中王玉白赤青"
MAX_IMAGES = 8  # the app's --max-images in these tests
START_TIMEOUT_S = 180  # a loaded 2-core machine imports torch + diffusers + gradio slowly
WAIT_MS = 60_000
CHROMIUM = os.environ.get("GLYFFUSER_CHROMIUM", "/usr/bin/chromium")
GLYFFUSER = Path(sys.executable).with_name("glyffuser")
JUDGE = Path(__file__).resolve().parents[2] / "artifacts" / "judge-32"


# ============================================================================================ helpers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_app(model: str | os.PathLike, *args: str) -> Iterator[str]:
    """Start `glyffuser app --model MODEL ARGS` on a free port; yield its URL once it serves; stop it after."""
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    command = [str(GLYFFUSER), "app", "--model", str(model), "--host", "127.0.0.1", "--port", str(port), *args]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: queue.Queue[str | None] = queue.Queue()
    log: list[str] = []

    def pump() -> None:
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"`glyffuser app` did not serve within {START_TIMEOUT_S} s:\n{''.join(log)}")
            if line is None:
                pytest.fail(f"`glyffuser app` exited with {proc.wait()}:\n{''.join(log)}")
            log.append(line)
            if "Running on local URL:" in line:
                yield line.split("URL:", 1)[1].strip().rstrip("/") + "/"
                return
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def decode_real(dataset: Path) -> tuple[list[str], np.ndarray]:
    """Characters and float64 pixels in [0, 1] of the train split (rows with a radical, as the app keeps)."""
    from datasets import load_from_disk

    train = load_from_disk(str(dataset))["train"]
    rows = [r for r in train if r["radical"] is not None]
    pixels = np.stack([np.asarray(r["image"].convert("L"), dtype=np.float64) / 255.0 for r in rows])
    return [r["character"] for r in rows], pixels


def nearest_characters(real: tuple[list[str], np.ndarray], image: Image.Image, k: int = 3) -> list[str]:
    """The k training characters with the smallest RMS pixel difference to `image` (same size as the data)."""
    characters, pixels = real
    x = np.asarray(image.convert("L"), dtype=np.float64) / 255.0
    assert x.shape == pixels.shape[1:], "the tests' model and dataset are both 16 px"
    rms = np.sqrt(((pixels - x) ** 2).mean(axis=(1, 2)))
    order = np.argsort(rms, kind="stable")
    assert (np.diff(rms[order[: k + 1]]) > 1e-5).all(), "near-ties among the nearest glyphs make the order arbitrary"
    return [characters[i] for i in order[:k]]


def judge_reading(judge, image: Image.Image) -> int:
    from glyph_pipeline.evaluation.metrics import judge_readings

    return int(judge_readings(judge, [image])[1][0])


def animation_final_sample(path: str, frames: int, size: int = 16) -> np.ndarray:
    """The final sample of a denoising GIF (left panel of its last frame, NEAREST-upscaled), at `size` px."""
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.n_frames == frames
        assert gif.size == animation_frame_size(ANIMATION_FRAME_SIZE)
        gif.seek(frames - 1)
        last = np.asarray(gif.convert("L"), dtype=int)
    top = line_height(label_font(font_px(ANIMATION_FRAME_SIZE))) + 3
    scale = ANIMATION_FRAME_SIZE // size
    return last[top + scale // 2 : top + ANIMATION_FRAME_SIZE : scale, scale // 2 : ANIMATION_FRAME_SIZE : scale]


def fonts_conf(folder: Path) -> Path:
    """A fontconfig file adding the Noto CJK font from PyPI, so headless Chromium draws CJK text (screenshots)."""
    conf = folder / "fonts.conf"
    try:
        from noto_cjk_sans_otc import FONT_PATH

        extra = f"<dir>{Path(str(FONT_PATH)).parent}</dir>"
    except ImportError:
        extra = ""
    conf.write_text(
        '<?xml version="1.0"?><!DOCTYPE fontconfig SYSTEM "fonts.dtd"><fontconfig>'
        f'<include ignore_missing="yes">/etc/fonts/fonts.conf</include>{extra}'
        f"<cachedir>{folder / 'fontcache'}</cachedir></fontconfig>",
        encoding="utf-8",
    )
    return conf


@contextlib.contextmanager
def browser_page(width: int = 1280, height: int = 900):
    """A page of headless Debian Chromium that may reach only the local machine."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="glyffuser-browser-") as tmp, sync_playwright() as pw:
        env = {**os.environ, "FONTCONFIG_FILE": str(fonts_conf(Path(tmp)))}
        # --no-sandbox: the Chromium sandbox cannot start as root in a container.
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"], env=env)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(WAIT_MS)
            outside: list[str] = []

            def local_only(route) -> None:
                host = re.match(r"^[a-z]+://([^/:]+)", route.request.url)
                if host and host.group(1) not in ("127.0.0.1", "localhost"):
                    outside.append(route.request.url)
                    route.abort()
                else:
                    route.continue_()

            page.route("**/*", local_only)
            yield page
        finally:
            browser.close()


def generate_in_page(page, definitions: str, images_per_prompt: int, progress_text: str | None = None) -> int:
    """Type the definitions, click Generate, (see `progress_text` while it samples,) wait for every glyph card
    and the animation; returns the glyph count."""
    page.locator("#definitions textarea").fill(definitions)
    page.locator("#images-per-prompt input").fill(str(images_per_prompt))
    page.locator("#generate").click()
    if progress_text:
        page.get_by_text(progress_text).first.wait_for(state="attached")
    count = len([d for d in definitions.splitlines() if d.strip()]) * images_per_prompt
    page.wait_for_function(
        "n => document.querySelectorAll('#glyph-readings .glyph-card').length === n"
        " && document.querySelectorAll('#glyph-gallery .thumbnail-item img').length === n",
        arg=count,
    )
    page.wait_for_function("() => !!document.querySelector('#animation img[src$=\".gif\"]')")
    return count


def toast_text(page, needle: str) -> str:
    """The error toast containing `needle`, waited for."""
    toast = page.get_by_test_id("toast-text").filter(has_text=needle)
    toast.first.wait_for()
    return toast.first.inner_text()


# ============================================================================================ fixtures
@pytest.fixture(scope="module")
def glyph_dataset(tmp_path_factory) -> Path:
    from glyph_pipeline.data.dataset import build_glyph_dataset, save_dataset

    try:
        dsd = build_glyph_dataset(characters=CHARACTERS, size=16, test_fraction=0.1, num_workers=0, progress=False)
    except (FileNotFoundError, OSError, ValueError) as err:  # no CJK font / Unihan on this machine
        pytest.skip(f"cannot build a glyph dataset here (needs a CJK font and Unihan): {err}")
    return save_dataset(dsd, tmp_path_factory.mktemp("data") / "glyphs")


@pytest.fixture(scope="module")
def real(glyph_dataset):
    return decode_real(glyph_dataset)


@pytest.fixture(scope="module")
def judge():
    from glyph_pipeline.evaluation.judge import load_judge

    return load_judge(JUDGE)


@pytest.fixture(scope="module")
def app_url(saved_pipeline_dir, glyph_dataset) -> Iterator[str]:
    pytest.importorskip("gradio", reason="the app needs the [app] extra")
    with running_app(saved_pipeline_dir, "--dataset", str(glyph_dataset), "--max-images", str(MAX_IMAGES)) as url:
        yield url


@pytest.fixture(scope="module")
def client_factory(app_url, tmp_path_factory):
    gradio_client = pytest.importorskip("gradio_client", reason="the API test needs the [app] extra")
    downloads = tmp_path_factory.mktemp("downloads")
    return lambda: gradio_client.Client(app_url, verbose=False, download_files=str(downloads))


# ============================================================================================ input checks
def check(definitions="gold; metal", negative="", sampler="dpmsolver++", steps=20, guidance=3.0, seed=0, n=4,
          limits=Limits(max_images=8), config=None):  # fmt: skip
    from glyph_pipeline import sampling_scheduler

    config = config or sampling_scheduler("ddpm").config
    return validate_request(definitions, negative, sampler, steps, guidance, seed, n, limits, config)


def test_validate_request_accepts_lines_and_names_the_fix_for_bad_input():
    request, warnings = check("  gold; metal \n\n water\n", negative="  blurry   ink ", steps=20.0, seed=7, n=2)
    assert request.prompts == ("gold; metal", "water") and request.negative_prompt == "blurry ink"
    assert request.jobs == [("gold; metal", 7), ("gold; metal", 8), ("water", 7), ("water", 8)]
    assert request.steps == 20 and isinstance(request.steps, int) and warnings == []
    assert check(negative="ink", guidance=1.0)[1] == [
        "The negative prompt acts through guidance only: it has no effect at guidance 1 or less."
    ]
    bad = {
        "Type at least one English definition": dict(definitions=" \n \n"),
        "Steps must be at least 1, got 0": dict(steps=0),
        "Steps must be at most 1000": dict(steps=5000),
        "Steps must be a whole number": dict(steps=2.5),
        "PNDMScheduler cannot sample with 2 inference step(s)": dict(sampler="pndm", steps=2),
        "Unknown sampler 'dall-e'": dict(sampler="dall-e"),
        "Guidance 1000 is outside the useful range 0 to 30": dict(guidance=1000),
        "Guidance nan is outside": dict(guidance=float("nan")),
        "Guidance must be a number": dict(guidance=None),
        "Seed must be between 0 and 4294967295, got -1": dict(seed=-1),
        "Images per prompt must be at least 1": dict(n=0),
        "That is 9 glyphs (3 definitions × 3 images); this machine makes at most 8 per run": dict(
            definitions="gold\nwater\nfire", n=3
        ),
    }
    for message, kwargs in bad.items():
        with pytest.raises(AppInputError) as err:
            check(**kwargs)
        assert message in str(err.value), (kwargs, str(err.value))


def test_queue_is_bounded_and_runs_one_request_at_a_time():
    pytest.importorskip("gradio", reason="the app needs the [app] extra")
    from conftest import tiny_pipeline

    from glyph_pipeline.app.core import GlyphApp
    from glyph_pipeline.app.ui import build_demo

    demo = build_demo(GlyphApp(tiny_pipeline(), limits=Limits(max_images=4, max_queue=3)))
    assert demo._queue.max_size == 3
    (generate,) = [fn for fn in demo.fns.values() if fn.api_name == "generate"]
    assert generate.concurrency_limit == 1


def test_cli_refuses_a_missing_model_with_a_message(tmp_path, capsys):
    from glyph_pipeline.cli import main

    assert main(["app", "--model", str(tmp_path / "missing"), "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("glyffuser app: error:") and "does not exist" in err and "Traceback" not in err
    # app.py at the repository root (the Spaces entry point) is the same command
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "app.py", "--help"], cwd=root, capture_output=True, text=True, check=True)
    assert "--model" in out.stdout and "--port" in out.stdout


# ============================================================================================ API (gradio_client)
def test_api_returns_labelled_glyphs_readings_and_nearest_real_glyphs(client_factory, real, judge):
    client = client_factory()
    summary, gallery, animation, single, panel, readings = client.predict(
        "gold; metal\n\n  water ", "", "dpmsolver++", 4, 3.0, 7, 2, api_name="/generate"
    )
    assert summary.startswith("**4 glyphs** · dpmsolver++ · 4 steps · guidance 3 · seeds 7–8")
    images = [Image.open(item["image"]) for item in gallery]
    assert [im.size for im in images] == [(16, 16)] * 4 and {im.format for im in images} == {"PNG"}
    assert [r["prompt"] for r in readings] == ["gold; metal", "gold; metal", "water", "water"]
    assert [r["seed"] for r in readings] == [7, 8, 7, 8]
    assert readings[0]["expected_radicals"] == {"gold": 167, "metal": 167}
    assert readings[2]["expected_radicals"] == {"water": 85}
    for item, image, reading in zip(gallery, images, readings):
        radical = judge_reading(judge, image)
        assert reading["radical"] == radical and reading["radical_character"] == radical_character(radical)
        assert item["caption"] == (
            f"{reading['prompt']} · seed {reading['seed']} · {radical_character(radical)} {radical}"
        )
        nearest = [n["character"] for n in reading["nearest"]]
        assert nearest == nearest_characters(real, image)
        distances = [n["distance"] for n in reading["nearest"]]
        assert distances == sorted(distances) and 0 < distances[0] < 1
        assert f'data-character="{nearest[0]}"' in panel
    # seeds are honoured: the same seed and definition give the same glyph, another seed another glyph
    assert np.array_equal(np.asarray(images[0]), np.asarray(Image.open(gallery[0]["image"])))
    assert not np.array_equal(np.asarray(images[0]), np.asarray(images[1]))
    # x_t beside x̂0 at each of the 4 steps, then the final sample: the first glyph of the gallery
    final = animation_final_sample(animation, frames=5)
    assert np.abs(final - np.asarray(images[0], dtype=int)).max() <= 2
    assert np.abs(final - np.asarray(images[1], dtype=int)).max() > 20
    with Image.open(single) as one_step:  # rows "pure noise" and "x̂0 after ONE step", over seeds 7 and 8
        tile_width, tile_height = tile_size(64, 1)
        assert one_step.width == 3 * tile_width and one_step.height > 2 * tile_height

    # A negative prompt changes the glyph of the same seed, and the animation follows it too.
    _, negative, animation, _, _, _ = client.predict(
        "gold; metal", "water; river", "dpmsolver++", 4, 3.0, 7, 1, api_name="/generate"
    )
    steered = np.asarray(Image.open(negative[0]["image"]), dtype=int)
    assert np.abs(steered - np.asarray(images[0], dtype=int)).max() > 20
    assert np.abs(animation_final_sample(animation, frames=5) - steered).max() <= 2


def test_api_reports_progress_while_sampling(app_url):
    import httpx

    config = httpx.get(app_url + "config").json()
    (dep,) = [d for d in config["dependencies"] if d.get("api_name") == "generate"]
    session = uuid.uuid4().hex
    data = ["fire", "", "euler", 6, 3.0, 0, 1]
    joined = httpx.post(
        app_url + "gradio_api/queue/join",
        json={"data": data, "fn_index": dep["id"], "session_hash": session, "event_data": None, "trigger_id": None},
    )
    assert joined.status_code == 200, joined.text
    messages = []
    with httpx.stream("GET", app_url + "gradio_api/queue/data", params={"session_hash": session}, timeout=60) as s:
        for line in s.iter_lines():
            if line.startswith("data:"):
                messages.append(json.loads(line[5:]))
                if messages[-1]["msg"] == "process_completed":
                    break
    assert messages[-1]["success"], messages[-1]
    steps = [
        unit["index"] for m in messages if m["msg"] == "progress" for unit in m["progress_data"]
        if unit["desc"] == "Sampling 1 glyph" and unit["index"] is not None
    ]  # fmt: skip
    # the sampler's own progress bar, step by step; the bar's closing state (6 of 6) arrives only when it beats
    # the completion message
    assert steps in (list(range(6)), list(range(7))), steps


def test_api_bad_input_is_a_message_not_a_traceback(client_factory):
    from gradio_client.exceptions import AppError

    client = client_factory()
    cases = {
        "Type at least one English definition": ("  \n", 20, 3.0, 1),
        "Steps must be at least 1, got 0": ("gold", 0, 3.0, 1),
        "Guidance 1e+06 is outside the useful range": ("gold", 20, 1e6, 1),
        f"That is 9 glyphs (3 definitions × 3 images); this machine makes at most {MAX_IMAGES} per run": (
            "gold\nwater\nfire", 20, 3.0, 3,
        ),
    }
    for message, (definitions, steps, guidance, n) in cases.items():
        with pytest.raises(AppError) as err:
            client.predict(definitions, "", "dpmsolver++", steps, guidance, 0, n, api_name="/generate")
        assert message in str(err.value) and "Traceback" not in str(err.value)


def test_two_users_at_once_get_only_their_own_results(client_factory):
    alice, bob = client_factory(), client_factory()
    jobs = {
        "water": alice.submit("water", "", "ddim", 3, 3.0, 1, 2, api_name="/generate"),
        "fire": bob.submit("fire", "", "dpmsolver++", 3, 3.0, 5, 1, api_name="/generate"),
    }
    results = {prompt: job.result(timeout=120) for prompt, job in jobs.items()}
    assert [r["prompt"] for r in results["water"][5]] == ["water", "water"]
    assert [g["caption"].split(" · ")[:2] for g in results["water"][1]] == [["water", "seed 1"], ["water", "seed 2"]]
    assert [r["prompt"] for r in results["fire"][5]] == ["fire"]
    assert results["fire"][0].startswith("**1 glyph** · dpmsolver++ · 3 steps")
    assert results["water"][2] != results["fire"][2]  # each has its own animation file


# ============================================================================================ the page in Chromium
@pytest.mark.browser
def test_page_in_headless_chromium(app_url, real, judge, tmp_path):
    pytest.importorskip("playwright", reason="the browser test needs playwright (the [dev] extra)")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"No Chromium at {CHROMIUM}: `apt-get install chromium` (bash run.sh setup does), or -m 'not browser'"
        )
    with browser_page() as page:
        page.goto(app_url)
        for prompt in EXAMPLE_PROMPTS:  # the article's prompts, one click away
            page.get_by_text(prompt, exact=True).first.wait_for()
        page.get_by_text("speech; words", exact=True).first.click()
        page.wait_for_function("() => document.querySelector('#definitions textarea').value === 'speech; words'")
        assert generate_in_page(page, "gold; metal", 3, progress_text="Sampling 3 glyphs") == 3
        captions = page.locator("#glyph-gallery .caption-label").all_inner_texts()
        assert [c.split(" · ")[:2] for c in captions] == [["gold; metal", f"seed {s}"] for s in range(3)]

        # The first glyph as the browser got it, read and matched here independently.
        src = page.locator("#glyph-gallery .thumbnail-item img").first.get_attribute("src")
        glyph = Image.open(io.BytesIO(page.request.get(src).body()))
        radical = judge_reading(judge, glyph)
        card = page.locator("#glyph-readings .glyph-card").first
        assert card.locator(".radical").get_attribute("data-radical") == str(radical)
        assert f"judge reads {radical_character(radical)} radical {radical}" in card.inner_text()
        assert "“gold” is radical 167 (金)" in card.inner_text()
        shown = card.locator("ol.nearest li").evaluate_all("items => items.map(li => li.dataset.character)")
        assert shown == nearest_characters(real, glyph)
        assert all(ch in card.locator("ol.nearest").inner_text() for ch in shown)
        assert captions[0].endswith(f"{radical_character(radical)} {radical}")
        assert page.locator("#single-step img").count() == 1
        page.screenshot(path=str(tmp_path / "app.png"), full_page=True)

        # Bad input: a message on the page, no traceback, and the previous results stay.
        page.locator("#definitions textarea").fill("")
        page.locator("#generate").click()
        assert "Type at least one English definition" in toast_text(page, "English definition")
        page.locator("#definitions textarea").fill("gold\nwater\nfire")
        page.locator("#generate").click()
        assert f"this machine makes at most {MAX_IMAGES} per run" in toast_text(page, "per run")
        assert "Traceback" not in page.content()
        assert page.locator("#glyph-readings .glyph-card").count() == 3


# ============================================================================================ screenshot
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Screenshot the app after generating (docs/app-screenshot.png).")
    parser.add_argument("--model", required=True, help="saved glyph pipeline folder")
    parser.add_argument("--dataset", help="glyph dataset for the nearest panel (default: the app's cached 32 px one)")
    parser.add_argument("--definitions", default="gold; metal\nwater")
    parser.add_argument("--images-per-prompt", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("docs/app-screenshot.png"))
    args = parser.parse_args(argv)
    extra = ["--dataset", args.dataset] if args.dataset else []
    with running_app(args.model, *extra) as url, browser_page(1280, 900) as page:
        page.goto(url)
        generate_in_page(page, args.definitions, args.images_per_prompt)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(args.out), full_page=True)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: conftest, hub_fixtures
    sys.exit(main())
