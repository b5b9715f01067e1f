"""Linear probe of frozen encoder features, always reported next to the random-encoder floor."""
from __future__ import annotations

import warnings

import numpy as np


def linear_probe_accuracy(train_x, train_y, test_x, test_y, seed: int = 0, max_iter: int = 500) -> float:
    """Standardise, fit multinomial logistic regression on train features, return test accuracy."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter, C=1.0, random_state=seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(np.asarray(train_x, dtype=np.float64), np.asarray(train_y))
    return float((clf.predict(np.asarray(test_x, dtype=np.float64)) == np.asarray(test_y)).mean())
