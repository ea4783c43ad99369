"""Image datasets: MNIST-format IDX files, Fashion-MNIST, the P₁/P₂ split (Szegedy et al. 2013, §4.3).

``load_dataset(name, data_dir=None)`` returns an `ImageDataset` with pixels in [0, 1] (float32,
shape ``(N, 28, 28)``) and int32 labels in 0..9. Every dataset carries its ``name`` (``"mnist"`` or
``"fashion_mnist"``), the ``source`` it was read from and, for subsets, a ``subset`` tag, so every
result can say which data it came from.

``fashion_mnist_sample`` is a class-balanced sample of Fashion-MNIST that ships with the package
(6,000 training and 1,000 test images; ``spheres/sample_data/fashion_mnist/README.md`` says how it
was drawn). It is read with the same IDX loader from `SAMPLE_DIR`, is labelled
``fashion_mnist[sample]``, and is what the quick presets and the test suite use, so they need no
data set installed and give the same numbers on every machine.

Where the files of ``mnist`` and ``fashion_mnist`` are looked for, in order:

1. ``data_dir`` (the experiments' ``--set data_dir=DIR``), else the environment variable
   ``SPHERES_DATA``. In that directory the four files may sit directly
   (``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``, ``t10k-images-idx3-ubyte[.gz]``,
   ``t10k-labels-idx1-ubyte[.gz]``) or in a sub-directory named after the dataset
   (``mnist/``, ``fashion_mnist/`` or ``fashion-mnist/``); the sub-directory wins when both exist.
2. For ``fashion_mnist``: Debian's ``dataset-fashion-mnist`` package, ``/usr/share/datasets/fashion-mnist``.
3. ``tensorflow-datasets`` when importable (``pip install 'adversarial-spheres[tfds]'``), through
   ``tfds.data_source`` (no TensorFlow needed; downloads once into tfds's data directory).
4. Otherwise a `DatasetNotFoundError` that says how to get the data.

The IDX reader validates the magic number (``0x00000803`` images, ``0x00000801`` labels), the
element type (unsigned byte), the dimensions (28 × 28), the byte count, that image and label counts
agree and that labels lie in 0..9; a missing, truncated or foreign file raises `IDXError` naming
the file and the problem.

Example::

    ds = load_dataset("fashion_mnist_sample")   # the sample shipped with the package
    p1, p2 = split_p1_p2(ds, jax.random.key(0))  # two disjoint halves of the training set
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import os
from pathlib import Path

import jax
import numpy as np

DATASETS = ("mnist", "fashion_mnist", "fashion_mnist_sample")
SAMPLE = "fashion_mnist_sample"
NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28)
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
SAMPLE_DIR = Path(__file__).resolve().parent.parent / "sample_data" / "fashion_mnist"
ENV_VAR = "SPHERES_DATA"

IMAGES_MAGIC = 0x00000803   # unsigned byte, 3 dimensions
LABELS_MAGIC = 0x00000801   # unsigned byte, 1 dimension

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_SUBDIRS = {"mnist": ("mnist", "MNIST"), "fashion_mnist": ("fashion_mnist", "fashion-mnist", "FashionMNIST")}


class IDXError(ValueError):
    """An IDX file is missing, truncated or not what it should be. The message names the file."""


class DatasetNotFoundError(FileNotFoundError):
    """No location holds the dataset; the message says where we looked and how to get it."""


@dataclasses.dataclass(frozen=True, eq=False)
class ImageDataset:
    """A labelled image dataset with pixels in [0, 1].

    Attributes:
      name: ``"mnist"`` or ``"fashion_mnist"``: which data this is (results quote it).
      x_train, x_test: ``(N, 28, 28)`` float32 in [0, 1].
      y_train, y_test: ``(N,)`` int32 in 0..9.
      source: where it was read from (a directory or ``"tensorflow-datasets"``).
      subset: ``""`` for the full dataset, else a tag such as ``"P1"`` or ``"train[:5000]"``.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str = ""
    subset: str = ""

    @property
    def label(self) -> str:
        """``name`` plus the subset tag, e.g. ``fashion_mnist[P1]``."""
        return f"{self.name}[{self.subset}]" if self.subset else self.name

    def describe(self) -> dict:
        """JSON-ready description for summaries: name, subset, sizes and source."""
        return {"name": self.name, "subset": self.subset, "source": self.source,
                "train_size": int(self.x_train.shape[0]), "test_size": int(self.x_test.shape[0])}

    def replace(self, **changes) -> "ImageDataset":
        return dataclasses.replace(self, **changes)


# ----------------------------------------------------------------------------------- IDX files


