"""Atomic checkpoint folders, keep-last-K, rebuild from config, half-precision export and error messages."""
import json
import os
import stat

import pytest
import torch
from torch import nn

from utils import checkpoint as ckpt


class Tiny(nn.Module):
    def __init__(self, width: int = 4):
        super().__init__()
        self.a = nn.Linear(3, width)
        self.b = nn.Linear(width, 2)
        self.register_buffer("count", torch.tensor(7))


def _save(root, step, model, **kw):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    return ckpt.save_checkpoint(root, step, model=model.state_dict(), config={"width": 4},
                                optimizer={"main": opt.state_dict()}, trainer_state={"rng": torch.get_rng_state()},
                                info={"batches": step * 2}, **kw)


def test_save_writes_every_file_and_loads_back(tmp_path):
    model = Tiny()
    folder = _save(tmp_path, 10, model, ema=model.state_dict(), extra_weights={"disc": Tiny(2).state_dict()})
    assert folder.name == "checkpoint-00000010"
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted([ckpt.MODEL_FILE, ckpt.EMA_FILE, ckpt.OPTIMIZER_FILE, ckpt.STATE_FILE, ckpt.CONFIG_FILE,
                            ckpt.STATE_JSON_FILE, "disc.safetensors"])
    loaded = ckpt.load_checkpoint(folder)
    assert loaded["info"] == {"step": 10, "batches": 20}
    assert loaded["config"] == {"width": 4}
    for k, v in model.state_dict().items():
        assert torch.equal(loaded["model"][k], v) and torch.equal(loaded["ema"][k], v)
    assert "main" in loaded["optimizer"]
    assert loaded["extra_weights"]["disc"]["a.weight"].shape == (2, 3)
    assert ckpt.latest_checkpoint(tmp_path) == folder


def test_tied_weights_are_saved(tmp_path):
    model = Tiny()
    state = model.state_dict()
    state["b_alias.weight"] = state["b.weight"]
    ckpt.save_weights(tmp_path / "w.safetensors", state)
    assert torch.equal(ckpt.load_weights(tmp_path / "w.safetensors")["b_alias.weight"], state["b.weight"])


def test_keep_last_k(tmp_path):
    model = Tiny()
    for step in (1, 2, 3, 4, 5):
        _save(tmp_path, step, model, keep_last=2)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["checkpoint-00000004", "checkpoint-00000005"]


def test_a_failed_save_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    model = Tiny()
    good = _save(tmp_path, 1, model)
    before = {p.name: p.read_bytes() for p in good.iterdir()}

    real_save = torch.save

    def dies_midway(obj, path, *a, **kw):  # the weights are already written when the optimiser save dies
        real_save(obj, path, *a, **kw)
        raise KeyboardInterrupt("killed during save")

    monkeypatch.setattr(ckpt.torch, "save", dies_midway)
    with torch.no_grad():
        model.a.weight.add_(1.0)
    with pytest.raises(KeyboardInterrupt):
        _save(tmp_path, 2, model, keep_last=1)
    monkeypatch.undo()

    assert [p.name for p in tmp_path.iterdir()] == [good.name]  # no partial folder, temp cleaned up
    assert {p.name: p.read_bytes() for p in good.iterdir()} == before
    assert ckpt.latest_checkpoint(tmp_path) == good


def test_a_killed_save_leftover_is_ignored_and_cleaned(tmp_path):
    model = Tiny()
    leftover = tmp_path / ".tmp-checkpoint-00000009.12345"
    leftover.mkdir()
    (leftover / ckpt.MODEL_FILE).write_bytes(b"half")
    good = _save(tmp_path, 1, model)
    assert ckpt.latest_checkpoint(tmp_path) == good
    assert not leftover.exists()


def test_resaving_a_step_replaces_it(tmp_path):
    model = Tiny()
    _save(tmp_path, 3, model)
    with torch.no_grad():
        model.b.bias.fill_(5.0)
    folder = _save(tmp_path, 3, model)
    assert torch.equal(ckpt.load_checkpoint(folder)["model"]["b.bias"], torch.full((2,), 5.0))
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]


