"""Build the Fashion-MNIST development directory from the training files in ../shared (or --source).

    python bench/fashion_dev.py                 # -> runs/fashion-dev/

The official test files are withheld as the holdout this project is judged on. As the dataset's
README asks, the `train-*` files here are the first 50,000 training images and the `t10k-*` files the
last 10,000. Numbers on those 10,000 are a *dev holdout*, never test accuracy. Recipes are tuned on
validation split off the 50,000 (`val_size`), so the dev holdout stays unseen by tuning too.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mnistkit.data.datasets import IDX_FILES, find_idx_file
from mnistkit.data.idx import read_idx, write_idx

ROOT = Path(__file__).resolve().parent.parent
SHA256 = {"train_images": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
          "train_labels": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"}


def build(source: Path, out: Path, train: int = 50_000) -> Path:
    import hashlib

    from mnistkit.data.idx import read_bytes

    arrays = {}
    for key in ("train_images", "train_labels"):
        path = find_idx_file(source, IDX_FILES[key], "fashion-mnist")
        digest = hashlib.sha256(read_bytes(path)).hexdigest()
        if digest != SHA256[key]:
            raise SystemExit(f"{path}: decompressed SHA-256 {digest}, expected {SHA256[key]}")
        arrays[key] = read_idx(path)
    out.mkdir(parents=True, exist_ok=True)
    x, y = arrays["train_images"], arrays["train_labels"]
    for key, array in (("train_images", x[:train]), ("train_labels", y[:train]),
                       ("test_images", x[train:]), ("test_labels", y[train:])):
        write_idx(out / (IDX_FILES[key] + ".gz"), array)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=ROOT.parent / "shared" / "datasets" / "fashion-mnist-train")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "fashion-dev")
    args = parser.parse_args()
    print(f"wrote {build(args.source, args.out)}")


if __name__ == "__main__":
    main()
