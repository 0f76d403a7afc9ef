"""glyph_pipeline.atomic: outputs appear complete or not at all, files and folders alike."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from glyph_pipeline.atomic import atomic_output, move_into_place, write_bytes, write_text


def entries(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_file_appears_complete_with_its_format_from_the_suffix(tmp_path):
    target = tmp_path / "new" / "figure.png"
    with atomic_output(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".png" and tmp.name.startswith(".")
        assert not target.exists()
        Image.new("L", (4, 4), 7).save(tmp)  # PIL picks PNG from the suffix
    assert Image.open(target).format == "PNG" and entries(target.parent) == ["figure.png"]
    assert write_text(tmp_path / "a.json", json.dumps({"x": "é"})).read_text(encoding="utf-8") == '{"x": "\\u00e9"}'
    assert write_bytes(tmp_path / "b.bin", b"\x00\x01").read_bytes() == b"\x00\x01"


def test_an_error_keeps_the_old_file_and_leaves_nothing_behind(tmp_path):
    target = tmp_path / "figure.png"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old" and entries(tmp_path) == ["figure.png"]


def test_a_folder_replaces_the_old_folder_whole(tmp_path):
    target = tmp_path / "dataset"
    target.mkdir()
    (target / "stale.arrow").write_text("old")
    with atomic_output(target) as tmp:
        tmp.mkdir()
        (tmp / "data.arrow").write_text("new")
    assert entries(target) == ["data.arrow"] and entries(tmp_path) == ["dataset"]
    with pytest.raises(KeyboardInterrupt), atomic_output(target) as tmp:
        tmp.mkdir()
        (tmp / "half.arrow").write_text("half")
        raise KeyboardInterrupt
    assert entries(target) == ["data.arrow"] and entries(tmp_path) == ["dataset"]
    # The renaming step alone, for a temporary folder whose name several processes agree on (checkpoints).
    (tmp_path / "dataset.tmp").mkdir()
    (tmp_path / "dataset.tmp" / "v3.arrow").write_text("v3")
    move_into_place(tmp_path / "dataset.tmp", target)
    assert entries(target) == ["v3.arrow"] and entries(tmp_path) == ["dataset"]
