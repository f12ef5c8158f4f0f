"""Load test of `mnistkit serve` on loopback: N requests at a given concurrency, bounded in count and time.

    python bench/load.py                      # 2,000 requests, concurrency 32, appends to BENCHMARKS.md
    python bench/load.py --run runs/my-run --backend onnx
    python bench/load.py --hostile 0.1        # 10% of requests are decompression bombs and garbage
    python bench/load.py --client wrk         # throughput and latency with wrk (C), 15 s
    python bench/load.py --client wrk --workers 1,2   # one server process, then two, side by side in one table
    python bench/load.py --client wrk --servers "--workers 2" "--workers 2 --decode-workers 4" --rounds 3
                                              # any serve options, each variant in turn, three interleaved rounds

The server runs as its own process (`python -m mnistkit serve`, with `--workers` processes under it) on 127.0.0.1;
the client sends PNG uploads of real MNIST test digits and checks every answer. Nothing leaves this machine. Peak
memory is the sum of each server process's peak.

The Python client (httpx) checks labels and hostile answers but needs most of a core itself, so on
2 cores it starves the server. `--client wrk` (Debian's `wrk`, one thread) measures the server's own
throughput and latency with the same uploads, cycling through 100 digits; it checks status codes only.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import re
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
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


def hostile_payloads() -> list[tuple[bytes, str | None]]:
    """Uploads that must each get a 4xx: decompression bombs, garbage, truncated and empty files."""
    sys.path.insert(0, str(ROOT))
    from tests.test_hostile import huge_png

    good = payloads(1)[0][0]
    return [(huge_png(12_000, 12_000, channels=4), None), (huge_png(20_000, 20_000), None),
            (np.random.default_rng(0).bytes(5000), None), (good[: len(good) // 2], None), (b"", None),
            (b"this is not an image", None)]


def payloads(n: int) -> list[tuple[bytes, str | None]]:
    from mnistkit import load_dataset

    ds = load_dataset("mnist")
    out = []
    for i in range(n):
        buf = io.BytesIO()
        Image.fromarray(255 - np.kron(ds.test_images[i].numpy(), np.ones((3, 3), np.uint8))).save(buf, format="PNG")
        out.append((buf.getvalue(), str(int(ds.test_labels[i]))))
    return out


async def load(url: str, bodies: list[tuple[bytes, str | None]], total: int, concurrency: int, deadline: float,
               hostile: list[tuple[bytes, str | None]] | None = None, hostile_every: int = 0) -> dict:
    """Good uploads must get 200 and the right label; hostile ones (label None) must get a 4xx."""
    latencies: list[float] = []
    errors: list[str] = []
    hostile_answers: dict[int, int] = {}
    correct = sent = 0
    counter = iter(range(total))

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal correct, sent
        for i in counter:
            if time.perf_counter() > deadline:
                errors.append("time limit reached")
                return
            bad = hostile_every and i % hostile_every == hostile_every - 1
            body, label = hostile[(i // hostile_every) % len(hostile)] if bad else bodies[i % len(bodies)]
            start = time.perf_counter()
            sent += 1
            try:
                r = await client.post(url, files={"file": ("digit.png", body, "image/png")})
                if bad:
                    hostile_answers[r.status_code] = hostile_answers.get(r.status_code, 0) + 1
                    if not 400 <= r.status_code < 500:
                        errors.append(f"hostile upload got HTTP {r.status_code}: {r.text[:100]}")
                    continue
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
    return {"requests": sent, "errors": len(errors),
            "first_errors": errors[:3], "seconds": elapsed, "rps": len(latencies) / elapsed,
            "p50_ms": statistics.median(latencies), "p99_ms": latencies[int(0.99 * (len(latencies) - 1))],
            "accuracy": correct / max(1, len(latencies)), "hostile": hostile_answers}


WRK_SCRIPT = """
local bodies, n = {}, 0
for path in io.lines(os.getenv("MNISTKIT_BODIES")) do
  local f = io.open(path, "rb"); n = n + 1; bodies[n] = f:read("*a"); f:close()
