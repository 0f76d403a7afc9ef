# Copyright 2026 The glyffuser developers. Licensed under the Apache License, Version 2.0.
"""Dataset map: every glyph of the dataset as one point of a 2-D UMAP, over a density backdrop.

Glyph images are flattened (after downscaling, then PCA for speed) and embedded with UMAP; a Gaussian
KDE of the points shades where glyphs crowd. Points are coloured by Kangxi radical (or any column), so
one can see which shapes the model has to learn and how the radicals cluster. Written as a PNG
(matplotlib) and as a self-contained interactive HTML (plotly.js inline: works offline) that shows each
glyph's character and definition on hover.

Needs the `viz` extra: ``pip install glyph-pipeline[viz]`` (matplotlib, umap-learn, plotly, scipy).
Command line: ``glyffuser dataset-map --dataset data/glyphs -o map.png``.
"""

from __future__ import annotations

import argparse
import csv
import html
import json
import os
import sys
import textwrap
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..atomic import atomic_output
from .layout import FigureError, check_output, check_positive

if TYPE_CHECKING:
    from datasets import Dataset

VIZ_HINT = "pip install glyph-pipeline[viz]"
METHODS = ("umap", "pca")
MIN_GLYPHS = 5
KDE_MAX_POINTS = 5000  # the density backdrop barely changes beyond this; KDE cost is points x grid cells
COLOR_LABELS = {"radical": "Kangxi radical", "strokes": "residual strokes", "codepoint": "code point"}


def require(module: str, purpose: str) -> Any:
    """Import an optional `viz` dependency or fail with the install command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"{purpose} needs {module.split('.')[0]}: {VIZ_HINT}") from err


@dataclass
class DatasetMap:
    """One row per glyph: its 2-D position, identity and colour value."""

    coords: np.ndarray  # (n, 2)
    characters: list[str]
    texts: list[str]
    codepoints: list[int]
    color_by: str
    colors: list[Any]  # value of the `color_by` column (None when missing)
    method: str = "umap"
    pixels: int = 32
    pca_dims: int | None = None
    density: tuple[np.ndarray, np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.characters)

    @property
    def numeric_colors(self) -> bool:
        return all(v is None or isinstance(v, (int, float, np.integer, np.floating)) for v in self.colors)

    @property
    def title(self) -> str:
        steps = f"{self.pixels}×{self.pixels} px" + (f" → PCA {self.pca_dims}" if self.pca_dims else "")
        what = COLOR_LABELS.get(self.color_by, self.color_by)
        return f"{self.method.upper()} of {len(self):,} glyphs ({steps} → 2-D) · colour: {what}"


# ----------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------


def load_map_dataset(source: str | os.PathLike | Dataset, split: str | None = None) -> Dataset:
    """One `Dataset` of all glyphs (all splits concatenated unless `split` is given)."""
    from datasets import Dataset, concatenate_datasets

    if isinstance(source, Dataset):
        return source
    from ..data.dataset import load_glyph_dataset

    loaded = load_glyph_dataset(source, split=split)
    return loaded if isinstance(loaded, Dataset) else concatenate_datasets(list(loaded.values()))


def glyph_matrix(ds: Dataset, pixels: int = 32, progress: bool = True, batch_size: int = 512) -> np.ndarray:
    """(n, pixels²) float32 ink coverage in [0, 1] (ink = 1), images area-averaged down to `pixels`."""
    from PIL import Image
    from tqdm.auto import tqdm

    rows = []
    with tqdm(total=len(ds), desc="reading glyphs", unit="glyph", disable=not progress) as bar:
        for batch in ds.select_columns(["image"]).iter(batch_size=batch_size):
            for image in batch["image"]:
                image = image.convert("L")
                if image.size != (pixels, pixels):
                    image = image.resize((pixels, pixels), Image.Resampling.BOX)
                rows.append(1.0 - np.asarray(image, dtype=np.float32).reshape(-1) / 255.0)
            bar.update(len(batch["image"]))
    return np.stack(rows)


def embed(
    features: np.ndarray,
    method: str = "umap",
    pca_dims: int | None = 50,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    epochs: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> tuple[np.ndarray, int | None]:
    """2-D coordinates of the rows of `features`, and the PCA width used first (None if none was)."""
    if method not in METHODS:
        raise FigureError(f"Unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    n, dims = features.shape
    if n < MIN_GLYPHS:
        raise FigureError(f"A map needs at least {MIN_GLYPHS} glyphs, got {n}.")
    decomposition = require("sklearn.decomposition", "PCA")
    if method == "pca":
        return decomposition.PCA(n_components=2, random_state=seed).fit_transform(features), 2
    used = None
    if pca_dims and pca_dims < dims:  # UMAP's neighbour search is much faster on 50 PCA components than on pixels
        used = min(pca_dims, n - 1)
        features = decomposition.PCA(n_components=used, random_state=seed).fit_transform(features)
    umap = require("umap", "UMAP")
    reducer = umap.UMAP(
        n_components=2, n_neighbors=max(2, min(n_neighbors, n - 1)), min_dist=min_dist, n_epochs=epochs,
        random_state=seed, verbose=progress,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs value.*overridden.*")  # seeded UMAP is single-threaded
        coords = reducer.fit_transform(features)
    return np.asarray(coords, dtype=np.float64), used


def density_grid(
    coords: np.ndarray, grid: int = 150, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Gaussian KDE of the points on a `grid`² lattice (xs, ys, zz), or None when it is degenerate."""
    stats = require("scipy.stats", "The density backdrop")
    points = coords
    if len(points) > KDE_MAX_POINTS:
        points = points[np.random.default_rng(seed).choice(len(points), KDE_MAX_POINTS, replace=False)]
    try:
        # Half of Scott's bandwidth: the clusters of the map stay visible instead of one smooth hill.
        kde = stats.gaussian_kde(points.T, bw_method=lambda k: 0.5 * k.scotts_factor())
    except (np.linalg.LinAlgError, ValueError):  # e.g. all points on a line
        return None
    lo, hi = coords.min(axis=0), coords.max(axis=0)
    pad = 0.05 * np.maximum(hi - lo, 1e-9)
    xs = np.linspace(lo[0] - pad[0], hi[0] + pad[0], grid)
    ys = np.linspace(lo[1] - pad[1], hi[1] + pad[1], grid)
    xx, yy = np.meshgrid(xs, ys)
    zz = kde(np.vstack([xx.ravel(), yy.ravel()])).reshape(xx.shape)
    return xs, ys, zz


