"""Check stages, heads, freezing and the feature cache on one model of every timm family.

    nice -n 19 python scripts/check_zoo.py                  # every family -> docs/architectures.md
    python scripts/check_zoo.py --models vgg11 convnext_atto  # just these, printed

Each family (``timm.list_modules()``) is checked on its smallest model (parameters counted
on the meta device), built on the CPU with random weights as ``train.py`` builds it
(``build_backbone`` with ``model.img_size``), at the smallest input size that
``model.img_size`` accepts, plus the model configs shipped in ``conf/model/``:

1. the stages partition the parameters; the head stage is exactly the new classifier;
2. the stages' modules are disjoint, and every parameter lies in its own stage's modules;
3. ``feature_extraction``, ``partial_ft`` and ``full_ft`` (the configs in
   ``conf/strategy/``), applied as a fit's first epoch applies them (``set_trainable``,
   ``set_modes``: strategies/apply.py), set ``requires_grad`` on exactly their stages and
   leave every module of a frozen stage in eval mode and of a trainable one in train mode;
4. one training step (SGD) of ``feature_extraction`` and of ``partial_ft`` changes no
   frozen weight and no frozen BatchNorm statistic;
5. the feature cache is refused with its reason, or used: then the classifier on cached
   features gives the model's own logits.
"""

from __future__ import annotations

import argparse
import signal
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import timm
import torch
import torch.nn.functional as F
import yaml

from tl_experiments.config_schema import strategy_file
from tl_experiments.errors import UserError
from tl_experiments.feature_cache import CachedHeadModule, cache_blocker
from tl_experiments.models.backbone import ModelSpec, build_backbone
from tl_experiments.models.module import TransferModule
from tl_experiments.models.size import own_img_size
from tl_experiments.stages.groups import classifier_modules
from tl_experiments.stages.stage import Stage, get_stages, select_stages
from tl_experiments.strategies import Strategy
from tl_experiments.strategies.apply import apply_phase, set_modes, set_trainable

ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = ("feature_extraction", "partial_ft", "full_ft")
SIZES = (64, 96, 128, 160, 224)  # smallest first: the CPU time of the whole zoo
CLASSES = 5
TIMEOUT_S = 180


class CheckFailed(Exception):
    """One check did not hold; the message says which and where."""


@dataclass
class Result:
    family: str
    arch: str
    params: int = 0
    img_size: int = 0
    own_size: int | None = None  # model.img_size left at its default: timm's input size
    stages: str = ""
    neck: str = ""
    cache: str = ""
    error: str = ""
    seconds: float = 0.0


def smallest_model(family: str) -> str | None:
    """The model of ``family`` with the fewest parameters (built on the meta device)."""
    best: tuple[int, str] | None = None
    for name in timm.list_models(module=family):
        try:
            with torch.device("meta"):
                n = sum(p.numel() for p in timm.create_model(name).parameters())
        except Exception:  # some models cannot be built on meta: the others are enough
            continue
        best = min(best or (n, name), (n, name))
    names = timm.list_models(module=family)
    return best[1] if best else (names[0] if names else None)


def build(arch: str) -> tuple[torch.nn.Module, int]:
    """``arch`` as ``train.py`` builds it (``build_backbone``: a zeroed ``CLASSES``-way
    head, fixed-size models built for ``model.img_size`` through timm's ``img_size``), at
    the smallest of ``SIZES`` that ``model.img_size`` accepts, else at the model's own."""
    problem = ""
    own = own_img_size(arch)
    for size in (*SIZES, *([own] if own and own not in SIZES else [])):
        try:
            return build_backbone(ModelSpec(arch, "none", img_size=size), CLASSES)[0], size
        except UserError as e:
            problem = str(e)
    raise CheckFailed(f"model.img_size takes none of {SIZES} nor its own {own}: {problem}")


def check_partition(model: torch.nn.Module, stages: list[Stage]) -> None:
    ids = [id(p) for s in stages for p in s.params]
    if sorted(ids) != sorted(id(p) for p in model.parameters()):
        raise CheckFailed("the stages do not partition the parameters")
    head = {id(p) for m in classifier_modules(model) for p in m.parameters()}
    if {id(p) for p in stages[-1].params} != head:
        raise CheckFailed("the head stage is not exactly the classifier")
    paths = [(p, s.name) for s in stages for p in s.module_names]
    for a, sa in paths:
        for b, sb in paths:
            if a != b and (b.startswith(a + ".") or a == "") or (a == b and sa != sb):
                raise CheckFailed(f"module {a} ({sa}) overlaps {b} ({sb})")
    for s in stages:
        for name in s.param_names:
            home = [t for p, t in paths if name.startswith(p + ".")]
            if home and home != [s.name]:
                raise CheckFailed(f"{name} of {s.name} lies in a module of {home[0]}")


def _strategy(name: str) -> Strategy:
    return Strategy.from_dict(strategy_file(ROOT / "conf/strategy" / f"{name}.yaml"))


