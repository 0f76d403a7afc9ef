"""Glyph dataset builder: real Noto Sans CJK font, real Unihan (Debian `unicode-data`), small subsets."""

from __future__ import annotations

import bz2
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFont

from glyph_pipeline.cli import main as cli_main
from glyph_pipeline.data import unihan as unihan_mod
from glyph_pipeline.data.dataset import (
    GlyphDatasetError,
    build_glyph_dataset,
    glyph_features,
    load_glyph_dataset,
    save_dataset,
    save_parquet,
)
from glyph_pipeline.data.render import FontError, GlyphRenderer, load_font, render_glyph, render_glyphs
from glyph_pipeline.data.unihan import (
    UnihanError,
    block_of,
    clean_definition,
    clean_definitions,
    load_unihan,
    parse_blocks,
    parse_rs_unicode,
)

try:
    UNIHAN_DIR = unihan_mod.find_default_unihan()
except FileNotFoundError:  # pragma: no cover - depends on the machine
    pytest.skip("Unihan not installed (apt-get install unicode-data)", allow_module_level=True)

NOT_IN_NOTO = "\U00020000"  # Ext B 𠀀: has a kDefinition, Noto Sans CJK SC lacks it
# Box-like, symmetric glyphs for placement checks, plus a spread of shapes.
SYMMETRIC = "口田回国中"
CHARS = SYMMETRIC + "永一丨人水火龍鬱铁㐀㐂慢鋸氪" + NOT_IN_NOTO


@pytest.fixture(scope="module")
def unihan():
    return load_unihan()


@pytest.fixture(scope="module")
def font():
    return load_font()


@pytest.fixture(scope="module")
def built(unihan):
    """One real build at 128 px, in-process, shared by the read-only tests."""
    return build_glyph_dataset(
        characters=CHARS, unihan=unihan, test_fraction=0.2, num_workers=0, progress=False, return_report=True
    )


def _rows(dsd) -> dict[str, dict]:
    return {row["character"]: row for split in dsd.values() for row in split}


def _ink(image: Image.Image) -> np.ndarray:
    return 255.0 - np.asarray(image, dtype=np.float64)


def _latin_only_font(tmp_path_factory) -> Path:
    """A real (tiny) Latin-only TrueType font, generated with fontTools: covers "A" and nothing CJK."""
    from fontTools.fontBuilder import FontBuilder
    from fontTools.pens.ttGlyphPen import TTGlyphPen

    pen = TTGlyphPen(None)
    pen.moveTo((100, 0))
    for point in ((100, 700), (500, 700), (500, 0)):
        pen.lineTo(point)
    pen.closePath()
    box = pen.glyph()
    fb = FontBuilder(1000, isTTF=True)
    fb.setupGlyphOrder([".notdef", "A"])
    fb.setupCharacterMap({ord("A"): "A"})
    fb.setupGlyf({".notdef": TTGlyphPen(None).glyph(), "A": box})
    fb.setupHorizontalMetrics({".notdef": (600, 0), "A": (600, 100)})
    fb.setupHorizontalHeader(ascent=800, descent=-200)
    fb.setupNameTable({"familyName": "Latin Only", "styleName": "Regular"})
    fb.setupOS2(sTypoAscender=800, sTypoDescender=-200, usWinAscent=800, usWinDescent=200)
    fb.setupPost()
    path = tmp_path_factory.mktemp("fonts") / "latin_only.ttf"
    fb.save(str(path))
    return path


# ------------------------------------------------------------------------------------------- schema


def test_columns_types_and_images(built):
    dsd, report = built
    assert set(dsd) == {"train", "test"}
    for split in dsd.values():
        assert split.features == glyph_features()
        assert split.column_names == [
            "image",
            "text",
            "character",
            "codepoint",
            "block",
            "radical",
            "strokes",
        ]
    rows = _rows(dsd)
    assert NOT_IN_NOTO not in rows
    assert len(rows) == len(CHARS) - 1 == report.rows
    for ch, row in rows.items():
        assert row["image"].mode == "L" and row["image"].size == (128, 128)
        assert row["image"].format == "PNG"
        assert row["codepoint"] == ord(ch) and isinstance(row["codepoint"], int)
        assert row["text"] and row["text"].isascii(), row["text"]
        assert row["block"] == block_of(ord(ch))
        assert 1 <= row["radical"] <= 214
    assert rows["口"]["radical"] == 30 and rows["口"]["strokes"] == 0
    assert rows["国"]["radical"] == 31 and rows["国"]["strokes"] == 5
    # 铁 is "167'.5": the simplified form of radical 167 (金/钅), 5 residual strokes
    assert rows["铁"]["radical"] == 167 and rows["铁"]["strokes"] == 5
    assert rows["㐀"]["block"] == "ext-a" and rows["口"]["block"] == "uro"


