"""The GPU check: one command on a machine with NVIDIA GPUs, one markdown table out.

    bash scripts/gpu_check.sh                 # real run: needs CUDA; under 10 minutes
    bash scripts/gpu_check.sh --dry           # on a CPU: every step, tiny, marked DRY

Steps: (1) the test suite's GPU-marked tests (``pytest -m gpu``); (2) training throughput of
resnet50 at 224 px, random init, synthetic input and labels (as timm's benchmark.py does:
forward, backward, SGD step; images/s after warm-up) in fp32, bf16-mixed, channels_last and
both; (3) ``train.py`` itself: resnet50 at 224 px, ``trainer=gpu`` (bf16-mixed,
channels_last), on a generated folder of 2,000 JPEG photos of mixed sizes, its data pipeline
included (DataLoader workers decode and augment), images/s of the second epoch and its ratio
to step 2's bf16-mixed channels_last row; (4) the four-strategy comparison on the default
data, one job per GPU (``hydra/launcher=gpu_per_job``). The table goes to
``<out>/gpu_check.md`` and stdout. Each step has a time limit, all within 10 minutes.

The dry run (no CUDA, or ``--dry``) does the same steps on the CPU with a tiny model (timm's
test_resnet, 32 px, a few steps and batches, 48 photos), so the script itself is tested
(tests/test_gpu_check.py); every row of its table says DRY, and its numbers are not GPU numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = "scratch,feature_extraction,partial_ft,full_ft"
VARIANTS = {  # name: (autocast to bf16, channels_last)
    "fp32": (False, False),
    "bf16-mixed": (True, False),
    "fp32 channels_last": (False, True),
    "bf16-mixed channels_last": (True, True),
}
# train.py's row: (arch, px, photos, batch); the photos' first epoch is the warm-up.
TRAIN_PY = {False: ("resnet50", 224, 2000, 128), True: ("test_resnet", 32, 48, 8)}
DEADLINE_S = 570  # the whole check: each step's time limit is cut to what is left of it


def gpu_tests(dry: bool, out: Path, limit: int) -> list[list[str]]:
    """``pytest -m gpu`` (the dry run collects them from tests/test_gpu.py only, all skipped)."""
    args = ["-m", "gpu", "-q", "-p", "no:cacheprovider", f"--junitxml={out / 'gpu_tests.xml'}"]
    where = [str(ROOT / "tests" / "test_gpu.py")] if dry else []
    start = time.perf_counter()
    proc = _run([sys.executable, "-m", "pytest", *args, *where], ROOT, limit, out / "gpu_tests.log")
    if proc is None:
        return [["GPU tests", "pytest -m gpu", f"timed out after {limit} s", "FAILED", f"{limit}"]]
    summary = (proc.stdout.strip().splitlines() or ["no output"])[-1].strip("= ")
    ok = "ok" if proc.returncode in (0, 5) and "failed" not in summary else "FAILED"
    return [["GPU tests", "pytest -m gpu", summary, ok, f"{time.perf_counter() - start:.0f}"]]


def _run(cmd: list[str], cwd: Path, timeout: int, log: Path) -> subprocess.CompletedProcess | None:
    """A step in a subprocess, its output kept in ``log``; None when it ran out of time
    (each step has a share of the 10 minutes, so a hung step still leaves a table)."""
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        log.write_text(f"timed out after {timeout} s\n{e.stdout or ''}{e.stderr or ''}")
        return None
    log.write_text(proc.stdout + proc.stderr)
    return proc


def throughput(dry: bool, steps: int, batch: int) -> tuple[list[list[str]], dict[str, float]]:
    """Training images/s of resnet50 at 224 px per variant (dry: test_resnet at 32 px, CPU):
    the table's rows and each variant's images/s."""
    import timm
    import torch

    device = "cpu" if dry else "cuda"
    arch, size = ("test_resnet", 32) if dry else ("resnet50", 224)
    rows, rates = [], {}
    for name, (bf16, channels_last) in VARIANTS.items():
        torch.manual_seed(0)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        model = timm.create_model(arch, pretrained=False).to(device, memory_format=fmt).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        x = torch.randn(batch, 3, size, size, device=device).to(memory_format=fmt)
        y = torch.randint(0, model.num_classes, (batch,), device=device)
        for _ in range(max(1, steps // 4)):  # warm-up: cudnn autotuning, the allocator
            _train_step(model, opt, x, y, bf16)
        _sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            _train_step(model, opt, x, y, bf16)
        _sync(device)
        seconds = time.perf_counter() - start
        setting = f"{arch} {size} px, batch {batch}, {name}"
        rates[name] = steps * batch / seconds
        rate = f"{rates[name]:.1f} img/s ({1000 * seconds / steps:.1f} ms/step)"
        rows.append(["throughput", setting, rate, "ok", f"{seconds:.1f}"])
        del model, opt
    if not dry:
        torch.cuda.empty_cache()  # the later steps' processes get the GPU's memory back
    return rows, rates


def _train_step(model, opt, x, y, bf16: bool) -> None:
    """One step as timm's benchmark times it: forward, loss, backward, optimizer."""
    import torch

    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        loss = torch.nn.functional.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def train_py(dry: bool, out: Path, bare: float, limit: int) -> list[list[str]]:
    """``train.py``'s own epoch on generated photos (``train_py_epoch`` in a subprocess, so the
    step has a time limit); images/s and the ratio to the bare loop's ``bare`` images/s."""
    arch, size, n, batch = TRAIN_PY[dry]
    where = "CPU bf16-mixed" if dry else "trainer=gpu: bf16-mixed"
    setting = f"{arch} {size} px, batch {batch}, {n} JPEG photos, {where} channels_last"
    cmd = [sys.executable, __file__, "--train-py-epoch", str(out / f"photos{n}")]
    start = time.perf_counter()
    proc = _run([*cmd, *(["--dry"] if dry else [])], ROOT, limit, out / "train_py.log")
    wall = f"{time.perf_counter() - start:.0f}"
    if proc is None or proc.returncode != 0:
        return [["train.py", setting, "see train_py.log", "FAILED", wall]]
    m = json.loads(proc.stdout.strip().splitlines()[-1])
    rate = m["images"] / m["seconds"]
    result = (
        f"{rate:.1f} img/s, {rate / bare:.2f}x the bare loop's bf16-mixed channels_last "
        f"({m['images']} images, {m['workers']} workers, epoch 2 of 2)"
    )
    return [["train.py", setting, result, "ok", wall]]


