"""The model zoo: every archived model loads, and its error on the shipped sample's test images
(1,000 of the full test set's 10,000, drawn class-balanced) agrees with the clean error its run
recorded on the full test set."""

import math

import numpy as np
import pytest

from spheres import zoo
from spheres.images import data, evaluate

MODELS = zoo.list_models()


def test_zoo_lists_the_archived_paper_models():
    names = {m.name for m in MODELS}
    assert {"szegedy/FC10(1e-4)", "szegedy/FC100-100-10", "goodfellow/softmax"} <= names
    for m in MODELS:
        assert m.clean_error is not None and 0 <= m.clean_error < 0.5, m
        assert m.dataset.startswith("fashion_mnist") and m.paper_row


def _test_set(entry, ds):
    if entry.model == "logreg":
        b = data.binary_subset(ds, 3, 7)
        return b.x_test, b.y_test
    return ds.x_test, ds.y_test


@pytest.mark.parametrize("name", [m.name for m in MODELS])
def test_model_loads_and_matches_its_recorded_error(name):
    module, variables, entry = zoo.load(name)
    x, y = _test_set(entry, data.load_dataset(data.SAMPLE))
    err = float(evaluate.evaluate(module, variables, x, y).error)
    p, n = entry.clean_error, len(y)
    # a subsample of the recorded test set: binomial sd sqrt(p(1-p)/n) (the draw is without
    # replacement, so this overstates it); 4 sd + 1/n covers it; a wrong load gives ~90% error
    assert abs(err - p) <= 4 * math.sqrt(max(p * (1 - p), 1 / n) / n) + 1 / n, (err, p)


@pytest.mark.full_data
@pytest.mark.parametrize("name", [m.name for m in MODELS])
def test_model_reproduces_its_recorded_error_on_the_full_test_set(name):
    module, variables, entry = zoo.load(name)
    x, y = _test_set(entry, data.load_dataset("fashion_mnist", use_tfds=False))
    err = float(evaluate.evaluate(module, variables, x, y).error)
    assert err == pytest.approx(entry.clean_error, abs=1e-12)


def test_unknown_name_says_what_exists():
    with pytest.raises(KeyError, match="did you mean 'szegedy/FC100-100-10'"):
        zoo.load("szegedy/FC100-100-1")
