"""Turn an arbitrary picture of a digit into an MNIST-style 28x28 image.

The MNIST convention: white ink on black, the digit scaled to fit a 20x20 box keeping its aspect
ratio, then placed in 28x28 so that its centre of mass is at the centre. Photos and drawings usually
have dark ink on light paper, so the polarity is detected from the border and inverted when needed.
Other datasets frame their subject otherwise (Fashion-MNIST: the longest side 28 pixels, the box
centred), so a model keeps the :class:`Framing` measured on its training images and pictures are
framed its way.

:func:`mnistify` is also written in JavaScript, for the drawing page (``web/app.js``), and
the two must give the same 28x28 input for the same picture (a browser test checks it). So every step
is plain arithmetic that both languages do alike: a triangle-filter resampling written out here
rather than an image library's, and halves rounded up (``floor(x + 0.5)``) as JavaScript rounds.

Pictures come from anyone, so decoding is bounded before it starts: the dimensions are read from the
file's header and anything over ``MAX_PIXELS`` is refused without being decoded; JPEGs are decoded
at reduced size (PIL's draft mode) when they are much larger than needed; only the first frame of an
animation is read; and what is decoded is shrunk to ``WORK_SIZE`` before any float copy is made. A
phone's EXIF orientation is applied first, so sideways-stored photos are read upright.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy import ndimage
from scipy.spatial import ConvexHull

from mnistkit.errors import ImageError

BOX = 20
SIZE = 28
MIN_CONTRAST = 0.05  # an image whose ink differs from its background by less than this is empty
MAX_PIXELS = 40_000_000  # 40 megapixels (e.g. 8000 x 5000): any phone photo, not a decompression bomb
WORK_SIZE = 1024  # longest side kept after decoding; the digit ends up 20 pixels tall anyway
PHOTO_SIZE = 100  # a smaller picture is a digit already cut out: its strokes may be as wide as the paper filter
# A photo's sheet of paper beside a desk (crop_to_paper): broad, and ending in a step, not a shadow's slope.
SHEET_SOLIDITY, SHEET_EDGE_STEP = 0.9, 0.02
UNEVEN_PAPER = 0.2  # paper brightness varying by more than this across a photo: a shadow or uneven light
RULE_LENGTH, RULE_THICKNESS = 0.9, 0.02  # lined paper's rules: this share of the width long, of the height thick


@dataclass(frozen=True)
class Framing:
    """How a dataset's 28x28 images frame their subject, so that a picture can be framed the same way: ``box``, the
    longest side of the subject's bounding box in pixels, and ``centre``, what lies at the centre of the image: the
    subject's centre of mass ("mass", MNIST) or its bounding box's centre ("box", Fashion-MNIST)."""

    box: int = BOX
    centre: str = "mass"

    def __post_init__(self) -> None:
        if isinstance(self.box, bool) or not isinstance(self.box, int) or not 1 <= self.box <= SIZE:
            raise ValueError(f"framing box must be a whole number of pixels in 1..{SIZE}, found {self.box!r}")
        if self.centre not in FRAMING_CENTRES:
            raise ValueError(f"framing centre must be one of {FRAMING_CENTRES}, found {self.centre!r}")


FRAMING_CENTRES = ("mass", "box")
DIGIT_FRAMING = Framing()  # MNIST's
FRAMING_SAMPLE = 5000  # training images measured: the median box and the spreads settle long before


def measure_framing(images: np.ndarray) -> Framing:
    """The framing of ``images`` (N, 28, 28; bright subject on dark, as datasets are stored), each subject found as
    :func:`mnistify` finds it: the median longest side of its bounding box, and centred by whichever of its centre of
    mass and its box's centre varies less from image to image."""
    x = np.asarray(images[:FRAMING_SAMPLE], dtype=np.float64)
    x = x[x.reshape(len(x), -1).max(1) > 0]
    if len(x) == 0:
        return DIGIT_FRAMING
    x = x / x.max(axis=(1, 2), keepdims=True)
    (top, bottom), (left, right) = ink_extent((x > 0.1).any(2)), ink_extent((x > 0.1).any(1))
    box = round_half_up(float(np.median(np.maximum(bottom - top, right - left) + 1)))
    index = np.arange(x.shape[1])
    mass = x.sum((1, 2))
    mass_spread = ((x.sum(2) * index).sum(1) / mass).std() + ((x.sum(1) * index).sum(1) / mass).std()
    box_spread = ((top + bottom) / 2).std() + ((left + right) / 2).std()
    return Framing(box=min(max(box, 1), SIZE), centre="mass" if mass_spread <= box_spread else "box")


