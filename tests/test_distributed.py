"""Data-parallel training: 2 CPU processes with gloo, as torchrun starts them."""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from mnistkit.config import make_config
from mnistkit.distributed import exit_process
from mnistkit.train import focus_plan, train


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank: int, world: int, port: int, config: dict, resume: bool, stop_after: int, results: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)

    def interrupt(row: dict) -> None:
        if row["epoch"] == stop_after:
            raise KeyboardInterrupt  # in every process at the same epoch, as a Ctrl-C to torchrun would

    cfg = make_config("fast", **config)
    try:
        run = train(None if resume else cfg, resume=cfg.out if resume else None, on_epoch=interrupt)
        assert not torch.distributed.is_initialized()  # train() left the group
        save_file({k: v.contiguous() for k, v in run.model.state_dict().items()}, f"{results}/rank{rank}.safetensors")
    except KeyboardInterrupt:
        torch.distributed.barrier()  # both stopped at the same epoch; leave the group together
        torch.distributed.destroy_process_group()
    exit_process(0)  # as the CLI ends a torchrun process (see distributed.exit_process)


def spawn(config: dict, results, resume: bool = False, stop_after: int = 0) -> None:
    results.mkdir(parents=True, exist_ok=True)
    mp.spawn(worker, args=(2, free_port(), config, resume, stop_after, str(results)), nprocs=2, join=True)


@pytest.mark.parametrize("focus_fraction", [1.0, 0.5])
def test_two_processes_train_one_run_and_resume_bit_for_bit(small_mnist_dir, tmp_path, focus_fraction):
    # With focused epochs each process records the losses of its own share of a batch: unless they are pooled,
    # the processes order later epochs differently, and a resume (every process reads rank 0's losses) differs.
    config = dict(dataset="idx", data_dir=str(small_mnist_dir), val_size=1000, epochs=3, model="mknet-s",
                  ema_decay=0.9, augment={"rotate_degrees": 10, "translate": 0.1}, progress=False,
                  focus_fraction=focus_fraction)
    epochs, focus_size = focus_plan(5000, 128, 3, focus_fraction)
    spawn({**config, "out": str(tmp_path / "full")}, tmp_path / "full-weights")
    ranks = [load_file(tmp_path / "full-weights" / f"rank{r}.safetensors") for r in (0, 1)]
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])  # one model, not two

    metrics = json.loads((tmp_path / "full" / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["global_batch"] == 128 and metrics["batch_per_process"] == 64
    assert metrics["val_accuracy"] > 0.9
    history = (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in history] == list(range(1, epochs + 1))  # written once: by rank 0 alone
    steps = (tmp_path / "full" / "steps.csv").read_text().splitlines()
    assert len(steps) == 1 + 5000 // 128 + (epochs - 1) * (focus_size // 128)

    spawn({**config, "out": str(tmp_path / "cut")}, tmp_path / "cut-weights", stop_after=2)
    assert not (tmp_path / "cut" / "metrics.json").exists()
    spawn({**config, "out": str(tmp_path / "cut")}, tmp_path / "cut-weights", resume=True)
    resumed = load_file(tmp_path / "cut-weights" / "rank0.safetensors")
    assert all(torch.equal(resumed[k], ranks[0][k]) for k in resumed)
    assert [json.loads(r)["epoch"] for r in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()] == list(
        range(1, epochs + 1))


def test_torchrun_starts_one_run_from_the_command_line_and_a_time_budget_stops_every_process(small_mnist_dir,
                                                                                                tmp_path):
    # Every process reads rank 0's clock, so all stop at the same step; on their own clocks one could stop
    # first and leave the other waiting in the next all-reduce until the timeout.
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "mnistkit",
         "train", "--preset", "fast", "--dataset", "idx", "--data-dir", str(small_mnist_dir), "--val-size", "1000",
         "--epochs", "50", "--set", "budget_seconds=2", "--out", str(out), "--no-report", "--no-progress"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("test accuracy") == 1  # one process reports
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and 1 <= metrics["epochs"] < 50 and metrics["train_seconds"] >= 2
    assert len((out / "metrics.jsonl").read_text().splitlines()) == metrics["epochs"]
