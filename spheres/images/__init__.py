"""Image data, models, training, evaluation and attacks for the Szegedy and Goodfellow experiments.

One module per concern:

* `data`: MNIST-format IDX files, Fashion-MNIST and its shipped sample, subsets, the P₁/P₂ split;
* `models`: the papers' Flax models by name (`models.paper_model`) and `models.logit_fns`, the
  one builder of a model's eval-mode functions; `layers`: the im2col convolution and pooling;
  `weights`: a model's kernels in forward order and Szegedy's per-layer weight decay;
* `train`: the one image trainer (`train.train_model`, `train.train_or_load`, parameters on disk);
* `evaluate`: logits in chunks, error rate and confidence;
* `adversarial`: L-BFGS and FGSM examples, label-free robustness, transfer, Lipschitz bounds;
* `plots`: figures (``matplotlib.figure.Figure``, never pyplot).

The experiments that use them are ``spheres/experiments/szegedy_*.py`` and ``goodfellow_*.py``.
"""
