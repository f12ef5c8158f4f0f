"""Lower precision for inference: is it faster here, and does it change the answers?

    python bench/infer_precision.py runs/RUN [--repeats 2]     # appends the table to BENCHMARKS.md

Side by side, in interleaved rounds, on the run's model:
(a) PyTorch, fp32, channels-last, as mnistkit infers;
(b) the same under bf16 autocast (fast only where the CPU multiplies bf16 natively);
(c) onnxruntime on the exported fp32 model;
(d) onnxruntime on an int8 copy (static QDQ quantization, per-channel weights, activations calibrated on 512
    training images).
Each is scored on the 10,000 MNIST test images: accuracy, and how many answers differ from (a).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import append_section, markdown_table  # noqa: E402


def int8_copy(onnx_path: str, calibration: np.ndarray) -> str:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"images": calibration[i : i + 64]} for i in range(0, len(calibration), 64)])

        def get_next(self):
            return next(self.batches, None)

    folder = Path(tempfile.mkdtemp(prefix="mnistkit-int8-"))
    quant_pre_process(onnx_path, str(folder / "pre.onnx"))
    quantize_static(str(folder / "pre.onnx"), str(folder / "int8.onnx"), Batches(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return str(folder / "int8.onnx")


def main() -> None:
    import onnxruntime as ort

    import mnistkit
    from mnistkit.export import export
    from mnistkit.timing import time_inference

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    model = mnistkit.load(args.run).to(memory_format=torch.channels_last)
    data = mnistkit.load_dataset("mnist")
    test = (data.test_images.numpy().astype(np.float32) / 255)[:, None]
    onnx_path = export(args.run, "onnx")["path"]
    sessions = {"fp32": ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"]),
                "int8": ort.InferenceSession(int8_copy(onnx_path, (data.train_images[:512].numpy() / 255).astype(
                    np.float32)[:, None]), providers=["CPUExecutionProvider"])}

    def torch_logits(images: np.ndarray, bf16: bool) -> np.ndarray:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return model(torch.from_numpy(images)).float().numpy()

    runtimes = {
        "PyTorch fp32 (as mnistkit infers)": lambda images: torch_logits(images, False),
        "PyTorch under bf16 autocast": lambda images: torch_logits(images, True),
        "onnxruntime fp32": lambda images: sessions["fp32"].run(None, {"images": images})[0],
        "onnxruntime int8 (static QDQ)": lambda images: sessions["int8"].run(None, {"images": images})[0],
    }
    batches = {n: np.random.default_rng(0).random((n, 1, 28, 28), dtype=np.float32) for n in (1, 1024)}
    speeds: dict[str, list[dict]] = {name: [] for name in runtimes}
    for _ in range(args.repeats):  # interleaved, so a busy spell on the shared machine hits every runtime
        for name, predict in runtimes.items():
            speeds[name].append(time_inference(lambda n, predict=predict: predict(batches[n]), seconds=3.0))
    answers = {name: np.concatenate([predict(test[i : i + 1000]) for i in range(0, len(test), 1000)]).argmax(1)
               for name, predict in runtimes.items()}
    reference = answers["PyTorch fp32 (as mnistkit infers)"]
    labels = data.test_labels.numpy()
    rows = [[name, f"{statistics.median(r['infer_batch1024_img_s'] for r in speeds[name]):,.0f}",
             f"{statistics.median(r['infer_batch1_ms'] for r in speeds[name]):.3f}",
             f"{(answers[name] == labels).mean():.4f}", int((answers[name] != reference).sum())] for name in runtimes]
    table = markdown_table(["runtime", "images/s at batch 1024 (median)", "ms for one image (median)",
                            "test accuracy", "answers unlike PyTorch fp32's (of 10,000)"], rows)
    print(table)
    if not args.no_append:
        append_section(f"Inference in lower precision, {args.repeats} interleaved rounds",
                       f"python bench/infer_precision.py RUN --repeats {args.repeats}  (RUN from `mnistkit train`)",
                       table)


if __name__ == "__main__":
    main()
