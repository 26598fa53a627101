"""Tiny real XGBoost, LightGBM, CatBoost and MLflow models, fitted with fixed seeds.

Iris (three classes, four features) and breast cancer (two classes, thirty features) are
scikit-learn's bundled data sets, so nothing is downloaded. Each builder writes one artifact
and returns the library's own probabilities on :func:`expected_rows`: the sample rows
(:data:`IRIS_ROWS` or :data:`CANCER_ROWS`) followed by two sets of fresh rows.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import catboost
import joblib
import lightgbm
import numpy as np
import numpy.typing as npt
import pandas as pd
import xgboost
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.ensemble import RandomForestClassifier

SEED = 3
IRIS_X, IRIS_Y = load_iris(return_X_y=True)
CANCER_X, CANCER_Y = load_breast_cancer(return_X_y=True)
IRIS_ROWS: npt.NDArray[np.float64] = IRIS_X[::7].astype(np.float64)
"""22 rows covering all three classes."""
CANCER_ROWS: npt.NDArray[np.float64] = CANCER_X[::29].astype(np.float64)
"""20 rows of both classes."""
IRIS_FRESH: npt.NDArray[np.float64] = IRIS_X[3::7].astype(np.float64)
CANCER_FRESH: npt.NDArray[np.float64] = CANCER_X[3::29].astype(np.float64)
"""Rows in no sample, for a test that needs model calls (rows no prediction cache holds)."""
IRIS_AFTER_RELOAD: npt.NDArray[np.float64] = IRIS_X[5::7].astype(np.float64)
CANCER_AFTER_RELOAD: npt.NDArray[np.float64] = CANCER_X[5::29].astype(np.float64)
"""More such rows, for the answers of a reloaded version."""
IRIS_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
Probabilities = npt.NDArray[np.float64]


def xgb_classifier(binary: bool) -> xgboost.XGBClassifier:
    x, y = (CANCER_X, CANCER_Y) if binary else (IRIS_X, IRIS_Y)
    return xgboost.XGBClassifier(n_estimators=20, max_depth=3, random_state=SEED).fit(x, y)


def lgb_classifier(binary: bool) -> lightgbm.LGBMClassifier:
    x, y = (CANCER_X, CANCER_Y) if binary else (IRIS_X, IRIS_Y)
    return lightgbm.LGBMClassifier(n_estimators=20, random_state=SEED, verbose=-1).fit(x, y)


def cb_classifier(binary: bool) -> catboost.CatBoostClassifier:
    x, y = (CANCER_X, CANCER_Y) if binary else (IRIS_X, IRIS_Y)
    model = catboost.CatBoostClassifier(
        iterations=20,
        depth=3,
        random_seed=SEED,
        verbose=0,
        thread_count=1,
        allow_writing_files=False,
    )
    return model.fit(x, y)


def forest() -> RandomForestClassifier:
    return RandomForestClassifier(n_estimators=20, max_depth=6, random_state=SEED).fit(
        IRIS_X, IRIS_Y
    )


def rows_for(binary: bool) -> npt.NDArray[np.float64]:
    return CANCER_ROWS if binary else IRIS_ROWS


def fresh_rows_for(binary: bool) -> npt.NDArray[np.float64]:
    return CANCER_FRESH if binary else IRIS_FRESH


def row_sets(binary: bool) -> list[npt.NDArray[np.float64]]:
    """The sample rows, the fresh rows and the rows for after a reload."""
    if binary:
        return [CANCER_ROWS, CANCER_FRESH, CANCER_AFTER_RELOAD]
    return [IRIS_ROWS, IRIS_FRESH, IRIS_AFTER_RELOAD]


def expected_rows(binary: bool) -> npt.NDArray[np.float64]:
    """Every row set, one after the other: what builders return probabilities for."""
    return np.vstack(row_sets(binary))


def probabilities(model: Any, binary: bool) -> Probabilities:
    return np.asarray(model.predict_proba(expected_rows(binary)), dtype=np.float64)


Builder = Callable[[Path], Probabilities]


def save_xgb_native(suffix: str, binary: bool) -> Builder:
    def build(path: Path) -> Probabilities:
        model = xgb_classifier(binary)
        model.save_model(path.with_suffix(suffix))
        return probabilities(model, binary)

    return build


def save_joblib(make: Callable[[bool], Any], binary: bool) -> Builder:
    def build(path: Path) -> Probabilities:
        model = make(binary)
        joblib.dump(model, path.with_suffix(".joblib"))
        return probabilities(model, binary)

    return build


def save_lgb_native(binary: bool) -> Builder:
    def build(path: Path) -> Probabilities:
        model = lgb_classifier(binary)
        model.booster_.save_model(path.with_suffix(".txt"))
        return probabilities(model, binary)

    return build


def save_catboost(binary: bool) -> Builder:
    def build(path: Path) -> Probabilities:
        model = cb_classifier(binary)
        model.save_model(str(path.with_suffix(".cbm")))
        return probabilities(model, binary)

    return build


def iris_signature() -> Any:
    from mlflow.models import infer_signature

    return infer_signature(pd.DataFrame(IRIS_X, columns=IRIS_FEATURES), IRIS_Y)


def save_mlflow(flavour: str) -> Builder:
    """An MLflow directory of an iris classifier in ``flavour``, with a named signature."""

    def build(path: Path) -> Probabilities:
        with warnings.catch_warnings():  # mlflow warns about pickles and type hints
            warnings.simplefilter("ignore")
            return _save_mlflow(flavour, path)

    return build


def _save_mlflow(flavour: str, path: Path) -> Probabilities:
    import mlflow.catboost
    import mlflow.lightgbm
    import mlflow.onnx
    import mlflow.sklearn
    import mlflow.xgboost

    signature = iris_signature()
    options: dict[str, Any] = {"pip_requirements": []}
    if flavour == "sklearn":
        model: Any = forest()
        mlflow.sklearn.save_model(
            model, path, signature=signature, serialization_format="cloudpickle", **options
        )
    elif flavour == "sklearn-skops":
        model = forest()
        mlflow.sklearn.save_model(
            model,
            path,
            signature=signature,
            skops_trusted_types=["sklearn.tree._tree.Tree"],
            **options,
        )
    elif flavour == "xgboost":
        model = xgb_classifier(binary=False)
        mlflow.xgboost.save_model(model, path, signature=signature, **options)
    elif flavour == "lightgbm":
        model = lgb_classifier(binary=False)
        mlflow.lightgbm.save_model(model.booster_, path, signature=signature, **options)
    elif flavour == "catboost":
        model = cb_classifier(binary=False)
        mlflow.catboost.save_model(model, path, signature=signature, **options)
    elif flavour == "onnx":
        graph = onnx_forest()
        mlflow.onnx.save_model(graph, path, signature=signature, **options)
        return onnx_probabilities(graph, expected_rows(binary=False))
    else:
        raise ValueError(flavour)
    return probabilities(model, binary=False)


def onnx_forest() -> Any:
    """The iris forest as an ONNX graph (float32 input, plain probabilities, no ZipMap)."""
    from skl2onnx import to_onnx

    return to_onnx(
        forest(), IRIS_X[:1].astype(np.float32), options={"zipmap": False}, target_opset=15
    )


def onnx_probabilities(graph: Any, rows: npt.NDArray[np.float64]) -> Probabilities:
    """ONNX Runtime's own probabilities for ``rows`` (given in float32, as the graph takes)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(
        graph.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    name = session.get_inputs()[0].name
    return np.asarray(session.run(None, {name: rows.astype(np.float32)})[1], dtype=np.float64)


