"""The typeface judge: trained on real glyphs of Noto Sans CJK, AR PL UKai and AR PL UMing, scored on held-out
characters; what `glyffuser evaluate --typeface` reports; bad fonts and judges refused with the fix named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from glyph_pipeline.cli import main as cli_main
from glyph_pipeline.data.dataset import build_glyph_dataset, save_dataset
from glyph_pipeline.evaluation.judge import GlyphJudge, GlyphJudgeError, save_judge
from glyph_pipeline.evaluation.typeface import (
    DEFAULT_TYPEFACES,
    TypefaceError,
    load_typeface_judge,
    render_typefaces,
    train_typeface_judge,
    typeface_statistics,
)

pytestmark = pytest.mark.skipif(
    not all(Path(p).is_file() for p in DEFAULT_TYPEFACES.values() if p),
    reason="Debian's fonts-arphic-ukai/-uming are not installed (bash run.sh test installs them)",
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 32 px typeface judge trained on 400 characters per typeface, scored on 60 held-out ones."""
    uro = "".join(chr(cp) for cp in range(0x4E00, 0x4E00 + 700))
    data = build_glyph_dataset(characters=uro, size=16, test_fraction=0.1, num_workers=0, progress=False)
    root = tmp_path_factory.mktemp("typeface")
    dataset = save_dataset(data, root / "glyphs")
    judge, metrics = train_typeface_judge(
        dataset, size=32, max_chars=400, epochs=4, batch_size=64, log=lambda *_: None
    )
    save_judge(judge, root / "judge", metrics)
    test_chars = list(data["test"]["character"])
    return judge, metrics, root / "judge", test_chars


def test_typeface_judge_tells_the_fonts_apart_on_held_out_characters(trained):
    judge, metrics, _, test_chars = trained
    assert metrics["typefaces"] == ["noto-sans", "ukai", "uming"] == judge.config.class_names
    assert metrics["num_train_characters"] == 400 and metrics["num_held_out_characters"] >= 50
    assert not set(test_chars) & set(metrics["train_characters"])
    assert metrics["held_out_accuracy"] >= 0.9, metrics["held_out_accuracy_per_typeface"]
    assert min(metrics["held_out_accuracy_per_typeface"].values()) >= 0.8


def test_typeface_statistics_read_real_glyphs(trained):
    """What evaluate reports: the share read as the target typeface, samples and real glyphs."""
    judge, _, folder, test_chars = trained
    fonts = {n: p for n, p in DEFAULT_TYPEFACES.items()}
    images = {n: torch.from_numpy(a) for n, a in render_typefaces(test_chars[:40], fonts, 32).items()}
    stats = typeface_statistics(judge, "ukai", images["ukai"], images["noto-sans"])
    assert stats["share"] >= 0.8 and stats["real_share"] <= 0.2  # real = Noto here: not read as UKai
    assert stats["real_shares"]["noto-sans"] >= 0.8
    assert abs(sum(stats["shares"].values()) - 1) < 1e-9
    # a judge from disk works the same and checks the typeface name
    loaded = load_typeface_judge(folder, "ukai")
    assert typeface_statistics(loaded, "ukai", images["ukai"], images["ukai"])["share"] == stats["share"]
    with pytest.raises(GlyphJudgeError, match="knows noto-sans, ukai, uming, not 'kaishu'"):
        load_typeface_judge(folder, "kaishu")


def test_bad_fonts_and_judges_are_refused(tmp_path, trained):
    _, _, folder, _ = trained
    with pytest.raises(TypefaceError, match="does not exist"):
        train_typeface_judge(folder.parent / "glyphs", {"noto-sans": None, "mine": str(tmp_path / "nope.ttf")})
    dejavu = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    if dejavu.is_file():
        with pytest.raises(TypefaceError, match="covers 0 of .*not a CJK font"):
            train_typeface_judge(folder.parent / "glyphs", {"noto-sans": None, "latin": str(dejavu)})
    radical_judge = tmp_path / "radical"
    save_judge(GlyphJudge(sample_size=16), radical_judge)
    with pytest.raises(GlyphJudgeError, match="names radicals, not typefaces.*train-typeface-judge"):
        load_typeface_judge(radical_judge)


def test_evaluate_typeface_needs_the_judge(tmp_path, capsys):
    code = cli_main([
        "evaluate", "--model", str(tmp_path), "--judge", str(tmp_path), "--dataset", str(tmp_path),
        "--typeface", "ukai",
    ])
    assert code == 2 and "--typeface needs --typeface-judge" in capsys.readouterr().err


def test_cli_trains_and_saves(tmp_path, trained, capsys):
    _, _, folder, _ = trained
    code = cli_main([
        "train-typeface-judge", "--dataset", str(folder.parent / "glyphs"), "--out", str(tmp_path / "ok"),
        "--size", "16", "--max-chars", "60", "--epochs", "1", "--font", "noto-sans=" + DEFAULT_TYPEFACES["uming"],
        "--font", f"ukai={DEFAULT_TYPEFACES['ukai']}",
    ])
    assert code == 0 and "held-out accuracy" in capsys.readouterr().out
    assert load_typeface_judge(tmp_path / "ok", "ukai").config.class_names == ["noto-sans", "ukai"]
    code = cli_main([
        "train-typeface-judge", "--dataset", str(folder.parent / "glyphs"), "--out", str(tmp_path / "j"),
        "--size", "16", "--max-chars", "100", "--epochs", "1", "--font", f"ukai={DEFAULT_TYPEFACES['ukai']}",
        "--font", "noto-sans=" + str(np.__file__),  # not a font at all
    ])
    assert code == 2 and "noto-sans" in capsys.readouterr().err and not (tmp_path / "j").exists()
