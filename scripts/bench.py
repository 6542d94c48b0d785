"""Speed benchmark: every ratio measured side by side in one run, printed as markdown.

    python scripts/bench.py            # the tables in docs/speed.md (about 17 min on 2 cores)
    python scripts/bench.py --quick    # fewer repeats and epochs, for a smoke test
    python scripts/bench.py --quick --override model=test_resnet   # seconds, not numbers

Sections: (1) the framework's full fine-tuning against a plain PyTorch loop doing the same
work; (2) feature extraction with cached features against uncached, and the floor (one
forward pass over the training and validation images); (3) partial against full
fine-tuning, time per step and peak memory; (4) speed options on and off; (5) a sweep's
jobs two at a time with one thread each against one at a time with two threads; (photos,
not in the default set) a folder of JPEG photos at 224 px, scripts/bench_photos.py.
Medians over repeats; everything on the embedded default (lite0, MNIST sample, 50 per
class) at 64 px, and (1), (4) also at a larger input size (128 px).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from tl_experiments.assembly import build_run, create_module
from tl_experiments.commands.resolvers import register_resolvers
from tl_experiments.data import build_data, load_image_set
from tl_experiments.feature_cache import FeatureCache, extract_features
from tl_experiments.models.module import TransferModule
from tl_experiments.strategies.apply import apply_phase
from tl_experiments.train import create_trainer

sys.path.insert(0, str(Path(__file__).resolve().parent))  # its sibling bench_photos.py
from bench_photos import section_photos  # noqa: E402

CONF = Path(__file__).resolve().parents[1] / "conf"
register_resolvers()
# --override: Hydra overrides put after every section's own, in this process and in the
# ones it starts (tests/test_speed.py runs every table on a tiny model this way).
EXTRA: list[str] = []


def make_cfg(*overrides: str):
    out = tempfile.mkdtemp(prefix="tl-bench-")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(
            config_name="train",
            overrides=[f"paths.output_dir={out}", "analysis.enabled=false", *overrides, *EXTRA],
        )


def build(cfg) -> tuple[TransferModule, object, dict]:
    """The module on images, in its plan's first phase (what trains, BatchNorm modes: the
    hand-written loops train it outside a fit), and the run's data module, set up."""
    torch.manual_seed(cfg.seed)
    image_set = load_image_set(cfg.data.source)
    module = create_module(cfg, len(image_set.class_names), image_set.class_names)
    apply_phase(module, 0)
    data = OmegaConf.to_container(cfg.data, resolve=True)
    dm, data_cfg = build_data(data, module.backbone, cfg.model.img_size, cfg.seed, image_set)
    dm.setup("fit")
    return module, dm, data_cfg


def framework_fit(cfg) -> float:
    """Seconds of the framework's real ``trainer.fit`` (checkpoints, TensorBoard, val)."""
    from tl_experiments.callbacks import EpochHistory

    torch.manual_seed(cfg.seed)
    built = build_run(cfg, load_image_set(cfg.data.source))  # on cached features if it can
    getattr(built.dm, "images", built.dm).setup("fit")  # the images, as build() does
    start = time.perf_counter()  # the features are computed inside the fit
    trainer = create_trainer(cfg, Path(cfg.paths.output_dir), EpochHistory(), built.module)
    trainer.fit(built.module, datamodule=built.dm)
    return time.perf_counter() - start


