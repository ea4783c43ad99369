"""spheres.images.evaluate on hand-made logits: error, confidence and predictions for each kind of
output (softmax scores, RBF log-probabilities, one logistic logit), computed here by hand from the
definitions; chunked prediction against one unchunked call; label purity.

No model is trained: the logits are chosen so every expected number is a short closed form.
Tolerances are 1e-12 relative (float64 host arithmetic, a handful of operations) unless stated.
"""

import math

import numpy as np
import pytest

from spheres.images import evaluate as iev
from spheres.images import models as im
from spheres.sphere.evaluate import NonFiniteOutputError

SOFTMAX = im.SoftmaxRegression()
RBF = im.RBFNetwork()
LOGISTIC = im.LogisticRegression()


def test_softmax_evaluation_by_hand():
    """Three examples over three classes: softmax confidence of the argmax, error 1/3, and the
    confidence on the one mistake."""
    logits = np.array([[2.0, 0.0, 0.0],       # predicts 0, label 0
                       [0.0, 1.0, 3.0],       # predicts 2, label 1: the mistake
                       [0.5, 0.5, 4.0]])      # predicts 2, label 2
    y = np.array([0, 1, 2])
    ev = iev.evaluation_from_logits(SOFTMAX, logits, y)
    conf = [math.exp(2) / (math.exp(2) + 2), math.exp(3) / (1 + math.e + math.exp(3)),
            math.exp(4) / (2 * math.exp(0.5) + math.exp(4))]
    np.testing.assert_array_equal(ev.predictions, [0, 2, 2])
    assert ev.predictions.dtype == np.int32
    np.testing.assert_allclose(ev.confidence, conf, rtol=1e-12)
    assert ev.error == pytest.approx(1 / 3, rel=1e-12)
    assert ev.mean_confidence == pytest.approx(np.mean(conf), rel=1e-12)
    assert ev.confidence_on_mistakes == pytest.approx(conf[1], rel=1e-12)
    assert ev.as_dict() == {"error": ev.error, "mean_confidence": ev.mean_confidence,
                            "confidence_on_mistakes": ev.confidence_on_mistakes, "n": 3}


def test_softmax_probabilities_survive_large_logits():
    """Logits near 1000 overflow exp without the max shift; the probabilities stay exact."""
    p = iev.probabilities(SOFTMAX, np.array([[1000.0, 999.0, 990.0]]))
    ref = np.exp([0.0, -1.0, -10.0]) / np.exp([0.0, -1.0, -10.0]).sum()
    np.testing.assert_allclose(p[0], ref, rtol=1e-12)


def test_rbf_confidence_is_exp_of_the_score():
    """RBF scores are log-probabilities of independent classes: confidence exp(score), not softmax."""
    scores = np.log(np.array([[0.9, 0.2, 0.05],
                              [0.1, 0.3, 0.6]]))
    ev = iev.evaluation_from_logits(RBF, scores, np.array([0, 0]))
    np.testing.assert_array_equal(ev.predictions, [0, 2])
    np.testing.assert_allclose(ev.confidence, [0.9, 0.6], rtol=1e-12)
    np.testing.assert_allclose(iev.probabilities(RBF, scores), np.exp(scores), rtol=1e-12)
    assert ev.error == 0.5
    assert ev.confidence_on_mistakes == pytest.approx(0.6, rel=1e-12)


def test_logistic_prediction_and_confidence_from_one_logit():
    """One logit z: class 1 iff z > 0 (z = 0 is class 0), confidence σ(z) or 1 − σ(z)."""
    z = np.array([2.0, -1.0, 0.0, 0.5])
    y = np.array([1, 1, 0, 0])
    ev = iev.evaluation_from_logits(LOGISTIC, z, y)
    sig = 1 / (1 + np.exp(-z))
    np.testing.assert_array_equal(ev.predictions, [1, 0, 0, 1])
    np.testing.assert_allclose(ev.confidence, [sig[0], 1 - sig[1], 0.5, sig[3]], rtol=1e-12)
    p = iev.probabilities(LOGISTIC, z)
    assert p.shape == (4, 2)
    np.testing.assert_allclose(p[:, 1], sig, rtol=1e-12)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)
    assert ev.error == 0.5
    assert ev.confidence_on_mistakes == pytest.approx((1 - sig[1] + sig[3]) / 2, rel=1e-12)


def test_no_mistakes_gives_nan_confidence_on_mistakes():
    ev = iev.evaluation_from_logits(SOFTMAX, np.array([[3.0, 0.0], [0.0, 3.0]]), np.array([0, 1]))
    assert ev.error == 0.0 and math.isnan(ev.confidence_on_mistakes)
    assert ev.mean_confidence == pytest.approx(math.exp(3) / (math.exp(3) + 1), rel=1e-12)


