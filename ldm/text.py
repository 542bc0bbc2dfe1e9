"""Pretrained text conditioner of the released T23D model: CLIP ViT-L/14's text transformer (spec §5.2).

HF transformers `CLIPTokenizer` + `CLIPTextModel` from `openai/clip-vit-large-patch14`, as sgm's FrozenCLIPEmbedder
runs them:
  * tokens padded to 77 and truncated; CLIP-L's pad token is `<|endoftext|>` (id 49407, the same as EOS), so a
    prompt reads [SOT, words…, EOT, EOT, …];
  * no attention mask is passed: the causal mask alone keeps every real token independent of the padding, and the
    padded positions' outputs (which the denoiser cross-attends to) are those of the release;
  * crossattn = last_hidden_state after the final LayerNorm (B, 77, 768); vector = pooler_output, the state at the
    first EOT (B, 768).
The empty string is a valid prompt: it is the released training's classifier-free-guidance null caption.

transformers 5 only has the `tokenizers`-backed CLIP tokenizer (same vocabulary and merges as the slow one the
release used; text normalisation differs only on unusual unicode, which the slow one passed through ftfy).
"""
from __future__ import annotations

import os
from contextlib import contextmanager

import torch

from ldm.base import FrozenConditioner, as_prompt_list
from ldm.weights import MissingWeightsError, is_repo_id, resolve_folder

CLIP_L14_TEXT = "openai/clip-vit-large-patch14"


def _how_to(source: str) -> str:
    repo = source if is_repo_id(source) else CLIP_L14_TEXT
    return (f"download with `hf download {repo}` (read from the Hugging Face cache when offline) "
            f"or pass --text-encoder PATH to a folder holding a saved CLIPTextModel/CLIPModel and its tokenizer")


@contextmanager
def _quiet_transformers():
    """Silences transformers' load report and progress bar: loading the text tower from a full CLIPModel
    checkpoint (the hub layout) lists every vision tensor as unexpected, which is expected here."""
    from transformers.utils import logging as hf_logging

    verbosity, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()


class CLIPTextConditioner(FrozenConditioner):
    """Frozen CLIP text encoder. `forward(prompts: list[str]) -> dict(crossattn (B, L, C), vector (B, C))`."""

    name = "clip-text"
    modality = "text"

    def __init__(self, source: str = CLIP_L14_TEXT, max_length: int = 77,
                 cache_dir: str | os.PathLike | None = None):
        from transformers import CLIPTextModel, CLIPTokenizer

        what = f"CLIP text encoder ({source})"
        how_to = _how_to(str(source))
        folder = resolve_folder(source, what=what, how_to=how_to, cache_dir=cache_dir,
                                allow_patterns=["*.json", "*.txt", "model.safetensors"])
        # transformers 5 silently builds a 3-token tokenizer from a folder without tokenizer files: check first.
        if not (folder / "tokenizer.json").is_file() and not (folder / "vocab.json").is_file():
            raise MissingWeightsError(f"{what} tokenizer not found: folder '{folder}' holds neither tokenizer.json "
                                      f"nor vocab.json + merges.txt; {how_to}")
        try:
            tokenizer = CLIPTokenizer.from_pretrained(str(folder))
            with _quiet_transformers():
                model, info = CLIPTextModel.from_pretrained(str(folder), dtype=torch.float32, output_loading_info=True)
        except OSError as err:
            raise MissingWeightsError(f"{what} weights not found: folder '{folder}' does not hold loadable "
                                      f"CLIPTextModel weights ({str(err).splitlines()[0]}); {how_to}") from err
        if info["missing_keys"]:  # transformers would leave these layers random with only a warning
            raise MissingWeightsError(f"{what} weights incomplete: '{folder}' lacks {len(info['missing_keys'])} "
                                      f"tensors, e.g. {sorted(info['missing_keys'])[0]}; {how_to}")
        if len(tokenizer) != model.config.vocab_size:
            raise ValueError(f"{what}: tokenizer has {len(tokenizer)} tokens but the model embeds "
                             f"{model.config.vocab_size}; the folder mixes files of different models")
        hidden = model.config.hidden_size
        super().__init__(context_dim=hidden, vector_dim=hidden, num_tokens=max_length)
        self.source = str(source)
        self.max_length = max_length
        self.tokenizer = tokenizer
        self.text_model = model
        self.freeze()

    def tokenize(self, prompts: list[str]) -> torch.Tensor:
        """Token ids (B, max_length), padded with the tokenizer's pad token and truncated."""
        batch = self.tokenizer(as_prompt_list(prompts), truncation=True, max_length=self.max_length,
                               padding="max_length", return_tensors="pt")
        return batch["input_ids"]

    @torch.no_grad()
    def forward(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        ids = self.tokenize(prompts).to(self.device)
        out = self.text_model(input_ids=ids)
        return {"crossattn": out.last_hidden_state.float(), "vector": out.pooler_output.float()}

    def config(self) -> dict:
        return {"source": self.source, "max_length": self.max_length}
