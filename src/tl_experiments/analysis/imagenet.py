"""Forgetting of the source task: does the original ImageNet head still read the features?"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["imagenet_agreement"]


@torch.no_grad()
def imagenet_agreement(
    finetuned: nn.Module, original: nn.Module, photos: torch.Tensor, batch_size: int = 64
) -> float:
    """Share of ``photos`` where the original head on fine-tuned features agrees (top-1)
    with the original model.

    ``original`` is the pretrained model with its ImageNet classifier kept; its classifier
    is applied to ``finetuned``'s pre-logits features. 1.0 = the source task is intact
    (always so when the backbone stayed frozen); low values = forgetting.
    """
    modes = finetuned.training, original.training
    finetuned.eval()
    original.eval()
    device = next(finetuned.parameters()).device
    original.to(device)
    head = original.get_classifier()
    agree = 0
    try:
        for x in photos.split(batch_size):
            x = x.to(device)
            reference = original(x).argmax(dim=1)
            feats = finetuned.forward_head(finetuned.forward_features(x), pre_logits=True)
            agree += int((head(feats).argmax(dim=1) == reference).sum())
    finally:
        finetuned.train(modes[0])
        original.train(modes[1])
    return agree / max(len(photos), 1)
