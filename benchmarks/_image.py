"""Fashion-MNIST and briefly trained image models for the attack benchmarks (cached per process).

The data come from `spheres.images.data.load_dataset`: full Fashion-MNIST when it is found
(``$SPHERES_DATA`` or Debian's ``dataset-fashion-mnist``; no network), else the sample that ships
with the package (6,000 + 1,000 images); `dataset_label` names the one used. Models are trained with the library's own loop
(`spheres.images.train.train_model`) for a short, fixed budget: the benchmarks need a model with a
real decision boundary, not a good one.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from spheres.images import data as image_data, models as im, train as image_train
from spheres.images.evaluate import evaluate


@functools.lru_cache(maxsize=1)
def dataset():
    """Full Fashion-MNIST if installed, else the shipped sample."""
    try:
        return image_data.load_dataset("fashion_mnist", use_tfds=False)
    except image_data.DatasetNotFoundError:
        return image_data.load_sample()


def dataset_label() -> str:
    """``fashion_mnist`` or ``fashion_mnist[sample]``: for the benchmark record."""
    return dataset().label


@functools.lru_cache(maxsize=8)
def trained(model: im.nn.Module, n_train: int, epochs: int = 1, lr: float = 1e-3,
            weight_decay: tuple = (0.0,)):
    """``(variables, test_accuracy)`` of ``model`` trained on the first ``n_train`` examples."""
    ds = dataset()
    settings = image_train.TrainSettings(epochs=epochs, batch=128, lr=lr, weight_decay=weight_decay)
    variables = image_train.train_model(model, settings, ds.x_train[:n_train], ds.y_train[:n_train],
                                        key=jax.random.key(0))
    ev = evaluate(model, variables, ds.x_test[:2000], ds.y_test[:2000])
    return variables, 1.0 - float(ev.error)


def test_examples(n: int):
    """The first ``n`` test images ``(n, 28, 28)`` float32 in [0, 1] and labels ``(n,)`` int32."""
    ds = dataset()
    return np.asarray(ds.x_test[:n], np.float32), np.asarray(ds.y_test[:n], np.int32)
