"""Write the Fashion-MNIST sample that ships in ``spheres/sample_data/fashion_mnist/``.

A seeded, class-balanced draw from the full Fashion-MNIST IDX files: 600 training images per class
(6,000) and 100 test images per class (1,000), in a seeded random order, written as gzip IDX files
(mtime 0, so the bytes depend only on the draw). Run from the repository root:

    python tools/make_fashion_mnist_sample.py [SOURCE_DIR]   # default /usr/share/datasets/fashion-mnist

SOURCE_DIR holds the four original files (Debian's ``dataset-fashion-mnist`` package installs them).
"""

from __future__ import annotations

import gzip
import hashlib
import sys
from pathlib import Path

import numpy as np

from spheres.images import data as idata

SEED = 20261206
PER_CLASS = {"train": 600, "test": 100}
OUT = Path(__file__).resolve().parent.parent / "spheres" / "sample_data" / "fashion_mnist"


def balanced_draw(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Indices: ``per_class`` drawn without replacement from each class, then shuffled."""
    picks = [rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in range(10)]
    idx = np.concatenate(picks)
    rng.shuffle(idx)
    return idx


def write_gz(path: Path, array: np.ndarray) -> None:
    """An IDX file, gzip level 9 with mtime 0 (byte-identical on every rerun)."""
    raw = path.with_suffix("")
    idata.write_idx(raw, array, compress=False)
    path.write_bytes(gzip.compress(raw.read_bytes(), compresslevel=9, mtime=0))
    raw.unlink()


def main(source: Path) -> None:
    rng = np.random.default_rng(SEED)
    OUT.mkdir(parents=True, exist_ok=True)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = idata.read_idx(source / f"{prefix}-images-idx3-ubyte.gz", expect_magic=idata.IMAGES_MAGIC)
        labels = idata.read_idx(source / f"{prefix}-labels-idx1-ubyte.gz", expect_magic=idata.LABELS_MAGIC)
        idx = balanced_draw(labels, PER_CLASS[split], rng)
        for kind, arr in (("images-idx3", images[idx]), ("labels-idx1", labels[idx])):
            path = OUT / f"{prefix}-{kind}-ubyte.gz"
            write_gz(path, np.ascontiguousarray(arr))
            print(f"{path.relative_to(OUT.parent.parent.parent)}  {arr.shape}  "
                  f"sha256 {hashlib.sha256(path.read_bytes()).hexdigest()[:16]}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/usr/share/datasets/fashion-mnist"))
