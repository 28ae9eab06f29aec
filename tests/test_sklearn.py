"""pynn.sklearn.NetworkClassifier: scikit-learn's own checks, and the tools that take an
estimator (Pipeline, GridSearchCV) on scikit-learn's small digits set."""
import pickle

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="the sklearn extra is not installed")

from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import GridSearchCV, train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import pynn  # noqa: E402
from pynn.sklearn import NetworkClassifier  # noqa: E402


@parametrize_with_checks([NetworkClassifier(hidden=(16,), epochs=20, batch_size=16)])
def test_the_classifier_passes_scikit_learns_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def digits():
    """scikit-learn's 8x8 digits (1797 samples, 64 features of 0..16), split 3 to 1."""
    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)


def test_a_pipeline_with_a_scaler_reads_digits(digits):
    X_train, X_test, y_train, y_test = digits
    model = make_pipeline(StandardScaler(), NetworkClassifier(hidden=(64,), epochs=15))
    assert model.fit(X_train, y_train).score(X_test, y_test) > 0.95


def test_grid_search_tries_every_setting_and_keeps_the_best(digits):
    X_train, X_test, y_train, y_test = digits
    grid = GridSearchCV(make_pipeline(StandardScaler(), NetworkClassifier(epochs=10)),
                        {"networkclassifier__hidden": [(4,), (64,)],
                         "networkclassifier__lr": [0.05, 1e-6]}, cv=3)
    grid.fit(X_train, y_train)
    assert len(grid.cv_results_["params"]) == 4
    # four hidden units, or a rate too small to move the weights, learn less than 64 do
    assert grid.best_params_ == {"networkclassifier__hidden": (64,), "networkclassifier__lr": 0.05}
    assert grid.score(X_test, y_test) > 0.95


def test_labels_of_any_kind_come_back_as_given(digits):
    X_train, X_test, y_train, y_test = digits
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                      "nine"])
    model = NetworkClassifier(hidden=(32,), epochs=10).fit(X_train / 16, names[y_train])
    assert list(model.classes_) == sorted(names)
    predicted = model.predict(X_test / 16)
    assert predicted.dtype == names.dtype and np.mean(predicted == names[y_test]) > 0.9
    proba = model.predict_proba(X_test / 16)
    assert proba.shape == (len(y_test), 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert np.array_equal(model.classes_[proba.argmax(axis=1)], predicted)


def test_float64_input_trains_the_network_float32_input_trains(digits):
    X_train, _, y_train, _ = digits
    X = X_train / 16
    a = NetworkClassifier(hidden=(8,), epochs=2).fit(X, y_train)
    b = NetworkClassifier(hidden=(8,), epochs=2).fit(X.astype(np.float32), y_train)
    assert a.net_.weights[0].dtype == np.float32
    for wa, wb in zip(a.net_.parameters(), b.net_.parameters()):
        assert np.array_equal(wa, wb)


def test_the_classifier_is_the_network_pynn_builds_and_trains(digits):
    X_train, X_test, y_train, _ = digits
    X = (X_train / 16).astype(np.float32)
    model = NetworkClassifier(hidden=(20, 12), activation="tanh", epochs=3, batch_size=50,
                              optimizer="adam", lr=0.002, random_state=7).fit(X, y_train)
    net = pynn.Network([64, 20, 12, 10], "tanh", seed=7)
    net.fit(X, y_train, epochs=3, batch_size=50, optimizer=pynn.Adam(lr=0.002))
    for mine, theirs in zip(model.net_.parameters(), net.parameters()):
        assert np.array_equal(mine, theirs)
    X_test = (X_test / 16).astype(np.float32)
    assert np.array_equal(model.predict_proba(X_test), net.predict_proba(X_test))


def test_partial_fit_goes_on_training_the_same_network(digits):
    X_train, X_test, y_train, y_test = digits
    X, y = X_train / 16, y_train
    model = NetworkClassifier(hidden=(32,))
    for start in range(0, len(y), 300):      # the data in parts, one pass each
        model.partial_fit(X[start:start + 300], y[start:start + 300], classes=np.arange(10))
    net = model.net_
    first = model.score(X_test / 16, y_test)
    for _ in range(5):
        model.partial_fit(X, y)
    assert model.net_ is net and len(model.history_["loss"]) == 5 + (len(y) + 299) // 300
    assert model.history_["loss"][-1] < model.history_["loss"][0]
    assert model.score(X_test / 16, y_test) > max(first, 0.9)


def test_partial_fit_says_what_is_missing_or_unknown(digits):
    X_train, _, y_train, _ = digits
    model = NetworkClassifier(hidden=(8,))
    with pytest.raises(ValueError, match="the first partial_fit needs classes"):
        model.partial_fit(X_train, y_train)
    model.partial_fit(X_train[y_train < 5], y_train[y_train < 5], classes=np.arange(5))
    with pytest.raises(ValueError, match=r"labels \[5 6 7 8 9\] are not among the classes"):
        model.partial_fit(X_train, y_train)
    with pytest.raises(ValueError, match="are not the ones the classifier was fitted with"):
        model.partial_fit(X_train, y_train, classes=np.arange(10))


@pytest.mark.parametrize("setting, says", [
    ({"hidden": (8, 0)}, "hidden must be a tuple of positive layer widths"),
    ({"hidden": (1.5,)}, "hidden must be a tuple of positive layer widths"),
    ({"hidden": "800"}, "hidden must be a tuple of positive layer widths"),
    ({"optimizer": "lbfgs"}, "optimizer must be 'sgd' or 'adam'"),
    ({"activation": "gelu"}, "activation must be one of"),
    ({"lr": -1.0}, "lr must be"),
    ({"dropout": 1.0}, "dropout must be"),
    ({"schedule": "sometimes"}, "schedule must be one of"),
    ({"epochs": -1}, "epochs must be"),
])
def test_a_bad_setting_is_named_when_fitting(setting, says, digits):
    X_train, _, y_train, _ = digits
    model = NetworkClassifier(**setting)             # scikit-learn's rule: __init__ only stores
    with pytest.raises(ValueError, match=says):
        model.fit(X_train[:50], y_train[:50])


def test_a_pickled_classifier_predicts_the_same(digits):
    X_train, X_test, y_train, _ = digits
    model = NetworkClassifier(hidden=(16,), epochs=2).fit(X_train / 16, y_train)
    again = pickle.loads(pickle.dumps(model))
    assert np.array_equal(again.predict_proba(X_test / 16), model.predict_proba(X_test / 16))
