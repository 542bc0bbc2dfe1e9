"""Cap3D-style caption files (spec §10.4): one JSON object mapping "<dict_id>/<ins_id>" to a caption."""
from __future__ import annotations

import json
import os
from pathlib import Path

CAPTION_FILE = "text_captions_cap3d.json"


def caption_key(object_id: str) -> str:
    """"chair/0/17" → "0/17": the instance path relative to the category folder."""
    parts = object_id.split("/")
    if len(parts) != 3:
        raise ValueError(f"object id {object_id!r} is not of the form <category>/<dict_id>/<ins_id>")
    return f"{parts[1]}/{parts[2]}"


def read_captions(path: str | os.PathLike) -> dict[str, str]:
    path = Path(path)
    if not path.exists():
        return {}
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a Cap3D caption file must hold one JSON object, got {type(data).__name__}")
    return data


def write_captions(path: str | os.PathLike, captions: dict[str, str]) -> None:
    """Merge `captions` into the file (existing keys are overwritten), written atomically."""
    path = Path(path)
    merged = read_captions(path)
    merged.update(captions)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(merged, f, indent=0, sort_keys=True, ensure_ascii=False)
    os.replace(tmp, path)
