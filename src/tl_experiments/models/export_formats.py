"""Writers and runners of exported models, one pair per format: ONNX and TorchScript.

A writer saves a model traced on an example batch; a runner loads the saved file and maps
a float32 NCHW array to logits, so the export can be checked against PyTorch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

__all__ = ["FORMATS", "RUNNERS", "SUFFIXES", "WRITERS"]

# Opset 17 is read by every onnxruntime since 1.13 and covers timm's CNN layers.
ONNX_OPSET = 17


def write_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    """ONNX with a dynamic batch axis.

    The TorchScript-based exporter (``dynamo=False``) needs only ``onnx``; the newer
    ``torch.export`` one also needs ``onnxscript`` and takes several times longer here.
    """
    torch.onnx.export(
        model,
        (example,),
        str(path),
        dynamo=False,
        input_names=["input"],
        output_names=["logits"],
        opset_version=ONNX_OPSET,
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )


def write_torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    """TorchScript by tracing: loads with ``torch.jit.load`` and no Python model code."""
    with torch.no_grad():
        traced = torch.jit.trace(model, example)
    traced.save(str(path))


def run_onnx(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"input": x.astype(np.float32)})[0]


def run_torchscript(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    model = torch.jit.load(str(path), map_location="cpu").eval()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()

    return run


FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}
WRITERS = {"onnx": write_onnx, "torchscript": write_torchscript}
RUNNERS = {"onnx": run_onnx, "torchscript": run_torchscript}
