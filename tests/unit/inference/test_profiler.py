"""`modelserve profile`: reference profiles from CSV, .npy and Parquet training data."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from sklearn.datasets import load_iris

from modelserve.cli import main
from modelserve.inference.profiler import profile_model, read_table, read_typed_rows, select_model
from modelserve.inference.types import FeatureSpec
from modelserve.observability.profile import load_profile
from modelserve.settings import ModelConfig, load_settings

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
IRIS = np.asarray(load_iris().data, dtype=np.float64)


def _write_csv(path: Path, header: list[str], rows: np.ndarray) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows.tolist())
    return path


def test_read_table_csv_takes_feature_columns_by_name(tmp_path: Path) -> None:
    """Named features are picked by header, in the model's order; other columns are ignored."""
    shuffled = ["target", "petal_width", "sepal_length", "petal_length", "sepal_width"]
    rows = np.column_stack([np.zeros(150), IRIS[:, 3], IRIS[:, 0], IRIS[:, 2], IRIS[:, 1]])
    path = _write_csv(tmp_path / "train.csv", shuffled, rows)

    matrix = read_table(path, FEATURES, 4)

    np.testing.assert_allclose(matrix, IRIS)


def test_read_table_csv_without_names_takes_the_first_columns(tmp_path: Path) -> None:
    """A model without feature names reads the first n_features columns."""
    rows = np.column_stack([IRIS, np.arange(150)])
    path = _write_csv(tmp_path / "train.csv", ["a", "b", "c", "d", "label"], rows)

    np.testing.assert_allclose(read_table(path, None, 4), IRIS)


def test_read_table_npy(tmp_path: Path) -> None:
    """A 2-D .npy array is read as is."""
    path = tmp_path / "train.npy"
    np.save(path, IRIS)

    np.testing.assert_allclose(read_table(path, FEATURES, 4), IRIS)


def test_read_table_parquet_by_name(tmp_path: Path) -> None:
    """Parquet columns are picked by feature name."""
    path = tmp_path / "train.parquet"
    columns = {name: IRIS[:, i] for i, name in enumerate(FEATURES)} | {"target": np.zeros(150)}
    pq.write_table(pa.table(columns), path)

    np.testing.assert_allclose(read_table(path, FEATURES, 4), IRIS)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sepal_length,sepal_width,petal_length\n1,2,3\n", "lacks feature column"),
        (",".join(FEATURES) + "\n1,2,3,\n", "must be numbers"),
        (",".join(FEATURES) + "\n1,2,3,nan\n", "NaN"),
    ],
    ids=["missing-column", "empty-value", "nan-value"],
)
def test_read_table_names_the_problem(tmp_path: Path, text: str, message: str) -> None:
    """A missing feature column, an empty or a NaN value is refused with a reason."""
    path = tmp_path / "train.csv"
    path.write_text(text)

    with pytest.raises(ValueError, match=message):
        read_table(path, FEATURES, 4)


def test_read_table_refuses_unknown_formats(tmp_path: Path) -> None:
    """Only .csv, .npy and .parquet are read."""
    path = tmp_path / "train.xlsx"
    path.write_bytes(b"")

    with pytest.raises(ValueError, match=r"use \.csv, \.npy or \.parquet"):
        read_table(path, FEATURES, 4)


def test_profile_model_uses_the_served_labels(demo_models_dir: Path, tmp_path: Path) -> None:
    """Profiling the configured demo model gives its label names and iris' class mix."""
    settings = load_settings(demo_models_dir / "modelserve.yaml")
    data = tmp_path / "train.npy"
    np.save(data, IRIS)

    profile = profile_model(select_model(settings.models, "iris"), data)

    assert profile.rows == 150
    assert profile.feature_names == FEATURES
    assert profile.class_mix is not None
    assert set(profile.class_mix) == {"setosa", "versicolor", "virginica"}
    assert profile.class_mix["setosa"] == pytest.approx(1 / 3)
    assert profile.mean_confidence is not None
    assert 0.5 < profile.mean_confidence <= 1


def test_select_model_finds_a_version(demo_models_dir: Path) -> None:
    """NAME:VERSION picks that version; an unknown name lists the configured ones."""
    models = load_settings(demo_models_dir / "modelserve.yaml").models

    assert select_model(models, "iris-onnx:1").name == "iris-onnx"
    with pytest.raises(ValueError, match="configured: iris"):
        select_model(models, "nope")


