import gzip

import numpy as np
import pytest
from tests.conftest import write_idx_dataset

from mnistkit.data.datasets import IDX_FILES, bundled_mnist_dir, load_dataset, load_idx_directory
from mnistkit.data.idx import parse_idx, read_idx, write_idx
from mnistkit.errors import DataFormatError


def test_round_trip_gzip_and_raw(tmp_path):
    data = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    for name in ("a.gz", "a"):
        write_idx(tmp_path / name, data)
        np.testing.assert_array_equal(read_idx(tmp_path / name, ndim=3), data)
    assert (tmp_path / "a.gz").read_bytes()[:2] == b"\x1f\x8b"
    assert (tmp_path / "a").read_bytes()[:4] == b"\x00\x00\x08\x03"


def test_bad_magic_names_file(tmp_path):
    path = tmp_path / "bad-idx"
    path.write_bytes(b"\x12\x34\x08\x03" + bytes(12))
    with pytest.raises(DataFormatError, match=r"bad-idx: bad IDX magic number 0x12340803"):
        read_idx(path)


def test_wrong_type_code_and_dims(tmp_path):
    with pytest.raises(DataFormatError, match="type code 0x0d"):
        parse_idx(b"\x00\x00\x0d\x01" + (3).to_bytes(4, "big") + bytes(12), "f")
    with pytest.raises(DataFormatError, match="1 dimensions in the header, expected 3"):
        parse_idx(b"\x00\x00\x08\x01" + (3).to_bytes(4, "big") + bytes(3), "f", ndim=3)


def test_truncated_payload_reports_sizes(tmp_path):
    write_idx(tmp_path / "x", np.zeros((10, 28, 28), np.uint8))
    raw = (tmp_path / "x").read_bytes()
    (tmp_path / "x").write_bytes(raw[:-100])
    with pytest.raises(DataFormatError, match=r"truncated: header says shape \(10, 28, 28\) = 7840 bytes of data, found 7740"):
        read_idx(tmp_path / "x")
    (tmp_path / "x").write_bytes(raw + b"junk")
    with pytest.raises(DataFormatError, match="trailing bytes"):
        read_idx(tmp_path / "x")
    with pytest.raises(DataFormatError, match="too short"):
        parse_idx(b"\x00\x00", "f")


def test_corrupt_gzip(tmp_path):
    blob = gzip.compress(bytes(5000))
    (tmp_path / "y.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataFormatError, match=r"y.gz: corrupt or truncated gzip"):
        read_idx(tmp_path / "y.gz")


def test_checksum_mismatch(tmp_path):
    write_idx(tmp_path / "z.gz", np.zeros((1, 28, 28), np.uint8))
    with pytest.raises(DataFormatError, match="SHA-256 mismatch"):
        read_idx(tmp_path / "z.gz", sha256="0" * 64)


def test_bundled_mnist_is_the_real_one(mnist):
    assert mnist.train_images.shape == (60000, 28, 28) and mnist.test_images.shape == (10000, 28, 28)
    assert mnist.train_images.dtype.is_floating_point is False
    published_train = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    published_test = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert mnist.train_labels.bincount().tolist() == published_train
    assert mnist.test_labels.bincount().tolist() == published_test
    assert (bundled_mnist_dir() / "README.md").read_text().count("Creative Commons") == 1


def test_mislabelled_and_mismatched_files(tmp_path, mnist):
    x, y = mnist.test_images[:50].numpy(), mnist.test_labels[:50].numpy()
    bad_labels = y.copy()
    bad_labels[3] = 12
    d = write_idx_dataset(tmp_path / "a", x, bad_labels, x, y)
    with pytest.raises(DataFormatError, match="label 12 out of range for 10 classes"):
        load_idx_directory(d, "t", tuple("0123456789"))
    d = write_idx_dataset(tmp_path / "b", x, y[:40], x, y)
    with pytest.raises(DataFormatError, match="train split has 50 images but 40 labels"):
        load_idx_directory(d, "t", tuple("0123456789"))
    d = write_idx_dataset(tmp_path / "c", np.zeros((5, 32, 32)), y[:5], x, y)
    with pytest.raises(DataFormatError, match="images are 32x32, expected 28x28"):
        load_idx_directory(d, "t", tuple("0123456789"))


def test_generic_idx_raw_files_and_missing_file_message(tmp_path, mnist):
    x, y = mnist.test_images[:30].numpy(), mnist.test_labels[:30].numpy()
    d = write_idx_dataset(tmp_path / "raw", x, y, x, y, compress=False)
    ds = load_dataset("idx", d)
    assert ds.train_images.shape == (30, 28, 28) and len(ds.classes) == int(y.max()) + 1
    (d / IDX_FILES["test_labels"]).unlink()
    with pytest.raises(DataFormatError, match=r"missing t10k-labels-idx1-ubyte.gz .* in .*raw"):
        load_dataset("idx", d)
    with pytest.raises(DataFormatError, match=r"fashion-mnist: missing train-images-idx3-ubyte.gz.*mnistkit download"):
        load_dataset("fashion-mnist", tmp_path / "nowhere")
