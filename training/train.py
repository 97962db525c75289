"""Train the signup-risk model, export it to ONNX and write its model card.

Input is the CSV written by training/export-data.ts, with its .meta.json: one
column per feature (in the serving code's FEATURE_NAMES order, computed by its own featuresOf), then
`label`, `risk` (ground truth, used only to report the ceiling) and
`occurred_at_ms`. Features are never recomputed here.

Rows are split by time: the oldest 80 % for training, the newest 20 % held out.
Candidates are compared on a validation slice (the newest 20 % of the training
part); the winner is refitted on the whole training part and evaluated once on
the held-out rows. Writes models/<pipeline>/<version>/{model.onnx,card.json}.

--with-labels adds reviewers' labels (training/labels.py: sluice.labels joined
to the features the score stage computed, read from ClickHouse) to the training
part only, each weighted --label-weight times a generated row: they are real
decisions checked by people, where generated labels are draws from a known
risk. The held-out rows stay generated, so metrics compare across versions; the
card records how many labels were used (data.labels).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, log_loss, precision_score, recall_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from labels import SIGNUP_RISK_CLASSES, fetch, label_sql, labeled_rows
from common import (
    BINNING,
    ONNX_INPUT,
    ONNX_OUTPUT,
    TARGET_OPSET,
    activate,
    add_common_arguments,
    check_parity,
    distribution,
    environment,
    feature_edges,
    iso,
    median_ms,
    output_dir,
    reference_examples,
    session,
    time_split,
    to_onnx_model,
    utc_now,
    write_version,
)

META_COLUMNS = ("label", "risk", "occurred_at_ms")
MISSING = -1.0  # pipelines/signup-risk/features.ts MISSING
LATENCY_BUDGET_MS = 1.0  # batch of 64 rows, one thread
SCORE_EDGES = [0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser, data_help="CSV from training/export-data.ts", pipeline="signup-risk")
    parser.add_argument("--random-state", default=7, type=int)
    parser.add_argument("--holdout-fraction", default=0.2, type=float)
    parser.add_argument("--activate", action="store_true", help="also point models/<pipeline>/ACTIVE at the new version")
    parser.add_argument("--with-labels", action="store_true", help="add reviewers' labels from ClickHouse (sluice.labels) to the training rows")
    parser.add_argument("--labels-pipeline", help="the pipeline instance whose labels to read (default: --pipeline)")
    parser.add_argument("--labels-days", default=90, type=int, help="labels of the last N days (default 90)")
    parser.add_argument("--label-weight", default=5.0, type=float, help="weight of a reviewed label against a generated row (default 5)")
    parser.add_argument("--clickhouse-url", help="ClickHouse HTTP URL (default: SLUICE_CLICKHOUSE_URL or http://127.0.0.1:8123)")
    return parser.parse_args()


def fit_weighted(model, x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> None:
    """Fits with per-row weights: directly, or on a pipeline's last step; without labels exactly as before (same bytes)."""
    if np.all(weights == 1.0):
        model.fit(x, y)
    elif hasattr(model, "steps"):
        model.fit(x, y, **{f"{model.steps[-1][0]}__sample_weight": weights})
    else:
        model.fit(x, y, sample_weight=weights)