end
local i = 0
local headers = {["Content-Type"] = "multipart/form-data; boundary=mnistkit"}
function request()
  i = i % n + 1
  return wrk.format("POST", nil, headers, bodies[i])
end
"""


def wrk_load(url: str, bodies: list[tuple[bytes, str | None]], concurrency: int, seconds: float) -> dict:
    """Run wrk against ``url`` with multipart uploads of ``bodies``; parse its summary."""
    folder = Path(tempfile.mkdtemp(prefix="mnistkit-wrk-"))
    paths = []
    for i, (png, _) in enumerate(bodies[:100]):
        path = folder / f"{i}.bin"
        path.write_bytes(b"--mnistkit\r\nContent-Disposition: form-data; name=\"file\"; filename=\"digit.png\"\r\n"
                         b"Content-Type: image/png\r\n\r\n" + png + b"\r\n--mnistkit--\r\n")
        paths.append(str(path))
    (folder / "bodies.txt").write_text("\n".join(paths) + "\n")
    (folder / "post.lua").write_text(WRK_SCRIPT)
    out = subprocess.run(["wrk", "-t1", f"-c{concurrency}", f"-d{seconds:g}s", "--latency", "-s", str(folder / "post.lua"),
                          url], capture_output=True, text=True, check=True,
                         env={"MNISTKIT_BODIES": str(folder / "bodies.txt"), "PATH": "/usr/bin:/bin"}).stdout

    def ms(label: str) -> float:
        value, unit = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {"requests": int(re.search(r"(\d+) requests in", out).group(1)),
            "errors": int(bad.group(1)) if bad else 0, "socket_errors": socket_errors.group(1) if socket_errors else "none",
            "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), "p50_ms": ms("50%"), "p99_ms": ms("99%")}


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process under it (uvicorn's workers, multiprocessing's helper), read from /proc."""
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        children += [int(c) for c in task.read_text().split()]
    return [pid] + [p for child in children for p in process_tree(child)]


def peak_rss_mib(pid: int) -> float:
    """The sum of the peaks of ``pid`` and the processes under it (an upper bound on their joint peak)."""
    total = 0
    for process in process_tree(pid):
        status = Path(f"/proc/{process}/status")
        lines = status.read_text().splitlines() if status.exists() else []
        total += next((int(line.split()[1]) for line in lines if line.startswith("VmHWM:")), 0)
    return total / 1024 if total else float("nan")


def start_server(run: Path, backend: str, options: str) -> tuple[subprocess.Popen, str]:
    """`mnistkit serve` with extra ``options`` on a free port, once it answers /healthz: the process and its URL."""
    port = free_port()
    command = [sys.executable, "-m", "mnistkit", "serve", str(run), "--host", HOST, "--port", str(port),
               "--backend", backend] + shlex.split(options)
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://{HOST}:{port}"
    for _ in range(600):
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                return server, base
        except httpx.HTTPError:
            time.sleep(0.1)
    server.terminate()
    raise SystemExit(f"server did not start: {server.stderr.read().decode()[-2000:]}")


def measure(args, run: Path, options: str, bodies: list[tuple[bytes, str | None]]) -> dict:
    """One server started with ``options``, warmed up, then loaded by the chosen client with ``bodies``."""
    server, base = start_server(run, args.backend, options)
    try:
        asyncio.run(load(base + "/api/predict", bodies, 64, 8, time.perf_counter() + 60))  # warm-up
        if args.client == "wrk":
            result = wrk_load(base + "/api/predict", bodies, args.concurrency, args.seconds)
        else:
            every = round(1 / args.hostile) if args.hostile else 0
            result = asyncio.run(load(base + "/api/predict", bodies, args.requests, args.concurrency,
                                      time.perf_counter() + args.time_limit, hostile_payloads() if every else None,
                                      every))
        result["server_peak_rss_mib"] = peak_rss_mib(server.pid)
        return result
    finally:
        server.terminate()
        server.wait(timeout=30)


