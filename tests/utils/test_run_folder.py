"""The --out check of both trainers: what counts as a run, which settings a resume compares, one-line refusals."""
import json

import pytest

from utils.run_folder import check_run_folder, differing_settings, run_contents


def test_unrelated_files_are_not_a_run(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    assert run_contents(tmp_path) == [] and run_contents(tmp_path / "missing") == []
    check_run_folder(tmp_path, resume=False, settings={}, may_change=())
    (tmp_path / "log.jsonl").write_text("")
    with pytest.raises(ValueError, match=r"already holds a training run \(log.jsonl\); pass --resume"):
        check_run_folder(tmp_path, resume=False, settings={}, may_change=())


def test_only_recorded_settings_outside_the_free_ones_are_compared():
    saved = {"lr": 0.001, "max_steps": 10, "name": "a", "options": {"w": 1}}
    now = {"lr": 0.001, "max_steps": 20, "name": "b", "options": {"w": 2}, "added_later": True}
    assert differing_settings(saved, now, may_change=("max_steps",)) == ['--name "a" (now "b")',
                                                                        '--options {"w": 1} (now {"w": 2})']


def test_resume_reads_the_saved_settings(tmp_path):
    check_run_folder(tmp_path, resume=True, settings={"lr": 1.0}, may_change=())  # nothing saved: from scratch
    (tmp_path / "config.json").write_text(json.dumps({"training": {"lr": 1.0, "loss": {"l1_weight": 0.5}}}))
    check_run_folder(tmp_path, resume=True, settings={"lr": 1.0, "loss": {"l1_weight": 0.5}}, may_change=(),
                     flatten=("loss",))
    with pytest.raises(ValueError, match=r"other settings: --l1-weight 0.5 \(now 1\); resume with"):
        check_run_folder(tmp_path, resume=True, settings={"lr": 1.0, "loss": {"l1_weight": 1.0}}, may_change=(),
                         flatten=("loss",))
    (tmp_path / "config.json").write_text("{")
    with pytest.raises(ValueError, match=r"config.json is unreadable \(JSONDecodeError\), so --resume cannot check"):
        check_run_folder(tmp_path, resume=True, settings={}, may_change=())
