"""What ``tl-advise`` does (the entry point, ``tl_experiments/commands/advise.py``,
imports this module only when it runs, so its ``--help`` needs no torch): measure a dataset,
apply the lesson's rules, print the ``train.py`` command to run.

    tl-advise                                   # default data and model
    tl-advise data=digits priority=speed
    tl-advise data=image_folder data.root=DIR similarity=low

Takes the same ``data=`` and ``model=`` overrides as ``train.py``. Size is counted
(the training split after ``samples_per_class``), similarity is measured with a linear
probe (pretrained against random-init features), the budget is the estimated seconds of a
full fine-tuning run; priority comes from the user. ``size=``, ``similarity=`` and
``budget=`` set a judgement by hand and skip its measurement. ``advice_out=PATH`` also
writes the advice as JSON, which the sweep report sets beside the measured winner.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from tl_experiments.advisor.measure import (
    HIGH_GAIN,
    LOW_GAIN,
    estimate_training_seconds,
    similarity_class,
    similarity_probe,
    subsample,
)
from tl_experiments.advisor.rules import (
    BUDGETS,
    PRIORITIES,
    RULES,
    SIMILARITIES,
    SIZE_CLASSES,
    STRATEGIES,
    budget_class,
    recommend,
    size_class,
)
from tl_experiments.config_schema import strategy_file
from tl_experiments.data import ImageDataModule, ImageDataset, build_data, load_image_set
from tl_experiments.errors import UserError, require_seed
from tl_experiments.models import create_backbone
from tl_experiments.models.backbone import ModelSpec, build_backbone
from tl_experiments.run.console import quiet_third_party
from tl_experiments.run.outputs import write_json_atomic
from tl_experiments.strategies import Strategy

__all__ = ["advise", "render_advice", "train_command"]

# Overrides of these config groups are repeated in the printed command: data and model
# pick what is trained, trainer the epochs and device the budget was estimated for.
_CARRIED_GROUPS = ("data", "model", "trainer")
_STRATEGY_CONF = Path(__file__).resolve().parents[3] / "conf" / "strategy"  # = train.py's


def _choice(key: str, value: str | None, allowed: Sequence[str]) -> str | None:
    if value is not None and value not in allowed:
        raise UserError(
            f"{key}={value} is not one of {', '.join(allowed)}; pick one of them, "
            "or leave it out to have it measured."
        )
    return value


def _judgement(value: str, source: str, detail: str, **numbers) -> dict:
    return {"value": value, "source": source, "detail": detail, **numbers}


def _judge_size(cfg: DictConfig, dm: ImageDataModule) -> dict:
    n = len(dm.splits["train"])
    counted = f"{n:,} training images, {len(dm.class_names)} classes"
    if cfg.size is not None:
        return _judgement(cfg.size, "by hand", f"size={cfg.size} ({counted})", n_train=n)
    bounds = "small < 1,000 <= medium <= 10,000 < large"
    return _judgement(size_class(n), "measured", f"{counted} ({bounds})", n_train=n)


def _probe_images(cfg: DictConfig, dm: ImageDataModule) -> tuple[ImageDataset, np.ndarray]:
    # Train and val splits only: the test split stays unseen until the run is tested.
    idx = np.concatenate([dm.splits["train"], dm.splits["val"]])
    labels = dm.image_set.labels[idx]
    idx = idx[subsample(labels, cfg.similarity_images, cfg.seed)]
    items = [dm.image_set.items[i] for i in idx]
    labels = dm.image_set.labels[idx]
    return ImageDataset(items, labels, dm.transforms["val"]), labels


def _judge_similarity(cfg: DictConfig, dm: ImageDataModule, backbone: torch.nn.Module) -> dict:
    if cfg.similarity is not None:
        return _judgement(cfg.similarity, "by hand", f"similarity={cfg.similarity}")
    if cfg.model.weights == "none":
        raise UserError(
            f"Measuring similarity needs pretrained weights, but model "
            f"{cfg.model.name} has model.weights=none; pick a pretrained model "
            "or set similarity=high|medium|low by hand."
        )
    dataset, labels = _probe_images(cfg, dm)
    torch.manual_seed(cfg.seed)  # the random-init control's weights
    k = len(dm.class_names)
    random_init = create_backbone(cfg.model.arch, k, "none", img_size=cfg.model.img_size)
    r = similarity_probe(backbone, random_init, dataset, labels)
    detail = (
        f"linear probe on {r.n_images} images: accuracy {r.acc_pretrained:.3f} "
        f"pretrained, {r.acc_random:.3f} random init; pretraining removes {r.gain:.0%} "
        f"of the held-out cross-entropy (high >= {HIGH_GAIN:.0%}, low < {LOW_GAIN:.0%})"
    )
    return _judgement(
        similarity_class(r.gain),
        "measured",
        detail,
        probe_n=r.n_images,
        acc_pretrained=r.acc_pretrained,
        acc_random=r.acc_random,
        ce_pretrained=r.ce_pretrained,
        ce_random=r.ce_random,
        ce_reduction=r.gain,
    )


def _device(accelerator: str) -> str:
    cuda = torch.cuda.is_available()
    return "cuda" if accelerator in ("gpu", "cuda") or (accelerator == "auto" and cuda) else "cpu"


def _judge_budget(cfg: DictConfig, dm: ImageDataModule, backbone: torch.nn.Module) -> dict:
    if cfg.budget is not None:
        return _judgement(cfg.budget, "by hand", f"budget={cfg.budget}")
    train = dm.splits["train"]
    bs = min(cfg.data.batch_size, len(train))
    images = ImageDataset(
        [dm.image_set.items[i] for i in train[:bs]],
        dm.image_set.labels[train[:bs]],
        dm.transforms["train"],
    )
    batch = torch.stack([images[i][0] for i in range(bs)])
    epochs = int(cfg.trainer.max_epochs)
    cost = estimate_training_seconds(
        backbone, batch, len(train), len(dm.splits["val"]), epochs, _device(cfg.trainer.accelerator)
    )
    detail = (
        f"full fine-tuning estimated at {cost.total_seconds:,.0f} s = {epochs} epochs x "
        f"({cost.steps_per_epoch} steps x {cost.step_seconds:.3f} s + {cost.val_batches} "
        f"val batches x {cost.eval_seconds:.3f} s) (limited < 1 h <= moderate <= 6 h < high)"
    )
    return _judgement(
        budget_class(cost.total_seconds),
        "measured",
        detail,
        estimated_seconds=cost.total_seconds,
        step_seconds=cost.step_seconds,
    )


def train_command(strategy: str, overrides: Sequence[str]) -> str:
    """The ``train.py`` command for ``strategy``, repeating the data/model/trainer overrides."""
    carried = [
        o for o in overrides if re.split(r"[.=@]", o.lstrip("+~"), maxsplit=1)[0] in _CARRIED_GROUPS
    ]
    return shlex.join(["python", "train.py", f"strategy={strategy}", *carried])


def _build(cfg: DictConfig) -> tuple[ImageDataModule, torch.nn.Module]:
    image_set = load_image_set(cfg.data.source, cfg.data.get("source_args"))
    spec = ModelSpec.from_config(cfg.model)
    backbone, _ = build_backbone(spec, len(image_set.class_names))
    data = OmegaConf.to_container(cfg.data, resolve=True)
    dm, _ = build_data(data, backbone, cfg.model.img_size, cfg.seed, image_set)
    return dm, backbone


def advise(cfg: DictConfig, overrides: Sequence[str] = ()) -> dict:
    """Judge size, similarity and budget (measured or by hand), pick a strategy, print it
    (``overrides``: the command's own, whose data, model and trainer the train command repeats).

    Returns:
        The advice: data and model, each judgement with how it was reached, the rule
        that fired, the strategy with the lesson's lr and epochs, and the train command.
    """
    priority = _choice("priority", cfg.priority, PRIORITIES)
    for key, allowed in (("size", SIZE_CLASSES), ("similarity", SIMILARITIES), ("budget", BUDGETS)):
        _choice(key, cfg[key], allowed)
    quiet_third_party()
    pl.seed_everything(require_seed("seed", cfg.seed), verbose=False)
    dm, backbone = _build(cfg)
    judged = {"size": _judge_size(cfg, dm)}
    judged["similarity"] = _judge_similarity(cfg, dm, backbone)
    judged["budget"] = _judge_budget(cfg, dm, backbone)  # last: it trains the backbone
    judged["priority"] = _judgement(priority, "given", f"priority={priority}")
    rec = recommend(*(judged[k]["value"] for k in ("size", "similarity", "budget", "priority")))
    advice = {
        "data": cfg.data.name,
        "model": cfg.model.name,
        "arch": cfg.model.arch,
        "samples_per_class": cfg.data.get("samples_per_class"),
        "img_size": cfg.model.img_size,
        "num_classes": len(dm.class_names),
        "judgements": judged,
        "rule": {"number": RULES.index(rec.rule) + 1, "description": rec.rule.description},
        "strategy": rec.strategy,
        **trained_with(rec.strategy, int(cfg.trainer.max_epochs)),
        "command": train_command(rec.strategy, overrides),
    }
    print(render_advice(advice), flush=True)
    if cfg.advice_out:
        write_json_atomic(advice, Path(cfg.advice_out))
    return advice


def trained_with(strategy: str, max_epochs: int) -> dict:
    """The numbers the advised command trains with: the strategy's own config (the tuned
    defaults, conf/strategy/<name>.yaml) and the trainer's epochs, not the lesson's."""
    spec = Strategy.from_dict(strategy_file(_STRATEGY_CONF / f"{strategy}.yaml"))
    return {"lr": spec.lr, "backbone_lr_scale": spec.backbone_lr_scale, "epochs": max_epochs}


def render_advice(advice: dict) -> str:
    """The advice as the command prints it: judgements, the rule, the command."""
    lines = [f"Advice for data={advice['data']}, model={advice['model']} ({advice['arch']}):"]
    for key, j in advice["judgements"].items():
        lines.append(f"  {key:<10} {j['value']:<9} {j['source']}: {j['detail']}")
    name, title = advice["strategy"], STRATEGIES[advice["strategy"]].title
    below = "" if advice["backbone_lr_scale"] == 1 else f", x{advice['backbone_lr_scale']:g} below"
    lines += [
        f"Rule {advice['rule']['number']}: {advice['rule']['description']} -> {name} "
        f"(the lesson's {title}): lr {advice['lr']:g} for the head{below}, "
        f"{advice['epochs']} epochs (conf/strategy/{name}.yaml, tuned: docs/results.md)",
        "Run:",
        f"  {advice['command']}",
    ]
    return "\n".join(lines)
