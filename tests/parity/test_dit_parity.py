"""Release denoisers against the golden fixture (outputs of the original networks, fp32 CPU)."""
from pathlib import Path

import pytest
import torch

from guided_diffusion.golden import check_dit

GOLDEN = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "golden"

pytestmark = [
    pytest.mark.parity,
    pytest.mark.slow,
    pytest.mark.skipif(not GOLDEN.is_dir(), reason=f"golden fixture folder {GOLDEN} absent"),
]


@pytest.mark.parametrize("kind", ["t23d", "i23d"])
def test_release_dit_matches_the_original_network(kind, torch_threads):
    with torch_threads(min(2, torch.get_num_threads())):
        checks = check_dit(GOLDEN, kind)
    failed = [c for c in checks if not c[3]]
    assert not failed, "\n".join(f"{name}: max err {err:.3g} > tol {tol:.3g}" for name, err, tol, _ in failed)
    assert {name for name, *_ in checks} >= {"output", "t_embedding", "state_dict keys", "filled weights"}