def petal_rule(self: Any, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
    """A python_function model's predict: class 0 for short petals, else 1 (a rule, not a fit)."""
    return (model_input["petal_length"] > 2.5).astype(np.int64).to_numpy()


def save_mlflow_pyfunc(path: Path) -> npt.NDArray[np.int64]:
    """A python_function-only directory; returns its answers on :data:`IRIS_ROWS`."""
    with warnings.catch_warnings():  # mlflow warns about pickles, even on import
        warnings.simplefilter("ignore")
        import mlflow.pyfunc

        # Subclassed here so that importing this module does not import mlflow (slow).
        rule = type("PetalRule", (mlflow.pyfunc.PythonModel,), {"predict": petal_rule})
        mlflow.pyfunc.save_model(
            path, python_model=rule(), signature=iris_signature(), pip_requirements=[]
        )
    labels: npt.NDArray[np.int64] = (IRIS_ROWS[:, 2] > 2.5).astype(np.int64)
    return labels


def save_mlflow_integers(path: Path, *, signature_reversed: bool = False) -> None:
    """An MLflow forest fitted on iris in whole millimetres (``long`` signature columns).

    With ``signature_reversed`` the signature lists the columns in the opposite order from
    the model's own feature names: a directory that must be refused at load.
    """
    with warnings.catch_warnings():  # mlflow warns about pickles, even on import
        warnings.simplefilter("ignore")
        import mlflow.sklearn
        from mlflow.models import infer_signature

        frame = pd.DataFrame((IRIS_X * 10).astype(np.int64), columns=IRIS_FEATURES)
        model = RandomForestClassifier(n_estimators=5, random_state=SEED).fit(frame, IRIS_Y)
        signed = frame[IRIS_FEATURES[::-1]] if signature_reversed else frame
        mlflow.sklearn.save_model(
            model,
            path,
            signature=infer_signature(signed, IRIS_Y),
            serialization_format="cloudpickle",
            pip_requirements=[],
        )
