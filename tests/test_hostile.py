"""Hostile and real-world pictures: decompression bombs, odd pixel modes, phone photos, fuzzed bytes.

Every path that decodes a picture (serve, predict, folder datasets) goes through
``mnistkit.data.preprocess.open_image``; these tests attack it directly, through the API and the CLI.
"""

import asyncio
import io
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import mnistkit
from mnistkit.data.idx import parse_idx
from mnistkit.data.kuzushiji import read_npz
from mnistkit.data.preprocess import ImageTooLarge, open_image
from mnistkit.errors import DataFormatError, ImageError
from mnistkit.serve import app as serve_app
from mnistkit.serve.app import ServeLimits, create_app

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def huge_png(width: int, height: int, channels: int = 1) -> bytes:
    """A valid PNG of one flat colour, built row by row: megabytes on disk, gigabytes once decoded."""
    color_type = {1: 0, 4: 6}[channels]
    packer = zlib.compressobj(9)
    row = b"\x00" + b"\xff" * (width * channels)
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def bombs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("bombs")
    paths = {"20k": directory / "huge.png", "12k": directory / "rgba.png"}
    paths["20k"].write_bytes(huge_png(20_000, 20_000))
    paths["12k"].write_bytes(huge_png(12_000, 12_000, channels=4))
    return paths


@pytest.fixture(scope="module")
def model(trained_run):
    return mnistkit.load(trained_run)


def photo(digit: np.ndarray, scale: int = 8) -> Image.Image:
    """A test digit as dark ink on light paper, bigger than 28x28, like a photo of a page."""
    return Image.fromarray(255 - np.kron(digit, np.ones((scale, scale), np.uint8)))


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def predicted(model, data: bytes) -> str:
    return mnistkit.predict_images(model, [write_temp(data)])[0].label


def write_temp(data: bytes, _counter=[0]) -> Path:  # noqa: B006 (a per-process counter for file names)
    import tempfile

    _counter[0] += 1
    path = Path(tempfile.gettempdir()) / f"mnistkit-hostile-{_counter[0]}.img"
    path.write_bytes(data)
    return path


def test_decompression_bombs_are_refused_from_the_header_within_a_second(bombs):
    for path, size in ((bombs["20k"], "400.0"), (bombs["12k"], "144.0")):
        start = time.perf_counter()
        with pytest.raises(ImageTooLarge, match=rf"{size} megapixels\)? exceeds the limit of 40 megapixels"):
            open_image(path)
        assert time.perf_counter() - start < 1.0


