"""Evaluation reports: results.json, results.parquet, report.md and PNG plots (RobustBench-style).

``results`` is a plain dict; accuracies are fractions in [0, 1], ``mce`` is in percent::

    {
      "clean_accuracy": 0.761, "clean_top5": 0.929,            # of metadata["model"]
      "mean_accuracy": 0.392, "mean_accuracy_without_noise": 0.423, "mce": 76.7,  # optional
      "rows": [{"model", "corruption", "category", "severity", "top1", "top5", "n",
                "source": "files" | "generated"}, ...],
      "eps_star": {"gaussian": {"median": 39.0, "never_flipped": 3, "mean_forwards_per_image": 14.1,
                                "values": [per-image eps*, inf = never misclassified]}},
                                # ("per_image", EpsStarResult's name, works too)
      "attacks": {"pgd_l2_0.12": {"accuracy": 0.31, ...}},
      "metadata": {"seed", "model", "command", "data_source", "benchmark", "split",
                   "timestamp", "run_id"},
    }

Aggregates missing from the top level are computed from the rows (``metrics``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from matplotlib.figure import Figure

from evaluation.benchmarks import CATEGORY_OF
from evaluation.metrics import aggregate_corruption_results

GENERATED_LABEL = "generated (not the official files)"
PARQUET_SCHEMA = pa.schema(
    [
        ("model", pa.string()),
        ("benchmark", pa.string()),
        ("source", pa.string()),
        ("corruption", pa.string()),
        ("category", pa.string()),
        ("severity", pa.int64()),
        ("top1", pa.float64()),
        ("top5", pa.float64()),
        ("n", pa.int64()),
        ("run_id", pa.string()),
        ("command", pa.string()),
    ]
)
EPS_STAR_NOTE = (
    "eps* is the lower median over the images of the clipped l2 size at which the prediction "
    "first changes along the noise direction (an upward scan, then bisection). "
    "`never_flipped` images stay correct along the whole ray: they count as +inf, above "
    "every image that flips, so eps* is inf only when more than half never flip; "
    "`misclassified_clean` count as 0; `rel_precision` is the widest remaining bracket "
    "(relative) of a reported size. Adversarial: mean and std over fresh generators of l2 "
    "size `epsilon`, trained on the training split."
)
_AGGREGATE_KEYS = ("mean_accuracy", "mean_top5", "mean_accuracy_without_noise", "mce")


# ------------------------------------------------------------------------------ helpers


def _rows(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows with model/benchmark/source/category filled in from the metadata where missing."""
    meta = results.get("metadata", {})
    rows = []
    for row in results.get("rows", []):
        row = dict(row)
        row.setdefault("model", meta.get("model", "model"))
        row.setdefault("benchmark", meta.get("benchmark"))
        row.setdefault("source", "files")
        if "category" not in row:
            row["category"] = (
                None if row["benchmark"] == "mnist-c" else CATEGORY_OF.get(row["corruption"])
            )
        rows.append(row)
    return rows


def _models(results: Mapping[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    """The model the top-level numbers belong to first, then the others found in the rows."""
    primary = results.get("metadata", {}).get("model")
    names = [primary] if primary else []
    for row in rows:
        if row["model"] not in names:
            names.append(row["model"])
    return names or ["model"]


def _aggregates(results: Mapping[str, Any], rows: list[dict[str, Any]]) -> dict[str, dict]:
    """Per model: aggregates from its rows; top-level values override them for the first model."""
    benchmark = results.get("metadata", {}).get("benchmark")
    models = _models(results, rows)
    out = {}
    for model in models:
        agg = aggregate_corruption_results(
            [r for r in rows if r["model"] == model], benchmark=benchmark
        )
        agg["clean_accuracy"] = agg["clean_top5"] = None
        if model == models[0]:
            for key in ("clean_accuracy", "clean_top5", *_AGGREGATE_KEYS):
                if results.get(key) is not None:
                    agg[key] = results[key]
        agg["sources"] = sorted({r["source"] for r in rows if r["model"] == model})
        out[model] = agg
    return out


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100.0 * value:.1f}"


def _num(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float | np.floating):
        return "inf" if math.isinf(value) else f"{value:.4g}"
    return str(value)


def _suite(sources: Sequence[str]) -> str:
    return ", ".join(GENERATED_LABEL if s == "generated" else "official files" for s in sources)


def _table(header: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cells) + " |" for cells in body]