def test_rs_unicode_and_blocks():
    assert parse_rs_unicode("167'.5") == (167, 5)
    assert parse_rs_unicode("120''.3 72.8") == (120, 3)  # first value; double-apostrophe form
    assert parse_rs_unicode("9.-1") == (9, -1)
    assert parse_rs_unicode("") == (None, None)
    assert block_of(0x4E00) == "uro" and block_of(0x3400) == "ext-a" and block_of(0x20000) == "ext-b"
    assert block_of(0x2A700) == "ext-c" and block_of(0x30000) == "ext-g" and block_of(0xF900) == "compat"
    assert "compat" not in parse_blocks(None) and "ext-b" in parse_blocks(None)
    assert parse_blocks("uro, B ,extA") == ("uro", "ext-b", "ext-a")
    assert "compat" in parse_blocks("all")
    with pytest.raises(ValueError, match="Unknown CJK block"):
        parse_blocks("uro,klingon")


# ---------------------------------------------------------------------------------------- rendering


def test_ink_is_centred_and_not_clipped(built):
    rows = _rows(built[0])
    centroids = []
    for ch, row in rows.items():
        ink = _ink(row["image"])
        assert ink.sum() > 0, f"{ch} rendered blank"
        # no clipping: the outermost rows and columns stay white
        assert not ink[0].any() and not ink[-1].any() and not ink[:, 0].any() and not ink[:, -1].any(), ch
        ys, xs = np.mgrid[0:128, 0:128]
        centroids.append(((ink * xs).sum() / ink.sum(), (ink * ys).sum() / ink.sum()))
    cx, cy = np.mean(centroids, axis=0)
    assert abs(cx - 63.5) < 2.0 and abs(cy - 63.5) < 2.0, (cx, cy)
    # Em box centred: at 128 px the em is 100 px and the baseline sits at 64 + (88 - 12) / 2 = 102, so every
    # glyph stays inside rows 14..114, and full-height symmetric glyphs are centred both ways.
    for ch, row in rows.items():
        ink = _ink(row["image"]) > 0
        top, bottom = np.flatnonzero(ink.any(1))[[0, -1]]
        assert 14 <= top and bottom <= 114, (ch, top, bottom)
    for ch in SYMMETRIC:
        ink = _ink(rows[ch]["image"]) > 0
        left, right = np.flatnonzero(ink.any(0))[[0, -1]]
        assert abs((left + right) / 2 - 63.5) <= 1, (ch, left, right)
    for ch in "中永":
        ink = _ink(rows[ch]["image"]) > 0
        top, bottom = np.flatnonzero(ink.any(1))[[0, -1]]
        assert abs((top + bottom) / 2 - 63.5) <= 1.5, (ch, top, bottom)
        assert 88 <= bottom - top + 1 <= 100, (ch, top, bottom)  # close to the 100 px em


def test_small_sizes_and_scale(font):
    img = GlyphRenderer(font, size=32).render("国")
    assert img.mode == "L" and img.size == (32, 32)
    ink = _ink(img) > 0
    assert not ink[0].any() and not ink[-1].any() and not ink[:, 0].any() and not ink[:, -1].any()
    small = _ink(GlyphRenderer(font, size=128, scale=0.5).render("口")) > 0
    rows = np.flatnonzero(small.any(1))
    assert 40 <= rows[-1] - rows[0] + 1 <= 52  # half the em of the default 100 px


def test_parallel_rendering_matches_in_process(font):
    chars = list("永和九年岁在癸丑暮春之初会于会稽山阴")
    serial = render_glyphs(chars, font, size=64, num_workers=0, progress=False)
    parallel = render_glyphs(chars, font, size=64, num_workers=2, chunk_size=3, progress=False)
    assert serial == parallel
    assert len(set(serial)) == len(set(chars))


