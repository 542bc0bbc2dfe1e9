"""NaN guard, EMA, gradient clipping, param groups, RNG capture, the resumable data stream and the logger."""
import json
import logging
import random
import signal

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from utils import distributed
from utils.logging import TrainLogger
from utils.training import (
    EMA,
    NonFiniteGuard,
    NonFiniteLossError,
    ParamGroupSpec,
    ResumableBatchSampler,
    SeededDataset,
    StopSignals,
    capture_rng_state,
    clip_gradients,
    param_groups_by_prefix,
    restore_rng_state,
    stop_reason,
)


def test_nonfinite_guard_skips_then_aborts(caplog):
    guard = NonFiniteGuard(max_consecutive=3)
    ok, nan = torch.tensor(1.0), torch.tensor(float("nan"))
    with caplog.at_level(logging.WARNING, logger="ln3diff.train"):
        assert guard.check(0, ok, ok)
        assert not guard.check(1, nan, ok)
        assert not guard.check(2, ok, torch.tensor(float("inf")))
    assert "step 2: non-finite loss or gradient norm, optimiser step skipped (2 in a row" in caplog.text
    assert guard.check(3, ok)  # a finite step resets the run
    assert guard.state_dict() == {"consecutive": 0, "total_skipped": 2}
    assert not guard.check(4, nan) and not guard.check(5, nan)
    with pytest.raises(NonFiniteLossError, match="step 6: loss or gradients were NaN/inf for 3 steps in a row"):
        guard.check(6, nan)


def test_ema_tracks_parameters_and_copies_buffers():
    model = nn.BatchNorm1d(2)
    ema = EMA(model, decay=0.75)
    with torch.no_grad():
        model.weight.fill_(5.0)
        model.running_mean.fill_(3.0)
    ema.update(model)
    assert torch.allclose(ema.state_dict()["weight"], torch.full((2,), 0.75 * 1 + 0.25 * 5))
    assert torch.equal(ema.state_dict()["running_mean"], torch.full((2,), 3.0))
    target = nn.BatchNorm1d(2)
    ema.copy_to(target)
    assert torch.allclose(target.weight, torch.full((2,), 2.0))
    restored = EMA(nn.BatchNorm1d(2), decay=0.75)
    restored.load_state_dict(ema.state_dict())
    assert torch.equal(restored.state_dict()["weight"], ema.state_dict()["weight"])


def test_clip_gradients_returns_pre_clip_norm():
    p = nn.Parameter(torch.zeros(2))
    p.grad = torch.tensor([3.0, 4.0])
    assert clip_gradients([p], 0).item() == pytest.approx(5.0) and torch.equal(p.grad, torch.tensor([3.0, 4.0]))
    assert clip_gradients([p], 1.0).item() == pytest.approx(5.0)
    assert p.grad.norm().item() == pytest.approx(1.0, rel=1e-5)


def test_param_groups_by_prefix():
    model = nn.ModuleDict({"encoder": nn.Linear(2, 2), "decoder": nn.ModuleDict({"vit": nn.Linear(2, 2),
                                                                               "conv": nn.Linear(2, 2)})})
    specs = [ParamGroupSpec("encoder", ("encoder.",), 1e-3, 0.001), ParamGroupSpec("vit", ("decoder.vit.",), 5e-4),
             ParamGroupSpec("rest", ("",), 2e-3)]
    groups = param_groups_by_prefix(model, specs)
    assert [(g["name"], len(g["params"]), g["lr"]) for g in groups] == [("encoder", 2, 1e-3), ("vit", 2, 5e-4),
                                                                          ("rest", 2, 2e-3)]
    with pytest.raises(ValueError, match="parameter decoder.conv.weight matches no learning-rate group"):
        param_groups_by_prefix(model, specs[:2])
    with pytest.raises(ValueError, match="learning-rate group 'typo'"):
        param_groups_by_prefix(model, [ParamGroupSpec("typo", ("decodr.",), 1.0), specs[2]])


def test_rng_state_round_trip(tmp_path):
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    state = capture_rng_state()
    torch.save(state, tmp_path / "rng.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: the checkpoint is loaded onto the GPU")