def dataset_map(
    source: str | os.PathLike | Dataset,
    split: str | None = None,
    limit: int | None = None,
    color_by: str = "radical",
    pixels: int = 32,
    method: str = "umap",
    pca_dims: int | None = 50,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    epochs: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> DatasetMap:
    """Embed every glyph of a dataset (or a seeded random `limit` of them) in 2-D; see the module docstring."""
    if method not in METHODS:
        raise FigureError(f"Unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    check_positive("pixels", pixels, 4)
    if limit is not None:
        check_positive("limit", limit, MIN_GLYPHS)
    ds = load_map_dataset(source, split)
    missing = [c for c in ("image", "character", color_by) if c not in ds.column_names]
    if missing:
        raise FigureError(
            f"The dataset has no column(s) {', '.join(missing)}; columns: {', '.join(ds.column_names)}."
        )
    if limit is not None and limit < len(ds):  # a random sample maps the whole dataset; the first N is one block
        ds = ds.shuffle(seed=seed).select(range(limit))
    if len(ds) < MIN_GLYPHS:
        raise FigureError(f"A map needs at least {MIN_GLYPHS} glyphs; the dataset has {len(ds)}.")
    features = glyph_matrix(ds, pixels, progress)
    coords, used = embed(features, method, pca_dims, n_neighbors, min_dist, epochs, seed, progress)
    characters = ds["character"]
    result = DatasetMap(
        coords=coords,
        characters=characters,
        texts=ds["text"] if "text" in ds.column_names else [""] * len(ds),
        codepoints=ds["codepoint"] if "codepoint" in ds.column_names else [ord(c[0]) for c in characters],
        color_by=color_by,
        colors=ds[color_by],
        method=method,
        pixels=pixels,
        pca_dims=used if method == "umap" else None,
    )
    result.density = density_grid(coords, seed=seed)
    return result


# ----------------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------------


def _numeric(values: list[Any]) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def save_png(m: DatasetMap, path: str | os.PathLike, dpi: int = 150) -> Path:
    """Static map: KDE backdrop, one dot per glyph coloured by `m.color_by`."""
    matplotlib = require("matplotlib", "The PNG map")
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 8), dpi=dpi)
    try:
        if m.density is not None:
            xs, ys, zz = m.density
            levels = np.linspace(zz.max() * 0.04, zz.max(), 12)
            ax.contourf(xs, ys, zz, levels=levels, cmap="Greys", alpha=0.45)
        size = float(np.clip(4000 / max(len(m), 1), 2, 40))
        x, y = m.coords[:, 0], m.coords[:, 1]
        label = COLOR_LABELS.get(m.color_by, m.color_by)
        if m.numeric_colors:
            values = _numeric(m.colors)
            known = ~np.isnan(values)
            if (~known).any():
                ax.scatter(x[~known], y[~known], s=size, c="#999999", linewidths=0, label="unknown")
                ax.legend(loc="lower right", fontsize=8)
            points = ax.scatter(x[known], y[known], s=size, c=values[known], cmap="turbo", linewidths=0)
            fig.colorbar(points, ax=ax, label=label, shrink=0.8)
        else:
            categories = sorted({str(v) for v in m.colors})
            cmap = plt.get_cmap("tab20", max(len(categories), 1))
            for i, cat in enumerate(categories):
                mask = np.array([str(v) == cat for v in m.colors])
                ax.scatter(x[mask], y[mask], s=size, color=cmap(i), linewidths=0, label=cat)
            if len(categories) <= 20:
                ax.legend(title=label, fontsize=8, markerscale=max(1.0, 20 / size) ** 0.5, loc="best")
        ax.set_title(m.title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(f"{m.method.upper()} 1")
        ax.set_ylabel(f"{m.method.upper()} 2")
        fig.tight_layout()
        with atomic_output(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return Path(path)


def _hover_text(text: str, width: int = 60) -> str:
    return "<br>".join(textwrap.wrap(html.escape(text or ""), width)[:4]) or "(no definition)"


def save_html(m: DatasetMap, path: str | os.PathLike) -> Path:
    """Interactive map (plotly, plotly.js embedded so it opens offline): hover shows glyph and definition."""
    go = require("plotly.graph_objects", "The HTML map")
    label = COLOR_LABELS.get(m.color_by, m.color_by)
    custom = np.array(
        [
            [c, f"U+{cp:04X}", _hover_text(t), "?" if v is None else html.escape(str(v))]
            for c, cp, t, v in zip(m.characters, m.codepoints, m.texts, m.colors)
        ],
        dtype=object,
    )
    hover = (
        "<span style='font-size:28px'>%{customdata[0]}</span> %{customdata[1]}<br>%{customdata[2]}"
        f"<br>{html.escape(label)}: %{{customdata[3]}}<extra></extra>"
    )
    fig = go.Figure()
    if m.density is not None:
        xs, ys, zz = m.density
        fig.add_trace(
            go.Contour(
                x=xs, y=ys, z=zz, showscale=False, hoverinfo="skip", line_width=0, opacity=0.5,
                colorscale=[[0, "rgba(255,255,255,0)"], [1, "rgba(40,40,40,1)"]],
                contours=dict(start=zz.max() * 0.04, end=zz.max(), size=zz.max() / 12), name="density",
            )
        )
    x, y = m.coords[:, 0], m.coords[:, 1]
    marker = dict(size=float(np.clip(1500 / max(len(m), 1) ** 0.75, 3, 12)))
    if m.numeric_colors:
        values = _numeric(m.colors)
        known = ~np.isnan(values)
        groups = [("glyphs", known, dict(color=values[known], colorscale="Turbo", colorbar=dict(title=label)))]
        if (~known).any():
            groups.append((f"{label} unknown", ~known, dict(color="#999999")))
    else:
        categories = sorted({str(v) for v in m.colors})
        groups = [(cat, np.array([str(v) == cat for v in m.colors]), {}) for cat in categories]
    for name, mask, colour in groups:
        fig.add_trace(
            go.Scattergl(
                x=x[mask], y=y[mask], mode="markers", name=name, customdata=custom[mask], hovertemplate=hover,
                marker={**marker, **colour},
            )
        )
    fig.update_layout(
        title=m.title, template="plotly_white", hoverlabel=dict(align="left"), legend=dict(itemsizing="constant"),
        xaxis=dict(showticklabels=False, title=f"{m.method.upper()} 1"),
        yaxis=dict(showticklabels=False, title=f"{m.method.upper()} 2", scaleanchor="x"),
    )
    with atomic_output(path) as tmp:
        fig.write_html(str(tmp), include_plotlyjs=True, full_html=True)
    return Path(path)


def save_coords(m: DatasetMap, path: str | os.PathLike) -> Path:
    """Positions as CSV or JSON (one record per glyph) for other tools."""
    records = [
        {"character": c, "codepoint": cp, "x": float(x), "y": float(y), m.color_by: v, "text": t}
        for c, cp, (x, y), v, t in zip(m.characters, m.codepoints, m.coords, m.colors, m.texts)
    ]
    with atomic_output(path) as tmp:
        if Path(path).suffix.lower() == ".json":
            tmp.write_text(json.dumps(records, ensure_ascii=False, indent=0), encoding="utf-8")
        else:
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, fieldnames=list(records[0]))
                writer.writeheader()
                writer.writerows(records)
    return Path(path)


# ----------------------------------------------------------------------------------------------------
# Command line: `glyffuser dataset-map`
# ----------------------------------------------------------------------------------------------------


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset", required=True, help="glyph dataset: save_to_disk folder, parquet file or Hub name"
    )
    parser.add_argument("--split", help="only this split (default: all splits)")
    parser.add_argument("--limit", type=int, help="map a seeded random sample of N glyphs (speed)")
    parser.add_argument("--color-by", default="radical", help="column colouring the points (default: radical)")
    parser.add_argument("--method", choices=METHODS, default="umap", help="umap (default) or pca (fast, cruder)")
    parser.add_argument("--pixels", type=int, default=32, help="downscale glyphs to this size first (default: 32)")
    parser.add_argument("--pca-dims", type=int, default=50, help="PCA components before UMAP; 0 = none (default: 50)")
    parser.add_argument("--n-neighbors", type=int, default=15, help="UMAP n_neighbors (default: 15)")
    parser.add_argument("--min-dist", type=float, default=0.1, help="UMAP min_dist (default: 0.1)")
    parser.add_argument("--epochs", type=int, help="UMAP optimisation epochs (default: UMAP's choice)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample, PCA and UMAP (default: 0)")
    parser.add_argument("-o", "--output", type=Path, default=Path("dataset-map.png"), help="PNG to write")
    parser.add_argument("--html", type=Path, help="interactive HTML to write (default: the PNG's name with .html)")
    parser.add_argument("--no-html", action="store_true", help="skip the HTML map")
    parser.add_argument("--coords", type=Path, help="also write the positions as .csv or .json")
    parser.add_argument("--dpi", type=int, default=150, help="PNG resolution (default: 150 -> 1350x1200 px)")
    parser.add_argument("--no-progress", action="store_true", help="no progress output")