def test_basic_layout_matches_raqm(font):
    """BASIC layout is used for speed; it must draw the same pixels as raqm for single ideographs."""
    from PIL import features

    if not features.check("raqm"):
        pytest.skip("raqm not available")
    renderer = GlyphRenderer(font, size=64)
    raqm = GlyphRenderer(font, size=64, layout_engine=ImageFont.Layout.RAQM)
    for ch in "永鬱㐀铁":
        assert renderer.render(ch).tobytes() == raqm.render(ch).tobytes()


def test_coverage_is_the_cmap(font, built):
    from fontTools.ttLib import TTFont

    cmap = TTFont(font.path, fontNumber=font.index, lazy=True).getBestCmap()
    assert font.name == "Noto Sans CJK SC" and font.index == 2
    assert font.covers("永") and ord("永") in cmap
    assert not font.covers(NOT_IN_NOTO) and ord(NOT_IN_NOTO) not in cmap
    report = built[1]
    assert sum(report.missing_from_font.values()) == 1 and report.missing_from_font["ext-b"] == 1
    assert "U+20000" in report.missing_examples
    assert "not in font" in report.format()


# ----------------------------------------------------------------------------------------- cleaning


def test_cleaning_real_unihan_lines(unihan):
    d = unihan.definitions
    # The real lines (guards against the test silently checking something else)
    assert d[0x6162] == "slow(ly), leisurely, sluggish"
    assert d[0x9385] == "(Cant.) to saw; to cut"
    assert d[0x3402].startswith("(J) non-standard form of U+559C 喜, to like")
    assert d[0x3400] == "(same as U+4E18 丘) hillock or mound"
    # English parentheses survive (the original regex typo stripped them)
    assert clean_definition(d[0x6162]) == "slow(ly), leisurely, sluggish"
    assert clean_definition(d[0x9385]) == "(Cant.) to saw; to cut"
    assert clean_definition(d[0x6C2A]) == "krypton (element 36, Kr)"
    # references to other characters go, the meaning stays
    assert clean_definition(d[0x3402]) == "to like, love, enjoy; a joyful thing"
    assert clean_definition(d[0x3400]) == "hillock or mound"
    assert (
        clean_definition(d[0x5C88]) == "a mountain in Suiping county, Henan"
    )  # "嵖岈山, ... Suìpíng ... Hénán"
    # diacritics folded
    assert "ā" in d[0x5710] and clean_definition(d[0x5710]) == "place in Shanyin county, Shanxi"
    assert clean_definition(d[0x73D0]) == "enamel, cloisonne"


def test_cleaning_all_of_unihan_is_english(unihan):
    cleaned, _ = clean_definitions(unihan.definitions)
    texts = [t for t in cleaned.values() if t]
    assert len(texts) > 22_800
    assert {ch for t in texts for ch in t if not ch.isascii()} <= {
        "λ",
        "ʒ",
        "℥",
    }  # symbols with no ASCII form
    assert not any("U+" in t for t in texts)
    assert not any(t.startswith((",", ";")) or t.endswith((",", ";")) or "()" in t for t in texts)


def test_same_as_resolution(unihan):
    d = unihan.definitions
    assert d[0x61DE] == "variant of U+8499 蒙"  # 懞: only a pointer
    assert clean_definition(d[0x61DE]) == ""
    with_resolve, resolved = clean_definitions({0x61DE: d[0x61DE], 0x8499: d[0x8499]})
    assert with_resolve[0x61DE] == clean_definition(d[0x8499]) != "" and resolved == {0x61DE}
    without, resolved = clean_definitions({0x61DE: d[0x61DE], 0x8499: d[0x8499]}, resolve_same_as=False)
    assert without[0x61DE] == "" and not resolved
    # a multi-character word is not a pointer: "another name for 知母" must not borrow 知's meaning
    assert clean_definitions({0x4570: d[0x4570], 0x77E5: d[0x77E5]})[0][0x4570] == ""
    # end to end: the row exists only with resolution on
    dsd = build_glyph_dataset(characters="懞", unihan=unihan, test_fraction=0, num_workers=0, progress=False)
    assert dsd["train"][0]["text"] == clean_definition(d[0x8499])
    with pytest.raises(GlyphDatasetError, match="dropped"):
        build_glyph_dataset(
            characters="懞", unihan=unihan, resolve_same_as=False, num_workers=0, progress=False
        )


# ----------------------------------------------------------------------------------- split and I/O


