"""Small made-up tabular data and the scikit-learn pipelines trained on it (typed features)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

if TYPE_CHECKING:  # imported where used: most tests of typed features need neither
    import lightgbm
    import xgboost

CITIES = ["Bergen", "Oslo", "Trondheim"]
"""The training categories, in the order OneHotEncoder sorts them."""
LABELS = ["no", "yes"]


def customers(n: int = 80, seed: int = 0) -> pd.DataFrame:
    """city (string), age (float with gaps), income, member (bool), visits (int)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "city": rng.choice(CITIES, n),
            "age": rng.integers(18, 80, n).astype(np.float64),
            "income": rng.normal(50.0, 10.0, n).round(2),
            "member": rng.random(n) < 0.4,
            "visits": rng.integers(0, 20, n),
        }
    )
    frame.loc[::7, "age"] = np.nan
    return frame


def target(frame: pd.DataFrame) -> pd.Series:
    """A label the features explain, so probabilities move with them."""
    score = (frame["city"] == "Oslo") * 1.5 + (frame["income"] - 50) / 8 + frame["member"] * 1.0
    return (score + frame["visits"] / 10 > 1.2).map({True: "yes", False: "no"})


def city_pipeline(handle_unknown: Literal["error", "ignore"] = "ignore") -> Pipeline:
    """Pipeline(ColumnTransformer(OneHotEncoder(city), SimpleImputer+StandardScaler(age,
    income)), LogisticRegression) fitted on :func:`customers`."""
    frame = customers()[["city", "age", "income"]]
    columns = ColumnTransformer(
        [
            ("city", OneHotEncoder(handle_unknown=handle_unknown), ["city"]),
            ("numbers", make_pipeline(SimpleImputer(), StandardScaler()), ["age", "income"]),
        ]
    )
    return Pipeline([("columns", columns), ("model", LogisticRegression())]).fit(
        frame, target(customers())
    )


def habits_pipeline() -> Pipeline:
    """member (bool, passed through) and visits (int, scaled): a DataFrame without strings."""
    frame = customers()[["member", "visits"]]
    columns = ColumnTransformer(
        [("visits", StandardScaler(), ["visits"]), ("member", "passthrough", ["member"])]
    )
    return Pipeline([("columns", columns), ("model", LogisticRegression())]).fit(
        frame, target(customers())
    )


def categorical_frame(n: int = 120, seed: int = 0) -> pd.DataFrame:
    """city as a pandas ``category`` column (the training categories), age with gaps, income,
    visits: what LightGBM and XGBoost take natively."""
    frame = customers(n, seed)[["city", "age", "income", "visits"]].copy()
    frame["city"] = pd.Categorical(frame["city"], categories=CITIES)
    return frame


def lgb_categorical() -> lightgbm.LGBMClassifier:
    """A LightGBM classifier with city as a native categorical feature."""
    import lightgbm

    return lightgbm.LGBMClassifier(
        n_estimators=15, min_child_samples=5, random_state=0, verbose=-1
    ).fit(categorical_frame(), target(customers(120)))


def xgb_categorical() -> xgboost.XGBClassifier:
    """An XGBoost classifier trained with enable_categorical (city a native categorical)."""
    import xgboost

    labels = (target(customers(120)) == "yes").astype(int)
    return xgboost.XGBClassifier(
        n_estimators=15, max_depth=3, enable_categorical=True, tree_method="hist", random_state=0
    ).fit(categorical_frame(), labels)
