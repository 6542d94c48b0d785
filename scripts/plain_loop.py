"""The accuracy check against a plain PyTorch loop: no Lightning, no strategy code.

    python scripts/plain_loop.py                  # partial and full fine-tuning, seeds 0-2
    python scripts/plain_loop.py --trainable from:2 --seeds 0 --lr 1e-3

The same packaged EfficientNet-Lite0, the same images (the project's split and the seed's
training draw, so each seed pairs with the framework's run of that seed) and transforms;
then a hand-written loop: AdamW at one lr for every trainable parameter, constant lr, batch
32, ``model.train()`` (BatchNorm in train mode, as a hand-written loop has it), 8 epochs,
and the test accuracy of the last epoch. The framework's tuned comparison must not lose to
it by more than noise (docs/results.md).
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from tl_experiments.data import create_datamodule, load_image_set
from tl_experiments.models import create_backbone
from tl_experiments.stages.stage import get_stages, select_stages


def plain_run(trainable: str, seed: int, lr: float, epochs: int = 8, size: int = 64) -> float:
    torch.manual_seed(seed)
    model = create_backbone("tf_efficientnet_lite0", 10, "packaged", zero_head=False)
    images = load_image_set("mnist_sample")
    dm, _ = create_datamodule(images, model, size, samples_per_class=50, seed=seed)
    dm.setup("fit")
    dm.setup("test")
    chosen = {id(p) for s in select_stages(get_stages(model), trainable) for p in s.params}
    for p in model.parameters():
        p.requires_grad_(id(p) in chosen)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    train = DataLoader(dm.image_dataset("train"), batch_size=32, shuffle=True)
    for _ in range(epochs):
        model.train()
        for x, y in train:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in DataLoader(dm.image_dataset("test"), batch_size=128):
            correct += (model(x).argmax(1) == y).sum().item()
            total += len(y)
    return correct / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trainable", nargs="+", default=["from:2", "all"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()
    print("| trainable | seed | lr | test acc |\n|---|---|---|---|")
    for trainable in args.trainable:
        for seed in args.seeds:
            acc = plain_run(trainable, seed, args.lr)
            print(f"| {trainable} | {seed} | {args.lr:g} | {acc:.4f} |", flush=True)


if __name__ == "__main__":
    main()
