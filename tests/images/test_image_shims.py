"""The old module names ``spheres.image_data`` / ``image_models`` / ``image_train`` still work for one
release: importing them warns, and every name users imported from them is the new module's object."""

import importlib
import sys

import pytest

from spheres.images import data, evaluate, layers, models, train, weights

OLD_NAMES = {
    "spheres.image_data": (data, [
        "CLASS_NAMES", "DATASETS", "DEBIAN_FASHION_MNIST", "DatasetNotFoundError", "ENV_VAR", "FILES", "IDXError",
        "IMAGES_MAGIC", "IMAGE_SHAPE", "ImageDataset", "LABELS_MAGIC", "NUM_CLASSES", "SAMPLE", "SAMPLE_DIR",
        "binary_subset", "debian_fashion_mnist_installed", "load_dataset", "load_idx_dir", "load_idx_pair",
        "load_sample", "read_idx", "split_p1_p2", "take", "to_unit_interval", "write_idx"]),
    "spheres.image_models": (models, [
        "AutoencoderClassifier", "ConvNet", "INPUT_SHAPE", "LogisticRegression", "MLP", "Maxout", "ModelRecipe",
        "NUM_CLASSES", "RBFNetwork", "SoftmaxRegression", "apply_fn", "as_nhwc", "batch_apply_fn",
        "class_probabilities", "count_params", "features_fn", "flatten_images", "init_variables", "logit_fn",
        "paper_model", "predict_classes"]),
    "spheres.image_train": (train, [
        "AdversarialKind", "EpochMetrics", "NonFiniteError", "TrainSettings", "TrainState", "create_state",
        "load_params", "make_epoch_runner", "make_optimizer", "objective", "params_file", "per_example_loss",
        "save_params", "settings_for", "train_model", "train_or_load", "train_recipe", "train_step"]),
}
MOVED = {  # old module -> {old name: its new home}
    "spheres.image_models": {"im2col": layers.im2col, "Conv2D": layers.Conv2D, "max_pool_2x2": layers.max_pool_2x2,
                             "decayed_kernels": weights.decayed_kernels,
                             "weight_decay_penalty": weights.weight_decay_penalty},
    "spheres.image_train": {"evaluate": evaluate.evaluate, "Evaluation": evaluate.Evaluation,
                            "predict_logits": evaluate.predict_logits,
                            "evaluation_from_logits": evaluate.evaluation_from_logits,
                            "probabilities_np": evaluate.probabilities, "_safe": train.safe_name},
}


@pytest.mark.parametrize("old", sorted(OLD_NAMES))
def test_old_module_warns_and_reexports(old, monkeypatch):
    monkeypatch.delitem(sys.modules, old, raising=False)
    with pytest.warns(DeprecationWarning, match=rf"{old} is now spheres\.images\."):
        mod = importlib.import_module(old)
    new, names = OLD_NAMES[old]
    for name in names:
        assert getattr(mod, name) is getattr(new, name), (old, name)
    for name, obj in MOVED.get(old, {}).items():
        assert getattr(mod, name) is obj, (old, name)
