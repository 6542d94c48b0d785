"""Controlled domain shifts of the test split, each at one documented severity (docs/shift.md).

Shifts act on pixel intensities in [0, 1]: a normalised batch is un-normalised with the
data config's mean and std, shifted, and normalised again, so "invert" means black <->
white whatever the model's normalisation is. Severities are fixed, so runs compare:

| name   | what                                   | severity                                 |
|--------|----------------------------------------|------------------------------------------|
| noise  | additive Gaussian noise, then clip     | std 0.1 of the [0, 1] range (ImageNet-C  |
|        | to [0, 1]                              | gaussian_noise, between severity 1 and 2)|
| blur   | Gaussian blur                          | sigma = 2% of the image side (1.28 px at |
|        |                                        | 64 px), kernel 2*ceil(3 sigma)+1         |
| rotate | rotation about the centre, bilinear,   | 30 degrees counter-clockwise             |
|        | corners filled with black (0)          |                                          |
| invert | contrast inversion x -> 1 - x          | full                                     |
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn as nn
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode

__all__ = [
    "BLUR_SIGMA_FRACTION",
    "NOISE_STD",
    "ROTATION_DEGREES",
    "SHIFTS",
    "apply_shift",
    "shift_accuracy",
]

NOISE_STD = 0.1  # in [0, 1] pixel units; ImageNet-C uses 0.08 and 0.12 at severities 1, 2
BLUR_SIGMA_FRACTION = 0.02  # of the image side, so the blur means the same at any img_size
ROTATION_DEGREES = 30.0  # counter-clockwise; digits stay readable to people at this angle


def _noise(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    noise = torch.randn(x.shape, generator=gen, dtype=x.dtype) * NOISE_STD
    return (x + noise.to(x.device)).clamp(0.0, 1.0)


def _blur(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    sigma = BLUR_SIGMA_FRACTION * x.shape[-1]
    kernel = 2 * math.ceil(3 * sigma) + 1
    return TF.gaussian_blur(x, [kernel, kernel], [sigma, sigma])


def _rotate(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return TF.rotate(x, ROTATION_DEGREES, interpolation=InterpolationMode.BILINEAR, fill=0.0)


def _invert(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return 1.0 - x


# name -> shift in [0, 1] pixel space; the generator feeds random shifts (seeded per run).
SHIFTS: dict[str, Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = {
    "noise": _noise,
    "blur": _blur,
    "rotate": _rotate,
    "invert": _invert,
}


def apply_shift(
    x: torch.Tensor,
    name: str,
    mean: Sequence[float],
    std: Sequence[float],
    gen: torch.Generator | None = None,
) -> torch.Tensor:
    """Shift a normalised batch ``x`` (N, 3, H, W) by ``SHIFTS[name]``; stays normalised.

    Raises:
        KeyError: for an unknown shift name (the message lists the known ones).
    """
    if name not in SHIFTS:
        raise KeyError(f"Unknown shift '{name}'; use one of {', '.join(SHIFTS)}.")
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    pixels = x * s + m
    return (SHIFTS[name](pixels, gen or torch.Generator().manual_seed(0)) - m) / s


@torch.no_grad()
def shift_accuracy(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    names: Sequence[str] = (),
    batch_size: int = 128,
    seed: int = 0,
) -> dict[str, float]:
    """Top-1 accuracy of ``model`` on ``images`` as they are (``clean``) and under each shift.

    ``clean`` is measured on the very same images, so it is the baseline each shifted
    accuracy compares with (it equals ``test_acc`` when all test images are used).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = {}
    for name in ("clean", *(names or SHIFTS)):
        gen = torch.Generator().manual_seed(seed)  # the same noise for every run of a sweep
        correct = 0
        for x, y in zip(images.split(batch_size), labels.split(batch_size), strict=True):
            x = x.to(device)
            if name != "clean":
                x = apply_shift(x, name, mean, std, gen)
            correct += int((model(x).argmax(dim=1).cpu() == y).sum())
        out[name] = correct / max(len(labels), 1)
    model.train(was_training)
    return out
