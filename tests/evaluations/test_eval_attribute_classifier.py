"""The prompt-accuracy judge learns category and colour of synthetic shapes, deterministically."""

import numpy as np
import torch

from evaluations.attribute_classifier import AttributeClassifier, augment, prompt_accuracy, train_attribute_classifier

COLOURS = np.array([[0.85, 0.1, 0.1], [0.1, 0.7, 0.15], [0.15, 0.25, 0.9], [0.95, 0.8, 0.1]])


def shapes(n: int, seed: int, size: int = 32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """n images (n, 3, size, size) in [-1, 1] of a disc, square or triangle (category 0/1/2) in one of four colours,
    with random centre and radius, on white."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    cats, cols = rng.integers(0, 3, n), rng.integers(0, len(COLOURS), n)
    images = np.ones((n, 3, size, size))
    for k in range(n):
        r = rng.uniform(0.22, 0.34) * size
        cy, cx = rng.uniform(r + 1, size - r - 1, 2)
        dy, dx = yy - cy, xx - cx
        if cats[k] == 0:
            mask = dy**2 + dx**2 <= r**2
        elif cats[k] == 1:
            mask = (np.abs(dy) <= 0.8 * r) & (np.abs(dx) <= 0.8 * r)
        else:  # upright triangle: apex at the top, base at the bottom
            mask = (dy <= r) & (np.abs(dx) <= (dy + r) / 2)
        shade = COLOURS[cols[k]] * rng.uniform(0.85, 1.0)
        images[k][:, mask] = shade[:, None]
    return torch.from_numpy(images * 2 - 1).float(), torch.from_numpy(cats), torch.from_numpy(cols)


def test_learns_category_and_colour_of_held_out_shapes():
    x, cat, col = shapes(600, seed=0)
    x_test, cat_test, col_test = shapes(300, seed=1)
    clf = train_attribute_classifier(x, cat, col, steps=150, seed=0, width=16, input_size=32, batch_size=32)
    pred_cat, pred_col, probs = clf.predict(x_test)
    acc = prompt_accuracy((pred_cat, pred_col), (cat_test, col_test))
    assert acc["category"] >= 95.0 and acc["colour"] >= 95.0 and acc["both"] >= 95.0, acc
    assert probs["category"].shape == (300, 3) and probs["colour"].shape == (300, 4)
    torch.testing.assert_close(probs["category"].sum(dim=1), torch.ones(300))
    assert isinstance(clf, AttributeClassifier) and not clf.training


def test_training_is_deterministic_for_a_seed_and_leaves_global_rng_alone():
    x, cat, col = shapes(16, seed=2, size=16)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    runs = [
        train_attribute_classifier(x, cat, col, steps=3, seed=s, width=8, input_size=16, batch_size=8)
        for s in (5, 5, 6)
    ]
    assert torch.rand(1) == before
    a, b, c = (r.state_dict() for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert (runs[0].num_categories, runs[0].num_colours) == (int(cat.max()) + 1, int(col.max()) + 1)


def test_augment_flips_and_shifts_with_white_fill():
    image = torch.ones(1, 3, 8, 8)
    image[0, :, 2, 1] = -1.0  # one black pixel at row 2, column 1
    g = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(40):
        out = augment(image.expand(4, -1, -1, -1), g, max_shift=1)
        for k in range(4):
            black = (out[k, 0] == -1.0).nonzero().tolist()
            assert len(black) <= 1 and ((out[k] == 1.0) | (out[k] == -1.0)).all()
            if black:
                seen.add(tuple(black[0]))
    # Rows 1..3; columns around 1 (kept) or around 6 (flipped): shifts of at most 1 pixel either way.
    assert seen == {(r, c) for r in (1, 2, 3) for c in (0, 1, 2, 5, 6, 7)}