def test_profile_command_writes_a_loadable_profile(demo_models_dir: Path, tmp_path: Path) -> None:
    """`modelserve profile --data --config --model --out` writes a profile the server can load."""
    data = _write_csv(tmp_path / "train.csv", FEATURES, IRIS)
    out = tmp_path / "profile.json"

    result = CliRunner().invoke(
        main,
        [
            "profile",
            "--data",
            str(data),
            "--config",
            str(demo_models_dir / "modelserve.yaml"),
            "--model",
            "iris",
            "--out",
            str(out),
        ],
    )

    assert result.exit_code == 0, result.output
    assert "150 rows, 4 features" in result.output
    assert load_profile(out).feature_names == FEATURES


def test_profile_command_accepts_a_bare_model_file(demo_models_dir: Path, tmp_path: Path) -> None:
    """With a model file and no config, the model's own classes name the class mix."""
    data = tmp_path / "train.npy"
    np.save(data, IRIS)
    out = tmp_path / "profile.json"

    result = CliRunner().invoke(
        main,
        [
            "profile",
            "--data",
            str(data),
            "--model",
            str(demo_models_dir / "iris.joblib"),
            "--out",
            str(out),
        ],
    )

    assert result.exit_code == 0, result.output
    assert set(load_profile(out).class_mix or {}) == {"0", "1", "2"}


def test_profile_command_reports_bad_data_as_a_usage_error(
    demo_models_dir: Path, tmp_path: Path
) -> None:
    """Data without the model's feature columns exits 2 with the reason."""
    data = _write_csv(tmp_path / "train.csv", ["x", "y"], IRIS[:, :2])

    result = CliRunner().invoke(
        main,
        [
            "profile",
            "--data",
            str(data),
            "--config",
            str(demo_models_dir / "modelserve.yaml"),
            "--model",
            "iris",
            "--out",
            str(tmp_path / "p.json"),
        ],
    )

    assert result.exit_code == 2
    assert "lacks feature column" in result.output


def test_demo_ships_a_profile_for_iris(demo_models_dir: Path) -> None:
    """The demo config names iris.profile.json, and it describes the iris features."""
    (iris,) = [
        m for m in load_settings(demo_models_dir / "modelserve.yaml").models if m.name == "iris"
    ]

    assert iris.profile is not None
    assert load_profile(iris.profile).feature_names == FEATURES


def test_model_with_a_mismatched_profile_fails_to_load(
    demo_models_dir: Path, tmp_path: Path
) -> None:
    """A profile of another width refuses the model at load time, naming the mismatch."""
    from modelserve.errors import ModelLoadError
    from modelserve.inference.version import build_version
    from modelserve.observability.profile import build_profile

    profile = tmp_path / "narrow.json"
    profile.write_bytes(build_profile(IRIS[:, :2]).to_json())
    config = ModelConfig(name="iris", path=demo_models_dir / "iris.joblib", profile=profile)

    with pytest.raises(ModelLoadError, match="profile has 2 features, the model expects 4"):
        build_version(config, require_sha256=False)


HABITS = [
    FeatureSpec("city", "category", ("Bergen", "Oslo"), nullable=True),
    FeatureSpec("member", "bool"),
    FeatureSpec("visits", "int", nullable=True),
    FeatureSpec("note", "string"),
]


def test_read_typed_rows_reads_csv_cells_as_json_values(tmp_path: Path) -> None:
    """Each cell becomes the value a client would send: a category, a boolean, an integer,
    a string; an empty cell is a null. Extra columns are ignored."""
    path = tmp_path / "typed.csv"
    path.write_text("id,city,member,visits,note\n1,Oslo,true,3,hi\n2,,False,,x\n")

    rows = read_typed_rows(path, HABITS)

    assert rows == [
        {"city": "Oslo", "member": True, "visits": 3, "note": "hi"},
        {"city": None, "member": False, "visits": None, "note": "x"},
    ]


def test_read_typed_rows_reads_parquet_with_nan_as_null(tmp_path: Path) -> None:
    """Parquet columns keep their types; a NaN float is a null."""
    path = tmp_path / "typed.parquet"
    table = {"city": ["Bergen", None], "member": [True, False], "visits": [1.0, float("nan")],
             "note": ["a", "b"]}  # fmt: skip
    pq.write_table(pa.table(table), path)

    rows = read_typed_rows(path, HABITS)

    assert rows[1] == {"city": None, "member": False, "visits": None, "note": "b"}


def test_read_typed_rows_names_a_cell_of_the_wrong_type(tmp_path: Path) -> None:
    """A cell that is not of its feature's type is an error naming row and feature."""
    path = tmp_path / "typed.csv"
    path.write_text("city,member,visits,note\nOslo,maybe,1,x\n")

    with pytest.raises(ValueError, match="row 0: member is a bool feature, got 'maybe'"):
        read_typed_rows(path, HABITS)
