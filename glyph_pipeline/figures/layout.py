# Copyright 2026 The glyffuser developers. Licensed under the Apache License, Version 2.0.
"""Figure layout: captioned grids of glyph cells, their fonts and sizes, and atomic image output.

Shared by every figure (`figures.diffusion`, `figures.noising`, `figures.dataset_map`), the demo and the app,
so a tile, a caption or a title is drawn one way everywhere. Also the argument checks those figures share
(`FigureError`, `check_positive`, `check_output`): they run before any model is loaded.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageDraw, ImageFont

from ..atomic import atomic_output

if TYPE_CHECKING:
    import torch

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
MARGIN = 3  # white border around each cell, so neighbouring glyphs don't merge into one picture


class FigureError(ValueError):
    """Bad figure arguments (unknown scheduler, empty prompt, not a pipeline folder...): raised before any work."""


def check_positive(name: str, value: Any, minimum: int = 1) -> int:
    """`value` if it is an integer >= `minimum` (bools are not counts); `name` is the flag the message names."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise FigureError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return value


def check_output(path: str | os.PathLike, suffixes: Sequence[str]) -> Path:
    """The output path, if its suffix is one of `suffixes` and it is not a folder: checked before any work."""
    path = Path(path).expanduser()
    if path.suffix.lower() not in suffixes:
        raise FigureError(f"Output {path} must end in one of {', '.join(suffixes)}.")
    if path.is_dir():
        raise FigureError(f"Output {path} is a directory; give a file name.")
    return path


# ----------------------------------------------------------------------------------------------------
# Output and labelling
# ----------------------------------------------------------------------------------------------------


def save_image(image: Image.Image, path: str | os.PathLike) -> Path:
    """Save `image` atomically (format from the suffix)."""
    with atomic_output(path) as tmp:
        image.save(tmp)
    return Path(path)


