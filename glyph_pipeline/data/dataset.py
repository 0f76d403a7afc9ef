"""Build the glyph dataset: Unihan English definitions + a CJK font -> a 🤗 ``datasets.DatasetDict``.

Each row is one ideograph: ``image`` (greyscale PNG, ink on white), ``text`` (its cleaned English
definition, the caption the model is conditioned on), ``character``, ``codepoint``, ``block``, and the
Kangxi ``radical`` / residual ``strokes`` from ``kRSUnicode``. Rows are split into train/test with a
seeded, deterministic split.

Command line: ``glyffuser build-dataset --out data/glyphs`` (`data.commands`; see ``--help``).
"""

from __future__ import annotations

import math
import os
import random
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..atomic import atomic_output
from .render import (
    DEFAULT_PNG_COMPRESS_LEVEL,
    DEFAULT_SCALE,
    DEFAULT_SIZE,
    FontError,
    GlyphFont,
    load_font,
    render_glyphs,
)
from .unihan import (
    ALL_BLOCKS,
    UNIHAN_LICENSE_NOTE,
    DefinitionCleaner,
    UnihanData,
    block_of,
    load_unihan,
    parse_blocks,
    parse_rs_unicode,
)

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

DEFAULT_TEST_FRACTION = 0.02
DEFAULT_SEED = 0
SPLIT_COLUMN = "split"  # marks train/test rows in the single-file parquet output
COLUMNS = ("image", "text", "character", "codepoint", "block", "radical", "strokes")


class GlyphDatasetError(ValueError):
    """Bad arguments or an impossible build (e.g. nothing left to render)."""


LOW_RES_COLUMN = "low_res_image"  # the same glyph rendered at a smaller size: a super-resolution pair


def glyph_features(low_res: bool = False):
    """The dataset schema: PNG images in ``datasets.Image`` columns plus text and integer metadata."""
    from datasets import Features, Image, Value

    return Features(
        {
            "image": Image(),
            **({LOW_RES_COLUMN: Image()} if low_res else {}),
            "text": Value("string"),
            "character": Value("string"),
            "codepoint": Value("int32"),
            "block": Value("string"),
            "radical": Value("int32"),
            "strokes": Value("int32"),
        }
    )


