"""The exported web page in Chromium: drawn digits read right, answers equal PyTorch's, time per answer.

    python bench/web.py RUN [--n 100] [--write]

Exports RUN with `mnistkit export --format web --ort-dir tests/web/node_modules/onnxruntime-web/dist`
(./setup.sh installs that copy), serves the folder with a plain static file server, draws the first N
MNIST test digits stroke by stroke with the mouse, and reads the page's answer after each.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import append_section, markdown_table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.browser import browser_page, draw_digit, static_server  # noqa: E402

from mnistkit.data.datasets import load_dataset  # noqa: E402
from mnistkit.export import export  # noqa: E402
from mnistkit.models import infer  # noqa: E402
from mnistkit.runs import load_run  # noqa: E402

ORT_DIST = ROOT / "tests" / "web" / "node_modules" / "onnxruntime-web" / "dist"


def measure(run_dir: str, n: int) -> dict:
    site = Path(tempfile.mkdtemp(prefix="mnistkit-web-")) / "site"
    export(run_dir, "web", site, ort_dir=ORT_DIST)
    run, mnist = load_run(run_dir), load_dataset("mnist")
    correct, rejected, differences, preprocess_ms = 0, 0, [], []
    with static_server(site) as url, browser_page() as page:
        started = time.perf_counter()
        page.goto(url)
        page.wait_for_function("window.mnistkit && window.mnistkit.ready", timeout=60000)
        load_seconds = time.perf_counter() - started
        for i in range(n):
            page.click("#clear")
            draw_digit(page, mnist.test_images[i].numpy())
            page.wait_for_function("window.mnistkit.last && !window.mnistkit.pending()", timeout=15000)
            last = page.evaluate("window.mnistkit.last")
            correct += last["label"] == str(int(mnist.test_labels[i]))
            rejected += last["rejected"] is not None
            x = torch.tensor(last["input"], dtype=torch.float32).reshape(1, 28, 28)
            differences.append(float(np.abs(np.array(last["probabilities"]) - infer(run.model, x).softmax(1)[0].numpy()).max()))
            preprocess_ms.append(page.evaluate("""(() => { const t = performance.now();
                return window.mnistkit.mnistify(window.mnistkit.grayFromRGBA(document.getElementById('pad').getContext('2d')
                    .getImageData(0, 0, 280, 280).data, 280 * 280), 280, 280) && performance.now() - t; })()"""))
    return {"run": f"{run.config.model} ({Path(run_dir).name})", "n": n, "correct": correct, "rejected": rejected,
            "max_diff": max(differences), "preprocess_ms": statistics.median(preprocess_ms), "load_s": load_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--write", action="store_true", help="append the results to BENCHMARKS.md")
    args = parser.parse_args()
    rows = [measure(run, args.n) for run in args.runs]
    table = markdown_table(
        ["run", "digits drawn", "read right", "said 'not a digit'", "largest probability difference, browser vs PyTorch",
         "page ready (s)", "preprocessing in JS (median ms)"],
        [[r["run"], r["n"], r["correct"], r["rejected"], f"{r['max_diff']:.1e}", f"{r['load_s']:.1f}",
          f"{r['preprocess_ms']:.1f}"] for r in rows])
    print(table)
    if args.write:
        append_section("The exported web page in Chromium", f"python bench/web.py {' '.join(args.runs)} --n {args.n}",
                       table, "onnxruntime-web 1.30.0 (WebAssembly, one thread) in headless Debian Chromium; the "
                              "page served by Python's static file server from the folder `mnistkit export "
                              "--format web --ort-dir ...` wrote.")


if __name__ == "__main__":
    main()
