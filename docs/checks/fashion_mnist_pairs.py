"""Rank the 45 Fashion-MNIST class pairs by how well a linear classifier separates them.

Goodfellow et al. (§5) train logistic regression on MNIST 3 vs 7 (1.6% error). This script fits a
ridge-regression linear classifier (λ = 1, labels ±1) on the full training set of each pair and
prints its test error, easiest first; the logistic-regression experiments use Sandal vs Ankle boot
(2.5%), the footwear pair nearest the paper's difficulty. Needs the full data set:

    python docs/checks/fashion_mnist_pairs.py
"""
import numpy as np
from spheres.images import data
ds = data.load_dataset("fashion_mnist", use_tfds=False)
X = ds.x_train.reshape(len(ds.x_train), -1).astype(np.float64); Xt = ds.x_test.reshape(len(ds.x_test), -1).astype(np.float64)
res=[]
for a in range(10):
    for b in range(a+1,10):
        m = (ds.y_train==a)|(ds.y_train==b); mt=(ds.y_test==a)|(ds.y_test==b)
        A = np.c_[X[m], np.ones(m.sum())]; t = np.where(ds.y_train[m]==b,1.0,-1.0)
        w = np.linalg.solve(A.T@A + 1.0*np.eye(A.shape[1]), A.T@t)
        At = np.c_[Xt[mt], np.ones(mt.sum())]; tt=np.where(ds.y_test[mt]==b,1.0,-1.0)
        res.append((float(np.mean(np.sign(At@w)!=tt)), a, b))
res.sort()
names=data.CLASS_NAMES["fashion_mnist"]
for e,a,b in res: print(f"{e:.4f} {a}:{names[a]} vs {b}:{names[b]}", flush=True)
