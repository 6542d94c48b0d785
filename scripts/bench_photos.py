"""The photo-folder section of ``scripts/bench.py`` (docs/speed.md, "Folders of photos").

    python scripts/make_image_folder.py photos /tmp/photos5k 5000
    python scripts/make_image_folder.py photos /tmp/photos20k 20000
    python scripts/bench.py --sections photos --photos /tmp/photos5k --photos-big /tmp/photos20k

(1) Training images per second of ``train.py``'s own data and model path (``build_data``,
``create_module``, ``create_trainer``: the functions a run calls) at 224 px against a plain
PyTorch loop over the same training files: torchvision's ``ImageFolder`` and a
``DataLoader`` with the same number of workers, the same model, transform, batch size,
AdamW and memory format. Only the training epoch is timed (a callback on the framework's
side), from the loader's first batch request to the last step, worker start included.
(2) Peak memory of a whole ``train.py`` run (every image checked, validation and test held,
training streamed) over a large folder: the main process's peak RSS and the peak PSS of
the process and its DataLoader workers together (PSS counts shared pages once).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pytorch_lightning as pl
import timm
import torch
import torch.nn.functional as F
import torchvision
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Subset

from tl_experiments.callbacks import EpochHistory
from tl_experiments.data import build_data, load_image_set
from tl_experiments.train import create_module, create_trainer

ROOT = Path(__file__).resolve().parents[1]


class EpochTimer(pl.Callback):
    """Seconds of the training epoch alone (validation is not part of it)."""

    def on_train_epoch_start(self, trainer, module) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, module) -> None:
        self.seconds = time.perf_counter() - self.start


def framework_epoch(cfg) -> tuple[float, list[str], object]:
    """One training epoch through train.py's functions; its seconds, files and transform."""
    image_set = load_image_set(cfg.data.source, cfg.data.source_args)
    module = create_module(cfg, len(image_set.class_names), image_set.class_names)
    data = OmegaConf.to_container(cfg.data, resolve=True)
    dm, _ = build_data(data, module.backbone, cfg.model.img_size, cfg.seed, image_set)
    timer = EpochTimer()
    trainer = create_trainer(cfg, Path(cfg.paths.output_dir), EpochHistory(), module, timer)
    trainer.fit(module, datamodule=dm)
    files = [str(image_set.items[i]) for i in dm.splits["train"]]
    return timer.seconds, files, dm


def plain_epoch(cfg, files: list[str], dm) -> float:
    """The same epoch by hand: ImageFolder, DataLoader with workers, timm model, AdamW."""
    torch.manual_seed(cfg.seed)
    folder = torchvision.datasets.ImageFolder(cfg.data.root, transform=dm.transforms["train"])
    keep = set(files)
    subset = Subset(folder, [i for i, (p, _) in enumerate(folder.samples) if p in keep])
    workers = dm.workers("train")
    loader = DataLoader(
        subset, batch_size=cfg.data.batch_size, shuffle=True, num_workers=workers,
        persistent_workers=workers > 0,
    )  # fmt: skip
    model = timm.create_model(cfg.model.arch, num_classes=len(folder.classes))
    fmt = torch.channels_last if cfg.speed.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=cfg.speed.fused_optimizer or None)
    start = time.perf_counter()
    for x, y in loader:
        loss = F.cross_entropy(model(x.contiguous(memory_format=fmt)), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def section_photos(args, make_cfg) -> list[str]:
    rows = []
    if args.photos:
        rows += _throughput(args, make_cfg)
    if args.photos_big:
        rows += ["", *_memory(args)]
    return rows or ["(no --photos or --photos-big folder given)"]


def _throughput(args, make_cfg) -> list[str]:
    cfg = make_cfg(
        "data=image_folder", f"data.root={args.photos}", f"model.arch={args.photo_arch}",
        "model.weights=none", "model.img_size=224", "strategy=full_ft", "data.augment=true",
        "data.aug.hflip=0.5", f"data.samples_per_class={args.photo_images // 6}",
        "data.val_fraction=0.02", "data.test_fraction=0.02", "trainer.max_epochs=1",
        "+trainer.enable_progress_bar=false", "logger=csv",
    )  # fmt: skip
    fws, plains = [], []
    for _ in range(args.photo_repeats):  # interleaved: the machine's load hits both alike
        fw, files, dm = framework_epoch(cfg)
        fws.append(fw)
        plains.append(plain_epoch(cfg, files, dm))
    fw, plain = statistics.median(fws), statistics.median(plains)
    n, workers = len(files), dm.workers("train")
    each = ", ".join(f"{p / f:.3f}" for f, p in zip(fws, plains, strict=True))
    return [
        f"| {args.photo_arch}, 224 px, {n} images, batch {cfg.data.batch_size}, {workers} "
        "workers | framework img/s | plain loop img/s | framework / plain |",
        "|---|---|---|---|",
        f"| one augmented epoch, median of {len(fws)} | {n / fw:.1f} | {n / plain:.1f} | "
        f"{plain / fw:.3f} (each: {each}) |",
    ]


def _memory(args) -> list[str]:
    out = Path(tempfile.mkdtemp(prefix="tl-bench-photos-"))
    cmd = [
        sys.executable, str(ROOT / "train.py"), "data=image_folder",
        f"data.root={args.photos_big}", f"model.arch={args.photo_arch}", "model.weights=none",
        "model.img_size=224", "strategy=full_ft", "trainer.max_epochs=1",
        f"+trainer.limit_train_batches={args.big_train_batches}", "analysis.enabled=false",
        f"hydra.run.dir={out}",
    ]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peaks = {"pss": 0.0, "rss": 0.0}
    watcher = threading.Thread(target=_watch, args=(proc.pid, peaks), daemon=True)
    watcher.start()
    err = proc.communicate()[1].decode()
    if proc.returncode != 0:
        return [f"train.py failed ({proc.returncode}): {err[-500:]}"]
    metrics = json.loads((out / "metrics.json").read_text())
    sizes = {k: metrics[f"{k}_size"] for k in ("train", "val", "test")}
    return [
        "| folder | run | main process peak RSS | peak PSS, process + workers | wall |",
        "|---|---|---|---|---|",
        f"| {sum(sizes.values())} photos ({sizes}) | {' '.join(cmd[2:-1])} | "
        f"{peaks['rss'] / 2**30:.2f} GiB | {peaks['pss'] / 2**30:.2f} GiB | "
        f"{time.perf_counter() - start:.0f} s |",
    ]


def _watch(pid: int, peaks: dict) -> None:
    """Sample the run's memory every 0.2 s until it ends."""
    try:
        main = psutil.Process(pid)
        while main.is_running() and main.status() != psutil.STATUS_ZOMBIE:
            procs = [main, *main.children(recursive=True)]
            pss = 0.0
            for p in procs:
                try:
                    pss += p.memory_full_info().pss
                except psutil.Error:
                    continue
            peaks["pss"] = max(peaks["pss"], pss)
            peaks["rss"] = max(peaks["rss"], main.memory_info().rss)
            time.sleep(0.2)
    except psutil.Error:
        return
