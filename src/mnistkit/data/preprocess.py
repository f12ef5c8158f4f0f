"""Turn an arbitrary picture of a digit into an MNIST-style 28x28 image.

The MNIST convention: white ink on black, the digit scaled to fit a 20x20 box keeping its aspect
ratio, then placed in 28x28 so that its centre of mass is at the centre. Photos and drawings usually
have dark ink on light paper, so the polarity is detected from the border and inverted when needed.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from mnistkit.errors import ImageError

BOX = 20
SIZE = 28
MIN_CONTRAST = 0.05  # an image whose ink differs from its background by less than this is empty


def open_image(source: str | Path | bytes) -> np.ndarray:
    """Decode an image file (or bytes) into a float grayscale array in [0, 1]; transparency becomes paper."""
    name = "<upload>" if isinstance(source, bytes) else str(source)
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
            img.load()
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                # Transparent pixels show the paper: pick paper opposite to the ink so strokes stay visible.
                alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32) / 255
                gray = np.asarray(rgba.convert("L"), dtype=np.float32) / 255
                ink = gray[alpha > 0.5].mean() if (alpha > 0.5).any() else 0.0
                paper = 1.0 if ink < 0.5 else 0.0
                return gray * alpha + paper * (1 - alpha)
            return np.asarray(img.convert("L"), dtype=np.float32) / 255
    except FileNotFoundError:
        raise ImageError(f"{name}: file not found") from None
    except IsADirectoryError:
        raise ImageError(f"{name}: is a directory, not an image") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image PIL can read (expected PNG, JPEG, BMP, ...)") from None
    except OSError as exc:
        raise ImageError(f"{name}: cannot read image ({exc})") from None


def to_white_on_black(gray: np.ndarray) -> np.ndarray:
    """Make ink bright and background dark, judging the background by the image border."""
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    background = float(np.median(border))
    ink = gray if background < 0.5 else 1.0 - gray
    ink = ink - min(background, 1.0 - background)
    return np.clip(ink, 0.0, None)


def center_of_mass(img: np.ndarray) -> tuple[float, float]:
    total = img.sum()
    rows, cols = np.indices(img.shape)
    return float((rows * img).sum() / total), float((cols * img).sum() / total)


def mnistify(gray: np.ndarray, name: str = "<image>") -> np.ndarray:
    """Grayscale array in [0, 1], any size and polarity, to a 28x28 float32 MNIST-style image."""
    if gray.ndim != 2 or min(gray.shape) == 0:
        raise ImageError(f"{name}: expected a 2-D grayscale image, found shape {gray.shape}")
    ink = to_white_on_black(gray.astype(np.float32))
    if ink.max() < MIN_CONTRAST:
        raise ImageError(f"{name}: the image is empty (no ink found)")
    ink = ink / ink.max()
    rows, cols = np.nonzero(ink > 0.1)
    crop = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    h, w = crop.shape
    factor = BOX / max(h, w)
    new_h, new_w = max(1, round(h * factor)), max(1, round(w * factor))
    resized = Image.fromarray((crop * 255).astype(np.uint8)).resize((new_w, new_h), Image.Resampling.LANCZOS)
    digit = np.asarray(resized, dtype=np.float32) / 255
    out = np.zeros((SIZE, SIZE), dtype=np.float32)
    com_r, com_c = center_of_mass(digit)
    top = int(np.clip(round(SIZE / 2 - com_r), 0, SIZE - new_h))
    left = int(np.clip(round(SIZE / 2 - com_c), 0, SIZE - new_w))
    out[top : top + new_h, left : left + new_w] = digit
    return np.clip(out, 0.0, 1.0)


def load_array(path: str | Path) -> np.ndarray:
    """A .npy file holding one 28x28 image (uint8 0..255 or float 0..1), used as is."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ImageError(f"{path}: not a readable .npy array ({exc})") from None
    return array_to_image(arr, str(path))


def array_to_image(arr: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.size == SIZE * SIZE and arr.ndim in (1, 2, 3):
        arr = arr.reshape(SIZE, SIZE)
    else:
        raise ImageError(f"{name}: expected a 28x28 array, found shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or not np.isfinite(arr).all():
        raise ImageError(f"{name}: array must hold finite numbers, found dtype {arr.dtype}")
    arr = arr.astype(np.float32)
    if arr.max() > 1.0:
        arr = arr / 255.0
    return np.clip(arr, 0.0, 1.0)


def load_digit(path: str | Path) -> np.ndarray:
    """Any supported file (image or .npy) to a 28x28 float32 image in [0, 1], white ink on black."""
    if str(path).lower().endswith(".npy"):
        return load_array(path)
    return mnistify(open_image(path), str(path))
