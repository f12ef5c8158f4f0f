"""The FastAPI app: `/` (drawing page), `POST /api/predict`, `GET /api/model`, `GET /healthz`.

Every bad request gets a 4xx JSON body ``{"error": "..."}`` saying what was wrong; the model never
sees invalid input, so a client cannot crash the server.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from mnistkit.data.preprocess import array_to_image, mnistify, open_image
from mnistkit.errors import ImageError, MnistkitError
from mnistkit.export import export
from mnistkit.models import infer
from mnistkit.runs import ONNX_FILE, load_run
from mnistkit.serve.batching import MicroBatcher

MAX_BYTES = 2 * 1024 * 1024
BACKENDS = ("torch", "onnx")


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def torch_predictor(model: torch.nn.Module):
    def predict(images: np.ndarray) -> np.ndarray:
        return infer(model, images, batch_size=len(images)).softmax(1).numpy()

    return predict


def onnx_predictor(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    # Micro-batches are small; one inference thread leaves the other cores to decoding and the event loop.
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def predict(images: np.ndarray) -> np.ndarray:
        logits = session.run(["logits"], {"images": images[:, None].astype(np.float32)})[0]
        e = np.exp(logits - logits.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    return predict


def decode_base64_image(text: str) -> bytes:
    if text.startswith("data:"):
        text = text.split(",", 1)[-1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(400, "field 'image' is not valid base64") from None


def picture_to_digit(data: bytes, name: str) -> np.ndarray:
    """Decode and MNIST-style preprocess an uploaded picture (run in a worker thread: PIL releases the GIL)."""
    return mnistify(open_image(data), name)


async def read_input(request: Request) -> np.ndarray:
    """The 28x28 float image a request carries, or a BadRequest naming what is wrong."""
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > MAX_BYTES:
        raise BadRequest(413, f"request body is {int(length)} bytes; the limit is {MAX_BYTES} (2 MB)")
    body = await request.body()
    if len(body) > MAX_BYTES:
        raise BadRequest(413, f"request body is {len(body)} bytes; the limit is {MAX_BYTES} (2 MB)")
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
            return await asyncio.to_thread(picture_to_digit, data, upload.filename or "upload")
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
                return await asyncio.to_thread(picture_to_digit, decode_base64_image(payload["image"]), "image")
            if "pixels" in payload:
                try:
                    array = np.asarray(payload["pixels"], dtype=np.float32)
                except (ValueError, TypeError):
                    raise BadRequest(400, "field 'pixels' must be a 28x28 array of numbers") from None
                if array.shape != (28, 28):
                    raise BadRequest(400, f"field 'pixels' must be 28x28, found shape {list(array.shape)}")
                return array_to_image(array, "pixels")
            raise BadRequest(400, "JSON body needs 'image' (base64 PNG/JPEG) or 'pixels' (28x28 array)")
        raise BadRequest(415, f"unsupported content type '{content_type or 'none'}': use multipart/form-data or "
                              "application/json")
    except ImageError as exc:
        raise BadRequest(400, str(exc)) from None


def create_app(run_dir: str | Path, backend: str = "torch", max_batch: int = 64) -> FastAPI:
    """The web app for a trained run. ``backend='onnx'`` serves DIR/model.onnx (exported if missing)."""
    if backend not in BACKENDS:
        raise MnistkitError(f"backend must be one of {BACKENDS}, found '{backend}'")
    run = load_run(run_dir)
    if backend == "onnx":
        onnx_path = run.path(ONNX_FILE)
        if not onnx_path.exists():
            export(run.run_dir, "onnx")
        predict = onnx_predictor(onnx_path)
    else:
        predict = torch_predictor(run.model)
    info = {"model": run.config.model, "dataset": run.config.dataset, "classes": list(run.classes),
            "test_accuracy": run.metrics.get("test_accuracy"), "backend": backend, "run": run.run_dir.name}
    batcher = MicroBatcher(predict, max_batch=max_batch)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        batcher.close()

    app = FastAPI(title="mnistkit", description="Draw a digit, see what the network thinks.", lifespan=lifespan)
    static = Path(str(resources.files("mnistkit.serve") / "static"))
    app.mount("/static", StaticFiles(directory=static), name="static")

    @app.exception_handler(BadRequest)
    async def bad_request(_request: Request, exc: BadRequest):
        return JSONResponse({"error": exc.message}, status_code=exc.status)

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

    @app.post("/api/predict")
    async def predict_endpoint(request: Request):
        start = time.perf_counter()
        image = await read_input(request)
        probabilities = await asyncio.wrap_future(batcher.submit(image.astype(np.float32)))
        best = int(np.argmax(probabilities))
        return {
            "label": info["classes"][best],
            "probabilities": {c: round(float(p), 6) for c, p in zip(info["classes"], probabilities)},
            "model": info["model"],
            "latency_ms": round((time.perf_counter() - start) * 1000, 3),
            "input": np.round(image, 3).tolist(),
        }

    return app


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, backend: str = "torch",
          inference_threads: int = 1) -> None:
    """Run the app with uvicorn. Micro-batches are small, so one inference thread is enough and leaves the
    other cores to decoding uploads and the event loop (measured in bench/load.py)."""
    import uvicorn

    torch.set_num_threads(inference_threads)

    uvicorn.run(create_app(run_dir, backend=backend), host=host, port=port, log_level="info")
