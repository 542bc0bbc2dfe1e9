"""The data CLIs: make_dataset in every format, the converters, the command-line contract and byte determinism."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from datasets.procedural.grammar import generate_object
from datasets.stores import FORMATS, open_store
from scripts import lmdb_create, make_dataset, wds_create

ROOT = Path(__file__).resolve().parents[2]


def make(out, fmt, *extra):
    make_dataset.main(["--out", str(out), "--num-objects", "2", "--views", "4", "--resolution", "24", "--format", fmt,
                       "--seed", "5", "--workers", "2", *extra])


@pytest.mark.parametrize("fmt", FORMATS)
def test_make_dataset_writes_every_format(fmt, tmp_path, capsys):
    make(tmp_path / fmt, fmt, "--start-index", "10")
    assert f"wrote 2 objects × 4 views at 24² ({fmt})" in capsys.readouterr().out
    store = open_store(tmp_path / fmt)
    ids = sorted(store.object_id(i) for i in range(len(store)))
    expected = sorted(f"{generate_object(5, i).category}/0/{i}" for i in (10, 11))
    assert ids == expected
    record = store.read(0)
    assert record.color.shape == (4, 24, 24, 3)
    assert sorted(record.view_ids.tolist()) == [0, 9, 18, 25]
    assert record.labels["spec"]["index"] in (10, 11)


def test_converters_copy_a_store(tmp_path, capsys):
    make(tmp_path / "g", "gobjaverse")
    lmdb_create.main(["--src", str(tmp_path / "g"), "--out", str(tmp_path / "l")])
    wds_create.main(["--src", str(tmp_path / "l"), "--out", str(tmp_path / "w"), "--shard-size", "1"])
    out = capsys.readouterr().out
    assert "wrote 2 objects from" in out and "(lmdb)" in out and "(wds)" in out
    source, converted = open_store(tmp_path / "g"), open_store(tmp_path / "w")
    assert len(list((tmp_path / "w").glob("wds-*.tar"))) == 2
    for index in range(2):
        a, b = source.read(index), converted.read(index)
        assert a.object_id == b.object_id and np.array_equal(a.view_ids, b.view_ids)
        assert np.array_equal(a.alpha, b.alpha) and np.array_equal(a.cameras, b.cameras)
        # float16 depth of the G-Objaverse tree survives the float32 stores unchanged
        assert np.array_equal(a.depth, b.depth)


def test_command_line_contract_and_determinism(tmp_path):
    command = [sys.executable, "scripts/make_dataset.py", "--out", str(tmp_path / "a"), "--num-objects", "2",
               "--views", "4", "--resolution", "16", "--format", "wds", "--seed", "1", "--workers", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny renders; 2 threads on a shared machine only contend
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    summary = done.stdout.strip().splitlines()
    assert len(summary) == 1 and summary[0].startswith("wrote 2 objects × 4 views at 16² (wds)")
    assert "objects" in done.stderr  # the tqdm bar
    make_dataset.main(command[2:-2] + ["--out", str(tmp_path / "b"), "--workers", "2"])
    assert (tmp_path / "a" / "wds-000000.tar").read_bytes() == (tmp_path / "b" / "wds-000000.tar").read_bytes()


def test_make_dataset_rejects_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit):
        make_dataset.main(["--out", str(tmp_path), "--num-objects", "1", "--views", "41"])
    assert "--views must be in 1..40, got 41" in capsys.readouterr().err


def test_make_dataset_refuses_a_seed_out_of_range_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        make_dataset.main(["--out", str(tmp_path / "d"), "--num-objects", "1", "--seed", str(2**64)])
    assert e.value.code == 2
    assert capsys.readouterr().err == (f"make_dataset.py: error: --seed must be at most 4294967295 (seeds are 32-bit), "
                                       f"got {2**64}\n")
    assert not (tmp_path / "d").exists()