def _scalar_table(title: str, first: str, entries: Mapping[str, Any]) -> list[str]:
    """A table of {name: {key: scalar}} (or {name: scalar}); lists like per-image values skipped."""
    entries = {
        str(name): {str(k): v for k, v in entry.items()}  # e.g. pgd_accuracy's {eps: accuracy}
        if isinstance(entry, Mapping)
        else {"value": entry}
        for name, entry in entries.items()
    }
    keys: list[str] = []
    for entry in entries.values():
        keys += [k for k, v in entry.items() if k not in keys and not _is_sequence(v)]
    body = [[name] + [_num(entry.get(k)) for k in keys] for name, entry in entries.items()]
    return [f"## {title}", "", *_table([first, *keys], body), ""]


def _is_sequence(value: Any) -> bool:
    return isinstance(value, list | tuple | np.ndarray) or getattr(value, "ndim", 0) > 0


def _per_image(entry: Mapping[str, Any]) -> Any:
    """Per-image eps* under "values" or "per_image" (EpsStarResult's field name), else None."""
    if not isinstance(entry, Mapping):
        return None
    return next((entry[k] for k in ("values", "per_image") if entry.get(k) is not None), None)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if hasattr(obj, "tolist"):  # numpy arrays, torch tensors
        return obj.tolist()
    if isinstance(obj, set | frozenset):
        return sorted(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


# ------------------------------------------------------------------------------ writers


def _write_parquet(rows: list[dict[str, Any]], meta: Mapping[str, Any], path: Path) -> Path:
    table = pa.Table.from_pylist(
        [
            {
                "model": str(r["model"]),
                "benchmark": r["benchmark"],
                "source": r["source"],
                "corruption": r["corruption"],
                "category": r["category"],
                "severity": int(r["severity"]),
                "top1": float(r["top1"]),
                "top5": float(r["top5"]),
                "n": int(r.get("n", 0)),
                "run_id": meta.get("run_id"),
                "command": meta.get("command"),
            }
            for r in rows
        ],
        schema=PARQUET_SCHEMA,
    )
    pq.write_table(table, path)
    return path


def _markdown(results: Mapping[str, Any], rows: list[dict[str, Any]], aggs: dict) -> str:
    meta = results.get("metadata", {})
    models = list(aggs)
    lines = [f"# Corruption evaluation: {', '.join(models)} on {meta.get('benchmark', '?')}", ""]
    lines += [
        f"- Command: `{meta.get('command', '?')}`",
        f"- Data source: {meta.get('data_source', '?')}",
    ]
    if any(r["source"] == "generated" for r in rows):
        lines.append(
            f"- Corruption suite: **{GENERATED_LABEL}**; numbers are not comparable to the paper"
        )
    if meta.get("split") == "val":
        lines.append(
            "- Images: **validation split** carved from the training images (for tuning and "
            "choosing defaults; not the test set)"
        )
    lines += [f"- {key}: {meta[key]}" for key in ("seed", "timestamp", "run_id") if key in meta]

    body = []
    for model, agg in aggs.items():
        mce = "–" if agg["mce"] is None else f"{agg['mce']:.1f}"
        if agg["mce"] is not None and not agg.get("mce_complete", True):
            n = len(agg["mce_corruptions"])
            mce += f" (over {n} of 15 corruptions)" if n < 15 else " (not all 5 severities)"
        body.append([
            model, _pct(agg["clean_accuracy"]), _pct(agg["clean_top5"]),
            _pct(agg["mean_accuracy"]), _pct(agg["mean_top5"]),
            _pct(agg["mean_accuracy_without_noise"]), mce, _suite(agg["sources"]) or "–",
        ])  # fmt: skip
    header = ["model", "clean top-1", "clean top-5", "mean top-1", "mean top-5", "w/o noise",
              "mCE", "suite"]  # fmt: skip
    lines += ["", "## Aggregates (%)", "", *_table(header, body), ""]

    severities = sorted({int(r["severity"]) for r in rows})
    for model, agg in aggs.items():
        if not agg["per_corruption"]:
            continue
        lines += [f"## Top-1 per corruption and severity (%): {model}"]
        if "generated" in agg["sources"]:
            lines[-1] += f" — {GENERATED_LABEL}"
        body = [
            [c, e["category"] or "–"]
            + [_pct(e["top1_by_severity"].get(s)) for s in severities]
            + [_pct(e["top1"]), _pct(e["top5"])]
            for c, e in agg["per_corruption"].items()
        ]
        header = ["corruption", "category", *map(str, severities), "mean", "mean top-5"]
        lines += ["", *_table(header, body), ""]

    if results.get("eps_star"):
        lines += _scalar_table(
            "Median perturbation size eps* (l2)", "direction", results["eps_star"]
        )
        lines += [EPS_STAR_NOTE, ""]
    if results.get("attacks"):
        lines += _scalar_table("Adversarial attacks", "attack", results["attacks"])
    return "\n".join(lines) + "\n"


def _plot_per_corruption(aggs: dict, path: Path) -> Path:
    corruptions = list(dict.fromkeys(c for a in aggs.values() for c in a["per_corruption"]))
    fig = Figure(figsize=(max(6.0, 0.6 * len(corruptions) + 2), 4.5), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / len(aggs)
    for i, (model, agg) in enumerate(aggs.items()):
        acc = [100 * agg["per_corruption"].get(c, {}).get("top1", np.nan) for c in corruptions]
        ax.bar(np.arange(len(corruptions)) + (i - (len(aggs) - 1) / 2) * width, acc, width,
               label=model)  # fmt: skip
        if agg["clean_accuracy"] is not None:
            ax.axhline(100 * agg["clean_accuracy"], ls="--", lw=1, color=f"C{i}")
    ax.set_xticks(np.arange(len(corruptions)), corruptions, rotation=45, ha="right")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Accuracy per corruption (dashed: clean)")
    ax.legend()
    fig.savefig(path, dpi=120)
    return path


def _plot_vs_severity(aggs: dict, path: Path) -> Path:
    fig = Figure(figsize=(6.0 * len(aggs), 4.5), layout="constrained")
    for i, (model, agg) in enumerate(aggs.items()):
        ax = fig.add_subplot(1, len(aggs), i + 1)
        by_severity: dict[int, list[float]] = {}
        for c, entry in agg["per_corruption"].items():
            sev = entry["top1_by_severity"]
            ax.plot(list(sev), [100 * a for a in sev.values()], marker="o", lw=1, label=c)
            for s, acc in sev.items():
                by_severity.setdefault(s, []).append(100 * acc)
        severities = sorted(by_severity)
        means = [np.mean(by_severity[s]) for s in severities]
        ax.plot(severities, means, color="black", lw=2.5, marker="o", label="mean")
        ax.set_xticks(severities)
        ax.set_xlabel("severity")
        ax.set_ylabel("top-1 accuracy (%)")
        ax.set_ylim(0, 100)
        ax.set_title(model)
        ax.legend(fontsize="x-small", ncol=2)
    fig.savefig(path, dpi=120)
    return path


def _plot_eps_star(eps_star: Mapping[str, Any], path: Path) -> Path:
    fig = Figure(figsize=(6.5, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for direction, entry in eps_star.items():
        values = np.asarray(_per_image(entry), dtype=float)
        finite = values[np.isfinite(values)]
        label = f"{direction} ({len(values) - len(finite)} never misclassified)"
        ax.hist(finite, bins=50, alpha=0.5, label=label)
    ax.set_xlabel("eps* (l2 size at which the prediction changes)")
    ax.set_ylabel("images")
    ax.legend()
    fig.savefig(path, dpi=120)
    return path


# ------------------------------------------------------------------------------ public API


def write_report(results: Mapping[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write results.json, results.parquet, report.md and PNG plots; return {kind: path}.

    Kinds: json, parquet, markdown, plot_accuracy_per_corruption and plot_accuracy_vs_severity
    (when there are rows), plot_eps_star (when an eps* direction has per-image ``values``).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = dict(results)
    results["metadata"] = {"timestamp": datetime.now(UTC).isoformat(timespec="seconds")} | dict(
        results.get("metadata", {})
    )
    rows = _rows(results)
    aggs = _aggregates(results, rows)

    paths = {"json": out_dir / "results.json", "markdown": out_dir / "report.md"}
    with paths["json"].open("w") as f:
        # inf is a legitimate eps* ("never misclassified"): written as Infinity, as Python reads it.
        json.dump(results, f, indent=2, default=_json_default, allow_nan=True)
    paths["parquet"] = _write_parquet(rows, results["metadata"], out_dir / "results.parquet")
    paths["markdown"].write_text(_markdown(results, rows, aggs))
    if rows:
        paths["plot_accuracy_per_corruption"] = _plot_per_corruption(
            aggs, out_dir / "accuracy_per_corruption.png"
        )
        paths["plot_accuracy_vs_severity"] = _plot_vs_severity(
            aggs, out_dir / "accuracy_vs_severity.png"
        )
    eps_star = {
        d: e for d, e in (results.get("eps_star") or {}).items() if _per_image(e) is not None
    }
    if eps_star:
        paths["plot_eps_star"] = _plot_eps_star(eps_star, out_dir / "eps_star_hist.png")
    return paths


def _metric_name(*parts: str) -> str:
    return re.sub(r"[^0-9A-Za-z_\-. /]", "_", "_".join(parts))


def report_metrics(results: Mapping[str, Any]) -> dict[str, float]:
    """The finite scalar numbers of a results dict, flattened to MLflow metric names."""
    rows = _rows(results)
    agg = next(iter(_aggregates(results, rows).values()))
    metrics: dict[str, Any] = {
        k: agg.get(k) for k in ("clean_accuracy", "clean_top5", *_AGGREGATE_KEYS)
    }
    metrics |= {_metric_name("top1", c): e["top1"] for c, e in agg["per_corruption"].items()}
    for group in ("eps_star", "attacks"):
        for name, entry in (results.get(group) or {}).items():
            entry = entry if isinstance(entry, Mapping) else {"value": entry}
            metrics |= {_metric_name(group, str(name), str(k)): v for k, v in entry.items()}
    return {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float | np.number) and not isinstance(v, bool) and math.isfinite(v)
    }


def log_report_to_mlflow(
    paths: Mapping[str, Path],
    results: Mapping[str, Any],
    *,
    tracking_uri: str | None = None,
    run_id: str | None = None,
) -> bool:
    """Log the report's metrics and files to MLflow: to ``run_id`` at ``tracking_uri``
    when given (no global MLflow state is touched), else to the active run; False if
    there is neither."""
    import mlflow  # lazy: slow to import, and only needed when logging

    if run_id is not None:
        client = mlflow.MlflowClient(tracking_uri=tracking_uri)
        for key, value in report_metrics(results).items():
            client.log_metric(run_id, key, value)
        for path in paths.values():
            client.log_artifact(run_id, str(path), artifact_path="evaluation")
        return True
    if mlflow.active_run() is None:
        return False
    mlflow.log_metrics(report_metrics(results))
    for path in paths.values():
        mlflow.log_artifact(str(path), artifact_path="evaluation")
    return True


__all__ = [
    "GENERATED_LABEL",
    "PARQUET_SCHEMA",
    "log_report_to_mlflow",
    "report_metrics",
    "write_report",
]