def test_split_is_seeded_and_deterministic(unihan):
    kwargs = dict(unihan=unihan, limit=60, size=32, test_fraction=0.2, num_workers=0, progress=False)
    a = build_glyph_dataset(seed=1, **kwargs)
    b = build_glyph_dataset(seed=1, **kwargs)
    c = build_glyph_dataset(seed=2, **kwargs)
    test_a = list(a["test"]["codepoint"])
    assert len(test_a) == 12 and len(a["train"]) == 48
    assert test_a == list(b["test"]["codepoint"])
    assert list(a["train"]["codepoint"]) == list(b["train"]["codepoint"])
    assert set(test_a) != set(c["test"]["codepoint"])
    assert not set(test_a) & set(a["train"]["codepoint"])
    assert list(a["train"]["codepoint"]) == sorted(a["train"]["codepoint"])  # code point order in a split


UKAI = Path("/usr/share/fonts/truetype/arphic/ukai.ttc")  # Debian fonts-arphic-ukai (bash run.sh test installs it)


def test_adaptation_set_keeps_the_reference_test_split(unihan, tmp_path):
    """--num-chars N --split-from REF: a seeded choice of N training characters in another typeface, and the
    reference's held-out characters (those the font covers) as the test split."""
    if not UKAI.is_file():
        pytest.skip("Debian's fonts-arphic-ukai is not installed")
    uro = "".join(chr(cp) for cp in range(0x4E00, 0x4E00 + 300))  # common characters: UKai covers most
    common = dict(unihan=unihan, characters=uro, size=16, num_workers=0, progress=False)
    reference = save_dataset(build_glyph_dataset(test_fraction=0.1, **common), tmp_path / "ref")
    held_out = set(load_glyph_dataset(reference)["test"]["character"])
    a = build_glyph_dataset(font=UKAI, num_chars=40, split_from=reference, seed=3, **common)
    b = build_glyph_dataset(font=UKAI, num_chars=40, split_from=reference, seed=3, **common)
    c = build_glyph_dataset(font=UKAI, num_chars=40, split_from=reference, seed=4, **common)
    assert len(a["train"]) == 40 and list(a["train"]["character"]) == list(b["train"]["character"])
    assert set(a["train"]["character"]) != set(c["train"]["character"])  # the seed chooses
    assert set(a["test"]["character"]) <= held_out and len(a["test"]) >= 0.8 * len(held_out)
    assert not set(a["train"]["character"]) & held_out
    assert list(a["test"]["character"]) == list(c["test"]["character"])  # the test split is kept whole
    # the images are UKai's, not Noto's
    ukai = render_glyph(a["test"][0]["character"], load_font(UKAI), size=16)
    assert np.array_equal(np.asarray(a["test"][0]["image"].convert("L")), np.asarray(ukai))
    with pytest.raises(GlyphDatasetError, match="--split-from .* no 'test' split"):
        only_train = save_dataset(build_glyph_dataset(test_fraction=0, **common), tmp_path / "train-only")
        build_glyph_dataset(font=UKAI, num_chars=40, split_from=only_train, **common)
    with pytest.raises(GlyphDatasetError, match="num_chars must be >= 1"):
        build_glyph_dataset(font=UKAI, num_chars=0, **common)


def test_save_to_disk_parquet_and_imagefolder_roundtrip(built, tmp_path):
    dsd = built[0]
    want = {split: list(ds["codepoint"]) for split, ds in dsd.items()}
    png = {row["codepoint"]: np.asarray(row["image"]) for row in dsd["train"]}

    folder = save_dataset(dsd, tmp_path / "glyphs")
    loaded = load_glyph_dataset(folder)
    assert {s: list(ds["codepoint"]) for s, ds in loaded.items()} == want
    assert loaded["train"].features == glyph_features()

    parquet = save_parquet(dsd, tmp_path / "glyphs.parquet")
    loaded = load_glyph_dataset(parquet, cache_dir=str(tmp_path / "cache"))
    assert {s: list(ds["codepoint"]) for s, ds in loaded.items()} == want
    test_split = load_glyph_dataset(parquet, split="test", cache_dir=str(tmp_path / "cache"))
    assert list(test_split["codepoint"]) == want["test"] and "split" not in test_split.column_names
    row = test_split[0]
    assert row["image"].mode == "L" and row["image"].size == (128, 128)

    imagefolder = tmp_path / "imagefolder"
    for split, ds in dsd.items():
        (imagefolder / split).mkdir(parents=True)
        with open(imagefolder / split / "metadata.jsonl", "w", encoding="utf-8") as fh:
            for r in ds:
                name = f"{r['codepoint']:05X}.png"
                r["image"].save(imagefolder / split / name)
                fh.write(
                    json.dumps({"file_name": name, "text": r["text"], "codepoint": r["codepoint"]}) + "\n"
                )
    train = load_glyph_dataset(imagefolder, split="train", cache_dir=str(tmp_path / "cache"))
    assert sorted(train["codepoint"]) == sorted(want["train"])
    r = train[0]
    assert r["text"] and np.array_equal(np.asarray(r["image"]), png[r["codepoint"]])

    with pytest.raises(GlyphDatasetError, match="not in"):
        load_glyph_dataset(folder, split="validation")
    with pytest.raises(FileNotFoundError):
        load_glyph_dataset(tmp_path / "missing.parquet")


