"""Two methods without training, to measure the network against: nearest centroid and
k-nearest neighbours. Both compare a digit with stored digits by squared Euclidean distance,

    |x - c|^2 = |x|^2 - 2 x.c + |c|^2,

whose middle term, for all digits against all stored ones at once, is one matrix product
X C^T: it runs in the C GEMM (pynn.ops.matmul). Both adapt to a new way of writing a digit by
storing examples of it (``teach``), with no retraining.
"""
import numpy as np

from .. import ops


def _store(X):
    """Stored digits as the GEMM wants them: transposed (d, m), and their squared norms."""
    return np.ascontiguousarray(X.T), np.einsum("ij,ij->i", X, X)


def _check(X, y=None):
    if not isinstance(X, np.ndarray) or X.dtype != np.float32 or X.ndim != 2:
        raise TypeError(f"X must be a float32 (n, d) array, got {getattr(X, 'dtype', type(X))} "
                        f"{getattr(X, 'shape', '')}")
    X = np.ascontiguousarray(X)
    if y is None:
        return X
    y = np.asarray(y)
    if y.shape != (X.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y must be {X.shape[0]} integer labels, got {y.dtype} {y.shape}")
    return X, y.astype(np.int64)


def squared_distances(X, C_T, C_norms):
    """(n, m) squared distances from every row of X (n, d) to every stored digit, given as
    the columns of C_T (d, m) (stored transposed, so the product streams its rows) with
    their squared norms C_norms (m,)."""
    d = ops.matmul(X, C_T)                        # x . c, in C
    d *= -2.0
    d += np.einsum("ij,ij->i", X, X)[:, None]
    d += C_norms[None, :]
    np.maximum(d, 0.0, out=d)                     # rounding can make 0 slightly negative
    return d


class NearestCentroid:
    """Each class is its prototypes (at first one: the mean of its training digits); a digit
    gets the class of its nearest prototype. ``teach`` adds the mean of the taught examples as
    a new prototype of their class, so one odd way of writing a digit gets its own centre."""

    name = "nearest centroid"

    def fit(self, X, y):
        X, y = _check(X, y)
        self.classes = np.unique(y)
        self.centroids = np.stack([X[y == c].mean(axis=0) for c in self.classes]).astype(np.float32)
        self.labels = self.classes.copy()
        self._C_T, self._norms = _store(self.centroids)
        return self

    def teach(self, X, y):
        X, y = _check(X, y)
        for c in np.unique(y):
            self.centroids = np.vstack([self.centroids, X[y == c].mean(axis=0, keepdims=True)])
            self.labels = np.append(self.labels, c)
        self.centroids = np.ascontiguousarray(self.centroids, dtype=np.float32)
        self._C_T, self._norms = _store(self.centroids)

    def predict(self, X, batch=2048):
        X = _check(X)
        out = np.empty(X.shape[0], dtype=np.int64)
        for s in range(0, X.shape[0], batch):
            out[s:s + batch] = self.labels[ops.argmax_rows(-squared_distances(X[s:s + batch], self._C_T, self._norms))]
        return out

    def size_bytes(self):
        return self.centroids.nbytes


class KNearest:
    """k-nearest neighbours: a digit gets the class most common among the k stored digits
    nearest to it; a tie goes to the tied class whose member is nearest. ``teach`` stores
    the taught examples beside the training digits (searched separately and merged, so that
    ``remember``ed queries need not be compared with all training digits again)."""

    name = "k-nearest neighbours"

    def __init__(self, k=3):
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        self.k = int(k)
        self.memo = {}

    def fit(self, X, y):
        self.X, self.y = _check(X, y)
        self._X_T, self._norms = _store(self.X)
        self.taught_X, self.taught_y = self.X[:0].copy(), self.y[:0].copy()
        self.memo = {}
        return self

    def teach(self, X, y):
        X, y = _check(X, y)
        self.taught_X = np.ascontiguousarray(np.vstack([self.taught_X, X]))
        self.taught_y = np.concatenate([self.taught_y, y])

    def _nearest(self, X, X_T, norms, k, batch=1024):
        """(distances, indices) of the k nearest columns of X_T for every row of X, nearest first."""
        k = min(k, X_T.shape[1])
        dist = np.empty((X.shape[0], k), dtype=np.float32)
        idx = np.empty((X.shape[0], k), dtype=np.int64)
        for s in range(0, X.shape[0], batch):
            d = squared_distances(X[s:s + batch], X_T, norms)
            part = np.argpartition(d, k - 1, axis=1)[:, :k] if k < d.shape[1] else \
                np.broadcast_to(np.arange(k), d.shape).copy()
            pd = np.take_along_axis(d, part, axis=1)
            order = np.argsort(pd, axis=1, kind="stable")
            idx[s:s + batch] = np.take_along_axis(part, order, axis=1)
            dist[s:s + batch] = np.take_along_axis(pd, order, axis=1)
        return dist, idx

    def neighbours(self, X, k=None):
        """The indices of the k nearest training digits of every row of X, nearest first (n, k)."""
        return self._nearest(_check(X), self._X_T, self._norms, k or self.k)[1]

    def remember(self, X, k):
        """Keep X's k nearest training digits, for later predictions on this same array."""
        self.memo[id(X)] = (X, self._nearest(_check(X), self._X_T, self._norms, k))

    def nearest_labels(self, X, k):
        """The labels of the k nearest stored digits (training and taught), nearest first."""
        X = _check(X)
        kept = self.memo.get(id(X))
        if kept is not None and kept[0] is X and kept[1][0].shape[1] >= k:
            dist, idx = kept[1]
        else:
            dist, idx = self._nearest(X, self._X_T, self._norms, k)
        dist, labels = dist[:, :k], self.y[idx[:, :k]]
        if len(self.taught_y):
            td, ti = self._nearest(X, *_store(self.taught_X), k)
            dist = np.concatenate([dist, td], axis=1)        # training digits first: they win ties
            labels = np.concatenate([labels, self.taught_y[ti]], axis=1)
            order = np.argsort(dist, axis=1, kind="stable")[:, :k]
            labels = np.take_along_axis(labels, order, axis=1)
        return labels

    @staticmethod
    def vote(labels, k):
        """Majority of the first k neighbours' labels; a tie goes to the nearest tied class."""
        labels = labels[:, :k]
        counts = np.zeros((labels.shape[0], int(labels.max(initial=0)) + 1))
        rows = np.arange(labels.shape[0])
        for r in range(labels.shape[1]):
            # each vote is 1 plus a tie-break 1e-3 * 2^-r: the nearest neighbour's outweighs
            # all farther ones together, and all of them together less than one vote
            np.add.at(counts, (rows, labels[:, r]), 1.0 + 1e-3 * 0.5 ** r)
        return counts.argmax(axis=1)

    def predict(self, X, k=None):
        k = k or self.k
        return self.vote(self.nearest_labels(X, k), k)

    def choose_k(self, X_val, y_val, ks=(1, 3, 5, 7, 9)):
        """Set k to the one with the lowest validation error; return {k: error}."""
        labels = self.nearest_labels(X_val, max(ks))
        errors = {k: float(np.mean(self.vote(labels, k) != y_val)) for k in ks}
        self.k = min(errors, key=lambda k: (errors[k], k))
        return errors

    def size_bytes(self):
        return self.X.nbytes + self.y.nbytes + self.taught_X.nbytes + self.taught_y.nbytes