def test_api_answers_413_and_cli_prints_one_line(bombs, trained_run):
    with TestClient(create_app(trained_run)) as client:
        for path in bombs.values():
            start = time.perf_counter()
            r = client.post("/api/predict", files={"file": ("bomb.png", path.read_bytes(), "image/png")})
            assert r.status_code == 413 and "exceeds the limit" in r.json()["error"], r.text
            assert time.perf_counter() - start < 1.0
        assert client.get("/healthz").status_code == 200
    proc = subprocess.run([sys.executable, "-m", "mnistkit", "predict", str(trained_run), str(bombs["20k"])],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr + proc.stdout
    errors = [line for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
    assert len(errors) == 1 and "huge.png: 400.0 megapixels exceeds the limit" in errors[0], errors


def processes_under(pid: int) -> list[int]:
    children = [int(c) for task in Path(f"/proc/{pid}/task").glob("*/children") for c in task.read_text().split()]
    return children + [p for child in children for p in processes_under(child)]


def peak_kib(pid: int) -> int:
    return int(next(line.split()[1] for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                    if line.startswith("VmHWM:")))


def test_eight_concurrent_bombs_leave_each_server_process_small_and_healthy(bombs, trained_run):
    from tests.test_serve import free_port

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "mnistkit", "serve", str(trained_run), "--port", str(port),
                               "--workers", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    workers = []
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        body = bombs["12k"].read_bytes()

        async def flood():
            async with httpx.AsyncClient(timeout=30) as client:
                return await asyncio.gather(*[client.post(url + "/api/predict", files={"file": ("b.png", body)})
                                              for _ in range(8)])

        answers = asyncio.run(flood())
        assert [r.status_code for r in answers] == [413] * 8
        # The limits hold in each of the two worker processes (beside them: the parent and multiprocessing's tracker).
        workers = [p for p in processes_under(server.pid)
                   if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert len(workers) == 2
        for pid in [server.pid] + workers:
            assert peak_kib(pid) < 1024 * 1024, f"server process {pid}: peak resident memory {peak_kib(pid) / 1024:.0f} MiB"
        assert httpx.get(url + "/healthz", timeout=5).json() == {"status": "ok"}
    finally:
        server.terminate()
        server.wait(timeout=30)
    time.sleep(1)
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()], "a worker outlived the server"


@pytest.mark.parametrize("orientation, stored_as", [(3, Image.Transpose.ROTATE_180), (6, Image.Transpose.ROTATE_90),
                                                    (8, Image.Transpose.ROTATE_270)])
def test_phone_photos_with_exif_orientation_are_read_upright(model, mnist, orientation, stored_as):
    agree = 0
    for i in range(10):
        upright = photo(mnist.test_images[i].numpy()).convert("RGB")
        exif = Image.Exif()
        exif[0x0112] = orientation  # the camera stored the sensor's pixels and says how to turn them
        sideways = encode(upright.transpose(stored_as), "JPEG", quality=92, exif=exif.tobytes())
        agree += predicted(model, sideways) == predicted(model, encode(upright, "JPEG", quality=92))
    assert agree == 10


def test_every_pixel_mode_and_animations_work(model, mnist):
    digit = mnist.test_images[0].numpy()
    label = str(int(mnist.test_labels[0]))
    paper = photo(digit)
    arr16 = (np.asarray(paper, np.uint16) * 257)
    frames = [paper.convert("P"), Image.fromarray(np.zeros((224, 224), np.uint8)).convert("P")]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    rgba = paper.convert("RGBA")
    rgba.putalpha(Image.fromarray(np.where(np.asarray(paper) < 128, 255, 0).astype(np.uint8)))  # ink only
    cases = {
        "16-bit": encode(Image.fromarray(arr16), "PNG"),
        "CMYK": encode(paper.convert("CMYK"), "JPEG"),
        "palette": encode(paper.convert("P"), "PNG"),
        "alpha": encode(rgba, "PNG"),
        "animated": gif.getvalue(),
        "1-bit": encode(paper.convert("1"), "PNG"),
    }
    for name, data in cases.items():
        assert predicted(model, data) == label, name


def test_big_jpeg_photo_decodes_reduced_and_fast(model, mnist):
    big = photo(mnist.test_images[1].numpy(), scale=150).convert("RGB")  # 4200 x 4200 pixels
    data = encode(big, "JPEG", quality=85)
    start = time.perf_counter()
    gray = open_image(data)
    assert max(gray.shape) <= 1024 and time.perf_counter() - start < 1.0
    assert predicted(model, data) == str(int(mnist.test_labels[1]))


def test_busy_server_answers_503_with_retry_after_and_slow_requests_time_out(trained_run, mnist, monkeypatch):
    real = serve_app.picture_to_digit

    def slow(*args):
        time.sleep(0.6)
        return real(*args)

    monkeypatch.setattr(serve_app, "picture_to_digit", slow)
    upload = encode(photo(mnist.test_images[0].numpy()), "PNG")

    async def burst(limits: ServeLimits, n: int):
        app = create_app(trained_run, limits=limits)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            return await asyncio.gather(*[client.post("/api/predict", files={"file": ("d.png", upload)})
                                          for _ in range(n)])

    answers = asyncio.run(burst(ServeLimits(decode_workers=1, max_pending=2), 6))
    codes = sorted(r.status_code for r in answers)
    assert codes == [200, 200, 503, 503, 503, 503], codes
    busy = next(r for r in answers if r.status_code == 503)
    assert busy.headers["retry-after"] == "1" and "server busy" in busy.json()["error"]

    [late] = asyncio.run(burst(ServeLimits(timeout_seconds=0.2), 1))
    assert late.status_code == 503 and "longer than its limit of 0.2 s" in late.json()["error"]


# --------------------------------------------------------------------------------------------------
# Property-based fuzzing: whatever the bytes, a clear error or an answer, never a crash.

VALID = {}


def valid_samples() -> dict[str, bytes]:
    if not VALID:
        img = Image.fromarray((np.arange(32 * 32).reshape(32, 32) % 251).astype(np.uint8))
        for fmt in ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"):
            VALID[fmt] = encode(img, fmt)
    return VALID


@st.composite
def damaged(draw, samples: dict[str, bytes]):
    data = bytearray(samples[draw(st.sampled_from(sorted(samples)))])
    for _ in range(draw(st.integers(0, 8))):
        i = draw(st.integers(0, len(data) - 1))
        data[i] ^= 1 << draw(st.integers(0, 7))
    cut = draw(st.integers(1, len(data)))
    return bytes(data[:cut]) + draw(st.binary(max_size=64))


@FUZZ
@given(data=st.one_of(st.binary(max_size=512), damaged(valid_samples())))
def test_fuzzed_pictures_give_an_image_error_or_an_image(data):
    try:
        gray = open_image(data)
    except ImageError:
        return
    assert gray.ndim == 2 and np.isfinite(gray).all() and gray.min() >= 0 and gray.max() <= 1


def idx_bytes() -> bytes:
    array = np.arange(3 * 4 * 4, dtype=np.uint8).reshape(3, 4, 4)
    return bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in array.shape) + array.tobytes()


@FUZZ
@given(data=st.one_of(st.binary(max_size=64), damaged({"idx": idx_bytes()})))
def test_fuzzed_idx_files_give_a_data_error_or_an_array(data):
    try:
        array = parse_idx(data, "fuzz.idx")
    except DataFormatError:
        return
    assert array.dtype == np.uint8 and array.size == len(data) - 4 - 4 * array.ndim


def npz_bytes() -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28))
    return buffer.getvalue()