def ink_extent(has_ink: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first and last index along each row of ``has_ink`` (N, L; each row with some True) where it is True."""
    index = np.arange(has_ink.shape[1])
    return np.where(has_ink, index, has_ink.shape[1]).min(1), np.where(has_ink, index, -1).max(1)


class ImageTooLarge(ImageError):
    """The picture's dimensions exceed MAX_PIXELS (an HTTP upload gets 413)."""


def check_dimensions(width: int, height: int, name: str, max_pixels: int = MAX_PIXELS) -> None:
    if width <= 0 or height <= 0:
        raise ImageError(f"{name}: the image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageTooLarge(f"{name}: {width}x{height} pixels ({width * height / 1e6:.1f} megapixels) exceeds the "
                            f"limit of {max_pixels / 1e6:g} megapixels; send a smaller picture")


def to_gray(img: Image.Image) -> np.ndarray:
    """Any PIL mode to float grayscale in [0, 1]; transparent pixels become paper opposite to the ink."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):  # 16-bit and float images: scale, don't clip
        arr = np.asarray(img, dtype=np.float32)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        return np.clip(arr / (1.0 if img.mode == "F" and arr.max(initial=0) <= 1 else top), 0.0, 1.0)
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32) / 255
        gray = np.asarray(rgba.convert("L"), dtype=np.float32) / 255
        ink = gray[alpha > 0.5].mean() if (alpha > 0.5).any() else 0.0
        paper = 1.0 if ink < 0.5 else 0.0
        return gray * alpha + paper * (1 - alpha)
    if img.mode == "CMYK":
        img = img.convert("RGB")
    return np.asarray(img.convert("L"), dtype=np.float32) / 255


def decode(img: Image.Image, name: str, max_pixels: int) -> np.ndarray:
    check_dimensions(img.width, img.height, name, max_pixels)
    if img.format == "JPEG":
        img.draft(img.mode if img.mode in ("L", "RGB") else None, (WORK_SIZE, WORK_SIZE))  # decode at 1/2../1/8 size
    img.seek(0)  # animations and multi-page files: the first frame
    img.load()
    img = ImageOps.exif_transpose(img)
    if max(img.size) > WORK_SIZE:
        img = img.copy()
        img.thumbnail((WORK_SIZE, WORK_SIZE), Image.Resampling.BOX)
    return to_gray(img)


def open_image(source: str | Path | bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode an image file (or bytes) into a float grayscale array in [0, 1], upright, bounded in memory.

    Every failure is an :class:`ImageError` naming the file (:class:`ImageTooLarge` for size)."""
    name = "<upload>" if isinstance(source, bytes) else str(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's bomb and corrupt-EXIF warnings: our own checks say what matters
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
                return decode(img, name, max_pixels)
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{name}: file not found") from None
    except IsADirectoryError:
        raise ImageError(f"{name}: is a directory, not an image") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image PIL can read (expected PNG, JPEG, BMP, ...)") from None
    except Image.DecompressionBombError as exc:  # PIL refuses the largest itself, before we see the size
        pixels = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(pixels.group(1)) / 1e6:.1f} megapixels" if pixels else "the image"
        raise ImageTooLarge(f"{name}: {size} exceeds the limit of {max_pixels / 1e6:g} megapixels; "
                            "send a smaller picture") from None
    except MemoryError:
        raise ImageTooLarge(f"{name}: too large to decode in memory") from None
    except Exception as exc:  # noqa: BLE001  (a hostile file can make PIL raise almost anything)
        raise ImageError(f"{name}: cannot decode image ({type(exc).__name__}: {exc})") from None


def prepare_photo(gray: np.ndarray) -> np.ndarray:
    """A decoded picture as paper and ink for ``mnistify``: a frame or desk at its edges cropped away, its uneven
    lighting divided out and the rules of lined paper erased. A clean picture (a drawing, a scan, a cut-out digit)
    and one under PHOTO_SIZE pixels a side come back as they are."""
    if min(gray.shape) < PHOTO_SIZE:
        return gray
    framed = crop_to_paper(gray)
    light_paper = border_level(framed) >= 0.5  # which way round the ink is, judged as mnistify judges it
    paper = framed if light_paper else 1.0 - framed  # the steps below see dark ink on light paper
    cleaned = erase_ruled_lines(even_out_lighting(paper))
    if cleaned is paper:
        return framed
    return cleaned if light_paper else 1.0 - cleaned


def border_level(gray: np.ndarray) -> float:
    """The median of the picture's outermost pixels: its background, for a picture that is not framed."""
    return float(np.median(np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])))


