"""Micro-batching: concurrent requests are gathered into one forward pass.

Each request puts its image on a queue and waits on a future. One worker thread takes whatever is
queued (up to ``max_batch`` images, waiting at most ``max_wait`` seconds for more once it has one),
runs the model once on the stack and hands each request its row. Under load the batches grow, so
throughput rises with concurrency instead of threads fighting over the CPU.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np


class MicroBatcher:
    def __init__(self, predict: Callable[[np.ndarray], np.ndarray], max_batch: int = 64, max_wait: float = 0.002):
        self.predict = predict
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.requests: queue.Queue[tuple[np.ndarray, Future]] = queue.Queue()
        self.stopped = threading.Event()
        self.worker = threading.Thread(target=self.run, name="mnistkit-batcher", daemon=True)
        self.worker.start()

    def submit(self, image: np.ndarray) -> Future:
        future: Future = Future()
        self.requests.put((image, future))
        return future

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                batch = [self.requests.get(timeout=0.1)]
            except queue.Empty:
                continue
            try:
                while len(batch) < self.max_batch:
                    batch.append(self.requests.get(timeout=self.max_wait))
            except queue.Empty:
                pass
            images = np.stack([image for image, _ in batch])
            try:
                probabilities = self.predict(images)
            except Exception as exc:  # the requests see the failure; the worker lives on
                for _, future in batch:
                    future.set_exception(exc)
                continue
            for (_, future), row in zip(batch, probabilities):
                future.set_result(row)

    def close(self) -> None:
        self.stopped.set()
        self.worker.join(timeout=1)
