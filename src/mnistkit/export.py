"""`mnistkit export DIR --format onnx|torchscript`: the trained model for other runtimes.

The ONNX file takes float images (N, 1, 28, 28) in [0, 1] (normalisation is inside, as in PyTorch)
and returns logits. Every ONNX export is checked in onnxruntime against PyTorch on real test images.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from mnistkit.errors import MnistkitError
from mnistkit.fileio import atomic_write_json
from mnistkit.models import as_image_batch, infer
from mnistkit.runs import ONNX_FILE, TORCHSCRIPT_FILE, export_info_file, load_run

FORMATS = ("onnx", "torchscript")


def export_onnx(model: torch.nn.Module, path: Path) -> Path:
    dummy = torch.zeros(1, 1, 28, 28)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter announces its deprecation
        torch.onnx.export(model, (dummy,), str(path), input_names=["images"], output_names=["logits"],
                          dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False)
    return path


def onnx_max_difference(model: torch.nn.Module, path: Path, images: torch.Tensor) -> float:
    """Largest absolute difference between PyTorch and onnxruntime logits on the given images."""
    import onnxruntime as ort

    x = as_image_batch(images)
    expected = infer(model, x).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    found = session.run(["logits"], {"images": x.numpy()})[0]
    return float(np.abs(found - expected).max())


def export(run_dir: str | Path, fmt: str = "onnx", out: str | Path | None = None, check_images: int = 1000) -> dict:
    """Write the run's model in ``fmt``; for ONNX also verify it against PyTorch on test images."""
    if fmt not in FORMATS:
        raise MnistkitError(f"export format must be one of {FORMATS}, found '{fmt}'")
    run = load_run(run_dir)
    model = run.model.to(memory_format=torch.contiguous_format)
    info: dict = {"format": fmt, "model": run.config.model, "classes": list(run.classes)}
    if fmt == "torchscript":
        path = Path(out) if out else run.path(TORCHSCRIPT_FILE)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated upstream, still widely loaded
            torch.jit.trace(model, torch.zeros(1, 1, 28, 28)).save(str(path))
    else:
        path = export_onnx(model, Path(out) if out else run.path(ONNX_FILE))
        test = run.splits().test_images[:check_images]
        info["max_abs_difference"] = onnx_max_difference(model, path, test)
        info["checked_images"] = len(test)
    info["path"] = str(path)
    atomic_write_json(run.path(export_info_file(fmt)), info)
    return info