@functools.lru_cache(maxsize=16)
def label_font(px: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans (has x̂₀, ᾱ, −) if the system has it, else Pillow's default font."""
    try:
        return ImageFont.truetype("DejaVuSans.ttf", px)
    except OSError:
        return ImageFont.load_default(px)


_ASCII = str.maketrans({"₀": "0", "ₜ": "_t", "ᾱ": "a", "−": "-", "≥": ">=", "·": "|", "…": "...", "“": '"', "”": '"'})


def _label_text(text: str, font: Any) -> str:
    """Pillow's fallback font lacks the math symbols: spell them in ASCII there."""
    if "DejaVu" in str(getattr(font, "path", "")):
        return text
    return text.replace("x̂", "x^").translate(_ASCII)


def font_px(cell_size: int) -> int:
    return max(10, min(18, round(cell_size / 9)))


def line_height(font: Any) -> int:
    ascent, descent = font.getmetrics()
    return ascent + descent + 1


def fit_lines(text: str, font: Any, width: int, max_lines: int) -> list[str]:
    """Word-wrap `text` to `width` px in at most `max_lines` lines; an ellipsis marks what didn't fit."""
    text = _label_text(" ".join(text.split()), font)
    lines: list[str] = []
    current = ""
    for word in text.split(" "):
        trial = f"{current} {word}".strip()
        if font.getlength(trial) <= width:
            current = trial
            continue
        if current:
            lines.append(current)
        current = word
        while len(current) > 1 and font.getlength(current) > width:  # hard-split words longer than a line
            cut = 1
            while cut < len(current) and font.getlength(current[: cut + 1]) <= width:
                cut += 1
            lines.append(current[:cut])
            current = current[cut:]
    if current:
        lines.append(current)
    if len(lines) > max_lines:
        last = lines[max_lines - 1]
        while last and font.getlength(last + "…") > width:
            last = last[:-1]
        lines = [*lines[: max_lines - 1], last.rstrip() + "…"]
    return lines


def caption_height(cell_size: int, lines: int) -> int:
    """Height in px of a caption block of `lines` lines under a `cell_size` cell."""
    return 0 if lines <= 0 else lines * line_height(label_font(font_px(cell_size))) + 4


def tile_size(cell_size: int, caption_lines: int) -> tuple[int, int]:
    """(width, height) of one grid tile: the cell with its margin, plus its caption."""
    side = cell_size + 2 * MARGIN
    return side, side + caption_height(cell_size, caption_lines)


def title_height(width: int, cell_size: int, title: str | None) -> int:
    if not title:
        return 0
    font = label_font(font_px(cell_size) + 1)
    return len(fit_lines(title, font, width - 2 * MARGIN, 2)) * line_height(font) + 6


def draw_lines(draw: ImageDraw.ImageDraw, lines: Sequence[str], font: Any, box: tuple[int, int, int, int]) -> None:
    """Centre `lines` horizontally in `box` (left, top, right, bottom), stacked from the top."""
    left, top, right, _ = box
    y = top
    for line in lines:
        draw.text(((left + right) / 2, y), line, font=font, fill=0, anchor="ma")
        y += line_height(font)


def _fit_cell(image: Image.Image, cell_size: int) -> Image.Image:
    """Greyscale and `cell_size` square; upscaling uses NEAREST so every model pixel stays visible."""
    image = image.convert("L")
    if image.size != (cell_size, cell_size):
        small = max(image.size) < cell_size
        image = image.resize((cell_size, cell_size), Image.Resampling.NEAREST if small else Image.Resampling.LANCZOS)
    return image


def _tile(image: Image.Image | None, caption: str | Sequence[str], cell_size: int, caption_lines: int) -> Image.Image:
    width, height = tile_size(cell_size, caption_lines)
    tile = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(tile)
    if image is None:  # a cell that could not be made (e.g. a step count the scheduler can't do)
        draw.rectangle([MARGIN, MARGIN, MARGIN + cell_size - 1, MARGIN + cell_size - 1], fill=225)
        draw.line([MARGIN, MARGIN, MARGIN + cell_size - 1, MARGIN + cell_size - 1], fill=170, width=2)
        draw.line([MARGIN, MARGIN + cell_size - 1, MARGIN + cell_size - 1, MARGIN], fill=170, width=2)
    else:
        tile.paste(_fit_cell(image, cell_size), (MARGIN, MARGIN))
    draw.rectangle([MARGIN - 1, MARGIN - 1, MARGIN + cell_size, MARGIN + cell_size], outline=200)
    if caption_lines:
        font = label_font(font_px(cell_size))
        parts = [caption] if isinstance(caption, str) else list(caption)
        lines: list[str] = []
        for i, part in enumerate(parts):  # later parts get one line each, the first what is left
            room = caption_lines - len(lines) - (len(parts) - i - 1)
            if room > 0 and part:
                lines += fit_lines(part, font, width - 4, room if i == 0 else 1)
        draw_lines(draw, lines[:caption_lines], font, (0, MARGIN + cell_size + MARGIN + 1, width, height))
    return tile


def _row_label_tile(text: str, cell_size: int, caption_lines: int) -> Image.Image:
    width, height = tile_size(cell_size, caption_lines)
    tile = Image.new("L", (width, height), 255)
    font = label_font(font_px(cell_size))
    lines = fit_lines(text, font, width - 6, max(1, (height - 8) // line_height(font)))
    top = (height - len(lines) * line_height(font)) // 2
    draw_lines(ImageDraw.Draw(tile), lines, font, (0, top, width, height))
    return tile


def labelled_grid(
    cells: Sequence[Sequence[Image.Image | None]],
    cell_size: int,
    captions: Sequence[Sequence[str | Sequence[str]]] | None = None,
    caption_lines: int = 1,
    row_labels: Sequence[str] | None = None,
    title: str | None = None,
) -> Image.Image:
    """A greyscale grid of `cell_size` cells, each with a caption below, optional row labels and a title.

    Layout: an optional title strip, then `rows` rows of tiles of `tile_size(cell_size, caption_lines)`;
    with `row_labels` the first column holds them. `None` cells are drawn as a crossed-out placeholder.
    """
    from diffusers.utils import make_image_grid

    rows = len(cells)
    cols = max(len(r) for r in cells)
    if captions is None:
        captions, caption_lines = [[""] * cols] * rows, 0
    tiles: list[Image.Image] = []
    for r in range(rows):
        if row_labels is not None:
            tiles.append(_row_label_tile(row_labels[r], cell_size, caption_lines))
        for c in range(cols):
            if c < len(cells[r]):
                tiles.append(_tile(cells[r][c], captions[r][c], cell_size, caption_lines))
            else:  # ragged last row: blank
                tiles.append(Image.new("L", tile_size(cell_size, caption_lines), 255))
    body = make_image_grid(tiles, rows=rows, cols=cols + (row_labels is not None)).convert("L")
    head = title_height(body.width, cell_size, title)
    if not head:
        return body
    canvas = Image.new("L", (body.width, body.height + head), 255)
    canvas.paste(body, (0, head))
    font = label_font(font_px(cell_size) + 1)
    draw_lines(
        ImageDraw.Draw(canvas), fit_lines(title, font, body.width - 2 * MARGIN, 2), font, (0, 3, body.width, head)
    )
    return canvas


def to_pil(x: torch.Tensor) -> list[Image.Image]:
    """(B, 1, H, W) pixels in [-1, 1] (white = +1) -> greyscale images; values outside are clipped."""
    from diffusers.image_processor import VaeImageProcessor

    return VaeImageProcessor(vae_scale_factor=1).postprocess(x.detach().float().cpu().clamp(-1, 1), output_type="pil")


def shorten(text: str, limit: int = 60) -> str:
    """`text` on one line, cut to `limit` characters with an ellipsis (for labels and captions)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
