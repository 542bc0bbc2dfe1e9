"""The one check every trainer runs on its `--out` before anything is built or written (docs/RELIABILITY.md).

A folder that already holds a run is only ever continued, never trained into afresh: a second run at the same
step numbers would overwrite the first one's checkpoints, `--keep-last` would prune the wrong ones, config.json
would be replaced and log.jsonl would mix both runs. A `--resume` must use the saved run's settings, except the
bookkeeping ones (how long, how often to log and save, where to run) that do not change what is learnt.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from utils import checkpoint
from utils.media import check_writable_folder

CONFIG_FILE = "config.json"  # what both trainers write into --out: {"training": <the config's to_dict()>, ...}
LOG_FILE = "log.jsonl"


def run_contents(out: Path) -> list[str]:
    """What in `out` shows a training run was there (empty: nothing; the folder may hold unrelated files)."""
    if not out.is_dir():
        return []
    found = [name for name in (CONFIG_FILE, LOG_FILE) if (out / name).exists()]
    found += [p.name for p in checkpoint.list_checkpoints(out)]
    return found


def flag(key: str) -> str:
    """The CLI flag of a config field: both training CLIs name their flags after the fields."""
    return "--" + key.replace("_", "-")


def _shown(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int):  # and bool
        return str(value)
    return json.dumps(value, sort_keys=True)


def differing_settings(saved: dict, now: dict, may_change: Iterable[str],
                       flags: dict[str, str] | None = None) -> list[str]:
    """`--flag SAVED (now NOW)` for each setting of `now` that `saved` records with another value (`flags`: the
    flag of a setting not named after it). Settings an older run did not record are not compared (there is
    nothing to compare them with)."""
    free, flags = set(may_change), flags or {}
    return [f"{flags.get(k, flag(k))} {_shown(saved[k])} (now {_shown(v)})" for k, v in now.items()
            if k not in free and k in saved and saved[k] != v]


def check_run_folder(out: str | Path, resume: bool, settings: dict, may_change: Iterable[str],
                     flatten: Iterable[str] = ()) -> None:
    """Raise ValueError (one line, naming the way out) when training into `out` would damage or mix runs.

    settings: this run's config as `to_dict()` gives it. flatten: nested sections (the VAE loss weights) whose
    keys are flags of their own. Without `resume` a folder holding a run is refused; with it, any setting outside
    `may_change` that differs from the saved config.json is named.
    """
    out = Path(out)
    check_writable_folder(out)  # found now, not after the data and models are built
    found = run_contents(out)
    if not resume:
        if found:
            shown = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
            raise ValueError(f"{out} already holds a training run ({shown}); pass --resume to continue it, or a "
                             f"fresh --out folder")
        return
    if not (out / CONFIG_FILE).exists():
        return  # nothing saved yet: the trainer starts from scratch (and says so)
    try:
        saved = json.loads((out / CONFIG_FILE).read_text())["training"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{out / CONFIG_FILE} is unreadable ({e.__class__.__name__}), so --resume cannot check "
                         f"the run's settings; train into a fresh --out folder") from None

    def flat(d: dict) -> dict:
        d = dict(d)
        for section in flatten:
            d.update(d.pop(section, None) or {})
        return d

    differ = differing_settings(flat(saved), flat(settings), may_change)
    if differ:
        raise ValueError(f"--resume: {out} was trained with other settings: {', '.join(differ)}; resume with the "
                         f"run's own values (see {out / CONFIG_FILE}) or train into a fresh --out folder")
