"""Prompt-accuracy judge for text-to-3D: a small CNN that reads an object's category and main colour from a render.

The evaluation script trains it on ground-truth renders of procedural objects (whose category and colour are known
from the grammar), then classifies renders of generated objects and compares with the prompt's attributes. One
shared convolutional trunk feeds two linear heads (category logits, colour logits). Images of any size are resized
to `input_size` first, so renders and training images need not match in resolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _block(c_in: int, c_out: int) -> nn.Sequential:
    # GroupNorm rather than BatchNorm: predictions must not depend on batch composition or train/eval statistics.
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.GroupNorm(8, c_out), nn.SiLU(), nn.MaxPool2d(2))


class AttributeClassifier(nn.Module):
    """images (B, 3, H, W) in [-1, 1] → (category logits (B, num_categories), colour logits (B, num_colours))."""

    def __init__(self, num_categories: int, num_colours: int, width: int = 32, input_size: int = 64):
        super().__init__()
        self.num_categories, self.num_colours, self.input_size = num_categories, num_colours, input_size
        self.trunk = nn.Sequential(
            _block(3, width), _block(width, 2 * width), _block(2 * width, 4 * width), _block(4 * width, 4 * width)
        )
        self.category_head = nn.Linear(4 * width, num_categories)
        self.colour_head = nn.Linear(4 * width, num_colours)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if images.shape[-2:] != (self.input_size, self.input_size):
            images = F.interpolate(
                images, size=(self.input_size, self.input_size), mode="bilinear", antialias=True, align_corners=False
            )
        features = self.trunk(images).mean(dim=(2, 3))
        return self.category_head(features), self.colour_head(features)

    @torch.no_grad()
    def predict(
        self, images: torch.Tensor, batch_size: int = 256
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """images (N, 3, H, W) in [-1, 1] → category ids (N,), colour ids (N,), probabilities dict(category
        (N, num_categories), colour (N, num_colours)), all on the CPU. Leaves the module in eval mode."""
        self.eval()
        device = next(self.parameters()).device
        logits = [self(batch.to(device)) for batch in images.split(batch_size)]
        p_cat = torch.cat([c for c, _ in logits]).softmax(dim=1).cpu()
        p_col = torch.cat([c for _, c in logits]).softmax(dim=1).cpu()
        return p_cat.argmax(dim=1), p_col.argmax(dim=1), {"category": p_cat, "colour": p_col}


def augment(images: torch.Tensor, generator: torch.Generator, max_shift: int) -> torch.Tensor:
    """Random horizontal flips and small random crops (shifts of up to `max_shift` pixels, the uncovered border
    filled with white, the background of the renders) of images (B, 3, H, W) in [-1, 1]. Vertical flips are left out:
    objects stand upright, and 'upside down' is not an augmentation of the same category."""
    b, _, h, w = images.shape
    flip = torch.rand(b, generator=generator) < 0.5
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    padded = F.pad(images, (max_shift,) * 4, value=1.0)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, b), generator=generator).tolist()
    return torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(b)])


def train_attribute_classifier(
    images: torch.Tensor,
    category_ids: torch.Tensor,
    colour_ids: torch.Tensor,
    steps: int = 300,
    seed: int = 0,
    device: torch.device | str | None = None,
    num_categories: int | None = None,
    num_colours: int | None = None,
    batch_size: int = 64,
    lr: float = 3e-3,
    width: int = 32,
    input_size: int = 64,
) -> AttributeClassifier:
    """Train a classifier on images (N, 3, H, W) in [-1, 1] with labels category_ids (N,) and colour_ids (N,).

    AdamW with a one-cycle schedule (10 % warm-up, then cosine decay) on the summed cross-entropy of both heads;
    augmentation as in `augment`, with shifts of up to 1/16 of the image side. The result is deterministic for a seed
    (given deterministic kernels); the caller's global RNG state is untouched. num_categories / num_colours default
    to max label + 1. Returns the classifier in eval mode on `device` (CPU when None).
    """
    device = torch.device(device or "cpu")
    num_categories = num_categories or int(category_ids.max()) + 1
    num_colours = num_colours or int(colour_ids.max()) + 1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AttributeClassifier(num_categories, num_colours, width, input_size).to(device)
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=steps, pct_start=0.1)
    max_shift = max(1, images.shape[-1] // 16)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(images), (min(batch_size, len(images)),), generator=generator)
        batch = augment(images[idx].float(), generator, max_shift).to(device)
        cat_logits, col_logits = model(batch)
        loss = F.cross_entropy(cat_logits, category_ids[idx].to(device)) + F.cross_entropy(
            col_logits, colour_ids[idx].to(device)
        )
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
    return model.eval()


def prompt_accuracy(
    pred: tuple[torch.Tensor, torch.Tensor], target: tuple[torch.Tensor, torch.Tensor]
) -> dict[str, float]:
    """Accuracy in % of predicted (category ids (N,), colour ids (N,)) against the prompts' (category, colour):
    per attribute, and `both` for objects where category and colour are right together."""
    cat_ok = pred[0].cpu() == target[0].cpu()
    col_ok = pred[1].cpu() == target[1].cpu()
    return {
        "category": 100.0 * cat_ok.float().mean().item(),
        "colour": 100.0 * col_ok.float().mean().item(),
        "both": 100.0 * (cat_ok & col_ok).float().mean().item(),
    }
