"""Captions from an object's structured labels: several phrasings, the first one canonical.

"a red chair with a blue seat", "red chair with a blue seat", "a 3D model of a red chair with a blue seat",
"a chair in red, with a blue seat". Only groups whose colour differs from the main colour are mentioned.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Accent:
    """A colour group worth mentioning: its noun ("seat", "legs") and colour."""

    noun: str
    plural: bool
    color: str


def with_article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def accent_phrase(accents: list[Accent]) -> str:
    """"a blue seat and black legs" (empty when there are no accents)."""
    items = [f"{a.color} {a.noun}" if a.plural else with_article(f"{a.color} {a.noun}") for a in accents]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def make_captions(category_noun: str, main_color: str, accents: list[Accent]) -> list[str]:
    """Four phrasings of the same description; index 0 is the canonical caption."""
    accent = accent_phrase(accents)
    with_accent = f" with {accent}" if accent else ""
    subject = f"{main_color} {category_noun}"
    return [
        f"{with_article(subject)}{with_accent}",
        f"{subject}{with_accent}",
        f"a 3D model of {with_article(subject)}{with_accent}",
        f"{with_article(category_noun)} in {main_color}" + (f", with {accent}" if accent else ""),
    ]