def test_nonfinite_rows_counted_as_errors_and_left_out_of_confidence():
    """A row with one NaN logit: prediction −1, confidence NaN, an error; the means skip it."""
    logits = np.array([[1.0, 0.0], [np.nan, 5.0], [0.0, 2.0]])
    y = np.array([0, 1, 0])
    with pytest.raises(NonFiniteOutputError, match="1 of 3"):
        iev.evaluation_from_logits(SOFTMAX, logits, y)
    ev = iev.evaluation_from_logits(SOFTMAX, logits, y, nonfinite="count")
    c0, c2 = math.e / (math.e + 1), math.exp(2) / (math.exp(2) + 1)
    np.testing.assert_array_equal(ev.predictions, [0, -1, 1])
    assert math.isnan(ev.confidence[1])
    assert ev.error == pytest.approx(2 / 3, rel=1e-12)
    assert ev.mean_confidence == pytest.approx((c0 + c2) / 2, rel=1e-12)
    assert ev.confidence_on_mistakes == pytest.approx(c2, rel=1e-12)
    # a binary logit that is infinite is as unreadable as a NaN one
    ev = iev.evaluation_from_logits(LOGISTIC, np.array([np.inf, 1.0]), np.array([1, 1]), nonfinite="count")
    np.testing.assert_array_equal(ev.predictions, [-1, 1])
    assert ev.error == 0.5


def test_every_output_nonfinite_gives_nan_means():
    ev = iev.evaluation_from_logits(SOFTMAX, np.full((2, 3), np.nan), np.array([0, 1]), nonfinite="count")
    assert ev.error == 1.0 and math.isnan(ev.mean_confidence) and math.isnan(ev.confidence_on_mistakes)


@pytest.mark.parametrize("bad", ["ignore", "raise", None])
def test_nonfinite_option_is_validated(bad):
    with pytest.raises(ValueError, match="nonfinite must be 'error' or 'count'"):
        iev.evaluation_from_logits(SOFTMAX, np.zeros((1, 2)), np.zeros(1, int), nonfinite=bad)


def test_chunked_prediction_equals_one_call():
    """predict_logits over 7 examples in chunks of 3 (the last padded) equals the model applied once;
    an empty input is refused. Tolerance 1e-6: float32, the same matmul in another batch shape."""
    import jax
    x = np.asarray(jax.random.uniform(jax.random.key(0), (7, 28, 28, 1)))
    variables = SOFTMAX.init(jax.random.key(1), x[:1])
    ref = np.asarray(SOFTMAX.apply(variables, x))
    out = iev.predict_logits(SOFTMAX, variables, x, batch=3)
    assert out.shape == (7, 10)
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(iev.predict_logits(SOFTMAX, variables, x, batch=100), ref, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="empty input"):
        iev.predict_logits(SOFTMAX, variables, x[:0])
    # evaluate and predictions are predict_logits followed by the evaluation above
    y = np.argmax(ref, axis=1)
    y[0] = (y[0] + 1) % 10
    ev = iev.evaluate(SOFTMAX, variables, x, y, batch=3)
    assert ev.error == pytest.approx(1 / 7, rel=1e-12)
    np.testing.assert_array_equal(iev.predictions(SOFTMAX, variables, x), np.argmax(ref, axis=1))
    # images without a channel axis, one at a time
    np.testing.assert_array_equal(iev.predictions(SOFTMAX, variables, x[:5, ..., 0]), np.argmax(ref[:5], axis=1))
    np.testing.assert_allclose(iev.predict_logits(SOFTMAX, variables, x, batch=1), ref, rtol=1e-6, atol=1e-6)
    # the options are keyword-only
    with pytest.raises(TypeError):
        iev.predict_logits(SOFTMAX, variables, x, 3)
    with pytest.raises(TypeError):
        iev.evaluate(SOFTMAX, variables, x, y, 3)
    with pytest.raises(TypeError):
        iev.evaluation_from_logits(SOFTMAX, ref, y, "count")


@pytest.mark.parametrize("labels,num_classes,purity", [
    ([3], 10, 1.0), ([1, 1, 2], 10, 2 / 3), ([0, 1, 2, 3], 4, 0.25), ([9, 9, 9, 0, 0], 10, 0.6),
])
def test_label_purity(labels, num_classes, purity):
    assert iev.label_purity(np.array(labels), num_classes) == pytest.approx(purity, rel=1e-12)