def test_rng_state_restores_from_a_checkpoint_loaded_onto_the_gpu(tmp_path):
    # trainers load checkpoints with map_location=<their device>; a CUDA run once crashed on resume here
    random.seed(2), np.random.seed(2), torch.manual_seed(2)
    torch.save(capture_rng_state(), tmp_path / "rng.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True, map_location="cuda"))
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def _indices(sampler, n):
    it = iter(sampler)
    return [next(it) for _ in range(n)]


def test_batch_sampler_position_is_the_whole_state():
    full = _indices(ResumableBatchSampler(5, 2, seed=3), 6)
    assert _indices(ResumableBatchSampler(5, 2, seed=3, start_batch=4), 2) == full[4:]
    flat = [k.index for batch in full[:5] for k in batch]  # 10 indices = two epochs, each a permutation
    assert sorted(flat[:5]) == list(range(5)) and sorted(flat[5:]) == list(range(5)) and flat[:5] != flat[5:]
    assert [k.epoch for k in full[2]] == [0, 1]  # batch 2 = stream positions 4, 5
    assert len({k.seed for batch in full for k in batch}) == 12  # every stream position has its own sample seed


def test_batch_sampler_shards_ranks_and_handles_tiny_datasets():
    ranks = [_indices(ResumableBatchSampler(8, 2, seed=0, rank=r, world_size=2), 2) for r in (0, 1)]
    single = _indices(ResumableBatchSampler(8, 4, seed=0), 2)
    assert [b0 + b1 for b0, b1 in zip(*ranks)] == single
    keys = _indices(ResumableBatchSampler(1, 3, seed=0), 2)
    assert [[k.index for k in b] for b in keys] == [[0, 0, 0]] * 2
    assert [[k.epoch for k in b] for b in keys] == [[0, 1, 2], [3, 4, 5]]


class _RandomDataset(Dataset):
    epoch = -1

    def __len__(self):
        return 4

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __getitem__(self, index):
        return torch.tensor([float(index), self.epoch, torch.rand(()).item(), random.random(), np.random.rand()])


def test_seeded_dataset_is_deterministic_per_position_and_keeps_the_caller_rng():
    def batches(start, workers):
        sampler = ResumableBatchSampler(4, 2, seed=5, start_batch=start)
        loader = DataLoader(SeededDataset(_RandomDataset()), batch_sampler=sampler, num_workers=workers,
                            generator=torch.Generator())
        it = iter(loader)
        return [next(it) for _ in range(3 - start)]

    torch.manual_seed(0)
    before = torch.get_rng_state()
    full = batches(0, 0)
    assert full[2][:, 1].tolist() == [1.0, 1.0]  # the third batch is drawn in epoch 1
    assert torch.equal(torch.get_rng_state(), before)
    for got, want in zip(batches(1, 0), full[1:]):
        assert torch.equal(got, want)
    for got, want in zip(batches(0, 2), full):
        assert torch.equal(got, want)


def test_logger_writes_json_lines_and_events(tmp_path):
    logger = TrainLogger(tmp_path, total_steps=3, tensorboard=True, progress=False)
    logger.log(1, {"loss": torch.tensor(0.5), "psnr": 20.0})
    logging.getLogger("ln3diff.train").warning("something odd")
    logger.close()
    lines = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert lines[0]["step"] == 1 and lines[0]["loss"] == 0.5 and lines[0]["psnr"] == 20.0
    assert lines[1]["event"] == "something odd"
    assert any((tmp_path / "tensorboard").iterdir())
    assert not TrainLogger(tmp_path / "other", 3, enabled=False).enabled
    assert not (tmp_path / "other").exists()


def test_single_process_distributed_helpers():
    assert distributed.world_size() == 1 and distributed.rank() == 0 and distributed.is_main()
    assert distributed.init_distributed("cpu") == torch.device("cpu")
    assert distributed.broadcast_object({"a": 1}) == {"a": 1}
    assert distributed.all_gather_object(3) == [3]
    assert distributed.all_ranks_true(True) and not distributed.all_ranks_true(False)
    distributed.barrier()


def test_stop_signals_note_the_first_signal_and_pass_on_the_next():
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with StopSignals() as signals:
        assert stop_reason(signals, torch.device("cpu")) is None
        signal.raise_signal(signal.SIGTERM)  # noted: the loop finishes its step and saves
        assert signals.received == signal.SIGTERM and stop_reason(signals, torch.device("cpu")) == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):  # a second signal gets the handler from before: Ctrl-C aborts
            signal.raise_signal(signal.SIGINT)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    assert stop_reason(StopSignals(), torch.device("cpu"), started=0.0, max_minutes=1e-9) == "max-minutes"