def _open_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise IDXError(f"{path}: file not found") from None
    except OSError as e:
        raise IDXError(f"{path}: cannot read ({e.strerror})") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise IDXError(f"{path}: corrupt gzip data ({e}); delete it and fetch it again") from None
    return raw


def read_idx(path: Path | str, *, expect_magic: int | None = None) -> np.ndarray:
    """Read one IDX file (gzipped or raw) into a uint8 array of the shape its header states.

    Header: two zero bytes, a type byte (0x08 = unsigned byte; the only type MNIST uses), the number
    of dimensions, then each dimension as a big-endian int32. Raises `IDXError` on a bad magic
    number, an unsupported type, or a payload whose size does not match the header.
    """
    path = Path(path)
    data = _open_bytes(path)
    if len(data) < 4:
        raise IDXError(f"{path}: only {len(data)} bytes; not an IDX file")
    magic = int.from_bytes(data[:4], "big")
    if data[0] != 0 or data[1] != 0:
        raise IDXError(f"{path}: bad magic number 0x{magic:08x}; not an IDX file")
    if data[2] != 0x08:
        raise IDXError(f"{path}: element type 0x{data[2]:02x} is not unsigned byte (0x08)")
    if expect_magic is not None and magic != expect_magic:
        raise IDXError(f"{path}: magic number 0x{magic:08x}, expected 0x{expect_magic:08x} "
                       f"({'images' if expect_magic == IMAGES_MAGIC else 'labels'} file)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IDXError(f"{path}: truncated header ({len(data)} bytes for {ndim} dimensions)")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    size = int(np.prod(shape, dtype=np.int64))
    if len(data) - header != size:
        raise IDXError(f"{path}: header says shape {shape} ({size} bytes) but the file holds "
                       f"{len(data) - header} bytes of data (truncated or corrupt)")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def load_idx_pair(images_path: Path | str, labels_path: Path | str) -> tuple[np.ndarray, np.ndarray]:
    """Read and validate an image/label IDX pair: ``x (N, 28, 28)`` float32 in [0, 1], ``y (N,)`` int32."""
    images = read_idx(images_path, expect_magic=IMAGES_MAGIC)
    labels = read_idx(labels_path, expect_magic=LABELS_MAGIC)
    if images.shape[1:] != IMAGE_SHAPE:
        raise IDXError(f"{images_path}: images have shape {images.shape[1:]}, expected {IMAGE_SHAPE}")
    if images.shape[0] != labels.shape[0]:
        raise IDXError(f"{images_path} holds {images.shape[0]} images but {labels_path} holds "
                       f"{labels.shape[0]} labels")
    if labels.size and labels.max() >= NUM_CLASSES:
        raise IDXError(f"{labels_path}: label {int(labels.max())} out of range 0..{NUM_CLASSES - 1}")
    return to_unit_interval(images), labels.astype(np.int32)


def to_unit_interval(images: np.ndarray) -> np.ndarray:
    """uint8 pixels 0..255 -> float32 in [0, 1] (``x / 255``)."""
    return (np.asarray(images, np.float32) / np.float32(255.0))


def write_idx(path: Path | str, array: np.ndarray, *, compress: bool | None = None) -> Path:
    """Write a uint8 array as an IDX file (gzip if ``compress`` or the name ends in ``.gz``).

    The inverse of `read_idx`; used to build tiny test datasets and to export subsets.
    """
    path = Path(path)
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    payload = header + array.tobytes()
    if compress or (compress is None and path.suffix == ".gz"):
        payload = gzip.compress(payload, compresslevel=1)
    path.write_bytes(payload)
    return path


# ------------------------------------------------------------------------------ locating data


def debian_fashion_mnist_installed() -> bool:
    """Whether Debian's ``dataset-fashion-mnist`` files are where `load_dataset` looks for them."""
    return DEBIAN_FASHION_MNIST.is_dir() and _idx_dir_for("fashion_mnist", DEBIAN_FASHION_MNIST) is not None


def _find_file(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        p = directory / name
        if p.is_file():
            return p
    return None


def _idx_dir_for(name: str, directory: Path) -> Path | None:
    """The directory under ``directory`` that holds ``name``'s four files (sub-directory first)."""
    for sub in _SUBDIRS[name]:
        d = directory / sub
        if d.is_dir() and _find_file(d, FILES["train_images"]) is not None:
            return d
    if _find_file(directory, FILES["train_images"]) is not None:
        return directory
    return None


@functools.lru_cache(maxsize=4)
def _load_idx_dir_cached(directory: str, mtimes: tuple) -> tuple[np.ndarray, ...]:
    d = Path(directory)
    paths = {}
    for key, stem in FILES.items():
        p = _find_file(d, stem)
        if p is None:
            raise IDXError(f"{d}: missing {stem}[.gz] (need all of {', '.join(FILES.values())})")
        paths[key] = p
    x_train, y_train = load_idx_pair(paths["train_images"], paths["train_labels"])
    x_test, y_test = load_idx_pair(paths["test_images"], paths["test_labels"])
    for a in (x_train, y_train, x_test, y_test):
        a.setflags(write=False)   # shared between callers through the cache
    return x_train, y_train, x_test, y_test


def load_idx_dir(name: str, directory: Path | str) -> ImageDataset:
    """Load the four IDX files of dataset ``name`` from ``directory`` (validated; see module doc)."""
    directory = Path(directory)
    mtimes = tuple(sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size)
                          for p in directory.iterdir() if p.is_file()))
    x_train, y_train, x_test, y_test = _load_idx_dir_cached(str(directory.resolve()), mtimes)
    return ImageDataset(name, x_train, y_train, x_test, y_test, source=str(directory))


