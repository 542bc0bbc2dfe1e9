"""Packaging invariants: pinned torch, requirements and the conda file agree, CI runs the README's test command."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _requirements() -> list[str]:
    return [ln.strip() for ln in (ROOT / "requirements.txt").read_text().splitlines()
            if ln.strip() and not ln.startswith("#")]


def test_torch_and_torchvision_are_pinned_together():
    reqs = _requirements()
    assert "torch==2.13.0" in reqs and "torchvision==0.28.0" in reqs
    constraints = (ROOT / "constraints.txt").read_text()
    assert "torch==2.13.0" in constraints and "torchvision==0.28.0" in constraints


def test_conda_file_lists_exactly_the_requirements():
    yml = (ROOT / "environment_ln3diff.yml").read_text()
    pip_entries = re.findall(r"^\s{6}- (.+)$", yml, flags=re.M)
    assert pip_entries == _requirements()


def test_no_apex_or_xformers_dependency():
    names = {re.split(r"[<>=\[ ]", r)[0].lower() for r in _requirements()}
    assert not names & {"apex", "xformers"}


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = "bash scripts/install.sh --test && .venv/bin/python -m pytest -q"
    assert command in readme and command in ci