# ------------------------------------------------------------------------------------------- errors


def test_font_errors(tmp_path, tmp_path_factory, unihan):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_font(tmp_path / "nope.ttf")
    garbage = tmp_path / "garbage.ttf"
    garbage.write_bytes(b"definitely not a font" * 50)
    with pytest.raises(FontError, match="not a readable TrueType/OpenType font"):
        load_font(garbage)
    with pytest.raises(FontError, match=r"Face index 10 is out of range.*10 faces.*2: Noto Sans CJK SC"):
        load_font(None, 10)
    dejavu = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")  # Debian fonts-dejavu-core
    for latin in [_latin_only_font(tmp_path_factory), *([dejavu] if dejavu.is_file() else [])]:
        assert load_font(latin).covers("A")
        with pytest.raises(FontError, match="out of range"):
            load_font(latin, 1)
        with pytest.raises(FontError, match="covers none"):
            build_glyph_dataset(font=latin, unihan=unihan, limit=5, num_workers=0, progress=False)


def test_unihan_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_unihan(tmp_path / "missing.txt")
    bad = tmp_path / "Unihan_Readings.txt"
    bad.write_text(
        "# header\nU+3400\tkDefinition\thillock\nU+3401 kDefinition broken line\n", encoding="utf-8"
    )
    with pytest.raises(UnihanError, match=r"Unihan_Readings.txt:3: not a Unihan line"):
        load_unihan(bad)
    no_defs = tmp_path / "Unihan_Variants.txt.bz2"
    no_defs.write_bytes(bz2.compress(b"U+3400\tkZVariant\tU+4E18\n"))
    with pytest.raises(UnihanError, match="No kDefinition"):
        load_unihan(no_defs)
    corrupt = tmp_path / "corrupt.txt.bz2"
    corrupt.write_bytes(b"BZh9 this is not bzip2")
    with pytest.raises(UnihanError, match="Cannot read"):
        load_unihan(corrupt)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UnihanError, match="No Unihan files"):
        load_unihan(tmp_path / "empty")
    monkeypatch.setattr(unihan_mod, "DEFAULT_UNIHAN_DIRS", (str(tmp_path / "nowhere"),))
    with pytest.raises(FileNotFoundError, match=r"apt-get install unicode-data.*--unihan"):
        load_unihan()


def test_unihan_sources_zip_and_plain_text(tmp_path, unihan):
    import zipfile

    readings = bz2.decompress((UNIHAN_DIR / "Unihan_Readings.txt.bz2").read_bytes())
    irg = bz2.decompress((UNIHAN_DIR / "Unihan_IRGSources.txt.bz2").read_bytes())
    with zipfile.ZipFile(tmp_path / "Unihan.zip", "w") as zf:  # Unicode's Unihan.zip layout
        zf.writestr("Unihan_Readings.txt", readings)
        zf.writestr("Unihan_IRGSources.txt", irg)
    from_zip = load_unihan(tmp_path / "Unihan.zip")
    assert from_zip.definitions == unihan.definitions and from_zip.rs_unicode == unihan.rs_unicode
    (tmp_path / "Unihan_Readings.txt").write_bytes(readings)
    plain = load_unihan(tmp_path / "Unihan_Readings.txt")
    assert plain.definitions == unihan.definitions and not plain.rs_unicode  # no sibling IRG file
    assert plain.version == unihan.version == "15.0.0"


