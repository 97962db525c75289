"""Train the signup-risk model, export it to ONNX and write its model card.

Input is the CSV written by training/export-data.ts, with its .meta.json: one
column per feature (in the serving code's FEATURE_NAMES order, computed by its own featuresOf), then
`label`, `risk` (ground truth, used only to report the ceiling) and
`occurred_at_ms`. Features are never recomputed here.

Rows are split by time: the oldest 80 % for training, the newest 20 % held out.
Candidates are compared on a validation slice (the newest 20 % of the training
part); the winner is refitted on the whole training part and evaluated once on
the held-out rows. Writes models/<pipeline>/<version>/{model.onnx,card.json}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import skl2onnx
import sklearn
from skl2onnx import to_onnx
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, log_loss, precision_score, recall_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

META_COLUMNS = ("label", "risk", "occurred_at_ms")
MISSING = -1.0  # pipelines/signup-risk/features.ts MISSING
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
ONNX_INPUT = "features"
ONNX_OUTPUT = "probabilities"
LATENCY_BUDGET_MS = 1.0  # batch of 64 rows, one thread
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
SCORE_EDGES = [0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path, help="CSV from training/export-data.ts")
    parser.add_argument("--pipeline", default="signup-risk")
    parser.add_argument("--models-dir", default=Path("models"), type=Path)
    parser.add_argument("--version", help="default: <pipeline>-<UTC date>.<next free number>")
    parser.add_argument("--random-state", default=7, type=int)
    parser.add_argument("--holdout-fraction", default=0.2, type=float)
    parser.add_argument("--activate", action="store_true", help="also point models/<pipeline>/ACTIVE at the new version")
    return parser.parse_args()


def load(path: Path) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    with path.open() as handle:
        header = handle.readline().strip().split(",")
    missing = [column for column in META_COLUMNS if column not in header]
    if missing:
        sys.exit(f"{path}: missing columns {missing}; regenerate it with training/export-data.ts")
    data = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
    features = [column for column in header if column not in META_COLUMNS]
    index = {column: i for i, column in enumerate(header)}
    x = data[:, [index[name] for name in features]].astype(np.float32)
    return features, x, data[:, index["label"]].astype(np.int64), data[:, index["risk"]], data[:, index["occurred_at_ms"]]


def candidates(random_state: int) -> dict[str, tuple[object, dict]]:
    gbt_params = dict(n_estimators=80, max_depth=3, learning_rate=0.2, subsample=0.8, min_samples_leaf=20, random_state=random_state)
    lr_params = dict(C=1.0, max_iter=2000)
    return {
        "gradient_boosting": (GradientBoostingClassifier(**gbt_params), {"GradientBoostingClassifier": gbt_params}),
        "logistic_regression": (
            make_pipeline(StandardScaler(), LogisticRegression(**lr_params)),
            {"StandardScaler": {}, "LogisticRegression": lr_params},
        ),
    }


def to_onnx_model(model, n_features: int) -> onnx.ModelProto:
    from skl2onnx.common.data_types import FloatTensorType

    classifier = model.steps[-1][1] if hasattr(model, "steps") else model
    return to_onnx(
        model,
        initial_types=[(ONNX_INPUT, FloatTensorType([None, n_features]))],
        options={id(classifier): {"zipmap": False}},
        target_opset=TARGET_OPSET,
    )


def session(model_bytes: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def onnx_scores(sess: ort.InferenceSession, x: np.ndarray) -> np.ndarray:
    return sess.run([ONNX_OUTPUT], {ONNX_INPUT: x})[0][:, 1].astype(np.float64)


def median_latency_ms(sess: ort.InferenceSession, x: np.ndarray, batch: int, runs: int = 200) -> float:
    rows = x[:batch]
    for _ in range(20):
        onnx_scores(sess, rows)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        onnx_scores(sess, rows)
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def metrics(y: np.ndarray, scores: np.ndarray) -> dict:
    out = {
        "auc": float(roc_auc_score(y, scores)),
        "log_loss": float(log_loss(y, scores, labels=[0, 1])),
        "brier": float(brier_score_loss(y, scores)),
        "base_rate": float(y.mean()),
        "mean_score": float(scores.mean()),
    }
    for threshold in (0.5, 0.9):
        predicted = (scores >= threshold).astype(np.int64)
        key = str(threshold).replace(".", "_")
        out[f"precision_at_{key}"] = float(precision_score(y, predicted, zero_division=0))
        out[f"recall_at_{key}"] = float(recall_score(y, predicted, zero_division=0))
        out[f"flagged_rate_at_{key}"] = float(predicted.mean())
    return out


def distribution(values: np.ndarray, edges: list[float]) -> dict:
    """counts[i] = #values v with edges[i-1] < v <= edges[i]; the first bin is open below, the last open above."""
    counts = np.bincount(np.searchsorted(np.asarray(edges), values, side="left"), minlength=len(edges) + 1)
    return {
        "edges": [float(edge) for edge in edges],
        "counts": [int(count) for count in counts],
        "proportions": [float(count) / len(values) for count in counts],
        "mean": float(values.mean()),
        "std": float(values.std()),
        "min": float(values.min()),
        "max": float(values.max()),
        "quantiles": {f"p{round(q * 100):02d}": float(np.quantile(values, q)) for q in QUANTILES},
    }


