"""The methods a practitioner would try on digits before a neural network, from scikit-learn
(the ``sklearn`` extra): a support vector machine with an RBF kernel and a random forest.

The SVM first projects the 784 pixels onto their 50 principal components (PCA), then
separates the classes with kernel k(x, x') = exp(-gamma |x - x'|^2), one-against-one, soft
margin C = 5, gamma = 1 / (50 * variance of the projected digits) ("scale"). The projection
keeps the digits' shapes and makes each kernel evaluation 16 times cheaper, so the SVM trains
on all 50,000 training digits in minutes, and can be refitted for every lesson of the
adaptivity measurement. The forest is 100 trees grown to purity on bootstrap samples, each
split chosen among sqrt(784) = 28 random pixels.

Neither can be taught a few examples on top of what it learned: ``teach`` refits from scratch
on the training digits and every example taught so far.
"""
import importlib.util
import pickle

import numpy as np

SVM_COMPONENTS, SVM_C = 50, 5.0
FOREST_TREES, QUICK_FOREST_TREES = 100, 20
INSTALL = 'pip install -e ".[sklearn]"'


def available():
    """Whether scikit-learn can be imported (checked without importing it: it is slow to load)."""
    return importlib.util.find_spec("sklearn") is not None


def require(what):
    if not available():
        raise SystemExit(f"pynn study compare: error: {what} needs scikit-learn, which is not "
                         f"installed: {INSTALL}")


def svm(seed=0):
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import SVC
    return make_pipeline(PCA(SVM_COMPONENTS, random_state=seed),
                         SVC(C=SVM_C, kernel="rbf", gamma="scale"))


def forest(quick=False, threads=1, seed=0):
    from sklearn.ensemble import RandomForestClassifier
    return RandomForestClassifier(QUICK_FOREST_TREES if quick else FOREST_TREES,
                                  n_jobs=threads, random_state=seed)


class Refitted:
    """A scikit-learn classifier with the study's face (fit, predict, teach, size_bytes).
    ``teach`` refits a fresh copy of the estimator on the training digits plus all the
    examples taught so far; it replaces the fitted model and the taught arrays, never changes
    them in place, so a shallow copy may be taught without touching the original."""

    def __init__(self, estimator):
        self.estimator = estimator

    def fit(self, X, y):
        self.X, self.y = X, y
        self.taught_X, self.taught_y = X[:0], y[:0]
        self.model = self._refit()
        return self

    def _refit(self):
        from sklearn.base import clone
        X = np.concatenate([self.X, self.taught_X]) if len(self.taught_y) else self.X
        y = np.concatenate([self.y, self.taught_y]) if len(self.taught_y) else self.y
        return clone(self.estimator).fit(X, y)

    def teach(self, X, y):
        self.taught_X = np.concatenate([self.taught_X, X])
        self.taught_y = np.concatenate([self.taught_y, y])
        self.model = self._refit()

    def predict(self, X):
        return self.model.predict(X)

    def size_bytes(self):
        """The fitted model as pickle stores it (support vectors and projection; trees)."""
        return len(pickle.dumps(self.model, protocol=pickle.HIGHEST_PROTOCOL))