def erase_ruled_lines(g: np.ndarray) -> np.ndarray:
    """Lined paper's rules made paper: dark lines across at least RULE_LENGTH of the picture's width, no thicker
    than RULE_THICKNESS of its height (``g``: dark ink on light paper). A digit's strokes are thicker than that,
    even a tight crop's 7 whose bar spans the width; where a stroke crosses a rule, the gap is one rule thick."""
    h, w = g.shape
    paper = float(np.median(g))
    dark = (g < paper - 0.1).astype(np.uint8)
    run = int(RULE_LENGTH * w)
    # Runs at least `run` long; outside the picture counts as paper, or a run at its edge would count twice.
    shortest = ndimage.minimum_filter1d(dark, run, axis=1, mode="constant", cval=0)
    along = ndimage.maximum_filter1d(shortest, run, axis=1, mode="constant", cval=0)
    if not along.any():
        return g
    # A rule is a run thin on average along its whole length (area / width), so a slanted one still counts and a
    # thick stroke's slanted edge does not.
    lines, count = ndimage.label(along)
    areas = np.bincount(lines.ravel())[1:]
    widths = np.array([box[1].stop - box[1].start for box in ndimage.find_objects(lines)])
    thin = np.flatnonzero(areas / widths <= RULE_THICKNESS * h) + 1
    if len(thin) < 2:  # lined paper has several rules; one thin run is more likely a digit's widest row
        return g
    rules = ndimage.binary_dilation(np.isin(lines, thin))  # with their blurred edges and ends
    return np.where(rules, paper, g)


def crop_to_paper(gray: np.ndarray) -> np.ndarray:
    """The sheet of paper alone, where a photo shows something darker beside it (a desk, a frame) on any side, or a
    dark board on something lighter (chalk on a blackboard): cropped to the sheet, with what lies beside it made
    paper. Ink that runs off the sheet goes with the desk."""
    paper = sheet_of_paper(gray)
    if paper is None:
        paper = sheet_of_paper(1.0 - gray)
    if paper is None:
        return gray
    rows, cols = np.nonzero(paper)
    box = slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1)
    return np.where(paper[box], gray[box], float(np.median(gray[paper])))


