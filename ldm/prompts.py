"""User-prompt checks for the command-line tools.

Conditioners accept the empty string on purpose: it is the released T23D training's classifier-free-guidance null
caption (`ucg_rate 0.1`, `legacy_ucg_value ""`). A user asking for an empty prompt, however, almost certainly made a
mistake, so the CLIs reject it before any model is loaded.
"""
from __future__ import annotations


def validate_prompts(prompts: list[str] | tuple[str, ...] | str) -> list[str]:
    """Returns the prompts as a list; raises ValueError naming the position of every empty or blank prompt."""
    if isinstance(prompts, str):
        prompts = [prompts]
    prompts = list(prompts)
    if not prompts:
        raise ValueError("empty prompt: no prompt was given; pass at least one non-empty prompt")
    not_text = [type(prompt).__name__ for prompt in prompts if not isinstance(prompt, str)]
    if not_text:
        raise TypeError(f"prompts must be strings, got {', '.join(not_text)}")
    bad = [i for i, prompt in enumerate(prompts) if not prompt.strip()]
    if bad:
        raise ValueError(
            f"empty prompt: prompt(s) at position {', '.join(map(str, bad))} of {len(prompts)} are empty or "
            f"whitespace only; describe the object to generate, e.g. 'a blue plastic chair'")
    return prompts