def with_labels(x: np.ndarray, y: np.ndarray, labeled: tuple[np.ndarray, np.ndarray], weight: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Generated rows (weight 1) followed by the labeled ones (weight `weight`)."""
    lx, ly = labeled
    weights = np.concatenate([np.ones(len(y)), np.full(len(ly), weight)])
    return np.vstack([x, lx]), np.concatenate([y, ly]), weights


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


def onnx_scores(sess: ort.InferenceSession, x: np.ndarray) -> np.ndarray:
    return sess.run([ONNX_OUTPUT], {ONNX_INPUT: x})[0][:, 1].astype(np.float64)


def median_latency_ms(sess: ort.InferenceSession, x: np.ndarray, batch: int) -> float:
    rows = x[:batch]
    return median_ms(lambda: onnx_scores(sess, rows))


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
    n_fit, n_select = time_split(n, args.holdout_fraction)
    fit, holdout = slice(0, n_fit), slice(n_fit, n)
    print(f"{n} rows: {n_fit} training ({n_select} fit + {n_fit - n_select} validation for selection), {n - n_fit} held out", file=sys.stderr)

    labels_card = None
    labeled = (np.zeros((0, len(features)), dtype=np.float32), np.zeros(0, dtype=np.int64))
    if args.with_labels:
        if args.label_weight <= 0:
            sys.exit(f"--label-weight must be above 0, got {args.label_weight}")
        source = args.labels_pipeline or args.pipeline
        rows = fetch(label_sql(source, args.labels_days), args.clickhouse_url)
        lx, ly, stats = labeled_rows(rows, features, SIGNUP_RISK_CLASSES)
        labeled = (np.array(lx, dtype=np.float32).reshape(-1, len(features)), np.array(ly, dtype=np.int64))
        labels_card = {"source": f"ClickHouse sluice.labels of {source}, last {args.labels_days} days, joined to sluice.model_outputs features", "weight": args.label_weight, **stats}
        print(f"labels of {source}: {stats['used']} used ({stats['positives']} block) of {stats['labels']}; skipped {stats['skipped']}", file=sys.stderr)
        if stats["used"] == 0:
            print("no usable label: the model trains on generated rows only (the card says so)", file=sys.stderr)

    selection = []
    for name, (model, _) in candidates(args.random_state).items():
        started = time.perf_counter()
        fit_weighted(model, *with_labels(x[:n_select], y[:n_select], labeled, args.label_weight))
        fit_seconds = time.perf_counter() - started
        sess = session(to_onnx_model(model, len(features)).SerializeToString())
        validation_auc = float(roc_auc_score(y[n_select:n_fit], onnx_scores(sess, x[n_select:n_fit])))
        latency = median_latency_ms(sess, x, 64)
        selection.append({"algorithm": name, "validation_auc": validation_auc, "fit_seconds": fit_seconds, "onnx_batch_64_median_ms": latency})
        print(f"  {name}: validation AUC {validation_auc:.4f}, ONNX batch-64 median {latency:.3f} ms", file=sys.stderr)
    eligible = [entry for entry in selection if entry["onnx_batch_64_median_ms"] < LATENCY_BUDGET_MS] or selection
    chosen = max(eligible, key=lambda entry: entry["validation_auc"])["algorithm"]

    model, hyperparameters = candidates(args.random_state)[chosen]
    fit_weighted(model, *with_labels(x[fit], y[fit], labeled, args.label_weight))
    onnx_model = to_onnx_model(model, len(features))
    model_bytes = onnx_model.SerializeToString()
    sess = session(model_bytes)
    holdout_scores = onnx_scores(sess, x[holdout])
    parity = check_parity(holdout_scores, model.predict_proba(x[holdout])[:, 1], 1e-4)

    holdout_metrics = metrics(y[holdout], holdout_scores)
    holdout_metrics["ground_truth_auc"] = float(roc_auc_score(y[holdout], risk[holdout]))
    train_metrics = metrics(y[fit], onnx_scores(sess, x[fit]))
    print(f"chosen {chosen}: held-out AUC {holdout_metrics['auc']:.4f} (ground-truth ceiling {holdout_metrics['ground_truth_auc']:.4f})", file=sys.stderr)

    pipeline_dir, version, out_dir = output_dir(args.models_dir, args.pipeline, args.version)

    card = {
        "card_version": 1,
        "pipeline": args.pipeline,
        "version": version,
        "created_at": utc_now(),
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
            # Reviewers' labels added to the training part (--with-labels); null when trained without them.
            "labels": labels_card,
        },
        "selection": {"rule": f"highest validation AUC among candidates with ONNX batch-64 median < {LATENCY_BUDGET_MS} ms", "candidates": selection},
        "metrics": {"holdout": holdout_metrics, "training": train_metrics},
        "inference": {
            "runtime": f"onnxruntime {ort.__version__} (Python), 1 thread",
            **{f"batch_{batch}_median_ms": median_latency_ms(sess, x[holdout], batch) for batch in (1, 32, 64, 256)},
        },
        "reference": {
            "data": "holdout",
            "binning": BINNING,
            "features": {
                name: distribution(x[holdout][:, i].astype(np.float64), feature_edges(x[fit][:, i].astype(np.float64), MISSING))
                for i, name in enumerate(features)
            },
            "score": distribution(holdout_scores, SCORE_EDGES),
            "examples": reference_examples(sess, x[holdout]),
        },
        "environment": environment(),
    }

    write_version(out_dir, model_bytes, card)
    if args.activate:
        activate(pipeline_dir, version)
    print(json.dumps({"version": version, "dir": str(out_dir), "algorithm": chosen, "holdout": holdout_metrics}, indent=2))


if __name__ == "__main__":
    main()
