"""Shared helpers for the benchmarks: machine description, timing of inference, results to BENCHMARKS.md."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "BENCHMARKS.md"


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    # The vector width and bf16 support decide training speed (the same recipe trains several times slower on
    # the AVX2 hosts seen here than on the AVX-512 BF16 ones): name them, since the hosts differ run to run.
    from mnistkit.train import native_cpu_bf16

    cpu += f" ({torch.backends.cpu.get_cpu_capability()}, {'native' if native_cpu_bf16() else 'no native'} bf16)"
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    return (f"{cpu}, {os.cpu_count()} cores, {mem_gib:.0f} GiB RAM{gpu}; Python {platform.python_version()}, "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_job(script: Path, job: str, *args: str) -> dict:
    """Run one benchmark job in its own process (so peak memory is its own) and read its JSON result."""
    out = ROOT / "runs" / "bench" / f"{job}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    cmd = [sys.executable, str(script), "--job", job, "--result", str(out), *args]
    print("$", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True)
    return json.loads(out.read_text())


def append_section(title: str, command: str, table: str, notes: str = "") -> None:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = (f"\n## {title} ({stamp})\n\nMachine: {machine()}\n\nCommand: `{command}`\n\n{table}\n"
            + (f"\n{notes}\n" if notes else ""))
    with open(BENCHMARKS, "a") as f:
        f.write(text)
    print(f"appended to {BENCHMARKS}")


def markdown_table(columns: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