def check_strategy(model, name: str, x: torch.Tensor, y: torch.Tensor) -> TransferModule:
    strategy = _strategy(name)
    module = TransferModule(model, strategy, [str(i) for i in range(CLASSES)])
    stages, plan = module.stages, module.plan
    set_trainable(stages, plan, plan.trainable_at(0))  # as ApplyPlan does at epoch 0
    chosen = {s.name for s in select_stages(stages, strategy.trainable)}
    for s in stages:
        if {p.requires_grad for p in s.params} != {s.name in chosen}:
            raise CheckFailed(f"{name}: requires_grad of {s.name} is not {s.name in chosen}")
    set_modes(module, stages, plan, plan.trainable_at(0))
    for s in stages:
        for m in _own_modules(s):
            want = _wanted_mode(strategy, s.name in chosen, m)
            if m.training != want:
                raise CheckFailed(
                    f"{name}: a {type(m).__name__} of {s.name} is not in "
                    f"{'train' if want else 'eval'} mode"
                )
    if name != "full_ft":
        _check_step(module, name, x, y)
    return module


def _wanted_mode(strategy: Strategy, trains: bool, m: torch.nn.Module) -> bool:
    """Train mode a module should be in: frozen stages follow ``train_bn``; in stages that
    train, BatchNorm follows ``trainable_bn`` (eval unless ``train``), the rest trains."""
    if not trains:
        return strategy.train_bn
    is_bn = isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
    return not is_bn or strategy.trainable_bn == "train"


def _own_modules(stage: Stage) -> list[torch.nn.Module]:
    """The stage's modules and their submodules, less those shared with another stage
    (CoaT's blocks call a ``cpe`` module that the stem owns): their mode is the owner's."""
    own = {id(p) for p in stage.params}
    return [
        m
        for top in stage.modules
        for m in top.modules()
        if all(id(p) in own for p in m.parameters())
    ]


def _frozen_state(module: TransferModule) -> dict[str, torch.Tensor]:
    """Frozen parameters and every tensor of the modules that hold them (BatchNorm
    statistics), found by name: independent of the stage module lists under test."""
    frozen = {n for s in module.stages if not s.trainable for n in s.param_names}
    params = {n for s in module.stages for n in s.param_names}
    homes = {n.rpartition(".")[0] for n in frozen}
    state = module.backbone.state_dict(keep_vars=True)
    buffers = [k for k in state if k not in params and k.rpartition(".")[0] in homes]
    keys = [k for k in state if k in frozen] + buffers
    return {k: state[k].detach().clone() for k in keys}


def _check_step(module: TransferModule, name: str, x, y) -> None:
    before = _frozen_state(module)
    # The strategy's groups and learning rates; SGD keeps no state, so the largest smallest
    # models (a 412M DeepSeek ViT) fit in memory. Which optimizer steps changes nothing
    # about what is frozen: torch's optimizers all skip parameters without a gradient.
    opt = torch.optim.SGD(module.plan.param_groups(module.stages))
    apply_phase(module, 0)  # what trains and the modes, as a fit's first epoch sets them
    F.cross_entropy(module(x), y).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    after = _frozen_state(module)
    changed = [k for k, v in before.items() if not torch.equal(v, after[k])]
    if changed:
        stage = {n: s.name for s in module.stages if not s.trainable for n in s.param_names}
        stage |= {n.rpartition(".")[0]: s for n, s in stage.items()}  # buffers: by module
        where = stage.get(changed[0]) or stage[changed[0].rpartition(".")[0]]
        raise CheckFailed(f"{name}: one training step changed frozen {where}.{changed[0]}")


def check_cache(module: TransferModule, x: torch.Tensor) -> str:
    """``used`` (after checking the cached path's logits) or ``refused: <reason>``."""
    dm = SimpleNamespace(deterministic={"train": True})
    reason = cache_blocker(module.plan, module.backbone, dm, {})
    if reason is not None:
        return f"refused: {reason}"
    with torch.no_grad():
        for p in module.stages[-1].params:  # a non-zero head, so the logits say something
            p.normal_(0, 0.1)
        module.eval()
        backbone = module.backbone
        logits = module(x)
        feats = backbone.forward_head(backbone.forward_features(x), pre_logits=True)
        cached = CachedHeadModule(
            backbone, module.plan, module.class_names, batch_size=1, frozen_digest="zoo"
        )
        cached = cached.eval()(feats)
    if cached.shape != logits.shape or not torch.allclose(cached, logits, atol=1e-4, rtol=1e-3):
        raise CheckFailed("the classifier on cached features does not give the model's logits")
    return "used"


