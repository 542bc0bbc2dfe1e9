"""Pretrained CLIP text conditioner: loading (folder, HF cache, missing), outputs equal to HF's own forward."""
from __future__ import annotations

import open_clip
import pytest
import torch

from ldm import MissingWeightsError, build_conditioner
from ldm.text import CLIP_L14_TEXT

SOT, EOT = 49406, 49407
PROMPTS = ["A blue plastic chair", ""]


def _hf_reference(folder, prompts):
    from transformers import CLIPTextModel, CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(str(folder))
    model = CLIPTextModel.from_pretrained(str(folder)).eval()
    ids = tokenizer(prompts, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model(input_ids=ids)
    return ids, out.last_hidden_state, out.pooler_output


@pytest.fixture(scope="module")
def text_conditioner(tiny_clip_text_folder):
    return build_conditioner("clip-text", source=str(tiny_clip_text_folder))


def test_local_folder_matches_hf_forward(text_conditioner, tiny_clip_text_folder):
    out = text_conditioner(PROMPTS)
    ids, hidden, pooled = _hf_reference(tiny_clip_text_folder, PROMPTS)
    assert out["crossattn"].shape == (2, 77, 32) and out["vector"].shape == (2, 32)
    assert torch.equal(out["crossattn"], hidden)
    assert torch.equal(out["vector"], pooled)
    # the pooled vector is the state at the first EOT: position 1 + number of word tokens
    first_eot = (ids == EOT).int().argmax(dim=1)
    assert torch.equal(out["vector"], out["crossattn"][torch.arange(2), first_eot])
    assert (text_conditioner.context_dim, text_conditioner.vector_dim, text_conditioner.num_tokens) == (32, 32, 77)


def test_tokens_pad_with_endoftext_like_clip_l(text_conditioner):
    ids = text_conditioner.tokenize(PROMPTS)
    assert ids.shape == (2, 77)
    # the words tokenise as open_clip's independent BPE does; but CLIP-L pads with <|endoftext|> (49407), not 0
    reference = open_clip.get_tokenizer("ViT-L-14")(PROMPTS[:1])[0]
    assert ids[0, :6].tolist() == reference[:6].tolist() == [SOT, 320, 1746, 6102, 4269, EOT]
    assert ids[0, 5:].eq(EOT).all() and reference[6:].eq(0).all()
    assert ids[1].tolist() == [SOT] + [EOT] * 76  # the empty string: the released CFG null caption
    long_ids = text_conditioner.tokenize(["chair " * 100])
    assert long_ids.shape == (1, 77) and long_ids[0, 0] == SOT and long_ids[0, -1] == EOT  # truncated, EOT kept


def test_frozen_no_grad_and_stays_in_eval(text_conditioner):
    assert not text_conditioner.trainable
    assert not any(p.requires_grad for p in text_conditioner.parameters())
    text_conditioner.train()
    assert not text_conditioner.text_model.training
    assert not text_conditioner(["a chair"])["crossattn"].requires_grad
    null = text_conditioner.null_condition(3)
    assert null["crossattn"].shape == (3, 77, 32) and null["vector"].shape == (3, 32)
    assert not null["crossattn"].any() and not null["vector"].any()
    assert text_conditioner.describe() == {"name": "clip-text", "source": text_conditioner.source, "max_length": 77}


def test_prompts_must_be_a_list(text_conditioner):
    with pytest.raises(TypeError, match="single str"):
        text_conditioner("a chair")


def test_loads_from_hf_cache_by_hub_id(add_to_hub_cache, tiny_clip_text_folder, text_conditioner):
    snapshot = add_to_hub_cache(CLIP_L14_TEXT, {p.name: p for p in tiny_clip_text_folder.iterdir()})
    cached = build_conditioner("clip-text")  # default source: the hub id, found in the cache offline
    assert cached.source == CLIP_L14_TEXT
    assert snapshot.is_dir()
    torch.testing.assert_close(cached(PROMPTS), text_conditioner(PROMPTS), rtol=0, atol=0)


def test_missing_weights_error_text(hub_cache):
    with pytest.raises(MissingWeightsError) as err:
        build_conditioner("clip-text")
    assert str(err.value) == (
        f"CLIP text encoder (openai/clip-vit-large-patch14) weights not found: 'openai/clip-vit-large-patch14' is not "
        f"a local path and is not in the Hugging Face cache ({hub_cache}) with HF_HUB_OFFLINE=1; download with "
        f"`hf download openai/clip-vit-large-patch14` (read from the Hugging Face cache when offline) or pass "
        f"--text-encoder PATH to a folder holding a saved CLIPTextModel/CLIPModel and its tokenizer")


def test_incomplete_folders_are_clear_errors(tmp_path, tiny_clip_text_folder):
    no_weights, no_tokenizer = tmp_path / "no_weights", tmp_path / "no_tokenizer"
    for folder, names in ((no_weights, ("tokenizer.json", "tokenizer_config.json", "config.json")),
                          (no_tokenizer, ("config.json", "model.safetensors"))):
        folder.mkdir()
        for name in names:
            (folder / name).symlink_to(tiny_clip_text_folder / name)
    with pytest.raises(MissingWeightsError, match=r"does not hold loadable CLIPTextModel weights.*--text-encoder PATH"):
        build_conditioner("clip-text", source=str(no_weights))
    with pytest.raises(MissingWeightsError, match=r"tokenizer not found: .* holds neither tokenizer.json"):
        build_conditioner("clip-text", source=str(no_tokenizer))
    with pytest.raises(MissingWeightsError, match=r"'/nonexistent/clip' is not a folder"):
        build_conditioner("clip-text", source="/nonexistent/clip")
