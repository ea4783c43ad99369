"""The CPU-tuned choices (row blocks of 2,048 per model call, im2col convolutions) are what "auto"
means on CPU only; elsewhere "auto" is the accelerator's form, and an environment variable
overrides it for a run or a machine."""

import jax
import pytest

from spheres import sharding
from spheres.images import models as im


@pytest.fixture
def gpu(monkeypatch):
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")


def test_auto_on_cpu_keeps_the_cpu_forms(monkeypatch):
    monkeypatch.delenv(sharding.EVAL_BLOCK_ENV, raising=False)
    monkeypatch.delenv(sharding.CONV_IMPL_ENV, raising=False)
    assert jax.default_backend() == "cpu"
    assert sharding.eval_block("auto") == sharding.AUTO_CPU_BLOCK == 2048
    assert sharding.conv_impl("auto") == "im2col"
    assert sharding.eval_block(64) == 64 and sharding.eval_block(None) is None
    assert sharding.conv_impl("xla") == "xla"


def test_auto_off_cpu_is_the_accelerator_form(gpu, monkeypatch):
    monkeypatch.delenv(sharding.EVAL_BLOCK_ENV, raising=False)
    monkeypatch.delenv(sharding.CONV_IMPL_ENV, raising=False)
    assert sharding.eval_block("auto") is None           # the whole batch in one call
    assert sharding.conv_impl("auto") == "xla"            # nn.Conv / nn.max_pool
    assert sharding.conv_impl("im2col") == "im2col"       # an explicit choice stays


@pytest.mark.parametrize("value,block", [("none", None), ("512", 512), ("auto", None)])
def test_environment_overrides_auto(gpu, monkeypatch, value, block):
    monkeypatch.setenv(sharding.EVAL_BLOCK_ENV, value)
    monkeypatch.setenv(sharding.CONV_IMPL_ENV, "im2col")
    assert sharding.eval_block("auto") == block
    assert sharding.conv_impl("auto") == "im2col"


def test_bad_overrides_name_the_variable(monkeypatch):
    monkeypatch.setenv(sharding.EVAL_BLOCK_ENV, "-3")
    with pytest.raises(ValueError, match="SPHERES_EVAL_BLOCK"):
        sharding.eval_block("auto")
    monkeypatch.setenv(sharding.CONV_IMPL_ENV, "cudnn")
    with pytest.raises(ValueError, match="SPHERES_CONV_IMPL"):
        sharding.conv_impl("auto")


def test_convnet_auto_is_im2col_on_cpu(monkeypatch):
    monkeypatch.delenv(sharding.CONV_IMPL_ENV, raising=False)
    m = im.ConvNet((4, 6), 12)
    assert m.conv_impl == "auto"
    v = im.init_variables(m, jax.random.key(0))
    x = jax.random.uniform(jax.random.key(1), (3, 28, 28))
    jaxpr = str(jax.make_jaxpr(lambda x: m.apply(v, x))(x))
    assert "conv_general_dilated" not in jaxpr                     # im2col: slices and a matmul
    monkeypatch.setenv(sharding.CONV_IMPL_ENV, "xla")
    assert "conv_general_dilated" in str(jax.make_jaxpr(lambda x: m.apply(v, x))(x))