def _load_tfds(name: str, data_dir: str | None = None) -> ImageDataset:
    """Load through ``tfds.data_source`` (array-record files; no TensorFlow needed)."""
    import tensorflow_datasets as tfds

    def to_arrays(split):
        # One split per call: without ``split`` the returned dict is built from the dataset's
        # metadata, which tfds.testing.mock_data does not provide (the dict comes back empty).
        src = tfds.data_source(name, split=split, data_dir=data_dir)
        n = len(src)
        x = np.empty((n, *IMAGE_SHAPE), np.uint8)
        y = np.empty((n,), np.int32)
        for i in range(n):
            ex = src[i]
            x[i] = np.asarray(ex["image"]).reshape(IMAGE_SHAPE)
            y[i] = int(ex["label"])
        if n and (y.min() < 0 or y.max() >= NUM_CLASSES):
            raise IDXError(f"tensorflow-datasets {name}/{split}: labels outside 0..{NUM_CLASSES - 1}")
        return to_unit_interval(x), y

    x_train, y_train = to_arrays("train")
    x_test, y_test = to_arrays("test")
    return ImageDataset(name, x_train, y_train, x_test, y_test, source="tensorflow-datasets")


def _how_to_get(name: str, looked: list[str]) -> str:
    where = "; ".join(looked) if looked else "nowhere"
    hint = {
        "mnist": "download the four MNIST IDX files (train-images-idx3-ubyte.gz, "
                 "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) "
                 "into a directory and pass --set data_dir=DIR (or set SPHERES_DATA=DIR)",
        "fashion_mnist": "install Debian's package (`apt-get install dataset-fashion-mnist`), or put "
                         "the four Fashion-MNIST IDX files in a directory and pass --set data_dir=DIR "
                         "(or set SPHERES_DATA=DIR); the quick presets use the shipped sample "
                         "(dataset fashion_mnist_sample) and need neither",
    }[name]
    return (f"dataset {name!r} not found (looked in: {where}). To get it: {hint}; or "
            f"`pip install 'adversarial-spheres[tfds]'` to load it through tensorflow-datasets "
            f"(needs network access once).")


