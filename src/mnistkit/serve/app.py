"""The FastAPI app: `/` (drawing page), `POST /api/predict[?explain=1]`, `GET /api/model`, `GET /healthz`.

Every bad request gets a 4xx JSON body ``{"error": "..."}`` saying what was wrong; the model never
sees invalid input, so a client cannot crash the server. The server bounds its own work
(:class:`ServeLimits`): request bodies over 2 MB and pictures over 40 megapixels get 413 before
anything is decoded; pictures are decoded by a fixed number of worker threads; past a number of
requests in flight new ones get 503 with ``Retry-After``; and a request that takes longer than its
time limit gets 503 too. Memory and time per request are therefore bounded whatever is uploaded.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from mnistkit.data.preprocess import MAX_PIXELS, Framing, ImageTooLarge, array_to_image, picture_to_digit
from mnistkit.errors import ImageError, MnistkitError
from mnistkit.explain import METHOD, integrated_gradients
from mnistkit.export import export_onnx, page_dir
from mnistkit.metrics import energy_score
from mnistkit.models import infer
from mnistkit.predict import rejection
from mnistkit.pretrained import is_shipped, load_source
from mnistkit.runs import ONNX_FILE
from mnistkit.serve.batching import MicroBatcher

BACKENDS = ("auto", "torch", "onnx")


@dataclass(frozen=True)
class ServeLimits:
    """What one server takes on at once. Each limit answers with a clear 4xx/5xx, never a crash."""

    max_bytes: int = 2 * 1024 * 1024  # request body; more is 413
    max_pixels: int = MAX_PIXELS  # width x height read from the picture's header; more is 413
    decode_workers: int = 2  # pictures decoded at once (each decode holds up to ~160 MB at the pixel limit)
    max_pending: int = 256  # requests inside the server at once; more get 503 with Retry-After
    timeout_seconds: float = 10.0  # per request, decode and inference included; longer gets 503


class BadRequest(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def torch_predictor(model: torch.nn.Module):
    def predict(images: np.ndarray) -> np.ndarray:
        return infer(model, images, batch_size=len(images)).numpy()

    return predict


def onnx_predictor(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    # Micro-batches are small; one inference thread leaves the other cores to decoding and the event loop.
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def predict(images: np.ndarray) -> np.ndarray:
        return session.run(["logits"], {"images": images[:, None].astype(np.float32)})[0]

    return predict


def time_predictor(predict, batch: int = 8, repeats: int = 30) -> float:
    """Median seconds of one call on a typical micro-batch, after a warm-up."""
    images = np.random.default_rng(0).random((batch, 28, 28), dtype=np.float32)
    for _ in range(5):
        predict(images)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predict(images)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def choose_predictor(run, backend: str):
    """The predictor for ``backend``; for "auto", whichever of PyTorch and onnxruntime answers a
    micro-batch faster on this machine, timed side by side at start-up. Returns (name, predict, timings)."""
    if backend == "torch":
        return "torch", torch_predictor(run.model), {}
    onnx = onnx_predictor(onnx_file(run))
    if backend == "onnx":
        return "onnx", onnx, {}
    candidates = {"torch": torch_predictor(run.model), "onnx": onnx}
    timings = {name: round(time_predictor(predict) * 1000, 4) for name, predict in candidates.items()}
    best = min(timings, key=timings.get)
    return best, candidates[best], timings


def check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise MnistkitError(f"backend must be one of {BACKENDS}, found '{backend}'")


def decode_base64_image(text: str) -> bytes:
    if text.startswith("data:"):
        text = text.split(",", 1)[-1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(400, "field 'image' is not valid base64") from None


async def read_input(request: Request, limits: ServeLimits, decode_pool: ThreadPoolExecutor,
                     framing: Framing) -> np.ndarray:
    """The 28x28 float image a request carries (a picture framed as ``framing`` says), or a BadRequest naming what
    is wrong."""
    max_bytes = limits.max_bytes
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > max_bytes:
        raise BadRequest(413, f"request body is {int(length)} bytes; the limit is {max_bytes} ({max_bytes / 2**20:g} MB)")
    body = b""
    async for chunk in request.stream():  # a body without Content-Length is cut off at the limit, not read whole
        body += chunk
        if len(body) > max_bytes:
            raise BadRequest(413, f"request body is over {max_bytes} bytes; the limit is {max_bytes} "
                                  f"({max_bytes / 2**20:g} MB)")
    request._body = body  # starlette's form() and json() read a body that was already received from here

    def decode(data: bytes, name: str):  # in a worker thread: PIL, numpy and scipy release the GIL
        return asyncio.get_running_loop().run_in_executor(decode_pool, picture_to_digit, data, name, limits.max_pixels,
                                                           framing)

    if not body:
        raise BadRequest(400, "empty request: send an image file (multipart field 'file') or JSON")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if content_type == "multipart/form-data":
            form = await request.form()
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise BadRequest(400, "multipart request needs a file field named 'file'")
            data = await upload.read()
            if not data:
                raise BadRequest(400, "uploaded file 'file' is empty")
            return await decode(data, upload.filename or "upload")
        if content_type == "application/json":
            try:
                payload = json.loads(body)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise BadRequest(400, f"invalid JSON: {exc}") from None
            if not isinstance(payload, dict):
                raise BadRequest(400, "JSON body must be an object with 'image' (base64) or 'pixels' (28x28)")
            if "image" in payload:
                if not isinstance(payload["image"], str) or not payload["image"]:
                    raise BadRequest(400, "field 'image' must be a non-empty base64 string")
                return await decode(decode_base64_image(payload["image"]), "image")
            if "pixels" in payload:
                try:
                    with np.errstate(over="ignore", invalid="ignore"):  # huge numbers become inf, refused below
                        array = np.asarray(payload["pixels"], dtype=np.float32)
                except (ValueError, TypeError):
                    raise BadRequest(400, "field 'pixels' must be a 28x28 array of numbers") from None
                if array.shape != (28, 28):
                    raise BadRequest(400, f"field 'pixels' must be 28x28, found shape {list(array.shape)}")
                return array_to_image(array, "pixels")
            raise BadRequest(400, "JSON body needs 'image' (base64 PNG/JPEG) or 'pixels' (28x28 array)")
        raise BadRequest(415, f"unsupported content type '{content_type or 'none'}': use multipart/form-data or "
                              "application/json")
    except ImageTooLarge as exc:
        raise BadRequest(413, str(exc)) from None
    except ImageError as exc:
        raise BadRequest(400, str(exc)) from None


def onnx_file(run) -> Path:
    """The run's model.onnx, exported now if missing. A shipped (pretrained) model's folder is never
    written to: its export goes to a temporary folder, as does one for a read-only run directory."""
    path = run.path(ONNX_FILE)
    shipped = is_shipped(run.run_dir)
    if path.exists() and not shipped:
        return path
    if not shipped:
        try:
            return export_onnx(run.model, path)
        except OSError:
            pass
    return export_onnx(run.model, Path(tempfile.mkdtemp(prefix="mnistkit-onnx-")) / ONNX_FILE)


def create_app(source: str | Path = "mnist", backend: str = "auto", max_batch: int = 64,
               limits: ServeLimits | None = None) -> FastAPI:
    """The web app for a run directory or a pretrained model's name. ``backend='onnx'`` serves the run's
    model.onnx (exported if missing); "auto" times both at start-up and keeps the faster."""
    limits = limits or ServeLimits()
    check_backend(backend)
    run = load_source(source)
    backend, predict, timings = choose_predictor(run, backend)
    info = {"model": run.config.model, "dataset": run.config.dataset, "classes": list(run.classes),
            "test_accuracy": run.metrics.get("test_accuracy"), "backend": backend, "run": run.run_dir.name,
            "item": run.model.item, "ood_threshold": run.model.ood_threshold, "explain": METHOD,
            "framing": asdict(run.model.framing),
            "backend_ms_per_batch_of_8": timings}
    batcher = MicroBatcher(predict, max_batch=max_batch)
    decode_pool = ThreadPoolExecutor(max_workers=limits.decode_workers, thread_name_prefix="mnistkit-decode")
    in_flight = {"requests": 0}  # touched only on the event loop's thread

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        batcher.close()
        decode_pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="mnistkit", description="Draw a digit, see what the network thinks.", lifespan=lifespan)
    static = page_dir()  # the drawing page, shared with `mnistkit export --format web`
    app.mount("/static", StaticFiles(directory=static), name="static")

    @app.exception_handler(BadRequest)
    async def bad_request(_request: Request, exc: BadRequest):
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError):
        return JSONResponse({"error": f"invalid request: {exc.errors()}"}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException):
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(static / "index.html")

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/api/model")
    async def model_info():
        return info

    def attribution(image: np.ndarray, target: int) -> list:
        maps = integrated_gradients(run.model, image[None], torch.tensor([target])).maps[0]
        return np.round(maps.numpy(), 5).tolist()

    async def answer(request: Request, start: float, explain: bool) -> dict:
        image = await read_input(request, limits, decode_pool, run.model.framing)
        logits = await asyncio.wrap_future(batcher.submit(image.astype(np.float32)))
        logits = torch.from_numpy(logits)
        probabilities = logits.softmax(0).numpy()
        score = float(energy_score(logits[None])[0])
        best = int(np.argmax(probabilities))
        body = {
            "label": info["classes"][best],
            "probabilities": {c: round(float(p), 6) for c, p in zip(info["classes"], probabilities)},
            "ood_score": round(score, 4),
            "rejected": rejection(run.model, score),
            "model": info["model"],
            "input": np.round(image, 5).tolist(),
        }
        if explain:  # on the decode pool: bounded like decoding, off the event loop
            body["attribution"] = await asyncio.get_running_loop().run_in_executor(decode_pool, attribution, image, best)
            body["attribution_method"] = METHOD
        body["latency_ms"] = round((time.perf_counter() - start) * 1000, 3)
        return body

    @app.post("/api/predict")
    async def predict_endpoint(request: Request, explain: bool = False):
        """A picture (multipart 'file', or JSON 'image' base64 / 'pixels' 28x28) in; label, probabilities,
        out-of-distribution score ('rejected' says "not a digit ..." above the model's threshold) out.
        With ``?explain=1``, also an Integrated Gradients map (28x28) for the predicted class."""
        start = time.perf_counter()
        if in_flight["requests"] >= limits.max_pending:
            raise BadRequest(503, f"server busy: {limits.max_pending} requests in progress; retry shortly",
                             headers={"Retry-After": "1"})
        in_flight["requests"] += 1
        try:
            # Already JSON-ready: a JSONResponse skips FastAPI's generic encoder, slow on 784 nested floats.
            return JSONResponse(await asyncio.wait_for(answer(request, start, explain), limits.timeout_seconds))
        except asyncio.TimeoutError:  # TimeoutError itself from Python 3.11
            raise BadRequest(503, f"the request took longer than its limit of {limits.timeout_seconds:g} s; "
                                  "retry, or send a smaller picture", headers={"Retry-After": "1"}) from None
        finally:
            in_flight["requests"] -= 1

    return app


# How `serve` hands its settings to worker processes, which uvicorn starts afresh and which build their own app.
SETTINGS_VARIABLE = "MNISTKIT_SERVE_SETTINGS"


def default_workers() -> int:
    """Two server processes where there are two cores or more. One process runs its Python (request parsing, picture
    decoding, the event loop) on one core at a time, whatever its threads: on 2 cores two processes served 1.1-2.3x the
    requests of one at a lower p99 (BENCHMARKS.md, 2026-12-07)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(2, cores)


def serve(source: str | Path = "mnist", host: str = "127.0.0.1", port: int = 8000, backend: str = "auto",
          inference_threads: int = 1, limits: ServeLimits | None = None, workers: int | None = None) -> None:
    """Run the app with uvicorn in ``workers`` processes (None: `default_workers`), each with its own model,
    micro-batcher and `limits`. Micro-batches are small, so one inference thread a process is enough and leaves the
    other cores to decoding uploads and the event loop (measured in bench/load.py)."""
    import uvicorn

    limits = limits or ServeLimits()
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise MnistkitError(f"workers must be at least 1, found {workers}")
    check_backend(backend)
    if workers == 1:
        torch.set_num_threads(inference_threads)
        uvicorn.run(create_app(source, backend=backend, limits=limits), host=host, port=port, log_level="info")
        return
    load_source(source)  # a bad name or run directory fails here, once, not in every worker as it starts
    source = str(Path(source).resolve()) if Path(source).is_dir() else str(source)
    os.environ[SETTINGS_VARIABLE] = json.dumps({"source": source, "backend": backend,
                                                "inference_threads": inference_threads, "limits": asdict(limits)})
    uvicorn.run("mnistkit.serve.app:app_from_environment", factory=True, workers=workers, host=host, port=port,
                log_level="info")


def app_from_environment() -> FastAPI:
    """The app of one of `serve`'s worker processes, from the settings the parent process left in the environment."""
    settings = json.loads(os.environ[SETTINGS_VARIABLE])
    torch.set_num_threads(settings["inference_threads"])
    return create_app(settings["source"], backend=settings["backend"], limits=ServeLimits(**settings["limits"]))