def test_arguments_are_checked_before_work(unihan):
    for bad in (dict(size=4), dict(scale=0), dict(test_fraction=1.0), dict(limit=0)):
        with pytest.raises(GlyphDatasetError):
            build_glyph_dataset(unihan=unihan, progress=False, **bad)
    for low in (32, 4, 48):  # super-resolution pairs: the low-resolution render must be smaller than the image
        with pytest.raises(GlyphDatasetError, match=r"low_res_size must be an integer in \[8, 32\)"):
            build_glyph_dataset(unihan=unihan, size=32, low_res_size=low, progress=False)


# -------------------------------------------------------------------------------------- CLI, atomic


@pytest.fixture(scope="module")
def small_unihan(unihan, tmp_path_factory) -> Path:
    """The real Unihan lines of the first 40 Ext A characters, as Unihan_Readings.txt + Unihan_IRGSources.txt."""
    folder = tmp_path_factory.mktemp("unihan")
    cps = sorted(unihan.definitions)[:40]
    header = f"# Unicode version: {unihan.version}\n#\n"
    readings = "".join(f"U+{cp:04X}\tkDefinition\t{unihan.definitions[cp]}\n" for cp in cps)
    irg = "".join(f"U+{cp:04X}\tkRSUnicode\t{unihan.rs_unicode[cp]}\n" for cp in cps)
    (folder / "Unihan_Readings.txt").write_text(header + readings, encoding="utf-8")
    (folder / "Unihan_IRGSources.txt").write_text(header + irg, encoding="utf-8")
    return folder / "Unihan_Readings.txt"


def test_cli_build_refuses_existing_output_and_overwrites(tmp_path, capsys, small_unihan):
    out, parquet = tmp_path / "ds", tmp_path / "ds.parquet"
    common = ["--unihan", str(small_unihan), "--size", "32", "--no-progress"]
    args = ["build-dataset", "--out", str(out), "--parquet", str(parquet), "--limit", "24"]
    args += ["--test-fraction", "0.25", "--num-workers", "2", *common]
    assert cli_main(args) == 0
    printed = capsys.readouterr().out
    assert "Glyph dataset: 24 rows (train 18, test 6)" in printed and "ext-a" in printed
    ds = load_glyph_dataset(out)
    assert len(ds["train"]) == 18 and ds["train"][0]["image"].size == (32, 32)
    assert ds["train"][0]["radical"] is not None  # kRSUnicode picked up from the sibling IRG file
    assert len(load_glyph_dataset(parquet, split="train", cache_dir=str(tmp_path / "cache"))) == 18
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name or ".old-" in p.name]

    stamp = (out / "dataset_dict.json").stat().st_mtime_ns
    again = ["build-dataset", "--out", str(out), "--limit", "8", *common]
    assert cli_main(again) == 2  # exists: refused before any work
    assert "already exists" in capsys.readouterr().err
    assert (out / "dataset_dict.json").stat().st_mtime_ns == stamp

    assert cli_main([*again, "--overwrite"]) == 0
    assert sum(len(s) for s in load_glyph_dataset(out).values()) == 8
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name or ".old-" in p.name]

    assert cli_main(["build-dataset", "--limit", "2"]) == 2  # no output requested
    assert "nothing to write" in capsys.readouterr().err


def test_failed_save_never_leaves_a_half_written_dataset(built, tmp_path):
    """save_to_disk writes split by split; a failure in the second split must not touch the target."""
    from datasets import Dataset, DatasetDict

    dsd = built[0]
    target = save_dataset(dsd, tmp_path / "glyphs")
    before = sorted(p.relative_to(target) for p in target.rglob("*"))
    broken = Dataset.from_dict(
        {**dsd["test"][:1], "image": [{"bytes": None, "path": str(tmp_path / "vanished.png")}]},
        features=glyph_features(),
    )
    with pytest.raises(FileNotFoundError):
        save_dataset(DatasetDict({"train": dsd["train"], "test": broken}), target, overwrite=True)
    assert sorted(p.relative_to(target) for p in target.rglob("*")) == before
    assert len(load_glyph_dataset(target)["test"]) == len(dsd["test"])
    assert [p.name for p in tmp_path.iterdir()] == ["glyphs"]  # temp folder cleaned up
    with pytest.raises(FileExistsError):
        save_dataset(dsd, target)
    assert os.listdir(tmp_path) == ["glyphs"]