def load_dataset(name: str, data_dir: str | Path | None = None, *, use_tfds: bool = True) -> ImageDataset:
    """Load ``mnist`` or ``fashion_mnist`` (train 60,000 + test 10,000), pixels in [0, 1].

    Looks in ``data_dir``, else ``$SPHERES_DATA``, else (Fashion-MNIST) Debian's install location,
    else tensorflow-datasets when importable (``use_tfds``); see the module docstring. A given
    ``data_dir`` that does not hold the files is an error (no silent fallback to other data).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if name == SAMPLE:
        if data_dir not in (None, ""):
            raise ValueError(f"{SAMPLE} ships with the package and reads no data_dir; for the full "
                             f"data set in {data_dir} use dataset fashion_mnist")
        return load_sample()
    looked = []
    explicit = data_dir if data_dir not in (None, "") else os.environ.get(ENV_VAR) or None
    if explicit is not None:
        directory = Path(explicit).expanduser()
        origin = "data_dir" if data_dir not in (None, "") else f"${ENV_VAR}"
        if not directory.is_dir():
            raise DatasetNotFoundError(f"{origin} {directory} is not a directory")
        found = _idx_dir_for(name, directory)
        if found is None:
            subs = ", ".join(f"{directory / s}/" for s in _SUBDIRS[name])
            raise DatasetNotFoundError(
                f"{origin} {directory} holds no {name} IDX files: expected {FILES['train_images']}[.gz] "
                f"and the other three files there or in one of {subs}")
        return load_idx_dir(name, found)
    if name == "fashion_mnist":
        looked.append(str(DEBIAN_FASHION_MNIST))
        if DEBIAN_FASHION_MNIST.is_dir() and _idx_dir_for(name, DEBIAN_FASHION_MNIST) is not None:
            return load_idx_dir(name, _idx_dir_for(name, DEBIAN_FASHION_MNIST))
    if use_tfds:
        try:
            import tensorflow_datasets  # noqa: F401
        except ImportError:
            looked.append("tensorflow-datasets (not installed)")
        else:
            try:
                return _load_tfds(name)
            except Exception as e:  # network or download failures: say so, with the data hint
                looked.append(f"tensorflow-datasets (failed: {type(e).__name__}: {e})")
    raise DatasetNotFoundError(_how_to_get(name, looked))


def load_sample() -> ImageDataset:
    """The Fashion-MNIST sample shipped in `SAMPLE_DIR` (6,000 + 1,000 images, 600 / 100 per class),
    name ``fashion_mnist``, subset ``sample``."""
    if _idx_dir_for("fashion_mnist", SAMPLE_DIR) is None:
        raise DatasetNotFoundError(f"the Fashion-MNIST sample is missing from {SAMPLE_DIR}; reinstall "
                                   f"the package (it ships the four IDX files there)")
    return load_idx_dir("fashion_mnist", SAMPLE_DIR).replace(subset="sample")


# ----------------------------------------------------------------------------------- subsets


def take(ds: ImageDataset, n_train: int | None = None, n_test: int | None = None) -> ImageDataset:
    """The first ``n_train`` training and ``n_test`` test examples (``None``: all). Deterministic."""
    for what, n, total in (("n_train", n_train, ds.x_train.shape[0]), ("n_test", n_test, ds.x_test.shape[0])):
        if n is not None and not 1 <= n <= total:
            raise ValueError(f"{what}={n} must be between 1 and {total} for {ds.label}")
    tr = slice(None) if n_train is None else slice(0, n_train)
    te = slice(None) if n_test is None else slice(0, n_test)
    tags = [t for t in (ds.subset,
                        f"train[:{n_train}]" if n_train is not None and n_train < ds.x_train.shape[0] else "",
                        f"test[:{n_test}]" if n_test is not None and n_test < ds.x_test.shape[0] else "") if t]
    return ds.replace(x_train=ds.x_train[tr], y_train=ds.y_train[tr], x_test=ds.x_test[te],
                      y_test=ds.y_test[te], subset=",".join(tags))


def split_p1_p2(ds: ImageDataset, key: jax.Array, size: int = 30_000) -> tuple[ImageDataset, ImageDataset]:
    """Szegedy's P₁/P₂: two disjoint random halves (``size`` each) of the training set.

    The permutation comes from ``key`` only, so the split is the same on every machine. Both parts
    keep the full test set; ``subset`` is ``"P1"`` / ``"P2"``.
    """
    n = ds.x_train.shape[0]
    if not 1 <= size <= n // 2:
        raise ValueError(f"P1/P2 size {size} must be between 1 and {n // 2} (half of {n} training examples)")
    perm = np.asarray(jax.random.permutation(key, n))
    parts = []
    for tag, idx in (("P1", perm[:size]), ("P2", perm[size:2 * size])):
        idx = np.sort(idx)
        parts.append(ds.replace(x_train=ds.x_train[idx], y_train=ds.y_train[idx],
                                subset=",".join(t for t in (ds.subset, tag) if t)))
    return parts[0], parts[1]


def binary_subset(ds: ImageDataset, negative: int = 3, positive: int = 7) -> ImageDataset:
    """Two classes relabelled ``negative -> 0``, ``positive -> 1`` (Goodfellow §5: 3 vs 7 on MNIST)."""
    if negative == positive or not (0 <= negative < NUM_CLASSES and 0 <= positive < NUM_CLASSES):
        raise ValueError(f"classes must be two different labels in 0..9, got {negative}, {positive}")

    def pick(x, y):
        m = (y == negative) | (y == positive)
        return x[m], (y[m] == positive).astype(np.int32)

    x_train, y_train = pick(ds.x_train, ds.y_train)
    x_test, y_test = pick(ds.x_test, ds.y_test)
    return ds.replace(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
                      subset=",".join(t for t in (ds.subset, f"{negative}v{positive}") if t))


# Class names, for figure titles.
CLASS_NAMES = {
    "mnist": tuple(str(i) for i in range(10)),
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                      "Sneaker", "Bag", "Ankle boot"),
}
