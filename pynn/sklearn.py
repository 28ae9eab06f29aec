"""pynn's network as a scikit-learn classifier, to put in a Pipeline, a GridSearchCV or any
other tool that takes an estimator:

    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from pynn.sklearn import NetworkClassifier

    model = make_pipeline(StandardScaler(), NetworkClassifier(hidden=(64,), epochs=20))
    model.fit(X_train, y_train).score(X_test, y_test)

Inside is a pynn.Network with one input per feature, the hidden layers asked for and one
softmax output per class, trained with cross-entropy by ``Network.fit``. Needs the sklearn
extra. (This module is pynn.sklearn; the imports below are absolute, so they reach the
scikit-learn package, never this module.)
"""
import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError:
    raise ImportError("pynn.sklearn needs scikit-learn, which pynn installs only with the "
                      "sklearn extra: pip install 'pynn-digits[sklearn]'") from None

from .cli import DEFAULT_LR        # the pynn command's rates: one table for both
from .network import Network
from .optim import SGD, Adam


class NetworkClassifier(ClassifierMixin, BaseEstimator):
    """A neural network classifier: features in, the probability of each class out.

    hidden        the widths of the hidden layers, e.g. (800,); () is softmax regression
    activation    the hidden layers' function: relu, sigmoid, tanh or linear
    epochs        passes over the training data in ``fit`` (``partial_fit`` makes one)
    batch_size    samples per step of gradient descent
    optimizer     "sgd" (with ``momentum``) or "adam"
    lr            the learning rate (None: 0.05 for sgd, 0.001 for adam)
    l2            L2 weight decay: adds l2 * w to every gradient
    schedule      the learning rate over the epochs of ``fit``: constant, step or cosine
    dropout       drop each hidden unit with this probability while training
    random_state  seeds the initial weights and the shuffling: an int is the network's seed,
                  so the same settings give the same network; None draws one

    Labels may be of any kind (numbers, strings): ``classes_`` holds them sorted, and the
    network's output k is the probability of ``classes_[k]``. Inputs are float32 (float64
    and integers are converted). Fitted: ``net_`` (the pynn.Network), ``classes_``,
    ``n_features_in_``, ``optimizer_`` (its state goes on across ``partial_fit`` calls) and
    ``history_`` (the loss of every epoch).
    """

    def __init__(self, hidden=(100,), activation="relu", epochs=10, batch_size=32,
                 optimizer="sgd", lr=None, momentum=0.9, l2=0.0, schedule="constant",
                 dropout=0.0, random_state=0):
        self.hidden = hidden
        self.activation = activation
        self.epochs = epochs
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.lr = lr
        self.momentum = momentum
        self.l2 = l2
        self.schedule = schedule
        self.dropout = dropout
        self.random_state = random_state

    def fit(self, X, y):
        """Train a new network on X (n_samples, n_features) and labels y (n_samples,)."""
        X, y = validate_data(self, X, y, dtype=np.float32, order="C")
        check_classification_targets(y)
        self._start(X.shape[1], np.unique(y))
        self.history_ = self.net_.fit(X, self._codes(y), epochs=self.epochs,
                                      batch_size=self.batch_size, optimizer=self.optimizer_,
                                      schedule=self.schedule, score=False)
        return self

    def partial_fit(self, X, y, classes=None):
        """One more pass over X, y with the same network and optimiser: for data that comes
        in parts, or for teaching a trained classifier new examples. The first call, on an
        unfitted classifier, makes the network and needs ``classes``, every label there is."""
        first = not hasattr(self, "net_")
        if first and classes is None:
            raise ValueError("the first partial_fit needs classes: every label there is")
        X, y = validate_data(self, X, y, dtype=np.float32, order="C", reset=first)
        check_classification_targets(y)
        if first:
            self._start(X.shape[1], np.unique(classes))
            self.history_ = {"loss": []}
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(f"classes {np.unique(classes)} are not the ones the classifier "
                             f"was fitted with, {self.classes_}")
        self.net_.fit(X, self._codes(y), epochs=1, batch_size=self.batch_size,
                      optimizer=self.optimizer_, score=False, history=self.history_)
        return self

    def predict_proba(self, X):
        """The probability of each class for every sample, (n_samples, n_classes) float32,
        columns in the order of ``classes_``."""
        check_is_fitted(self, "net_")
        X = validate_data(self, X, dtype=np.float32, order="C", reset=False)
        return self.net_.predict_proba(X)

    def predict(self, X):
        """The most likely class of every sample."""
        check_is_fitted(self, "net_")
        X = validate_data(self, X, dtype=np.float32, order="C", reset=False)
        return self.classes_[self.net_.predict(X)]

    def _start(self, n_features, classes):
        """A new network and optimiser for the current settings (``net_``, ``optimizer_``,
        ``classes_``), set together once all of them are made."""
        hidden = (self.hidden,) if isinstance(self.hidden, (int, np.integer)) else self.hidden
        if (isinstance(hidden, str) or not isinstance(hidden, (tuple, list))
                or any(isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1
                       for h in hidden)):
            raise ValueError(f"hidden must be a tuple of positive layer widths, like (800,); "
                             f"got {self.hidden!r}")
        if self.optimizer not in DEFAULT_LR:
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        lr = DEFAULT_LR[self.optimizer] if self.lr is None else self.lr
        if self.optimizer == "sgd":
            optimizer = SGD(lr=lr, momentum=self.momentum, weight_decay=self.l2)
        else:
            optimizer = Adam(lr=lr, weight_decay=self.l2)
        if isinstance(self.random_state, (int, np.integer)) and not isinstance(self.random_state, bool):
            seed = int(self.random_state)
        else:
            seed = int(check_random_state(self.random_state).randint(2 ** 31))
        net = Network([n_features, *hidden, len(classes)], self.activation, "softmax",
                      "cross_entropy", seed=seed, dropout=self.dropout)
        self.net_, self.optimizer_, self.classes_ = net, optimizer, classes

    def _codes(self, y):
        """Labels as their places in ``classes_``, 0..n_classes-1; ValueError for a label
        that is not there."""
        known = np.isin(y, self.classes_)
        if not known.all():
            raise ValueError(f"labels {np.unique(y[~known])} are not among the classes "
                             f"{self.classes_}")
        return np.searchsorted(self.classes_, y).astype(np.int64)