def check(family: str, arch: str) -> Result:
    r = Result(family, arch)
    t0 = time.perf_counter()
    signal.alarm(TIMEOUT_S)
    try:
        torch.manual_seed(0)
        r.own_size = own_img_size(arch)
        model, r.img_size = build(arch)
        r.params = sum(p.numel() for p in model.parameters())
        stages = get_stages(model)
        r.stages = ", ".join(s.name for s in stages)
        r.neck = next((s.prefixes for s in stages if s.name == "neck"), "")
        check_partition(model, stages)
        x = torch.randn(4, 3, r.img_size, r.img_size)
        y = torch.arange(4) % CLASSES
        for name in STRATEGIES:
            module = check_strategy(model, name, x, y)
            if name == "feature_extraction":  # while its stages are frozen as it says
                r.cache = check_cache(module, x)
    except (CheckFailed, UserError) as e:
        r.error = str(e)
    except TimeoutError:
        r.error = f"timed out after {TIMEOUT_S} s"
    except Exception as e:
        frame = traceback.extract_tb(e.__traceback__)[-1]
        where = f"{Path(frame.filename).name}:{frame.lineno}"
        r.error = f"{type(e).__name__} in {where}: {(str(e) or ' ').splitlines()[0][:150]}"
    finally:
        signal.alarm(0)
    r.seconds = time.perf_counter() - t0
    return r


def _timeout(signum, frame) -> None:
    raise TimeoutError


def shipped_models() -> list[str]:
    """The archs of conf/model/ (the tiny test models excepted)."""
    archs = [
        yaml.safe_load(p.read_text())["arch"] for p in sorted((ROOT / "conf/model").glob("*.yaml"))
    ]
    return [a for a in archs if not a.startswith("test_")]


def _row(r: Result) -> str:
    result = "pass" if not r.error else f"**fail**: {r.error}"
    neck = f"neck = {r.neck}" if r.neck else "no neck"
    stages = f"{len(r.stages.split(', '))} ({neck})" if r.stages else ""
    return (
        f"| {r.family} | `{r.arch}` | {r.params / 1e6:.2f}M | {r.own_size or ''} "
        f"| {r.img_size or ''} | {stages} "
        f"| {r.cache} | {result} | {r.seconds:.1f} |"
    )


def write_report(
    path: Path, families: list[Result], shipped: list[Result], command: str, wall: float
) -> None:
    passed = sum(not r.error for r in families)
    head = (
        "| family | model | params | default px | smallest px | stages | feature cache "
        "| result | s |\n" + "|---" * 9 + "|"
    )
    share = 100 * passed / len(families)
    failures = [f"- **{r.family}** (`{r.arch}`): {r.error}" for r in families + shipped if r.error]
    text = f"""# timm architectures: stages, heads, freezing and the feature cache

Generated by `scripts/check_zoo.py` (timm {timm.__version__}, torch {torch.__version__}):

    {command}

Wall time {wall / 60:.1f} min on this machine's CPU (2 cores, under `nice -n 19`).
**{passed} of {len(families)} timm families pass every check** ({share:.0f}%);
shipped model configs: {sum(not r.error for r in shipped)} of {len(shipped)} pass.

One model per family (`timm.list_modules()`): the one with the fewest parameters, random
weights, a {CLASSES}-class head, built the way `train.py` builds it (`build_backbone`:
a model with a fixed input size is built for `model.img_size` through timm's `img_size`
argument, then any model is checked with a forward pass at that size). *Default px* is
the size a run uses when `model.img_size` is left at its default (timm's pretrained
config; `model.arch=X` alone gives it); *smallest px* is the smallest of
{", ".join(map(str, SIZES))} px that `model.img_size` accepts, where the checks ran. Checked, in
order (the first failure is reported): the stages partition the parameters; the head
stage is exactly the new classifier (`get_classifier()`); the stages' modules are
disjoint and hold their own parameters; `feature_extraction`, `partial_ft` and `full_ft`
set `requires_grad` on exactly their stages and put every module of a frozen stage in
eval mode and of a trainable one in train mode (applied as a fit's first epoch does); one
training step of `feature_extraction` and of `partial_ft` changes no frozen weight or BatchNorm
statistic; the feature cache for `feature_extraction` is refused with its reason, or used
and gives the model's own logits. *Stages* counts stem, feature stages, neck and head; the
neck holds the pretrained layers between the last feature stage and the classifier. Where
timm's matcher groups the classifier with the last block (DeepSeek ViT), that block is in
the neck too: it is frozen or trained with the final norm, the classifier alone is the head.

## Failures

{chr(10).join(failures) or "None."}

## Shipped model configs (`conf/model/`)

{head}
{chr(10).join(_row(r) for r in shipped)}

## Every family

{head}
{chr(10).join(_row(r) for r in families)}
"""
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", help="check just these models and print them")
    parser.add_argument("--families", nargs="*", help="only these families (default: all)")
    parser.add_argument("--out", default=str(ROOT / "docs/architectures.md"))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    signal.signal(signal.SIGALRM, _timeout)
    if args.models:
        for arch in args.models:
            print(_row(check("-", arch)), flush=True)
        return
    t0 = time.perf_counter()
    families = []
    for family in args.families or timm.list_modules():
        arch = smallest_model(family)
        r = check(family, arch) if arch else Result(family, "-", error="timm lists no model")
        print(_row(r), flush=True)
        families.append(r)
    shipped = [check("shipped", arch) for arch in shipped_models()]
    for r in shipped:
        print(_row(r), flush=True)
    command = "nice -n 19 python scripts/check_zoo.py" + (
        f" --families {' '.join(args.families)}" if args.families else ""
    )
    write_report(Path(args.out), families, shipped, command, time.perf_counter() - t0)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
