"""write_report and log_report_to_mlflow (evaluation/report.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from evaluation.report import GENERATED_LABEL, log_report_to_mlflow, report_metrics, write_report

CORRUPTIONS = {"gaussian_noise": 0.30, "fog": 0.55, "contrast": 0.45}


def _results(source: str = "files") -> dict:
    rows = [
        {"model": "ant_1x1", "corruption": c, "severity": s, "top1": a - 0.05 * s,
         "top5": a + 0.2, "n": 50, "source": source}
        for c, a in CORRUPTIONS.items()
        for s in range(1, 6)
    ]  # fmt: skip
    return {
        "clean_accuracy": 0.7613,
        "clean_top5": 0.9287,
        "rows": rows,
        "eps_star": {
            "gaussian": {
                "median": 39.0,
                "mean_forwards_per_image": 52.5,
                "values": [10.0, 39.0, 80.0, math.inf],
            },
            "uniform": {"median": 2.0, "per_image": np.array([1.0, 2.0, 3.0])},
            "adversarial": {"mean": 15.9, "std": 0.4, "per_seed": [15.5, 16.3]},
        },  # fmt: skip
        "attacks": {
            "pgd_l2_0.12": {"norm": "l2", "epsilon": 0.12, "accuracy": 0.31},
            "pgd_linf": {0.001: 0.42},  # pgd_accuracy's {epsilon: accuracy}
        },
        "metadata": {
            "seed": 0,
            "model": "ant_1x1",
            "command": "antray eval --config configs/eval.yaml",
            "data_source": "/data/ImageNet-C",
            "benchmark": "imagenet-c",
            "run_id": "abc123",
        },
    }


def test_write_report_files(tmp_path: Path) -> None:
    paths = write_report(_results(), tmp_path / "out")
    for kind in ("json", "parquet", "markdown", "plot_accuracy_per_corruption",
                 "plot_accuracy_vs_severity", "plot_eps_star"):  # fmt: skip
        assert paths[kind].is_file() and paths[kind].stat().st_size > 0, kind
    assert all(p.read_bytes()[:4] == b"\x89PNG" for k, p in paths.items() if k.startswith("plot"))

    table = pq.read_table(paths["parquet"])
    assert table.num_rows == 15
    assert {"model", "benchmark", "source", "corruption", "category", "severity", "top1",
            "top5", "n", "run_id", "command"} <= set(table.column_names)  # fmt: skip
    first = table.to_pylist()[0]
    assert first["category"] == "noise" and first["benchmark"] == "imagenet-c"
    assert first["command"].startswith("antray eval")

    saved = json.loads(paths["json"].read_text())
    assert saved["clean_accuracy"] == 0.7613 and "timestamp" in saved["metadata"]
    assert saved["eps_star"]["gaussian"]["values"][-1] == math.inf

    md = paths["markdown"].read_text()
    assert "76.1" in md and "antray eval --config configs/eval.yaml" in md
    assert "/data/ImageNet-C" in md and "mCE" in md and "pgd_l2_0.12" in md
    assert "(over 3 of 15 corruptions)" in md
    assert "| pgd_linf |" in md and "0.001" in md and "per_seed" not in md  # partial mCE is flagged
    assert GENERATED_LABEL not in md


def test_generated_suite_is_labelled(tmp_path: Path) -> None:
    results = _results(source="generated")
    del results["eps_star"]
    paths = write_report(results, tmp_path)
    assert "plot_eps_star" not in paths
    assert GENERATED_LABEL in paths["markdown"].read_text()
    assert set(pq.read_table(paths["parquet"]).column("source").to_pylist()) == {"generated"}


def test_report_metrics_are_finite_numbers() -> None:
    metrics = report_metrics(_results())
    assert metrics["clean_accuracy"] == 0.7613
    assert metrics["top1_fog"] == pytest.approx(0.55 - 0.15)
    assert metrics["eps_star_gaussian_median"] == 39.0
    assert metrics["attacks_pgd_linf_0.001"] == 0.42
    assert "attacks_pgd_l2_0.12_norm" not in metrics and all(map(math.isfinite, metrics.values()))


def test_log_report_to_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 prefers a database store
    paths = write_report(_results(), tmp_path / "out")
    assert log_report_to_mlflow(paths, _results()) is False  # no active run
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri((tmp_path / "mlruns").as_uri())
    try:
        with mlflow.start_run() as run:
            assert log_report_to_mlflow(paths, _results()) is True
        logged = mlflow.get_run(run.info.run_id).data.metrics
        assert logged["mean_accuracy"] == pytest.approx(sum(CORRUPTIONS.values()) / 3 - 0.15)
        artifacts = {
            a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "evaluation")
        }
        assert "evaluation/report.md" in artifacts
    finally:
        mlflow.set_tracking_uri(previous)


def test_report_says_how_many_never_flipped_and_which_split(tmp_path: Path) -> None:
    results = _results(source="generated")
    results["eps_star"]["gaussian"] |= {"never_flipped": 1, "misclassified_clean": 0}
    results["metadata"]["split"] = "val"
    md = write_report(results, tmp_path / "out")["markdown"].read_text()
    eps_table = md[md.index("## Median perturbation size") :]
    header = next(line for line in eps_table.splitlines() if line.startswith("| direction"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    gaussian = next(line for line in eps_table.splitlines() if line.startswith("| gaussian"))
    values = [c.strip() for c in gaussian.strip("|").split("|")]
    assert values[cells.index("never_flipped")] == "1"
    assert "count as +inf" in md
    assert "validation split" in md
