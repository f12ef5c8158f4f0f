"""`mnistkit export DIR --format onnx|torchscript|web`: the trained model for other runtimes.

The ONNX file takes float images (N, 1, 28, 28) in [0, 1] (normalisation is inside, as in PyTorch)
and returns logits. Every ONNX export is checked in onnxruntime against PyTorch on real test images.

``web`` writes a static site: the drawing page of `mnistkit serve` (the same files, ``mnistkit/web``),
the ONNX model and a model.json, run in the browser by onnxruntime-web. Any static host serves it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from dataclasses import asdict
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from mnistkit.data.datasets import load_dataset
from mnistkit.errors import DataFormatError, MnistkitError
from mnistkit.fileio import atomic_write_json
from mnistkit.models import as_image_batch, infer
from mnistkit.pretrained import is_shipped, load_source
from mnistkit.runs import ONNX_FILE, TORCHSCRIPT_FILE, WEB_EXPORT_DIR, Run, export_info_file

FORMATS = ("onnx", "torchscript", "web")
ORT_WEB_VERSION = "1.30.0"  # onnxruntime-web, pinned: the page is tested against this version
ORT_WEB_URL = f"https://cdn.jsdelivr.net/npm/onnxruntime-web@{ORT_WEB_VERSION}/dist/"
# The WebAssembly build only: its loader, the module it imports and the binary (14 MB of the 136 MB package).
ORT_WEB_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
WEB_MARKER = "<!-- mnistkit:web"
MODEL_INFO_FILE = "model.json"


def page_dir() -> Path:
    """The drawing page's files (index.html, static/app.js, static/style.css), shared by serve and web export."""
    return Path(str(resources.files("mnistkit") / "web"))


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


def check_ort_dir(ort_dir: Path) -> None:
    missing = [name for name in ORT_WEB_FILES if not (ort_dir / name).is_file()]
    if missing:
        raise MnistkitError(
            f"--ort-dir {ort_dir}: missing {', '.join(missing)}; give the 'dist' folder of onnxruntime-web "
            f"{ORT_WEB_VERSION} (`npm install onnxruntime-web@{ORT_WEB_VERSION}` puts it in "
            "node_modules/onnxruntime-web/dist)")


def web_page(ort_base: str) -> str:
    """The drawing page with onnxruntime-web and the model's location filled in."""
    page = (page_dir() / "index.html").read_text()
    if WEB_MARKER not in page:
        raise MnistkitError(f"{page_dir() / 'index.html'}: the '{WEB_MARKER}' marker is missing")
    config = json.dumps({"model": ONNX_FILE, "model_info": MODEL_INFO_FILE})
    scripts = f'<script src="{ort_base}ort.wasm.min.js"></script>\n  <script>window.mnistkitWeb = {config};</script>\n  '
    return page.replace(WEB_MARKER, scripts + WEB_MARKER, 1)


def export_web(run: Run, model: torch.nn.Module, out: Path, ort_dir: str | Path | None = None) -> Path:
    """Write the static site into ``out`` (built beside it and moved into place whole). A folder that is
    there already is replaced only if it is an earlier web export."""
    if out.exists() and any(out.iterdir()) and not (out / MODEL_INFO_FILE).exists():
        raise MnistkitError(f"{out}: exists and is not an earlier web export; give an empty or new --out folder")
    ort_source = Path(ort_dir) if ort_dir else None
    if ort_source is not None:
        check_ort_dir(ort_source)
    out.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        (build / "static").mkdir()
        for name in ("app.js", "style.css"):
            shutil.copy(page_dir() / name, build / "static" / name)
        (build / "index.html").write_text(web_page("ort/" if ort_source else ORT_WEB_URL))
        if ort_source is not None:
            (build / "ort").mkdir()
            for name in ORT_WEB_FILES:
                shutil.copy(ort_source / name, build / "ort" / name)
        export_onnx(model, build / ONNX_FILE)
        info = {"model": run.config.model, "dataset": run.config.dataset, "classes": list(run.classes),
                "test_accuracy": run.metrics.get("test_accuracy"), "item": run.model.item,
                "ood_threshold": run.model.ood_threshold, "ood_score": "energy", "explain": "occlusion",
                "framing": asdict(run.model.framing),
                "input": {"shape": [1, 1, 28, 28], "range": [0.0, 1.0], "ink": "white on black",
                          "mean": float(run.model.mean), "std": float(run.model.std)},
                "onnxruntime_web": ORT_WEB_VERSION}
        (build / MODEL_INFO_FILE).write_text(json.dumps(info, indent=2))
        build.chmod(0o755)  # mkdtemp makes it private; a static site is for everyone to read
        if out.exists():
            shutil.rmtree(out)
        build.rename(out)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return out


def export(source: str | Path, fmt: str = "onnx", out: str | Path | None = None, check_images: int = 1000,
           ort_dir: str | Path | None = None) -> dict:
    """Write the model of a run directory, or of a shipped model by name, in ``fmt``; for ONNX (and web, which
    carries one) also verify it against PyTorch on test images. Without ``out`` it goes into the run directory,
    or for a shipped model (whose folder is never written to) into the current directory, named after it.
    ``ort_dir``: web only, a local onnxruntime-web ``dist`` folder to copy in instead of loading it from the
    package's published URL."""
    if fmt not in FORMATS:
        raise MnistkitError(f"export format must be one of {FORMATS}, found '{fmt}'")
    if ort_dir is not None and fmt != "web":
        raise MnistkitError("--ort-dir only applies to --format web")
    run = load_source(source)
    shipped = is_shipped(run.run_dir)
    if out is None:
        default = {"onnx": ONNX_FILE, "torchscript": TORCHSCRIPT_FILE, "web": WEB_EXPORT_DIR}[fmt]
        out = Path(f"{run.run_dir.name}-{default}") if shipped else run.path(default)
    out = Path(out)
    model = run.model.to(memory_format=torch.contiguous_format)
    info: dict = {"format": fmt, "model": run.config.model, "classes": list(run.classes)}
    if fmt == "torchscript":
        path = out
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated upstream, still widely loaded
            torch.jit.trace(model, torch.zeros(1, 1, 28, 28)).save(str(path))
    else:
        if fmt == "web":
            site = export_web(run, model, out, ort_dir)
            path, info["onnxruntime_web"] = site, "ort/ (local copy)" if ort_dir else ORT_WEB_URL
            onnx_path = site / ONNX_FILE
        else:
            path = onnx_path = export_onnx(model, out)
        test, info["checked_on"] = images_to_check(run, check_images)
        info["max_abs_difference"] = onnx_max_difference(model, onnx_path, test)
        info["checked_images"] = len(test)
    info["path"] = str(path)
    if not shipped:
        atomic_write_json(run.path(export_info_file(fmt)), info)
    return info


def images_to_check(run: Run, count: int) -> tuple[torch.Tensor, str]:
    """Up to ``count`` of the run's test images, and what they are; the bundled MNIST test images where the run's
    data is not on this machine (a shipped Fashion-MNIST model's): the check compares two runtimes' arithmetic,
    which any realistic input exercises."""
    try:
        return run.splits().test_images[:count], f"{run.config.dataset} test images"
    except DataFormatError:
        return load_dataset("mnist").test_images[:count], f"MNIST test images ({run.config.dataset}'s files are not here)"