@FUZZ
@given(data=st.one_of(st.binary(max_size=64), damaged({"npz": npz_bytes()})))
def test_fuzzed_npz_files_give_a_data_error_or_images(data, tmp_path_factory):
    path = tmp_path_factory.mktemp("npz") / "k49-train-imgs.npz"
    path.write_bytes(data)
    try:
        array = read_npz(path, ndim=3)
    except DataFormatError:
        return
    assert array.dtype == np.uint8 and array.shape[1:] == (28, 28)


JSON = st.recursive(st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=20),
                    lambda children: st.lists(children, max_size=30) | st.dictionaries(st.text(max_size=8), children,
                                                                                       max_size=4), max_leaves=60)


@pytest.fixture(scope="module")
def api(trained_run):
    with TestClient(create_app(trained_run)) as client:
        yield client


@FUZZ
@given(body=st.one_of(JSON, st.fixed_dictionaries({"pixels": JSON}), st.fixed_dictionaries({"image": JSON}),
                      st.fixed_dictionaries({"pixels": st.lists(st.lists(st.floats(), min_size=28, max_size=28),
                                                                min_size=28, max_size=28)})))
def test_fuzzed_json_requests_never_get_a_server_error(api, body):
    import json

    r = api.post("/api/predict", content=json.dumps(body).encode(), headers={"content-type": "application/json"})
    assert r.status_code < 500, r.text
    assert ("error" in r.json()) == (r.status_code >= 400)
