"""Image data: the IDX reader's validation, dataset lookup order, the P1/P2 split, Fashion-MNIST."""

import gzip

import jax
import numpy as np
import pytest

from spheres.images import data as idata

SAMPLE = idata.SAMPLE_DIR


def write_dataset(directory, n_train=40, n_test=20, *, gz=True, seed=0):
    """Four tiny IDX files with random 28x28 images and labels 0..9; returns the arrays."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {"train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "train_labels": (np.arange(n_train) % 10).astype(np.uint8),
              "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "test_labels": (np.arange(n_test) % 10).astype(np.uint8)}
    for key, stem in idata.FILES.items():
        idata.write_idx(directory / (stem + (".gz" if gz else "")), arrays[key])
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_idx_roundtrip_and_scaling(tmp_path, gz):
    arrays = write_dataset(tmp_path, gz=gz)
    ds = idata.load_idx_dir("mnist", tmp_path)
    assert ds.name == "mnist" and ds.source == str(tmp_path)
    assert ds.x_train.shape == (40, 28, 28) and ds.x_train.dtype == np.float32
    assert ds.y_train.dtype == np.int32 and ds.x_test.shape == (20, 28, 28)
    np.testing.assert_array_equal(np.round(ds.x_train * 255).astype(np.uint8), arrays["train_images"])
    np.testing.assert_array_equal(ds.y_test, arrays["test_labels"])
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0


def test_bad_magic_number(tmp_path):
    p = tmp_path / "labels"
    idata.write_idx(p, np.zeros((5,), np.uint8))
    with pytest.raises(idata.IDXError, match=r"magic number 0x00000801, expected 0x00000803"):
        idata.read_idx(p, expect_magic=idata.IMAGES_MAGIC)
    p.write_bytes(b"\x12\x34\x08\x01" + (5).to_bytes(4, "big") + bytes(5))
    with pytest.raises(idata.IDXError, match="bad magic number 0x12340801"):
        idata.read_idx(p)


def test_truncated_and_corrupt_files(tmp_path):
    p = tmp_path / "x.idx"
    idata.write_idx(p, np.zeros((3, 28, 28), np.uint8))
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(idata.IDXError, match=r"shape \(3, 28, 28\).*truncated or corrupt"):
        idata.read_idx(p)
    g = tmp_path / "x.gz"
    g.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + bytes(20))[:-6])
    with pytest.raises(idata.IDXError, match="corrupt gzip|truncated|holds"):
        idata.read_idx(g)
    with pytest.raises(idata.IDXError, match="file not found"):
        idata.read_idx(tmp_path / "nope")
    (tmp_path / "tiny").write_bytes(b"\x00")
    with pytest.raises(idata.IDXError, match="not an IDX file"):
        idata.read_idx(tmp_path / "tiny")
    f = tmp_path / "float"
    f.write_bytes(b"\x00\x00\x0d\x01" + (1).to_bytes(4, "big") + bytes(4))
    with pytest.raises(idata.IDXError, match="not unsigned byte"):
        idata.read_idx(f)


def test_header_bytes_checked_one_by_one(tmp_path):
    """Byte 0 and byte 1 must each be zero, byte 2 exactly 0x08 (a type byte below it is refused too),
    and a file that is exactly its header holds an empty array."""
    body = (5).to_bytes(4, "big") + bytes(5)
    for head, match in ((b"\x01\x00\x08\x01", "bad magic number 0x01000801"),
                        (b"\x00\x01\x08\x01", "bad magic number 0x00010801"),
                        (b"\x00\x00\x07\x01", r"element type 0x07 is not unsigned byte")):
        (tmp_path / "f").write_bytes(head + body)
        with pytest.raises(idata.IDXError, match=match):
            idata.read_idx(tmp_path / "f")
    idata.write_idx(tmp_path / "empty", np.zeros((0,), np.uint8))
    assert (tmp_path / "empty").stat().st_size == 8
    assert idata.read_idx(tmp_path / "empty").shape == (0,)


def test_pair_validation(tmp_path):
    idata.write_idx(tmp_path / "im", np.zeros((4, 28, 28), np.uint8))
    idata.write_idx(tmp_path / "lab3", np.zeros((3,), np.uint8))
    with pytest.raises(idata.IDXError, match="4 images but .* 3 labels"):
        idata.load_idx_pair(tmp_path / "im", tmp_path / "lab3")
    for bad in (10, 11, 255):
        idata.write_idx(tmp_path / "lab_bad", np.array([0, 1, bad, 2], np.uint8))
        with pytest.raises(idata.IDXError, match=f"label {bad} out of range 0..9"):
            idata.load_idx_pair(tmp_path / "im", tmp_path / "lab_bad")
    idata.write_idx(tmp_path / "small", np.zeros((4, 10, 10), np.uint8))
    idata.write_idx(tmp_path / "lab4", np.zeros((4,), np.uint8))
    with pytest.raises(idata.IDXError, match=r"shape \(10, 10\), expected \(28, 28\)"):
        idata.load_idx_pair(tmp_path / "small", tmp_path / "lab4")


def test_lookup_order_and_messages(tmp_path, monkeypatch):
    monkeypatch.delenv(idata.ENV_VAR, raising=False)
    # a given directory without the files is an error, never a silent fallback
    with pytest.raises(idata.DatasetNotFoundError, match="holds no mnist IDX files"):
        idata.load_dataset("mnist", tmp_path)
    with pytest.raises(idata.DatasetNotFoundError, match="is not a directory"):
        idata.load_dataset("mnist", tmp_path / "missing")
    # one file missing: names it
    d = tmp_path / "partial"
    write_dataset(d)
    (d / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(idata.IDXError, match="missing t10k-labels-idx1-ubyte"):
        idata.load_dataset("mnist", d)
    # files directly in the directory, from the environment variable
    write_dataset(tmp_path / "flat", n_train=30)
    monkeypatch.setenv(idata.ENV_VAR, str(tmp_path / "flat"))
    assert idata.load_dataset("mnist").x_train.shape[0] == 30
    # a sub-directory named after the dataset wins over files in the directory itself
    write_dataset(tmp_path / "flat" / "fashion_mnist", n_train=50)
    ds = idata.load_dataset("fashion_mnist")
    assert ds.x_train.shape[0] == 50 and ds.name == "fashion_mnist"
    # the explicit argument wins over the environment
    write_dataset(tmp_path / "arg", n_train=20)
    assert idata.load_dataset("mnist", tmp_path / "arg").x_train.shape[0] == 20
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        idata.load_dataset("cifar")


def test_no_data_anywhere_says_how_to_get_it(monkeypatch):
    monkeypatch.delenv(idata.ENV_VAR, raising=False)
    with pytest.raises(idata.DatasetNotFoundError) as e:
        idata.load_dataset("mnist", use_tfds=False)
    msg = str(e.value)
    assert "SPHERES_DATA" in msg and "data_dir" in msg and "tensorflow-datasets" in msg
    monkeypatch.setattr(idata, "DEBIAN_FASHION_MNIST", idata.Path("/nonexistent/fashion-mnist"))
    with pytest.raises(idata.DatasetNotFoundError, match="apt-get install dataset-fashion-mnist"):
        idata.load_dataset("fashion_mnist", use_tfds=False)


def _unique_dataset(n=100):
    x = np.zeros((n, 28, 28), np.float32)
    x[:, 0, 0] = np.arange(n) / n           # example i is identified by its first pixel
    y = (np.arange(n) % 10).astype(np.int32)
    return idata.ImageDataset("mnist", x, y, x[:10], y[:10], source="synthetic")


def test_p1_p2_split_is_disjoint_and_deterministic():
    ds = _unique_dataset(100)
    p1, p2 = idata.split_p1_p2(ds, jax.random.key(0), size=50)
    ids1 = set(np.round(p1.x_train[:, 0, 0] * 100).astype(int))
    ids2 = set(np.round(p2.x_train[:, 0, 0] * 100).astype(int))
    assert len(ids1) == len(ids2) == 50 and not ids1 & ids2 and ids1 | ids2 == set(range(100))
    assert p1.subset == "P1" and p2.subset == "P2" and p1.label == "mnist[P1]"
    np.testing.assert_array_equal(p1.y_train, np.round(p1.x_train[:, 0, 0] * 100).astype(int) % 10)
    again, _ = idata.split_p1_p2(ds, jax.random.key(0), size=50)
    np.testing.assert_array_equal(again.x_train, p1.x_train)
    other, _ = idata.split_p1_p2(ds, jax.random.key(1), size=50)
    assert not np.array_equal(other.x_train, p1.x_train)
    with pytest.raises(ValueError, match="must be between 1 and 50"):
        idata.split_p1_p2(ds, jax.random.key(0), size=51)


def test_take_and_binary_subset():
    ds = _unique_dataset(100)
    t = idata.take(ds, 30, 5)
    assert t.x_train.shape[0] == 30 and t.x_test.shape[0] == 5 and t.subset == "train[:30],test[:5]"
    b = idata.binary_subset(t, 3, 7)
    assert set(np.unique(b.y_train)) == {0, 1} and b.x_train.shape[0] == 6
    assert b.label == "mnist[train[:30],test[:5],3v7]"
    with pytest.raises(ValueError, match="n_train=300"):
        idata.take(ds, 300)
    assert idata.binary_subset(t).subset.endswith("3v7")            # Goodfellow §5's pair by default
    r = idata.binary_subset(t, 7, 3)                                  # either order; 7 is then class 0
    np.testing.assert_array_equal(r.y_train, 1 - b.y_train)
    for neg, pos in ((5, 5), (-1, 3), (3, -1), (10, 3), (3, 10)):
        with pytest.raises(ValueError, match="two different labels in 0..9"):
            idata.binary_subset(t, neg, pos)


def test_shipped_sample_is_real_balanced_fashion_mnist(monkeypatch):
    """The sample reads through the same loader as --data-dir: 6,000 + 1,000 images, 600 / 100 per
    class, uint8 pixels scaled to [0, 1], licence and provenance beside the files."""
    monkeypatch.setenv(idata.ENV_VAR, "/nonexistent")      # the sample never looks at the environment
    ds = idata.load_dataset(idata.SAMPLE)
    assert ds.name == "fashion_mnist" and ds.subset == "sample" and ds.label == "fashion_mnist[sample]"
    assert ds.source == str(SAMPLE)
    assert ds.x_train.shape == (6000, 28, 28) and ds.x_test.shape == (1000, 28, 28)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    np.testing.assert_array_equal(np.bincount(ds.y_train), np.full(10, 600))
    np.testing.assert_array_equal(np.bincount(ds.y_test), np.full(10, 100))
    # pixels are k/255 exactly (the IDX bytes, scaled), and images are real (not blank or noise):
    # Fashion-MNIST has a black background: 81% of the top row's pixels are 0 (uniform noise: 0.4%)
    np.testing.assert_array_equal(np.round(ds.x_train * 255) / 255, ds.x_train)
    assert (ds.x_train[:, 0, :] == 0).mean() > 0.7
    assert "MIT" in (SAMPLE / "LICENSE").read_text() and "Zalando" in (SAMPLE / "LICENSE").read_text()
    assert "default_rng(20261206)" in (SAMPLE / "README.md").read_text()
    # the same files through --data-dir give the same arrays
    again = idata.load_dataset("fashion_mnist", SAMPLE)
    np.testing.assert_array_equal(again.x_train, ds.x_train)
    with pytest.raises(ValueError, match="reads no data_dir"):
        idata.load_dataset(idata.SAMPLE, "/some/dir")


@pytest.mark.parametrize("damage", ["bad_magic", "truncated"])
def test_corrupt_copy_of_the_sample_gives_a_clear_error(tmp_path, damage):
    import shutil

    d = tmp_path / "fashion_mnist"
    shutil.copytree(SAMPLE, d)
    p = d / "t10k-images-idx3-ubyte.gz"
    raw = gzip.decompress(p.read_bytes())
    if damage == "bad_magic":
        p.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + raw[4:]))
        match = "t10k-images-idx3-ubyte.gz.*magic number 0x00000801, expected 0x00000803"
    else:
        p.write_bytes(gzip.compress(raw[:-784 * 3]))
        match = "t10k-images-idx3-ubyte.gz.*truncated or corrupt"
    with pytest.raises(idata.IDXError, match=match):
        idata.load_dataset("fashion_mnist", tmp_path)


def test_debian_location_is_found(monkeypatch, tmp_path):
    """With no data_dir and no $SPHERES_DATA, fashion_mnist is read from Debian's install location
    (here a copy of the sample put where the package would be)."""
    import shutil

    debian = tmp_path / "usr-share-datasets-fashion-mnist"
    shutil.copytree(SAMPLE, debian, ignore=shutil.ignore_patterns("*.md", "LICENSE"))
    monkeypatch.delenv(idata.ENV_VAR, raising=False)
    monkeypatch.setattr(idata, "DEBIAN_FASHION_MNIST", debian)
    assert idata.debian_fashion_mnist_installed()
    ds = idata.load_dataset("fashion_mnist", use_tfds=False)
    assert ds.name == "fashion_mnist" and ds.source == str(debian) and ds.subset == ""
    assert ds.x_train.shape == (6000, 28, 28)
    p1, p2 = idata.split_p1_p2(ds, jax.random.key(0), size=3000)
    assert p1.x_train.shape == p2.x_train.shape == (3000, 28, 28)


@pytest.mark.full_data
def test_full_fashion_mnist(monkeypatch):
    """The full data set where `load_dataset` finds it ($SPHERES_DATA or Debian's package): 60,000 +
    10,000 images, 6,000 / 1,000 per class. Deselected by default; `make test-full-data` runs it and
    it fails (does not skip) when the data is not there."""
    ds = idata.load_dataset("fashion_mnist", use_tfds=False)
    assert ds.name == "fashion_mnist"
    assert ds.x_train.shape == (60_000, 28, 28) and ds.x_test.shape == (10_000, 28, 28)
    assert ds.x_train.dtype == np.float32 and ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    np.testing.assert_array_equal(np.bincount(ds.y_train), np.full(10, 6000))
    np.testing.assert_array_equal(np.bincount(ds.y_test), np.full(10, 1000))
    p1, p2 = idata.split_p1_p2(ds, jax.random.key(0))
    assert p1.x_train.shape == p2.x_train.shape == (30_000, 28, 28)


def test_tfds_path_with_mock_data(monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets", reason="the tfds extra is missing: pip install -e '.[test]'")
    monkeypatch.delenv(idata.ENV_VAR, raising=False)
    with tfds.testing.mock_data(num_examples=12):
        ds = idata.load_dataset("mnist")
    assert ds.source == "tensorflow-datasets" and ds.name == "mnist"
    assert ds.x_train.shape == (12, 28, 28) and ds.x_train.dtype == np.float32
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    assert ds.y_train.min() >= 0 and ds.y_train.max() <= 9