@dataclass
class BuildReport:
    """What a build kept and dropped, per block, and how long it took."""

    font: str = ""
    unihan: str = ""
    size: int = DEFAULT_SIZE
    scale: float = DEFAULT_SCALE
    limit: int | None = None
    candidates: Counter = field(default_factory=Counter)  # characters with a kDefinition in the selection
    kept: Counter = field(default_factory=Counter)
    missing_from_font: Counter = field(default_factory=Counter)
    empty_definition: Counter = field(default_factory=Counter)
    borrowed_definition: Counter = field(default_factory=Counter)  # "same as U+XXXX" resolved
    no_definition: list[str] = field(default_factory=list)  # explicitly requested, not in Unihan
    missing_examples: list[str] = field(default_factory=list)
    splits: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(self.splits.values()) if self.splits else sum(self.kept.values())

    def format(self) -> str:
        lines = [
            f"Glyph dataset: {self.rows:,} rows ("
            + ", ".join(f"{k} {v:,}" for k, v in self.splits.items())
            + f") at {self.size}px, glyph scale {self.scale:.4f}",
            f"  font:   {self.font}",
            f"  unihan: {self.unihan}",
        ]
        if self.rows != sum(self.kept.values()):
            lines.append(f"  {sum(self.kept.values()):,} usable characters; the splits keep a choice of them")
        if self.limit is not None:
            lines.append(
                f"  --limit {self.limit}: counts cover the characters examined until the limit was reached"
            )
        header = (
            f"  {'block':<8}{'candidates':>11}{'kept':>8}{'not in font':>13}{'empty def':>11}{'borrowed':>10}"
        )
        lines.append(header)
        blocks = [b for b in ALL_BLOCKS if self.candidates[b]]
        for b in [*blocks, "total"]:
            get = (lambda c: sum(c.values())) if b == "total" else (lambda c, b=b: c[b])
            lines.append(
                f"  {b:<8}{get(self.candidates):>11,}{get(self.kept):>8,}{get(self.missing_from_font):>13,}"
                f"{get(self.empty_definition):>11,}{get(self.borrowed_definition):>10,}"
            )
        if self.missing_examples:
            lines.append("  not in font (first few): " + " ".join(self.missing_examples))
        if self.no_definition:
            lines.append(f"  requested but without a Unihan definition: {' '.join(self.no_definition[:20])}")
        if self.seconds:
            lines.append("  time: " + ", ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items()))
        return "\n".join(lines)


def _test_characters(reference: str | os.PathLike) -> set[str]:
    """The characters of `reference`'s test split (a dataset folder, parquet file or Hub name)."""
    try:
        dsd = load_glyph_dataset(str(reference))
    except Exception as err:
        raise GlyphDatasetError(f"--split-from {reference}: not a readable glyph dataset ({err}).") from err
    if "test" not in dsd or "character" not in dsd["test"].column_names:
        raise GlyphDatasetError(
            f"--split-from {reference} has no 'test' split with a 'character' column; give a dataset built by "
            "`glyffuser build-dataset` with a test split (e.g. data/glyphs-32)."
        )
    return set(dsd["test"]["character"])


def _validate(
    size: int, scale: float, test_fraction: float, limit: int | None, num_workers: int | None, num_chars: int | None,
    low_res_size: int | None = None,
) -> None:
    """Refuse impossible arguments before the font or Unihan is even opened."""
    if not isinstance(size, int) or size < 8:
        raise GlyphDatasetError(f"size must be an integer >= 8 (e.g. 32, 64, 128), got {size!r}.")
    if low_res_size is not None and (not isinstance(low_res_size, int) or not 8 <= low_res_size < size):
        raise GlyphDatasetError(f"low_res_size must be an integer in [8, {size}) (e.g. 32), got {low_res_size!r}.")
    if not 0 < scale <= 1.5:
        raise GlyphDatasetError(f"scale must be in (0, 1.5], got {scale}; the original is 100/128 = {DEFAULT_SCALE}.")
    if not 0 <= test_fraction < 1:
        raise GlyphDatasetError(f"test_fraction must be in [0, 1), got {test_fraction}.")
    if limit is not None and limit < 1:
        raise GlyphDatasetError(f"limit must be >= 1, got {limit}.")
    if num_workers is not None and num_workers < 0:
        raise GlyphDatasetError(f"num_workers must be >= 0, got {num_workers}.")
    if num_chars is not None and num_chars < 1:
        raise GlyphDatasetError(f"num_chars must be >= 1, got {num_chars}.")


# --------------------------------------------------------------------------------------------------
# The build, step by step: candidates -> rows -> splits -> rendered glyphs -> DatasetDict
# --------------------------------------------------------------------------------------------------


def _candidates(
    data: UnihanData, glyph_font: GlyphFont, characters: str | Iterable[str] | None, block_names: Sequence[str],
    report: BuildReport,
) -> list[int]:
    """Code points with a Unihan definition in the selection (sorted), checked against the font's coverage."""
    if characters is not None:
        requested = sorted({ord(c) for c in characters})
        report.no_definition = [chr(cp) for cp in requested if cp not in data.definitions]
        candidates = [cp for cp in requested if cp in data.definitions]
    else:
        wanted = set(block_names)
        candidates = sorted(cp for cp in data.definitions if block_of(cp) in wanted)
    if not candidates:
        raise GlyphDatasetError(
            f"No character with a Unihan definition in the selection (blocks: {', '.join(block_names)})."
        )
    if not any(cp in glyph_font.codepoints for cp in candidates):
        raise FontError(
            f"{glyph_font.name} ({glyph_font.path}, face {glyph_font.index}) covers none of the "
            f"{len(candidates):,} selected CJK characters. Pass a CJK font with --font (e.g. Noto Sans CJK)."
        )
    return candidates


def _collect_rows(
    candidates: Sequence[int], glyph_font: GlyphFont, data: UnihanData, cleaner: DefinitionCleaner,
    limit: int | None, report: BuildReport,
) -> dict[str, list]:
    """The metadata columns of every usable candidate (in the font, with a non-empty cleaned definition);
    `report` counts what was kept and dropped per block. The images are rendered later, for chosen rows only."""
    rows: dict[str, list] = {name: [] for name in COLUMNS}
    for cp in candidates:
        if limit is not None and len(rows["codepoint"]) >= limit:
            break
        block = block_of(cp)
        report.candidates[block] += 1
        if cp not in glyph_font.codepoints:
            report.missing_from_font[block] += 1
            if len(report.missing_examples) < 10:
                report.missing_examples.append(f"U+{cp:04X}")
            continue
        text, borrowed = cleaner(cp)
        if not text:
            report.empty_definition[block] += 1
            continue
        report.borrowed_definition[block] += borrowed
        report.kept[block] += 1
        radical, strokes = parse_rs_unicode(data.rs_unicode.get(cp))
        rows["text"].append(text)
        rows["character"].append(chr(cp))
        rows["codepoint"].append(cp)
        rows["block"].append(block)
        rows["radical"].append(radical)
        rows["strokes"].append(strokes)
    if not rows["codepoint"]:
        raise GlyphDatasetError("Every selected character was dropped (not in the font or no English definition).")
    return rows


def _split_rows(
    characters: Sequence[str], held_out: set[str] | None, test_fraction: float, seed: int, num_chars: int | None
) -> dict[str, list[int]]:
    """Row indices of each non-empty split, in code point order: `held_out` characters as test, else a seeded
    `test_fraction`; `num_chars` then keeps a seeded choice of the training rows."""
    from datasets import Dataset

    n_rows = len(characters)
    if held_out is not None:
        members = {
            "train": [i for i, c in enumerate(characters) if c not in held_out],
            "test": [i for i, c in enumerate(characters) if c in held_out],
        }
    else:
        n_test = math.ceil(test_fraction * n_rows) if test_fraction > 0 else 0
        if 0 < n_test < n_rows:
            # datasets' own seeded split decides membership; each split is then built directly from the
            # column lists in code point order (no indices mapping to flatten on every save).
            split = Dataset.from_dict({"row": list(range(n_rows))}).train_test_split(test_size=n_test, seed=seed)
            # (to_dict: iterating a lazy Column row by row costs seconds for 20k rows)
            members = {name: sorted(split[name].to_dict()["row"]) for name in ("train", "test")}
        else:
            members = {"train": list(range(n_rows))}
    if num_chars is not None and num_chars < len(members["train"]):
        members["train"] = sorted(random.Random(seed).sample(members["train"], num_chars))
    return {name: idx for name, idx in members.items() if idx}


def _assemble(
    rows: dict[str, list], members: dict[str, list[int]], pngs: dict[int, bytes], glyph_font: GlyphFont,
    data: UnihanData, size: int, scale: float, low_res_pngs: dict[int, bytes] | None = None, low_res_size: int = 0,
) -> DatasetDict:
    """One ``Dataset`` per split from the column lists, `pngs` (row index -> PNG bytes) as the images (and
    `low_res_pngs` as the low-resolution ones), with the schema, the description and the sources' licences."""
    from datasets import Dataset, DatasetDict, DatasetInfo

    features = glyph_features(low_res=low_res_pngs is not None)
    columns = list(features)
    pairs = f" and at {low_res_size}px ({LOW_RES_COLUMN})" if low_res_pngs is not None else ""
    info = DatasetInfo(
        features=features,
        description=(
            f"CJK glyphs rendered from {glyph_font.name} at {size}px{pairs} (em = {scale:.4f} x canvas, em box "
            "centred), "
            f"captioned with cleaned English definitions from Unicode {data.version or ''} Unihan kDefinition."
        ),
        license=f"{UNIHAN_LICENSE_NOTE} Glyph images: rendered from {glyph_font.name} ({glyph_font.license}).",
    )
    # Image dicts with bytes skip datasets' per-row PIL encoding.
    n = len(rows["codepoint"])
    for column, images in (("image", pngs), (LOW_RES_COLUMN, low_res_pngs or {})):
        rows[column] = [{"bytes": images[i], "path": None} if i in images else None for i in range(n)]
    return DatasetDict(
        {
            name: Dataset.from_dict({c: [rows[c][i] for i in idx] for c in columns}, features=features, info=info)
            for name, idx in members.items()
        }
    )


def build_glyph_dataset(
    *,
    font: str | os.PathLike | None = None,
    font_index: int | None = None,
    unihan: str | os.PathLike | UnihanData | None = None,
    size: int = DEFAULT_SIZE,
    scale: float = DEFAULT_SCALE,
    blocks: str | Iterable[str] | None = None,
    characters: str | Iterable[str] | None = None,
    resolve_same_as: bool = True,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = DEFAULT_SEED,
    num_workers: int | None = None,
    limit: int | None = None,
    num_chars: int | None = None,
    split_from: str | os.PathLike | None = None,
    low_res_size: int | None = None,
    png_compress_level: int = DEFAULT_PNG_COMPRESS_LEVEL,
    progress: bool = True,
    return_report: bool = False,
) -> DatasetDict | tuple[DatasetDict, BuildReport]:
    """Render every Unihan-defined ideograph the font covers into a ``DatasetDict`` (``train``/``test``).

    Args:
        font, font_index: font file and face (default: Noto Sans CJK SC, see :func:`render.load_font`).
        unihan: Unihan directory/zip/file or already loaded :class:`UnihanData` (default: Debian
            ``unicode-data``).
        size, scale: canvas size in px and em size relative to it (100/128 as in the original).
        blocks: CJK blocks to include (default URO, Ext A, Ext B and later; ``"all"`` adds compatibility).
        characters: only these characters (overrides ``blocks``); useful for tests and demos.
        resolve_same_as: let definitions that only point at another character borrow its definition.
        test_fraction, seed: size of the test split and the seed that makes it deterministic. With
            ``test_fraction=0`` (or fewer than two rows) only ``train`` is returned.
        num_workers: rendering processes (default: all CPUs; 0/1 renders in this process).
        limit: keep only the first ``limit`` usable characters (by code point).
        num_chars: keep a seeded random choice of this many *training* characters (an adaptation set, e.g. 500
            glyphs of a typeface for a LoRA); the test split is kept whole.
        split_from: a glyph dataset (e.g. the base model's) whose ``test`` characters become this build's test
            split and every other character train, so held-out characters stay held out across typefaces.
        low_res_size: also render every glyph at this size into ``low_res_image``: super-resolution pairs (the
            font's own small render, hinting included: what a base model at that size learned to draw).
        return_report: also return the :class:`BuildReport` (counts per block, skips, timings).

    Everything that can be checked (arguments, font, face index, Unihan file, coverage) is checked before
    any glyph is rendered.
    """
    t0 = time.perf_counter()
    _validate(size, scale, test_fraction, limit, num_workers, num_chars, low_res_size)
    held_out = _test_characters(split_from) if split_from is not None else None
    try:
        block_names = parse_blocks(blocks) if characters is None else ALL_BLOCKS
    except ValueError as e:
        raise GlyphDatasetError(str(e)) from None
    glyph_font = load_font(font, font_index)
    t_font = time.perf_counter()
    data = unihan if isinstance(unihan, UnihanData) else load_unihan(unihan)
    t_unihan = time.perf_counter()

    report = BuildReport(
        font=f"{glyph_font.name} (face {glyph_font.index} of {glyph_font.path})",
        unihan=f"Unicode {data.version or '?'} ({', '.join(data.sources) or 'in memory'})",
        size=size,
        scale=scale,
        limit=limit,
    )
    candidates = _candidates(data, glyph_font, characters, block_names, report)
    cleaner = DefinitionCleaner(data.definitions, resolve_same_as=resolve_same_as)
    rows = _collect_rows(candidates, glyph_font, data, cleaner, limit, report)
    t_select = time.perf_counter()

    members = _split_rows(rows["character"], held_out, test_fraction, seed, num_chars)
    # Only the chosen rows are rendered; each glyph is rendered on its own, so a subset's images are the same.
    chosen = sorted(i for idx in members.values() for i in idx)
    rendered = render_glyphs(
        [rows["character"][i] for i in chosen],
        glyph_font,
        size=size,
        scale=scale,
        num_workers=num_workers,
        compress_level=png_compress_level,
        progress=progress,
    )
    low_res = None if low_res_size is None else dict(zip(chosen, render_glyphs(
        [rows["character"][i] for i in chosen], glyph_font, size=low_res_size, scale=scale, num_workers=num_workers,
        compress_level=png_compress_level, progress=progress,
    )))  # fmt: skip
    t_render = time.perf_counter()

    dsd = _assemble(
        rows, members, dict(zip(chosen, rendered)), glyph_font, data, size, scale, low_res, low_res_size or 0
    )
    t_end = time.perf_counter()
    report.splits = {name: len(ds) for name, ds in dsd.items()}
    report.seconds = {
        "font": t_font - t0,
        "unihan": t_unihan - t_font,
        "select+clean": t_select - t_unihan,
        "render": t_render - t_select,
        "assemble": t_end - t_render,
        "total": t_end - t0,
    }
    return (dsd, report) if return_report else dsd


# --------------------------------------------------------------------------------------------------
# Writing (atomic) and loading
# --------------------------------------------------------------------------------------------------


def check_target(path: Path, overwrite: bool, what: str) -> None:
    """Refuse to replace an existing output unless asked: checked before rendering, and again when saving."""
    if path.exists() and not overwrite:
        raise FileExistsError(f"{what} {path} already exists; pass --overwrite (overwrite=True) to replace it.")


def save_dataset(dataset: Dataset | DatasetDict, out_dir: str | os.PathLike, overwrite: bool = False) -> Path:
    """``save_to_disk`` into a temporary folder next to ``out_dir``, then rename: never a half-written dataset."""
    target = Path(out_dir)
    check_target(target, overwrite, "Output folder")
    with atomic_output(target) as tmp:
        dataset.save_to_disk(str(tmp))
    return target


def save_parquet(dataset: Dataset | DatasetDict, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """All rows in one parquet file (temp file + rename); a ``split`` column records train/test.

    The ``datasets`` features (``Image``) travel in the file's metadata, so
    :func:`load_glyph_dataset` / ``load_dataset("parquet", ...)`` get images back.
    """
    from datasets import DatasetDict, Value, concatenate_datasets

    target = Path(path)
    check_target(target, overwrite, "Parquet file")
    if target.is_dir():
        raise GlyphDatasetError(
            f"--parquet {target} is a directory; give a file name such as glyphs.parquet."
        )
    parts = dataset if isinstance(dataset, DatasetDict) else {"train": dataset}
    table = concatenate_datasets(
        [ds.add_column(SPLIT_COLUMN, [name] * len(ds), feature=Value("string")) for name, ds in parts.items()]
    )
    with atomic_output(target) as tmp:
        table.to_parquet(str(tmp))
    return target


def _split_by_column(dsd: DatasetDict) -> DatasetDict:
    """Undo :func:`save_parquet`'s single-table layout: one split per value of the ``split`` column."""
    from datasets import DatasetDict

    out = {}
    for ds in dsd.values():
        if SPLIT_COLUMN not in ds.column_names:
            return dsd
        for name in sorted(ds.unique(SPLIT_COLUMN), key=lambda n: (n != "train", n)):
            part = ds.filter(
                lambda s, name=name: [x == name for x in s], input_columns=[SPLIT_COLUMN], batched=True
            )
            out[name] = part.remove_columns(SPLIT_COLUMN)
    return DatasetDict(out)


def as_dataset_dict(
    source: str | os.PathLike | Dataset | DatasetDict, single_split: str = "train"
) -> DatasetDict:
    """A `DatasetDict` from a path/name (via `load_glyph_dataset`), a `Dataset` (named `single_split`) or a dict."""
    from datasets import Dataset, DatasetDict

    if isinstance(source, (str, os.PathLike)):
        source = load_glyph_dataset(source)
    if isinstance(source, Dataset):
        source = DatasetDict({single_split: source})
    return source


def load_glyph_dataset(
    source: str | os.PathLike, split: str | None = None, **load_kwargs
) -> Dataset | DatasetDict:
    """Load a glyph dataset from whatever the training script is given.

    ``source`` may be a ``save_to_disk`` folder, a parquet file (as written by ``--parquet``), a local
    folder ``datasets.load_dataset`` understands (e.g. ``imagefolder`` with ``metadata.jsonl``), or a Hub
    dataset name. ``split=None`` returns a ``DatasetDict``; a split name returns that ``Dataset``.
    ``load_kwargs`` go to ``datasets.load_dataset`` (e.g. ``cache_dir``, ``revision``).
    """
    from datasets import Dataset, DatasetDict, load_dataset, load_from_disk

    path = Path(source)
    if path.exists():
        if path.is_dir() and ((path / "dataset_dict.json").exists() or (path / "state.json").exists()):
            loaded = load_from_disk(str(path))
        elif path.is_file():
            suffix = path.suffix.lower().lstrip(".")
            builder = {
                "parquet": "parquet",
                "arrow": "arrow",
                "jsonl": "json",
                "json": "json",
                "csv": "csv",
            }.get(suffix)
            if builder is None:
                raise GlyphDatasetError(
                    f"Don't know how to load {path}: expected a parquet file, a save_to_disk folder, an imagefolder "
                    "directory with metadata.jsonl, or a Hub dataset name."
                )
            loaded = load_dataset(builder, data_files=str(path), **load_kwargs)
        else:
            loaded = load_dataset(str(path), **load_kwargs)
    else:
        text = str(source)
        if (
            text.startswith((".", "/", "~"))
            or text.count("/") > 1
            or path.suffix in (".parquet", ".arrow", ".jsonl")
        ):
            raise FileNotFoundError(
                f"Dataset path {source} does not exist (and it is not a Hub dataset name like 'user/glyphs')."
            )
        loaded = load_dataset(str(source), **load_kwargs)
    dsd = DatasetDict({"train": loaded}) if isinstance(loaded, Dataset) else DatasetDict(loaded)
    dsd = _split_by_column(dsd)
    if split is None:
        return dsd
    if split not in dsd:
        raise GlyphDatasetError(f"Split {split!r} not in {source}; available: {', '.join(dsd)}.")
    return dsd[split]