def run(args: argparse.Namespace) -> int:
    """Entry point of `glyffuser dataset-map`: check everything, embed, write PNG / HTML / coordinates."""
    try:
        png = check_output(args.output, (".png",))
        html_path = None if args.no_html else check_output(args.html or png.with_suffix(".html"), (".html", ".htm"))
        coords = check_output(args.coords, (".csv", ".json")) if args.coords else None
        if args.limit is not None:
            check_positive("--limit", args.limit, MIN_GLYPHS)
        check_positive("--pixels", args.pixels, 4)
        check_positive("--dpi", args.dpi, 20)
        check_positive("--pca-dims", args.pca_dims, 0)
        check_positive("--n-neighbors", args.n_neighbors, 2)
        if args.epochs is not None:
            check_positive("--epochs", args.epochs)
        # Optional dependencies are checked before any glyph is read.
        require("matplotlib", "The PNG map")
        require("scipy.stats", "The density backdrop")
        require("sklearn.decomposition", "PCA")
        if args.method == "umap":
            require("umap", "UMAP")
        if html_path is not None:
            require("plotly.graph_objects", "The HTML map")
        m = dataset_map(
            args.dataset, args.split, args.limit, args.color_by, args.pixels, args.method, args.pca_dims or None,
            args.n_neighbors, args.min_dist, args.epochs, args.seed, progress=not args.no_progress,
        )
        print(f"wrote {save_png(m, png, args.dpi)}")
        if html_path is not None:
            print(f"wrote {save_html(m, html_path)}")
        if coords is not None:
            print(f"wrote {save_coords(m, coords)}")
        print(f"{len(m):,} glyphs mapped")
    except (ValueError, FileNotFoundError, ImportError) as err:
        print(f"glyffuser dataset-map: error: {err}", file=sys.stderr)
        return 2
    return 0
