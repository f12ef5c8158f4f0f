import base64
import contextlib
import io
import os
import socket
import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from tests.browser import browser_page, draw_digit
from tests.conftest import write_idx_dataset

from mnistkit.config import make_config
from mnistkit.serve.app import create_app
from mnistkit.serve.batching import MicroBatcher

FAST_MODEL = make_config("fast").model  # what the shared trained_run fixture trained


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def client(trained_run):
    with TestClient(create_app(trained_run)) as c:
        yield c


def paper_digit(mnist, i=0, scale=6) -> np.ndarray:
    """A test digit as dark ink on white paper, bigger than 28x28, like a phone photo."""
    return 255 - np.kron(mnist.test_images[i].numpy(), np.ones((scale, scale), np.uint8))


def test_health_and_model_info(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    info = client.get("/api/model").json()
    assert info["model"] == FAST_MODEL and info["classes"] == list("0123456789") and info["test_accuracy"] > 0.95
    # backend "auto" (the default) timed both runtimes side by side and kept the faster
    timings = info["backend_ms_per_batch_of_8"]
    assert set(timings) == {"torch", "onnx"} and info["backend"] == min(timings, key=timings.get)
    assert info["framing"] == {"box": 20, "centre": "mass"}  # MNIST's, measured on the run's training images


def test_predict_upload_base64_and_pixels(client, mnist):
    label = str(int(mnist.test_labels[0]))
    r = client.post("/api/predict", files={"file": ("d.png", png_bytes(paper_digit(mnist)), "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["label"] == label and set(body) >= {"label", "probabilities", "model", "latency_ms"}
    assert abs(sum(body["probabilities"].values()) - 1) < 1e-3 and np.array(body["input"]).shape == (28, 28)
    data_url = "data:image/png;base64," + base64.b64encode(png_bytes(paper_digit(mnist, 1))).decode()
    assert client.post("/api/predict", json={"image": data_url}).json()["label"] == str(int(mnist.test_labels[1]))
    pixels = mnist.test_images[2].tolist()
    assert client.post("/api/predict", json={"pixels": pixels}).json()["label"] == str(int(mnist.test_labels[2]))


@pytest.mark.parametrize("kwargs, status, message", [
    (dict(content=b"x" * (2 * 1024 * 1024 + 1), headers={"content-type": "application/json"}), 413, "limit is 2097152"),
    (dict(files={"file": ("a.png", b"hello, not an image", "image/png")}), 400, "not an image"),
    (dict(files={"file": ("a.png", b"", "image/png")}), 400, "'file' is empty"),
    (dict(files={"other": ("a.png", b"abc", "image/png")}), 400, "field named 'file'"),
    (dict(content=b"", headers={"content-type": "application/json"}), 400, "empty request"),
    (dict(json={"pixels": np.zeros((27, 28)).tolist()}), 400, "must be 28x28, found shape [27, 28]"),
    (dict(json={"pixels": [["a"] * 28] * 28}), 400, "28x28 array of numbers"),
    (dict(json={"image": "%%%not-base64%%%"}), 400, "not valid base64"),
    (dict(json={"image": base64.b64encode(b"GIF89a-broken").decode()}), 400, "not an image"),
    (dict(json={"something": 1}), 400, "needs 'image'"),
    (dict(json=[1, 2, 3]), 400, "must be an object"),
    (dict(content=b"{not json", headers={"content-type": "application/json"}), 400, "invalid JSON"),
    (dict(content=b"abc", headers={"content-type": "text/plain"}), 415, "unsupported content type 'text/plain'"),
])
def test_bad_requests_get_4xx_json(client, mnist, kwargs, status, message):
    r = client.post("/api/predict", **kwargs)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]
    assert client.get("/healthz").status_code == 200  # still serving


def test_blank_drawing_is_rejected(client):
    blank = png_bytes(np.full((100, 100), 255, np.uint8))
    r = client.post("/api/predict", files={"file": ("blank.png", blank, "image/png")})
    assert r.status_code == 400 and "empty (no ink found)" in r.json()["error"]


def test_micro_batcher_batches_and_survives_errors():
    sizes = []

    def slow(images):
        sizes.append(len(images))
        time.sleep(0.01)
        if images[0, 0, 0] < 0:
            raise ValueError("boom")
        return images.reshape(len(images), -1)[:, :3]

    batcher = MicroBatcher(slow, max_batch=16)
    futures = [batcher.submit(np.full((28, 28), i, np.float32)) for i in range(40)]
    results = [f.result(timeout=5) for f in futures]
    assert [r[0] for r in results] == list(range(40)) and max(sizes) > 1
    with pytest.raises(ValueError, match="boom"):
        batcher.submit(np.full((28, 28), -1, np.float32)).result(timeout=5)
    assert batcher.submit(np.ones((28, 28), np.float32)).result(timeout=5)[0] == 1
    batcher.close()


def test_onnx_export_matches_torch_and_serves(trained_run, mnist, tmp_path):
    import onnx
    import onnxruntime as ort

    from mnistkit.export import export

    info = export(trained_run, "onnx")
    assert info["checked_images"] == 1000 and info["max_abs_difference"] < 1e-4
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    ort.InferenceSession(info["path"], options, providers=["CPUExecutionProvider"])
    # The last stage's conv pads only the rows its pool reads, by a constant zero pad that onnxruntime folds into it.
    exported, optimized = ({node.op_type for node in onnx.load(path).graph.node}
                           for path in (info["path"], options.optimized_model_filepath))
    assert "Pad" in exported and "Pad" not in optimized
    ts = export(trained_run, "torchscript")
    assert ts["path"].endswith("model.torchscript.pt")
    with TestClient(create_app(trained_run, backend="onnx")) as onnx_client:
        assert onnx_client.get("/api/model").json()["backend"] == "onnx"
        r = onnx_client.post("/api/predict", json={"pixels": mnist.test_images[3].tolist()})
        assert r.status_code == 200 and r.json()["label"] == str(int(mnist.test_labels[3]))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(run_dir):
    """`mnistkit serve` for ``run_dir`` on a free loopback port, in a thread; yields its URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(run_dir), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def live_server(trained_run):
    with running_server(trained_run) as url:
        yield url


def test_draw_a_real_digit_in_the_browser(live_server, mnist):
    index = 0
    digit, label = mnist.test_images[index].numpy(), str(int(mnist.test_labels[index]))
    with browser_page() as page:
        page.goto(live_server + "/")
        page.wait_for_function("document.querySelectorAll('.bar-row').length === 10")
        assert f"{FAST_MODEL} trained on mnist" in page.text_content("#model-info")
        draw_digit(page, digit)
        page.wait_for_function(f"document.getElementById('label').textContent === {label!r}", timeout=15000)
        assert page.text_content("#status") == ""
        seen = page.evaluate("Array.from(document.getElementById('seen').getContext('2d')"
                             ".getImageData(0, 0, 28, 28).data).filter((v, i) => i % 4 === 0 && v > 128).length")
        assert seen > 40  # the page shows the 28x28 input the model saw
        page.wait_for_function("window.mnistkit.last && !window.mnistkit.pending()", timeout=15000)
        last = page.evaluate("window.mnistkit.last")
        assert last["method"] == "integrated-gradients" and len(last["attribution"]) == 784  # why, from Captum
        page.click("#clear")
        assert page.text_content("#label") == "–"


def test_the_page_lists_the_most_probable_of_many_classes(mnist, tmp_path):
    # 30 classes: each digit under three names. The page shows 12 bars, most probable first, not 30.
    from mnistkit import make_config, train

    n = 3000
    labels = mnist.train_labels[:n].numpy() + 10 * (np.arange(n) % 3)
    data = write_idx_dataset(tmp_path / "data", mnist.train_images[:n].numpy(), labels,
                             mnist.test_images[:300].numpy(), mnist.test_labels[:300].numpy())
    run = tmp_path / "run"
    train(make_config("fast", dataset="idx", data_dir=str(data), val_size=300, out=str(run), progress=False))
    with running_server(run) as url, browser_page() as page:
        page.goto(url + "/")
        page.wait_for_function("document.querySelectorAll('.bar-row').length === 12")
        draw_digit(page, mnist.test_images[0].numpy())
        page.wait_for_function("window.mnistkit.last && !window.mnistkit.pending()", timeout=15000)
        rows = page.evaluate("Array.from(document.querySelectorAll('.bar-row')).map(r => "
                             "[r.querySelector('.name').textContent, parseFloat(r.querySelector('.value').textContent),"
                             " r.classList.contains('top')])")
        answer = page.text_content("#label")
    assert len(rows) == 12
    values = [value for _, value, _ in rows]
    assert values == sorted(values, reverse=True) and values[0] > values[-1]
    assert rows[0][2] and rows[0][0] == answer  # the first bar is the answer the page gives


def test_uploads_are_framed_as_the_served_model_was_trained(mnist):
    # The shipped Fashion-MNIST model learned clothes that fill the image: an upload is framed that way, not MNIST's.
    from mnistkit.data.preprocess import Framing, mnistify

    picture = (mnistify(mnist.test_images[0].numpy() / 255.0, framing=Framing(28, "box")) * 255).round()
    with TestClient(create_app("fashion-mnist", backend="torch")) as c:
        assert c.get("/api/model").json()["framing"] == {"box": 28, "centre": "box"}
        r = c.post("/api/predict", files={"file": ("c.png", png_bytes(255 - picture.astype(np.uint8)), "image/png")})
    assert r.status_code == 200, r.text
    assert np.abs(np.array(r.json()["input"]) - picture / 255).max() < 0.03


def test_the_page_frames_a_drawing_as_the_served_model_was_trained(mnist):
    from mnistkit.data.preprocess import Framing, mnistify, open_image

    with running_server("fashion-mnist") as url, browser_page() as page:
        page.goto(url + "/")
        page.wait_for_function("window.mnistkit && window.mnistkit.ready", timeout=30000)
        assert page.text_content("h1") == "Draw a clothing item"
        draw_digit(page, mnist.test_images[0].numpy())
        page.wait_for_function("window.mnistkit.last && !window.mnistkit.pending()", timeout=15000)
        seen = np.array(page.evaluate("window.mnistkit.last.input")).reshape(28, 28)
        png = base64.b64decode(page.evaluate("document.getElementById('pad').toDataURL('image/png')").split(",")[1])
    assert np.abs(seen - mnistify(open_image(png), framing=Framing(28, "box"))).max() < 1e-5
    assert np.abs(seen - mnistify(open_image(png))).max() > 0.5  # not MNIST's framing


def test_serving_a_shipped_model_never_writes_into_the_package():
    from mnistkit.pretrained import pretrained_dir

    before = sorted(p.name for p in pretrained_dir("mnist").iterdir())
    with TestClient(create_app("mnist", backend="onnx")) as c:
        assert c.post("/api/predict", json={"pixels": np.eye(28).tolist()}).status_code == 200
    assert sorted(p.name for p in pretrained_dir("mnist").iterdir()) == before


def test_serve_refuses_a_bad_worker_count_or_source_before_starting(tmp_path):
    from mnistkit.errors import MnistkitError
    from mnistkit.serve.app import SETTINGS_VARIABLE, serve

    with pytest.raises(MnistkitError, match="workers must be at least 1, found 0"):
        serve("mnist", workers=0)
    with pytest.raises(MnistkitError, match="not a run directory"):
        serve(str(tmp_path / "missing"), workers=2)
    assert SETTINGS_VARIABLE not in os.environ