def sheet_of_paper(gray: np.ndarray) -> np.ndarray | None:
    """The mask of a light sheet of paper that lies on something darker in ``gray``, or None where there is none.

    The candidate is the largest region lighter than halfway between the picture's dark and light levels, with
    what it encloses filled in. It is a sheet only if it looks like one:
    - clear of at least one edge of the picture (a tight crop's ink touches all four);
    - a broad quadrilateral: it fills SHEET_SOLIDITY of the smallest rectangle around it at any angle (a tilted
      sheet does, a disc or a blot does not), and spans a quarter of the picture or more each way;
    - with dark ink inside in strokes, which an opening by a square a sixth of the picture wide wears away (light
      ink drawn on black makes a region with no dark strokes inside, or a broad dark hole like a 0's);
    - ending in a step: the median brightness gradient along its boundary is over SHEET_EDGE_STEP a pixel, where
      a shadow's is a gentle slope."""
    h, w = gray.shape
    dark, light = np.percentile(gray, [5, 95])
    if light - dark < 0.2:
        return None
    threshold = (dark + light) / 2
    regions, count = ndimage.label(gray > threshold)
    if count == 0:
        return None
    paper = ndimage.binary_fill_holes(regions == 1 + int(np.argmax(np.bincount(regions.ravel())[1:])))
    if paper[0].any() and paper[-1].any() and paper[:, 0].any() and paper[:, -1].any():
        return None
    rows, cols = np.nonzero(paper)
    if np.ptp(rows) < h / 4 or np.ptp(cols) < w / 4 or len(rows) < SHEET_SOLIDITY * enclosing_rectangle_area(paper):
        return None
    ink = paper & (gray <= threshold)
    square = max(3, min(h, w) // 6)
    broad_ink = ndimage.maximum_filter(ndimage.minimum_filter(ink, square), square)  # the opening, separably
    if ink.sum() < 0.002 * paper.sum() or broad_ink.sum() > 0.5 * ink.sum():
        return None
    boundary = paper & ~ndimage.binary_erosion(paper, border_value=1)
    step = np.hypot(ndimage.sobel(gray, 0), ndimage.sobel(gray, 1)) / 8  # brightness change a pixel
    return paper if np.median(step[boundary]) >= SHEET_EDGE_STEP else None


def enclosing_rectangle_area(mask: np.ndarray) -> float:
    """The area of the smallest rectangle, at any angle, around the pixels of ``mask`` (rotating calipers: one side
    of that rectangle lies along an edge of their convex hull). Only the mask's outline can be on the hull."""
    rows, cols = np.nonzero(mask & ~ndimage.binary_erosion(mask))
    corners = np.concatenate([np.stack([rows + dy, cols + dx], 1) for dy in (0, 1) for dx in (0, 1)]).astype(float)
    hull = corners[ConvexHull(corners).vertices]
    edges = np.roll(hull, -1, axis=0) - hull
    angles = np.arctan2(edges[:, 0], edges[:, 1])
    along = np.stack([np.cos(angles), np.sin(angles)], 1)  # (edge, 2): unit vectors (x, y) along each edge
    x, y = hull[:, 1], hull[:, 0]
    u = np.outer(along[:, 0], x) + np.outer(along[:, 1], y)  # each hull point's coordinate along each edge
    v = np.outer(-along[:, 1], x) + np.outer(along[:, 0], y)  # and across it
    return float((np.ptp(u, axis=1) * np.ptp(v, axis=1)).min())


def even_out_lighting(g: np.ndarray) -> np.ndarray:
    """A photo (dark ink on light paper) with its uneven lighting divided out, so that a shadow across the paper is
    not taken for ink.

    The paper's brightness is modelled as a plane: fitted to the picture's local maxima (over a sixth of it), then
    refitted to those at or above the plane, so that it rests on the paper and not in thick strokes. Only where it
    varies by more than UNEVEN_PAPER across the picture is the picture divided by it. Evenly lit pictures, tight
    crops of a digit (their plane varied by at most 0.13 over 600 of them) and pictures under PHOTO_SIZE pixels a
    side come back as they are, so that a drawing reads the same here as in the page."""
    if min(g.shape) < PHOTO_SIZE:
        return g
    paper = paper_plane(g)
    if paper.max() - paper.min() <= UNEVEN_PAPER:
        return g
    return np.clip(g / np.maximum(paper, 0.05), 0.0, 1.0)


def paper_plane(g: np.ndarray) -> np.ndarray:
    """The plane a + b*x + c*y under the paper of ``g`` (light paper), evaluated at every pixel."""
    h, w = g.shape
    local = ndimage.maximum_filter(g, size=min(h, w) // 6)
    step = max(1, min(h, w) // 64)  # about 4,000 points are plenty for three numbers
    yy, xx = np.mgrid[0:h:step, 0:w:step]
    terms = np.stack([np.ones(yy.size), xx.ravel() / w, yy.ravel() / h], 1)
    values = local[::step, ::step].ravel()
    on_paper = np.ones(len(values), bool)
    for _ in range(3):
        coef = np.linalg.lstsq(terms[on_paper], values[on_paper], rcond=None)[0]
        on_paper = values >= terms @ coef - 0.02
    rows, cols = np.arange(h)[:, None] / h, np.arange(w)[None, :] / w
    return coef[0] + coef[1] * cols + coef[2] * rows


def to_white_on_black(gray: np.ndarray) -> np.ndarray:
    """Make ink bright and background dark, judging the background by the image border."""
    background = border_level(gray)
    ink = gray if background < 0.5 else 1.0 - gray
    ink = ink - min(background, 1.0 - background)
    return np.clip(ink, 0.0, None)


def center_of_mass(img: np.ndarray) -> tuple[float, float]:
    total = img.sum(dtype=np.float64)
    rows, cols = np.indices(img.shape)
    return float((rows * img).sum(dtype=np.float64) / total), float((cols * img).sum(dtype=np.float64) / total)


def round_half_up(x: float) -> int:
    return int(np.floor(x + 0.5))


def resampling_weights(size_in: int, size_out: int) -> np.ndarray:
    """(size_out, size_in) weights of a triangle filter, widened when shrinking so that every input pixel
    counts (antialiased, like MNIST's own normalisation); rows sum to 1."""
    scale = size_in / size_out
    support = max(scale, 1.0)
    centres = (np.arange(size_out) + 0.5) * scale
    weights = np.clip(1.0 - np.abs(np.arange(size_in)[None, :] + 0.5 - centres[:, None]) / support, 0.0, None)
    return weights / weights.sum(1, keepdims=True)


def mnistify(gray: np.ndarray, name: str = "<image>", framing: Framing = DIGIT_FRAMING) -> np.ndarray:
    """Grayscale array in [0, 1], any size and polarity, to a 28x28 float32 image: white on black, framed as
    ``framing`` says (MNIST's by default)."""
    if gray.ndim != 2 or min(gray.shape) == 0:
        raise ImageError(f"{name}: expected a 2-D grayscale image, found shape {gray.shape}")
    ink = to_white_on_black(gray.astype(np.float64))
    if ink.max() < MIN_CONTRAST:
        raise ImageError(f"{name}: the image is empty (no ink found)")
    ink = ink / ink.max()
    rows, cols = np.nonzero(ink > 0.1)
    crop = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    h, w = crop.shape
    box = framing.box
    new_h, new_w = max(1, round_half_up(h * box / max(h, w))), max(1, round_half_up(w * box / max(h, w)))
    digit = resampling_weights(h, new_h) @ crop @ resampling_weights(w, new_w).T
    if framing.centre == "mass":
        com_r, com_c = center_of_mass(digit)
        top = min(max(round_half_up(SIZE / 2 - com_r), 0), SIZE - new_h)
        left = min(max(round_half_up(SIZE / 2 - com_c), 0), SIZE - new_w)
    else:
        top, left = round_half_up((SIZE - new_h) / 2), round_half_up((SIZE - new_w) / 2)
    out = np.zeros((SIZE, SIZE), dtype=np.float64)
    out[top : top + new_h, left : left + new_w] = digit
    return np.clip(out, 0.0, 1.0).astype(np.float32)


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


def picture_to_digit(source: str | Path | bytes, name: str, max_pixels: int = MAX_PIXELS,
                     framing: Framing = DIGIT_FRAMING) -> np.ndarray:
    """A picture file (or its bytes) decoded, cleaned if it is a photo, and made a 28x28 input framed as the model's
    training images were (``framing``; MNIST's by default): the one path from a picture to the model's input, for
    `predict` and `serve` alike."""
    return mnistify(prepare_photo(open_image(source, max_pixels=max_pixels)), name, framing)


def picture_as_it_is(path: str | Path) -> np.ndarray:
    """A 28x28 picture file as a model input without framing it again: grayscale, white on black (a dataset's own
    images saved as files keep what framing and detail they have)."""
    gray = open_image(path)
    if gray.shape != (SIZE, SIZE):
        raise ImageError(f"{path}: expected a {SIZE}x{SIZE} picture, found {gray.shape[1]}x{gray.shape[0]}")
    # Only the polarity is judged: subtracting a background level, as to_white_on_black does, would dim a subject
    # that covers much of the border.
    return (gray if border_level(gray) < 0.5 else 1.0 - gray).astype(np.float32)


def picture_size(path: str | Path) -> tuple[int, int] | None:
    """(width, height) from a picture file's header, without decoding it; None where it cannot be read."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's bomb warnings, as in open_image: decoding it later checks the size
            with Image.open(path) as img:
                return img.size
    except Exception:  # noqa: BLE001  (decoding it properly, later, names the problem)
        return None


def load_digit(path: str | Path, framing: Framing = DIGIT_FRAMING) -> np.ndarray:
    """Any supported file (image or .npy) to a 28x28 float32 image in [0, 1], white ink on black; a .npy array is
    taken as it is, a picture is framed as ``framing`` says."""
    if str(path).lower().endswith(".npy"):
        return load_array(path)
    return picture_to_digit(path, str(path), framing=framing)
