"""Where pretrained conditioner weights come from: a local path, the local Hugging Face cache, or the hub.

A `source` is either a local file or folder, or a hub repo id (`owner/name`). A repo id is looked up in the cache
first, which never touches the network, and downloaded only when `HF_HUB_OFFLINE` is not set (each failed lookup
without it costs tens of seconds of retries on a machine without internet). Whatever cannot be found ends in one
`MissingWeightsError` line that names what was looked for and how to provide it.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class MissingWeightsError(FileNotFoundError):
    """Pretrained weights could not be found locally and could not be downloaded."""


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE is set; read at call time, unlike huggingface_hub's import-time constant."""
    return os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() in {"1", "true", "yes", "on"}


def is_repo_id(source: str) -> bool:
    """Whether `source` has the `owner/name` form of a hub repo (a missing relative path of that form also does)."""
    return bool(_REPO_ID.match(source)) and not source.startswith((".", "~"))


def _missing(what: str, reason: str, how_to: str) -> MissingWeightsError:
    return MissingWeightsError(f"{what} weights not found: {reason}; {how_to}")


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def _not_cached_reason(repo_id: str, cache_dir: str | os.PathLike | None) -> str:
    from huggingface_hub import constants

    cache = cache_dir if cache_dir is not None else constants.HF_HUB_CACHE
    return f"'{repo_id}' is not a local path and is not in the Hugging Face cache ({cache}) with HF_HUB_OFFLINE=1"


def resolve_folder(source: str | os.PathLike, *, what: str, how_to: str, allow_patterns: list[str],
                   cache_dir: str | os.PathLike | None = None) -> Path:
    """Local folder holding the files of `source` (a folder, or a repo id: cached snapshot, else downloaded).

    `allow_patterns` limits a download to the files needed (hub repos often hold several weight formats).
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    path = Path(source).expanduser()
    if path.is_dir():
        return path
    source = str(source)
    if path.exists() or not is_repo_id(source):
        raise _missing(what, f"'{source}' is not a folder and not a hub repo id", how_to)
    try:
        return Path(snapshot_download(source, cache_dir=cache_dir, local_files_only=True))
    except LocalEntryNotFoundError:
        pass
    if hub_offline():
        raise _missing(what, _not_cached_reason(source, cache_dir), how_to)
    try:
        return Path(snapshot_download(source, cache_dir=cache_dir, allow_patterns=allow_patterns))
    except Exception as err:  # network, auth and missing-repo errors all end the same way for the user
        raise _missing(what, f"download of '{source}' failed ({_first_line(err)})", how_to) from err


def resolve_file(source: str | os.PathLike, *, filenames: list[str], what: str, how_to: str,
                 cache_dir: str | os.PathLike | None = None) -> Path:
    """Local weight file named by `source`: the file itself, the first of `filenames` inside a folder, or the first
    of `filenames` in a hub repo (cached, else downloaded)."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import RemoteEntryNotFoundError

    path = Path(source).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        for name in filenames:
            if (path / name).is_file():
                return path / name
        raise _missing(what, f"folder '{path}' holds none of {', '.join(filenames)}", how_to)
    source = str(source)
    if not is_repo_id(source):
        raise _missing(what, f"'{source}' does not exist", how_to)
    for name in filenames:
        cached = try_to_load_from_cache(source, name, cache_dir=cache_dir)
        if isinstance(cached, str) and Path(cached).is_file():
            return Path(cached)
    if hub_offline():
        raise _missing(what, _not_cached_reason(source, cache_dir), how_to)
    for name in filenames:
        try:
            return Path(hf_hub_download(source, name, cache_dir=cache_dir))
        except RemoteEntryNotFoundError:  # the repo exists but lacks this file name: try the next one
            continue
        except Exception as err:  # network, auth and missing-repo errors all end the same way for the user
            raise _missing(what, f"download of '{source}/{name}' failed ({_first_line(err)})", how_to) from err
    raise _missing(what, f"hub repo '{source}' holds none of {', '.join(filenames)}", how_to)
