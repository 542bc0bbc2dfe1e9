"""train_diffusion.py's command line: bad numbers are refused with one line each before any set-up."""
import pytest

from scripts.train_diffusion import main


def test_bad_numbers_are_one_line_each_before_any_set_up(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--task", "t23d", "--preset", "t23d-tiny", "--latents", str(tmp_path / "none"), "--out",
              str(tmp_path / "run"), "--max-steps", "1", "--seed", "-1", "--lr", "inf", "--cfg-dropout", "nan"])
    assert e.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        "train_diffusion.py: error: --cfg-dropout must be a finite number, got nan",
        "train_diffusion.py: error: --lr must be a finite number, got inf",
        "train_diffusion.py: error: --seed must be at least 0, got -1"]
    assert not (tmp_path / "run").exists()