def train_py_epoch(root: Path, dry: bool) -> dict:
    """Make the photos (if absent), then time train.py's second training epoch over them
    through its own functions (scripts/bench_photos.py's ``framework_epoch``)."""
    sys.path.insert(0, str(ROOT / "scripts"))  # the sibling scripts reused here
    from bench import make_cfg
    from bench_photos import framework_epoch
    from make_image_folder import make_photos

    arch, size, n, batch = TRAIN_PY[dry]
    if not root.exists():  # made aside, then renamed: a cut-short folder is never reused
        partial = root.with_name(root.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        make_photos(str(partial), n, workers=2 if dry else min(8, os.cpu_count() or 1))
        partial.rename(root)
    held_out = "0.1" if dry else "0.02"  # the dry run's 48 photos: one or more per class
    trainer = ["trainer=cpu", "trainer.precision=bf16-mixed"] if dry else ["trainer=gpu"]
    cfg = make_cfg(
        "data=image_folder", f"data.root={root}", f"model.arch={arch}", "model.weights=none",
        f"model.img_size={size}", "strategy=full_ft", "data.augment=true",
        "data.aug.hflip=0.5", f"data.batch_size={batch}", f"data.val_fraction={held_out}",
        f"data.test_fraction={held_out}", *trainer, "trainer.max_epochs=2",
        "+trainer.enable_progress_bar=false", "logger=csv",
    )  # fmt: skip
    seconds, files, dm = framework_epoch(cfg)  # the EpochTimer keeps the last (2nd) epoch
    return {"images": len(files), "seconds": seconds, "workers": dm.workers("train")}


def comparison(dry: bool, out: Path, n_gpus: int, seeds: str, limit: int) -> list[list[str]]:
    """The four strategies x seeds, one job per GPU; a row per run from its metrics.json."""
    sweep = out / "compare"
    args = [
        "-m",
        f"strategy={STRATEGIES}",
        f"seed={seeds}",
        "hydra/launcher=gpu_per_job",
        f"hydra.launcher.n_jobs={max(1, n_gpus)}",
        "gpu_per_job=true",
        f"gpu_lock_dir={out / 'gpu_locks'}",
        "analysis.enabled=false",
        f"hydra.sweep.dir={sweep}",
    ]
    if dry:  # two simulated GPUs, the tiny model on the CPU
        args += ["gpu_count=2", "model=test_resnet", "trainer=debug", "data.samples_per_class=3"]
    else:
        args += ["trainer=gpu"]
    start = time.perf_counter()
    proc = _run([sys.executable, str(ROOT / "train.py"), *args], out, limit, out / "compare.log")
    wall = f"{time.perf_counter() - start:.0f}"
    runs = [json.loads(p.read_text()) for p in sorted(sweep.rglob("metrics.json"))]
    if proc is None or proc.returncode != 0 or not runs:
        return [["comparison", f"{STRATEGIES} seed={seeds}", "see compare.log", "FAILED", wall]]
    rows = []
    for m in sorted(runs, key=lambda m: (m["strategy"], m["seed"])):
        result = f"test acc {m['test_acc']:.3f}, {m['train_seconds']:.0f} s training"
        setting = f"{m['strategy']} seed {m['seed']} on GPU {m['gpu_slot']}"
        rows.append(["comparison", setting, result, "ok", wall])
    return rows


def machine(dry: bool) -> str:
    import torch

    if dry:
        return f"DRY RUN on the CPU ({platform.processor() or platform.machine()}): not GPU numbers"
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return f"{len(names)} x {names[0]}, CUDA {torch.version.cuda}"


def table(rows: list[list[str]], dry: bool, header: str) -> str:
    lines = [
        f"# GPU check: {header}",
        "",
        f"torch {__import__('torch').__version__}, Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        "| mode | check | setting | result | status | seconds |",
        "|---|---|---|---|---|---|",
    ]
    mode = "DRY (CPU)" if dry else "GPU"
    lines += [f"| {mode} | " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dry", action="store_true", help="tiny CPU run (automatic without CUDA)")
    p.add_argument("--out", type=Path, default=ROOT / "logs" / "gpu_check")
    p.add_argument("--seeds", default="0", help="comparison seeds, e.g. 0,1,2")
    p.add_argument("--steps", type=int, default=50, help="timed training steps per variant")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--train-py-epoch", type=Path, help=argparse.SUPPRESS)  # step 3's process
    args = p.parse_args(argv)
    import torch

    if args.train_py_epoch:
        print(json.dumps(train_py_epoch(args.train_py_epoch, args.dry)), flush=True)
        return 0
    start = time.perf_counter()

    def limit(cap: int) -> int:  # a step's own cap, or what is left of the 10 minutes
        return max(10, min(cap, int(DEADLINE_S - (time.perf_counter() - start))))

    dry = args.dry or not torch.cuda.is_available()
    if dry and not args.dry:
        print("No CUDA device: dry run on the CPU (tiny model); no GPU numbers.", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    steps, batch = (2, 4) if dry else (args.steps, args.batch)
    rows = gpu_tests(dry, args.out, limit(180))
    bare_rows, rates = throughput(dry, steps, batch)
    rows += bare_rows
    rows += train_py(dry, args.out, rates["bf16-mixed channels_last"], limit(120))
    n_gpus = 2 if dry else torch.cuda.device_count()
    rows += comparison(dry, args.out, n_gpus, args.seeds, limit(360))
    report = table(rows, dry, machine(dry))
    (args.out / "gpu_check.md").write_text(report)
    print(report, flush=True)
    return 0 if all(r[3] == "ok" for r in rows) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")  # the subprocesses' logs stay readable
    sys.exit(main())
