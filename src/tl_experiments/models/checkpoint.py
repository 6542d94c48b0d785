"""Rebuild a trained model from a run's checkpoint, without Hydra and without a download.

Checkpoints are read with ``torch.load(weights_only=True)``: tensors and plain Python types
only, never arbitrary pickled objects, so opening a checkpoint cannot run code. Lightning's
own ``load_from_checkpoint`` is not used for that reason; the state dict is loaded here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from timm.data import create_transform

from tl_experiments.errors import UserError
from tl_experiments.models.backbone import create_backbone
from tl_experiments.models.base_weights import KEY as BASE_KEY
from tl_experiments.models.base_weights import fill_base
from tl_experiments.models.module import TransferModule
from tl_experiments.stages.stage import get_stages
from tl_experiments.strategies import Strategy
from tl_experiments.strategies.lora import add_lora, merge_lora

__all__ = ["eval_transform", "load_checkpoint", "module_from_checkpoint"]

# What TransferModule.on_save_checkpoint stores, and what rebuilding needs of it.
_REQUIRED = ("class_names", "arch", "data_config")


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint written by ``train.py`` (tensors and plain types only).

    Raises:
        UserError: if the file is missing, unreadable, or not a tl_experiments checkpoint.
    """
    path = Path(path)
    if path.is_dir():
        found = [p for p in (path / "checkpoints/best.ckpt", path / "best.ckpt") if p.is_file()]
        hint = found[0] if found else path / "checkpoints" / "best.ckpt"
        raise UserError(
            f"ckpt='{path}' is a folder, not a checkpoint file; pass ckpt={hint}"
            + ("." if found else " (that run has none: did it finish an epoch?).")
        )
    if not path.is_file():
        raise UserError(
            f"Checkpoint '{path}' does not exist; pass ckpt=PATH to a .ckpt file "
            "such as <run folder>/checkpoints/best.ckpt."
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    # A corrupt or foreign file fails in many ways (UnpicklingError, KeyError, EOFError...).
    except Exception as e:
        raise UserError(
            f"Cannot read checkpoint '{path}' with weights_only=True ({type(e).__name__}): "
            "it is corrupt or holds pickled objects; pass a checkpoint written by train.py."
        ) from None
    meta = ckpt.get("tl_experiments") if isinstance(ckpt, dict) else None
    if not isinstance(meta, dict) or "state_dict" not in ckpt:
        raise UserError(
            f"'{path}' is not a tl_experiments checkpoint (no 'tl_experiments' "
            "entry); pass a checkpoint written by train.py."
        )
    if "frozen_backbone" in meta:
        raise UserError(
            f"Checkpoint '{path}' holds only the head of a feature-cached run that did not "
            "finish (the frozen backbone is written in at the end of fit); finish that run "
            "with the same command plus ckpt_path=last hydra.run.dir=<its run folder>, "
            "then use its checkpoint."
        )
    missing = [k for k in _REQUIRED if k not in meta]
    if missing:
        raise UserError(
            f"Checkpoint '{path}' lacks {', '.join(missing)}; it was written by an "
            "older train.py, so train the run again."
        )
    return ckpt


def module_from_checkpoint(ckpt: dict, merge: bool = True) -> TransferModule:
    """The trained :class:`TransferModule` of a loaded checkpoint, in eval mode.

    The backbone is built with random weights (no hub download) and then receives the
    checkpoint's state dict, so the architecture must match exactly. A parameter-efficient
    checkpoint holds only what trained: its base is rebuilt from the run's weights source
    and must have the digest it was trained over (:mod:`~tl_experiments.models.base_weights`).
    LoRA adapters are added as in training, then merged into their layers unless
    ``merge=False``: the model leaves with the plain architecture.
    """
    meta = ckpt["tl_experiments"]
    model_cfg = meta.get("config", {}).get("model", {})
    class_names = list(meta["class_names"])
    base = meta.get(BASE_KEY)
    source = (meta.get("weights") or {}) if base else {}
    backbone = create_backbone(
        meta["arch"],
        len(class_names),
        source.get("source", "none"),
        source.get("file"),
        drop_rate=model_cfg.get("drop_rate"),
        zero_head=False,
        img_size=model_cfg.get("img_size"),  # a ViT trained at 64 px is built for 64 px
    )
    if meta.get("lora"):
        add_lora(backbone, **meta["lora"])
    # Only the name matters outside training; rebuilding the full strategy from the stored
    # config would tie old checkpoints to today's strategy keys.
    strategy = Strategy(name=str(meta.get("strategy", "unknown")), pretrained=False)
    module = TransferModule(backbone, strategy, class_names)
    # Only the network: training-only state (L2-SP's w0 buffers) is not needed here.
    prefix = "backbone."
    state = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    if base:
        state = fill_base(state, module.backbone.state_dict(), base)
    try:
        module.backbone.load_state_dict(state)
    except RuntimeError as e:
        raise UserError(
            f"The checkpoint's weights do not fit '{meta['arch']}' "
            f"({str(e).splitlines()[0][:120]}); pass an unmodified checkpoint "
            "written by train.py."
        ) from None
    if merge and meta.get("lora"):
        merge_lora(module.backbone)
        module.stages = get_stages(module.backbone)  # the merged layers' parameters
    module.meta = {k: v for k, v in meta.items() if k not in ("class_names", "strategy")}
    return module.eval()


def eval_transform(ckpt: dict) -> Callable:
    """The eval transform the model was tested with, from its stored timm data config."""
    return create_transform(**ckpt["tl_experiments"]["data_config"], is_training=False)