def plain_fit(cfg) -> float:
    """The same work by hand: same model, data, batch size, AdamW groups, cosine, val."""
    module, dm, _ = build(cfg)
    model = module.backbone  # channels_last weights when the framework uses them
    fmt = torch.channels_last if module.channels_last else torch.contiguous_format
    opt = torch.optim.AdamW(
        module.plan.param_groups(module.stages), fused=module.fused_optimizer or None
    )
    train, val = dm.train_dataloader(), dm.val_dataloader()
    epochs = cfg.trainer.max_epochs
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * len(train))
    start = time.perf_counter()
    for epoch in range(epochs):
        train.sampler.set_epoch(epoch)
        model.train()
        for x, y in train:
            loss = F.cross_entropy(model(x.contiguous(memory_format=fmt)), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        with torch.no_grad():
            correct = sum(
                (model(x.contiguous(memory_format=fmt)).argmax(-1) == y).sum().item()
                for x, y in val
            )
        assert correct >= 0
    return time.perf_counter() - start


def fresh_fit(cfg) -> float:
    """``framework_fit`` with an empty feature cache: every cached run pays for its features."""
    FeatureCache.clear_memory()
    return framework_fit(cfg)


def floor_seconds(cfg) -> float:
    """One forward pass over the training and validation images (eval, no grad), done the
    way the cache does it (``extract_features``: batches of 128, the run's memory format)."""
    module, dm, _ = build(cfg)
    start = time.perf_counter()
    for split in ("train", "val"):
        extract_features(module.backbone, dm.image_dataset(split), module.channels_last)
    return time.perf_counter() - start


def median(fn, cfg, repeats: int) -> float:
    return statistics.median(fn(cfg) for _ in range(repeats))


def section_framework(args) -> list[str]:
    rows = ["| input | framework img/s | plain loop img/s | ratio (time) |", "|---|---|---|---|"]
    for size, epochs in ((64, args.epochs), (128, args.epochs_128)):
        cfg = make_cfg(
            "strategy=full_ft",
            f"model.img_size={size}",
            f"trainer.max_epochs={epochs}",
            "+trainer.enable_progress_bar=false",
        )
        n = epochs * 500
        times_fw, times_plain = [], []
        plain_fit(cfg)  # warm-up: oneDNN builds its kernels for these shapes once a process
        # Interleaved, so machine noise hits both alike; 3 repeats: the ratio is a target.
        for _ in range(args.framework_repeats):
            times_fw.append(framework_fit(cfg))
            times_plain.append(plain_fit(cfg))
        fw, plain = statistics.median(times_fw), statistics.median(times_plain)
        rows.append(f"| {size} px | {n / fw:.1f} | {n / plain:.1f} | {fw / plain:.3f} |")
    return rows


def section_cache(args) -> list[str]:
    rows = [
        "| epochs | cached (s) | uncached (s) | uncached / cached | floor (s) "
        "| cached / floor (median of pairs) |",
        "|---|---|---|---|---|---|",
    ]

    def cfg(epochs: int, enabled: str):
        return make_cfg(
            "strategy=feature_extraction",
            f"trainer.max_epochs={epochs}",
            f"feature_cache.enabled={enabled}",
            "+trainer.enable_progress_bar=false",
        )

    # Warm-ups: oneDNN builds its kernels for these shapes, and a process's first fit
    # imports what Lightning loads lazily (TensorBoard's writer etc.), once a process.
    floor_seconds(make_cfg())
    fresh_fit(cfg(2, "true"))
    # The floor and the cached fits take seconds: more repeats, interleaved so that the
    # machine's load drifting (it is shared) moves both sides of their ratio alike.
    for epochs in args.cache_epochs:
        floors, cached = [], []
        for _ in range(args.cheap_repeats):
            floors.append(floor_seconds(make_cfg()))
            cached.append(fresh_fit(cfg(epochs, "true")))
        floor = statistics.median(floors)
        times = {"true": statistics.median(cached)}
        times["false"] = median(fresh_fit, cfg(epochs, "false"), args.repeats)
        c, u = times["true"], times["false"]
        ratio = statistics.median(a / b for a, b in zip(cached, floors, strict=True))
        rows.append(f"| {epochs} | {c:.2f} | {u:.1f} | {u / c:.1f}x | {floor:.2f} | {ratio:.2f} |")
    return rows


def step_stats(overrides: list[str], steps: int, precision: str | None) -> dict:
    """Median seconds per training step, and the memory one step needs beyond the weights:
    the tensors autograd saves for backward (counted once per storage, during a forward)
    plus gradients and AdamW's two moments for the trainable parameters."""
    cfg = make_cfg(*overrides)
    module, dm, _ = build(cfg)  # in its first phase's modes
    opt = torch.optim.AdamW(
        module.plan.param_groups(module.stages), fused=module.fused_optimizer or None
    )
    x, y = next(iter(dm.train_dataloader()))
    times = []
    for i in range(steps + 3):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss, _, _ = module._step((x, y))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= 3:  # warm-up (and compilation) excluded
            times.append(time.perf_counter() - start)
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        module._step((x, y))
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return {
        "step_s": statistics.median(times),
        "saved_mb": sum(saved.values()) / 2**20,
        "state_mb": 3 * 4 * trainable / 2**20,  # grad + exp_avg + exp_avg_sq, float32
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_step(overrides: list[str], steps: int, precision: str | None = None) -> dict:
    code = (
        f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
        "from bench import step_stats; "
        f"print(json.dumps(step_stats({[*overrides, *EXTRA]!r}, {steps}, {precision!r})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def section_partial(args) -> list[str]:
    rows = [
        "| strategy | trainable params | s/step | saved for backward (MB) "
        "| grads + AdamW state (MB) | process peak RSS (MB) |",
        "|---|---|---|---|---|---|",
    ]
    for strategy in ("full_ft", "partial_ft", "feature_extraction"):
        r = [run_step([f"strategy={strategy}"], args.steps) for _ in range(args.repeats)]
        med = {k: statistics.median(x[k] for x in r) for k in r[0]}
        rows.append(
            f"| {strategy} | {med['state_mb'] * 2**20 / 12 / 1e6:.2f} M | {med['step_s']:.3f} "
            f"| {med['saved_mb']:.0f} | {med['state_mb']:.1f} | {med['peak_mb']:.0f} |"
        )
    return rows


def section_options(args) -> list[str]:
    rows = ["| input | option | s/step off | s/step on | on / off |", "|---|---|---|---|---|"]
    options = {
        "channels_last": (["speed.channels_last=true"], None),
        "fused AdamW": (["speed.fused_optimizer=true"], None),
        "bf16 autocast": ([], "bf16"),
        "torch.compile": (["speed.compile=true"], None),
    }
    for size in (64, 128):
        # Every option off, then one at a time on.
        base = [
            "strategy=full_ft",
            f"model.img_size={size}",
            "speed.channels_last=false",
            "speed.fused_optimizer=false",
        ]
        off = statistics.median(run_step(base, args.steps)["step_s"] for _ in range(args.repeats))
        for name, (extra, precision) in options.items():
            if name == "torch.compile" and size != 64:
                continue  # compiling costs minutes per process on 2 cores: measured once
            on = statistics.median(
                run_step(base + extra, args.steps, precision)["step_s"] for _ in range(args.repeats)
            )
            rows.append(f"| {size} px | {name} | {off:.3f} | {on:.3f} | {on / off:.2f} |")
    return rows


def section_parallel(args) -> list[str]:
    """Two jobs side by side (1 thread each) against one job with 2 threads."""
    code = (
        "import torch, time, sys; torch.set_num_threads(int(sys.argv[1])); "
        f"sys.path.insert(0, {str(Path(__file__).parent)!r}); from bench import step_stats; "
        f"print(step_stats({['strategy=full_ft', *EXTRA]!r}, {args.steps}, None)['step_s'])"
    )
    one = statistics.median(
        float(
            subprocess.run(
                [sys.executable, "-c", code, "2"], capture_output=True, text=True, check=True
            ).stdout.split()[-1]
        )
        for _ in range(args.repeats)
    )
    pair = []
    for _ in range(args.repeats):
        procs = [
            subprocess.Popen([sys.executable, "-c", code, "1"], stdout=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        pair.append(statistics.mean(float(p.communicate()[0].split()[-1]) for p in procs))
    two = statistics.median(pair)
    return [
        "| layout | s/step per job | steps/s, machine |",
        "|---|---|---|",
        f"| 1 job x 2 threads | {one:.3f} | {1 / one:.2f} |",
        f"| 2 jobs x 1 thread | {two:.3f} | {2 / two:.2f} |",
        f"| throughput ratio | | {(2 / two) / (1 / one):.2f}x |",
    ]


BEFORE_COMMIT = "e3d32b0"  # the core, before this speed work (feature cache etc.)


def section_end_to_end(args) -> list[str]:
    """The README's main command as it was before the speed work (four strategies x seeds
    0, 1, 2), end to end: the code of BEFORE_COMMIT (a git worktree, its defaults: one job
    at a time) against this code as the main command runs it (experiment=compare_strategies:
    parallel jobs sharing the cores, feature cache, channels_last) on the same jobs, with
    the analysis after test off (new work since, not in "before")."""
    root = Path(__file__).resolve().parents[1]
    strategies = ("scratch", "feature_extraction", "partial_ft", "full_ft")
    common = ["-m", f"strategy={','.join(strategies)}", f"seed={args.e2e_seeds}"]
    if args.e2e_epochs:
        common.append(f"trainer.max_epochs={args.e2e_epochs}")
    old = Path(tempfile.mkdtemp(prefix="tl-bench-before-")) / "src"
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(old), BEFORE_COMMIT],
        cwd=root,
        check=True,
        capture_output=True,
    )
    setups = {
        f"before: code at {BEFORE_COMMIT}, one job at a time": (old, []),
        "after: the main command (parallel jobs, feature cache, channels_last)": (
            root,
            ["experiment=compare_strategies", "analysis.enabled=false"],
        ),
    }
    rows = [
        "| setup | seconds | mean test acc (scratch, fe, partial, full) |",
        "|---|---|---|",
    ]
    seconds = {}
    try:
        for name, (code, extra) in setups.items():
            sweep = Path(tempfile.mkdtemp(prefix="tl-bench-e2e-"))
            env = {**os.environ, "PYTHONPATH": str(code / "src")}
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "train.py", *common, *extra, f"hydra.sweep.dir={sweep}"],
                check=True,
                capture_output=True,
                cwd=code,
                env=env,
            )
            seconds[name] = time.perf_counter() - start
            accs: dict[str, list[float]] = {}
            for p in sweep.rglob("metrics.json"):
                m = json.loads(p.read_text())
                accs.setdefault(m["strategy"], []).append(m["test_acc"])
            accs_text = ", ".join(
                f"{statistics.mean(accs[k]):.3f}" if k in accs else "-" for k in strategies
            )
            rows.append(f"| {name} | {seconds[name]:.0f} | {accs_text} |")
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=root)
    before, after = seconds.values()
    rows.append(f"| speed-up | {before / after:.2f}x | |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and epochs")
    parser.add_argument(
        "--sections",
        default="framework,cache,partial,options,parallel,e2e",
        help="comma-separated subset of: framework,cache,partial,options,parallel,e2e,photos",
    )
    parser.add_argument("--photos", help="photos: a JPEG folder for the 224 px throughput row")
    parser.add_argument("--photos-big", help="photos: a large folder for the peak-memory row")
    parser.add_argument("--photo-arch", default="mobilenetv3_small_100", help="photos: model")
    parser.add_argument("--photo-repeats", type=int, default=3, help="photos: epochs per side")
    parser.add_argument("--photo-images", type=int, default=600, help="photos: training images")
    parser.add_argument("--big-train-batches", type=int, default=20, help="photos: memory run")
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Hydra override for every run, after the section's own (repeatable); "
        "e.g. model=test_resnet for a quick smoke test of the script itself",
    )
    args = parser.parse_args()
    EXTRA.extend(args.override)
    args.repeats = 1 if args.quick else 2
    args.framework_repeats = 1 if args.quick else 3
    args.cheap_repeats = 1 if args.quick else 9  # cached fits and the floor: seconds each
    args.epochs = 1 if args.quick else 3
    args.epochs_128 = 1 if args.quick else 2
    args.steps = 5 if args.quick else 15
    args.cache_epochs = (2,) if args.quick else (10, 30)
    args.e2e_epochs = 1 if args.quick else None  # None: the main command's own (15)
    args.e2e_seeds = "0" if args.quick else "0,1,2"  # the main command's seeds before
    torch.manual_seed(0)
    print(
        f"# Benchmark\n\nMachine: {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} torch threads, torch {torch.__version__}, "
        f"Python {platform.python_version()}. Medians of {args.repeats} repeats "
        f"({args.framework_repeats} for the framework ratio, {args.cheap_repeats} for cached fits "
        "and the floor).\n"
    )
    sections = {
        "framework": (
            "Full fine-tuning: framework vs plain PyTorch loop "
            f"({args.epochs} epochs at 64 px, {args.epochs_128} at 128 px, "
            "of 500 images + validation)",
            section_framework,
        ),
        "cache": ("Feature extraction: cached vs uncached features, whole fit", section_cache),
        "partial": (
            "Partial vs full fine-tuning: one training step (batch 32, 64 px)",
            section_partial,
        ),
        "options": ("Speed options, full fine-tuning step (batch 32)", section_options),
        "parallel": ("A sweep's jobs on 2 cores: parallel vs sequential", section_parallel),
        "e2e": (
            "The four-strategy comparison, end to end "
            f"({args.e2e_epochs or 'the default 15'} epochs each, seeds {args.e2e_seeds})",
            section_end_to_end,
        ),
        "photos": (
            "Folders of photos at 224 px: framework vs plain ImageFolder loop, peak memory",
            lambda a: section_photos(a, make_cfg),
        ),
    }
    wanted = [k.strip() for k in args.sections.split(",")]
    unknown = set(wanted) - set(sections)
    if unknown:
        parser.error(f"unknown section(s) {', '.join(sorted(unknown))}; use {', '.join(sections)}")
    for title, fn in (sections[k] for k in wanted):
        start = time.perf_counter()
        rows = fn(args)
        print(
            f"## {title}\n\n" + "\n".join(rows) + f"\n\n({time.perf_counter() - start:.0f} s)\n",
            flush=True,
        )


if __name__ == "__main__":
    main()