def test_load_model_folder_rebuilds_from_config(tmp_path):
    model = Tiny(width=6)
    ckpt.save_checkpoint(tmp_path, 5, model=model.state_dict(), config={"width": 6})
    rebuilt = ckpt.load_model_folder(tmp_path, lambda cfg: Tiny(cfg["width"]))  # run dir → newest checkpoint
    for k, v in model.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[k], v)


def test_half_precision_export(tmp_path):
    model = Tiny()
    src = ckpt.save_checkpoint(tmp_path / "run", 1, model=model.state_dict(), config={"width": 4})
    for dtype, torch_dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
        out = ckpt.export_model_folder(src, tmp_path / dtype, dtype=dtype)
        weights = ckpt.load_weights(out / ckpt.MODEL_FILE)
        assert weights["a.weight"].dtype == torch_dtype and weights["count"].dtype == torch.int64
        assert json.loads((out / ckpt.CONFIG_FILE).read_text())["weights_dtype"] == dtype
        rebuilt = ckpt.load_model_folder(out, lambda cfg: Tiny(cfg["width"]))
        assert rebuilt.a.weight.dtype == torch.float32
        torch.testing.assert_close(rebuilt.a.weight, model.a.weight, atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_get_the_umask_mode_so_exports_are_shareable(tmp_path, umask):
    model = Tiny()
    previous = os.umask(umask)
    try:
        run = _save(tmp_path / "run", 1, model, ema=model.state_dict(), extra_weights={"disc": Tiny(2).state_dict()})
        export = ckpt.export_model_folder(run, tmp_path / "export")
    finally:
        os.umask(previous)
    files = [p for folder in (run, export) for p in folder.iterdir()]
    assert {p.suffix for p in files} == {".safetensors", ".pt", ".json"}
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path.name

def test_missing_and_corrupt_files_have_one_line_errors(tmp_path):
    model = Tiny()
    folder = _save(tmp_path, 1, model)
    with pytest.raises(ckpt.CheckpointError, match="does not exist") as e:
        ckpt.load_checkpoint(tmp_path / "checkpoint-00000099")
    assert "\n" not in str(e.value)

    (folder / ckpt.OPTIMIZER_FILE).write_bytes(b"\x00garbage")
    with pytest.raises(ckpt.CheckpointError, match=r"optimizer\.pt is corrupt or truncated.*previous one"):
        ckpt.load_checkpoint(folder)

    data = (folder / ckpt.MODEL_FILE).read_bytes()
    (folder / ckpt.MODEL_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(ckpt.CheckpointError, match=r"model\.safetensors is corrupt or truncated") as e:
        ckpt.load_model_folder(folder, lambda cfg: Tiny())
    assert "\n" not in str(e.value)

    (folder / ckpt.MODEL_FILE).unlink()
    with pytest.raises(ckpt.CheckpointError, match=r"model\.safetensors is missing"):
        ckpt.load_weights(folder / ckpt.MODEL_FILE)
    with pytest.raises(ckpt.CheckpointError, match="holds neither"):
        ckpt.load_model_folder(tmp_path / "empty", lambda cfg: Tiny())


def test_architecture_mismatch_is_named(tmp_path):
    ckpt.save_checkpoint(tmp_path, 1, model=Tiny(4).state_dict(), config={"width": 4})
    with pytest.raises(ckpt.CheckpointError, match=r"3 shape mismatches \(e\.g\. a\.bias\)"):
        ckpt.load_model_folder(tmp_path, lambda cfg: Tiny(8))


def test_weights_with_nan_are_refused_naming_the_tensor(tmp_path):
    model = Tiny()
    state = model.state_dict()
    state["b.weight"][0, 1] = float("inf")
    ckpt.save_model_folder(tmp_path / "m", state, {"width": 4})
    with pytest.raises(ckpt.CheckpointError) as e:
        ckpt.load_model_folder(tmp_path / "m", lambda config: Tiny(config["width"]))
    assert str(e.value) == (f"{tmp_path / 'm' / ckpt.MODEL_FILE}: tensor b.weight holds 1 NaN/inf values of 8; the "
                            f"weights are damaged (a diverged run or a bad copy): use an earlier checkpoint or "
                            f"download the file again")