def feature_edges(train_values: np.ndarray) -> list[float]:
    """Fixed bin edges from the training data: binary features split at 0.5; others at
    deciles, with the MISSING sentinel in a bin of its own."""
    distinct = np.unique(train_values)
    if np.all(np.isin(distinct, (0.0, 1.0))):
        return [0.5]
    present = train_values[train_values != MISSING]
    edges = sorted({round(float(q), 6) for q in np.quantile(present, np.linspace(0.1, 0.9, 9))})
    if np.any(train_values == MISSING):
        edges = [MISSING] + [edge for edge in edges if edge > MISSING]
    return edges


def iso(ms: float) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc).isoformat().replace("+00:00", "Z")


def next_version(pipeline_dir: Path, pipeline: str) -> str:
    today = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    taken = [
        int(match.group(1))
        for child in (pipeline_dir.iterdir() if pipeline_dir.exists() else [])
        if (match := re.fullmatch(rf"{re.escape(pipeline)}-{today}\.(\d+)", child.name))
    ]
    return f"{pipeline}-{today}.{max(taken, default=0) + 1}"


def main() -> None:
    args = parse_args()
    features, x, y, risk, occurred = load(args.data)
    meta_path = args.data.with_name(args.data.name + ".meta.json")
    meta = json.loads(meta_path.read_text())
    if meta["features"] != features:
        sys.exit(f"{args.data} columns do not match {meta_path}; regenerate both with training/export-data.ts")
    order = np.argsort(occurred, kind="stable")
    x, y, risk, occurred = x[order], y[order], risk[order], occurred[order]
    n = len(y)
    n_fit = int(round(n * (1 - args.holdout_fraction)))
    n_select = int(round(n_fit * 0.8))
    fit, holdout = slice(0, n_fit), slice(n_fit, n)
    print(f"{n} rows: {n_fit} training ({n_select} fit + {n_fit - n_select} validation for selection), {n - n_fit} held out", file=sys.stderr)

    selection = []
    for name, (model, _) in candidates(args.random_state).items():
        started = time.perf_counter()
        model.fit(x[:n_select], y[:n_select])
        fit_seconds = time.perf_counter() - started
        sess = session(to_onnx_model(model, len(features)).SerializeToString())
        validation_auc = float(roc_auc_score(y[n_select:n_fit], onnx_scores(sess, x[n_select:n_fit])))
        latency = median_latency_ms(sess, x, 64)
        selection.append({"algorithm": name, "validation_auc": validation_auc, "fit_seconds": fit_seconds, "onnx_batch_64_median_ms": latency})
        print(f"  {name}: validation AUC {validation_auc:.4f}, ONNX batch-64 median {latency:.3f} ms", file=sys.stderr)
    eligible = [entry for entry in selection if entry["onnx_batch_64_median_ms"] < LATENCY_BUDGET_MS] or selection
    chosen = max(eligible, key=lambda entry: entry["validation_auc"])["algorithm"]

    model, hyperparameters = candidates(args.random_state)[chosen]
    model.fit(x[fit], y[fit])
    onnx_model = to_onnx_model(model, len(features))
    model_bytes = onnx_model.SerializeToString()
    sess = session(model_bytes)
    holdout_scores = onnx_scores(sess, x[holdout])
    parity = float(np.max(np.abs(holdout_scores - model.predict_proba(x[holdout])[:, 1])))
    if parity > 1e-4:
        sys.exit(f"ONNX and scikit-learn disagree by {parity} on held-out rows; not exporting")

    holdout_metrics = metrics(y[holdout], holdout_scores)
    holdout_metrics["ground_truth_auc"] = float(roc_auc_score(y[holdout], risk[holdout]))
    train_metrics = metrics(y[fit], onnx_scores(sess, x[fit]))
    print(f"chosen {chosen}: held-out AUC {holdout_metrics['auc']:.4f} (ground-truth ceiling {holdout_metrics['ground_truth_auc']:.4f})", file=sys.stderr)

    pipeline_dir = args.models_dir / args.pipeline
    version = args.version or next_version(pipeline_dir, args.pipeline)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", version):
        sys.exit(f"version '{version}' may only contain letters, digits, '.', '_' and '-'")
    out_dir = pipeline_dir / version
    if out_dir.exists():
        sys.exit(f"{out_dir} already exists; model versions are immutable, pick another --version")

    card = {
        "card_version": 1,
        "pipeline": args.pipeline,
        "version": version,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "algorithm": chosen,
        "hyperparameters": hyperparameters,
        "features": features,
        "onnx": {
            "file": "model.onnx",
            "sha256": hashlib.sha256(model_bytes).hexdigest(),
            "input": ONNX_INPUT,
            "output": ONNX_OUTPUT,
            "positive_class_index": 1,
            "opset": TARGET_OPSET,
            "max_abs_diff_vs_sklearn": parity,
        },
        "label": "1 when the signup turned out risky (generator ground truth, Bernoulli(risk))",
        "data": {
            "source": f"{meta['generator']} via training/export-data.ts",
            "seed": meta["seed"],
            "spacing_ms": meta["spacingMs"],
            "rows": n,
            "split": "by occurred_at: oldest rows train, newest held out",
            "training": {"rows": n_fit, "positives": int(y[fit].sum()), "window": {"from": iso(occurred[0]), "to": iso(occurred[n_fit - 1])}},
            "holdout": {"rows": n - n_fit, "positives": int(y[holdout].sum()), "window": {"from": iso(occurred[n_fit]), "to": iso(occurred[-1])}},
        },
        "selection": {"rule": f"highest validation AUC among candidates with ONNX batch-64 median < {LATENCY_BUDGET_MS} ms", "candidates": selection},
        "metrics": {"holdout": holdout_metrics, "training": train_metrics},
        "inference": {
            "runtime": f"onnxruntime {ort.__version__} (Python), 1 thread",
            **{f"batch_{batch}_median_ms": median_latency_ms(sess, x[holdout], batch) for batch in (1, 32, 64, 256)},
        },
        "reference": {
            "data": "holdout",
            "binning": "counts[i] counts values v with edges[i-1] < v <= edges[i]; counts has len(edges)+1 entries, the first open below, the last open above",
            "features": {
                name: distribution(x[holdout][:, i].astype(np.float64), feature_edges(x[fit][:, i].astype(np.float64)))
                for i, name in enumerate(features)
            },
            "score": distribution(holdout_scores, SCORE_EDGES),
        },
        "environment": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scikit-learn": sklearn.__version__,
            "skl2onnx": skl2onnx.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": ort.__version__,
        },
    }

    out_dir.mkdir(parents=True)
    (out_dir / "model.onnx").write_bytes(model_bytes)
    (out_dir / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    if args.activate:
        (pipeline_dir / "ACTIVE").write_text(version + "\n")
    print(json.dumps({"version": version, "dir": str(out_dir), "algorithm": chosen, "holdout": holdout_metrics}, indent=2))


if __name__ == "__main__":
    main()
