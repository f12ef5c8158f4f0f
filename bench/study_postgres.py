"""One Optuna study, two `mnistkit tune` commands, a real PostgreSQL server: the multi-machine recipe, locally.

    python bench/study_postgres.py              # appends a table to BENCHMARKS.md

Starts a throwaway PostgreSQL cluster from Debian's package (installed with apt-get if missing) on
127.0.0.1, creates a database, and runs the same `mnistkit tune --storage postgresql://...` command
twice at once, as two machines would, on a 6,000-image slice of MNIST. Then it checks the study: how
many trials each command ran, that no trial number or run directory appears twice, that the study
holds the trials asked for, and how many trials repeat an earlier trial's values (both commands use
the same --seed). The cluster is stopped and deleted at the end.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, append_section, markdown_table  # noqa: E402

SPACE = {"lr": {"float": [0.03, 0.3], "log": True}, "weight_decay": {"float": [1e-5, 1e-3], "log": True},
         "augment.rotate_degrees": {"float": [0.0, 15.0]}}


def postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        subprocess.run([*sudo, "apt-get", "install", "-y", "-q", "postgresql"], check=True)
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent


def ensure_driver() -> None:
    """SQLAlchemy 2 reaches `postgresql://` URLs through psycopg 3 (`pip install mnistkit[postgres]`)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "psycopg[binary]>=3.1"], check=True)


def as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its programs as the `postgres` user then."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def small_mnist(directory: Path) -> Path:
    from mnistkit import load_dataset
    from mnistkit.data.datasets import IDX_FILES
    from mnistkit.data.idx import write_idx

    ds = load_dataset("mnist")
    directory.mkdir(parents=True, exist_ok=True)
    for key, array in (("train_images", ds.train_images[:6000]), ("train_labels", ds.train_labels[:6000]),
                       ("test_images", ds.test_images[:1000]), ("test_labels", ds.test_labels[:1000])):
        write_idx(directory / (IDX_FILES[key] + ".gz"), array.numpy())
    return directory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    pg = postgres_bin()
    ensure_driver()
    cluster = Path(tempfile.mkdtemp(prefix="mnistkit-pg-"))
    if os.geteuid() == 0:
        shutil.chown(cluster, "postgres", "postgres")
    port = free_port()
    subprocess.run(as_postgres([str(pg / "initdb"), "-D", str(cluster / "data"), "-U", "postgres", "--auth=trust"]),
                   check=True, capture_output=True)
    subprocess.run(as_postgres([str(pg / "pg_ctl"), "-D", str(cluster / "data"), "-l", str(cluster / "log"), "-w",
                                "-o", f"-p {port} -c listen_addresses=127.0.0.1 -k {cluster}", "start"]),
                   check=True, capture_output=True)
    try:
        subprocess.run(as_postgres([str(pg / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                                    "mnistkit"]), check=True)
        url = f"postgresql://postgres@127.0.0.1:{port}/mnistkit"
        data = small_mnist(ROOT / "runs" / "pg-study" / "data")
        space = ROOT / "runs" / "pg-study" / "space.json"
        space.write_text(json.dumps(SPACE))
        machines = []
        start = time.perf_counter()
        for name in ("machine-a", "machine-b"):
            out = ROOT / "runs" / "pg-study" / name
            shutil.rmtree(out, ignore_errors=True)
            cmd = [sys.executable, "-m", "mnistkit", "tune", "--storage", url, "--study", "bench", "--preset", "fast",
                   "--dataset", "idx", "--data-dir", str(data), "--set", "val_size=1000", "--set", "epochs=3",
                   "--set", "model=mknet-s", "--space", str(space), "--trials", str(args.trials), "--workers", "1",
                   "--out", str(out)]
            print("$", " ".join(cmd[1:]), flush=True)
            machines.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"}))
        for m in machines:
            if m.wait() != 0:
                raise SystemExit("a tune command failed")
        wall = time.perf_counter() - start

        import optuna

        study = optuna.load_study(study_name="bench", storage=url)
        trials = study.get_trials(deepcopy=False)
        states = [t.state.name.lower() for t in trials]
        dirs = [t.user_attrs.get("run_dir") for t in trials]
        per_machine = {name: sum(f"/{name}/" in (d or "") for d in dirs) for name in ("machine-a", "machine-b")}
        duplicates = len(dirs) - len(set(dirs)) + len(trials) - len({t.number for t in trials})
        # Both commands run with the same --seed, as two machines given one command would.
        repeats = len(trials) - len({tuple(sorted(t.params.items())) for t in trials})
        finished = states.count("complete") + states.count("pruned")
        best = study.best_value
    finally:
        subprocess.run(as_postgres([str(pg / "pg_ctl"), "-D", str(cluster / "data"), "-m", "fast", "stop"]),
                       capture_output=True)
        shutil.rmtree(cluster, ignore_errors=True)
    rows = [[args.trials, len(trials), finished, states.count("pruned"), states.count("fail"),
             f"{per_machine['machine-a']} / {per_machine['machine-b']}", duplicates, repeats, f"{best:.4f}",
             f"{wall:.0f}"]]
    table = markdown_table(["trials asked", "trials in study", "finished", "of them pruned", "failed",
                            "run by machine a / b", "duplicates", "repeated values", "best val acc", "wall s"], rows)
    print(table)
    if not args.no_append:
        version = subprocess.run([str(pg / "postgres"), "--version"], capture_output=True, text=True).stdout.strip()
        append_section("One study, two `mnistkit tune` commands, PostgreSQL storage", "python bench/study_postgres.py",
                       table, f"Server: {version} from Debian's package, started locally on 127.0.0.1. Each command "
                       "ran one worker on a 6,000-image MNIST slice (3 epochs per trial, mknet-s).")


if __name__ == "__main__":
    main()