def wrk_row(args, options: str, result: dict) -> list:
    return [args.backend, options, "wrk, 1 thread", f"{args.seconds:g}", result["requests"], args.concurrency,
            result["errors"], result["socket_errors"], f"{result['rps']:.0f}", f"{result['p50_ms']:.1f}",
            f"{result['p99_ms']:.1f}", f"{result['server_peak_rss_mib']:.0f}"]


def python_row(args, options: str, result: dict) -> list:
    hostile = ", ".join(f"{n} x HTTP {code}" for code, n in sorted(result["hostile"].items())) or "none"
    return [args.backend, options, result["requests"], args.concurrency, result["errors"], f"{result['rps']:.0f}",
            f"{result['p50_ms']:.1f}", f"{result['p99_ms']:.1f}", f"{result['accuracy']:.4f}", hostile,
            f"{result['server_peak_rss_mib']:.0f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="run directory to serve (default: train the default preset once)")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--backend", default="auto", choices=["auto", "torch", "onnx"])
    parser.add_argument("--workers", default="", help="server processes, or several comma-separated to measure each "
                                                      "in turn (default: serve's own default); short for --servers")
    parser.add_argument("--servers", nargs="+", default=None, metavar="OPTIONS",
                        help="serve options of each variant to measure in turn, e.g. '--workers 1' '--workers 2'")
    parser.add_argument("--rounds", type=int, default=1, help="rounds over the variants, interleaved")
    parser.add_argument("--time-limit", type=float, default=300.0, help="seconds before the client gives up")
    parser.add_argument("--hostile", type=float, default=0.0, help="share of hostile uploads (bombs, garbage), e.g. 0.1")
    parser.add_argument("--client", default="python", choices=["python", "wrk"])
    parser.add_argument("--seconds", type=float, default=15.0, help="wrk: how long to load the server")
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    run = ensure_run(args.run)
    if args.servers:
        variants, option = args.servers, " --servers " + " ".join(shlex.quote(v) for v in args.servers)
    elif args.workers:
        variants, option = [f"--workers {int(w)}" for w in args.workers.split(",")], f" --workers {args.workers}"
    else:
        variants, option = [""], ""
    if args.rounds > 1:
        option += f" --rounds {args.rounds}"
    bodies = payloads(500)
    # Interleaved rounds, so that a busy spell on the shared machine falls on every variant.
    results = [(variant or "(defaults)", measure(args, run, variant, bodies))
               for _ in range(args.rounds) for variant in variants]
    if args.client == "wrk":
        table = markdown_table(
            ["backend", "serve options", "client", "seconds", "requests", "concurrency", "non-2xx", "socket errors",
             "requests/s", "p50 ms", "p99 ms", "server peak RSS MiB"],
            [wrk_row(args, w, r) for w, r in results])
        title = f"Serving under wrk: PNG uploads at concurrency {args.concurrency} ({args.backend})"
        command = f"python bench/load.py --client wrk --backend {args.backend}{option}"
        note = (f"Server: `mnistkit serve` on {HOST} serving `{run.name}` (uvicorn with uvloop and httptools); wrk (C, "
                "one thread) on the same 2 cores, cycling through 100 MNIST test digits as PNG uploads.")
    else:
        table = markdown_table(
            ["backend", "serve options", "requests", "concurrency", "errors", "good requests/s", "p50 ms (good)",
             "p99 ms (good)", "accuracy of good answers", "hostile uploads answered", "server peak RSS MiB"],
            [python_row(args, w, r) for w, r in results])
        mix = f", {args.hostile:.0%} hostile" if args.hostile else ""
        title = f"Serving: {args.requests} PNG uploads at concurrency {args.concurrency} ({args.backend}{mix})"
        command = (f"python bench/load.py --backend {args.backend}{option}"
                   + (f" --hostile {args.hostile:g}" if args.hostile else ""))
        errors = [e for _, r in results for e in r["first_errors"]][:3]
        note = (f"Server: `mnistkit serve` on {HOST} serving `{run.name}`; client and server share the machine."
                + (f" First errors: {errors}" if errors else ""))
    print(table)
    if not args.no_append:
        append_section(title, command, table, note)


if __name__ == "__main__":
    main()
