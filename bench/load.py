"""Load test of `mnistkit serve` on loopback: N requests at a given concurrency, bounded in count and time.

    python bench/load.py                      # 2,000 requests, concurrency 32, appends to BENCHMARKS.md
    python bench/load.py --run runs/my-run --backend onnx

The server runs as its own process (`python -m mnistkit serve`) on 127.0.0.1; the client sends PNG
uploads of real MNIST test digits and checks every answer. Nothing leaves this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, append_section, markdown_table  # noqa: E402

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def ensure_run(run: Path | None) -> Path:
    if run is not None:
        return run
    run = ROOT / "runs" / "bench" / "serve-default"
    if not (run / "metrics.json").exists():
        import mnistkit

        mnistkit.train(mnistkit.make_config("default", out=str(run)))
    return run


def payloads(n: int) -> list[tuple[bytes, str]]:
    from mnistkit import load_dataset

    ds = load_dataset("mnist")
    out = []
    for i in range(n):
        buf = io.BytesIO()
        Image.fromarray(255 - np.kron(ds.test_images[i].numpy(), np.ones((3, 3), np.uint8))).save(buf, format="PNG")
        out.append((buf.getvalue(), str(int(ds.test_labels[i]))))
    return out


async def load(url: str, bodies: list[tuple[bytes, str]], total: int, concurrency: int, deadline: float) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    correct = 0
    counter = iter(range(total))

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal correct
        for i in counter:
            if time.perf_counter() > deadline:
                errors.append("time limit reached")
                return
            body, label = bodies[i % len(bodies)]
            start = time.perf_counter()
            try:
                r = await client.post(url, files={"file": ("digit.png", body, "image/png")})
                latencies.append((time.perf_counter() - start) * 1000)
                if r.status_code != 200:
                    errors.append(f"HTTP {r.status_code}: {r.text[:100]}")
                elif r.json()["label"] == label:
                    correct += 1
            except httpx.HTTPError as exc:
                errors.append(repr(exc))

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=10.0, limits=limits) as client:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    return {"requests": len(latencies) + len([e for e in errors if "HTTP" not in e]), "errors": len(errors),
            "first_errors": errors[:3], "seconds": elapsed, "rps": len(latencies) / elapsed,
            "p50_ms": statistics.median(latencies), "p99_ms": latencies[int(0.99 * (len(latencies) - 1))],
            "accuracy": correct / max(1, len(latencies))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="run directory to serve (default: train the default preset once)")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--backend", default="torch", choices=["torch", "onnx"])
    parser.add_argument("--time-limit", type=float, default=300.0, help="seconds before the client gives up")
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    run = ensure_run(args.run)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "mnistkit", "serve", str(run), "--host", HOST, "--port", str(port),
                               "--backend", args.backend], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base = f"http://{HOST}:{port}"
        for _ in range(300):
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise SystemExit(f"server did not start: {server.stderr.read().decode()[-2000:]}")
        bodies = payloads(500)
        asyncio.run(load(base + "/api/predict", bodies, 64, 8, time.perf_counter() + 60))  # warm-up
        result = asyncio.run(load(base + "/api/predict", bodies, args.requests, args.concurrency,
                                  time.perf_counter() + args.time_limit))
    finally:
        server.terminate()
        server.wait(timeout=30)
    table = markdown_table(
        ["backend", "requests", "concurrency", "errors", "requests/s", "p50 ms", "p99 ms", "accuracy of answers"],
        [[args.backend, result["requests"], args.concurrency, result["errors"], f"{result['rps']:.0f}",
          f"{result['p50_ms']:.1f}", f"{result['p99_ms']:.1f}", f"{result['accuracy']:.4f}"]])
    print(table)
    if result["first_errors"]:
        print("first errors:", result["first_errors"])
    if not args.no_append:
        append_section(f"Serving: {args.requests} PNG uploads at concurrency {args.concurrency} ({args.backend})",
                       f"python bench/load.py --backend {args.backend}", table,
                       f"Server: `mnistkit serve` on {HOST} serving `{run.name}`; client and server share the machine."
                       + (f" First errors: {result['first_errors']}" if result["first_errors"] else ""))


if __name__ == "__main__":
    main()
