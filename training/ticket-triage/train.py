"""Train the ticket-triage text classifier, export it to ONNX, write its model card.

Input is the directory training/ticket-triage/export-data.ts wrote: the hashed
feature vectors as computed by the serving code (CSR: indptr.u32, indices.u16,
values.f32), rows.csv (index, event type, ground-truth category, occurred_at,
monitored values) and meta.json. Features are never recomputed here.

Rows are split by time: the oldest 80 % for training, the newest 20 % held out.
The inverse regularization strength C is chosen by macro-F1 on a validation
slice (the newest 20 % of the training part); the winner is refitted on the
whole training part and evaluated once on the held-out rows. Writes
models/<pipeline>/<version>/{model.onnx, card.json, parity.json}: parity.json
holds scikit-learn's probabilities for the first held-out rows, identified by
(seed, index), which test/unit/ticket-triage-model.test.ts regenerates and
scores with onnxruntime-node on the TypeScript features.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import scipy
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, log_loss, roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # training/, for common.py
from common import (  # noqa: E402
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

C_GRID = (1.0, 2.0, 4.0)
MAX_ITER = 1000
TOLERANCE = 1e-4
PARITY_ROWS = 1000
PARITY_TOLERANCE = 1e-5
SCORE_EDGES = [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99]
ROW_COLUMNS = ("index", "event_type", "category", "drawn_from", "occurred_at_ms")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser, data_help="directory from training/ticket-triage/export-data.ts", pipeline="ticket-triage")
    parser.add_argument("--holdout-fraction", default=0.2, type=float)
    parser.add_argument("--c", type=float, action="append", help="candidate C values (repeatable); default %s" % (C_GRID,))
    parser.add_argument("--evaluate-only", action="store_true", help="print the held-out metrics, write nothing (for comparing exports)")
    parser.add_argument("--activate", action="store_true", help="also point models/<pipeline>/ACTIVE at the new version")
    return parser.parse_args()


def load(data: Path) -> tuple[dict, sp.csr_matrix, dict[str, np.ndarray], np.ndarray]:
    meta = json.loads((data / "meta.json").read_text())
    indptr = np.fromfile(data / "indptr.u32", dtype="<u4").astype(np.int64)
    indices = np.fromfile(data / "indices.u16", dtype="<u2").astype(np.int32)
    values = np.fromfile(data / "values.f32", dtype="<f4")
    n, dims = meta["count"], meta["dims"]
    if len(indptr) != n + 1 or indptr[-1] != len(indices) or len(indices) != len(values) or len(meta["features"]) != dims:
        sys.exit(f"{data}: the CSR files do not match meta.json; regenerate them with training/ticket-triage/export-data.ts")
    x = sp.csr_matrix((values, indices, indptr), shape=(n, dims), dtype=np.float32)
    with (data / "rows.csv").open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        table = list(reader)
    expected = list(ROW_COLUMNS) + list(meta["monitored"])
    if header != expected or len(table) != n:
        sys.exit(f"{data}/rows.csv has columns {header} and {len(table)} rows; expected {expected} and {n}")
    columns = {name: [row[i] for row in table] for i, name in enumerate(header)}
    rows = {
        "index": np.asarray(columns["index"], dtype=np.int64),
        "event_type": np.asarray(columns["event_type"]),
        "category": np.asarray(columns["category"]),
        "occurred_at_ms": np.asarray(columns["occurred_at_ms"], dtype=np.float64),
    }
    monitored = np.asarray([columns[name] for name in meta["monitored"]], dtype=np.float64).T
    return meta, x, rows, monitored


def fit(c: float, x: sp.csr_matrix, y: np.ndarray) -> LogisticRegression:
    # lbfgs with more than two classes fits the multinomial (softmax) model.
    model = LogisticRegression(C=c, max_iter=MAX_ITER, tol=TOLERANCE)
    model.fit(x, y)
    return model


def onnx_probabilities(sess: ort.InferenceSession, x: sp.csr_matrix) -> np.ndarray:
    return sess.run([ONNX_OUTPUT], {ONNX_INPUT: x.toarray().astype(np.float32)})[0].astype(np.float64)


def median_latency_ms(sess: ort.InferenceSession, x: sp.csr_matrix, batch: int) -> float:
    rows = x[:batch].toarray().astype(np.float32)
    return median_ms(lambda: sess.run([ONNX_OUTPUT], {ONNX_INPUT: rows}))


def metrics(y: np.ndarray, probabilities: np.ndarray, classes: list[str]) -> dict:
    """Flat numbers only (the card's metrics.holdout is a map of numbers)."""
    predicted = probabilities.argmax(axis=1)
    labels = list(range(len(classes)))
    # float32 ONNX outputs sum to 1 within ~1e-7; log_loss wants them exact.
    probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)
    out = {
        "auc": float(roc_auc_score(y, probabilities, multi_class="ovr", average="macro", labels=labels)),
        "log_loss": float(log_loss(y, probabilities, labels=labels)),
        "base_rate": float(np.mean(y == classes.index("security"))),
        "macro_f1": float(f1_score(y, predicted, average="macro", labels=labels)),
        "accuracy": float(accuracy_score(y, predicted)),
        "mean_top_probability": float(probabilities.max(axis=1).mean()),
    }
    for i, name in enumerate(classes):
        out[f"f1_{name}"] = float(f1_score(y == i, predicted == i))
    return out


def mix(y: np.ndarray, classes: list[str]) -> dict:
    counts = np.bincount(y, minlength=len(classes))
    return {name: float(counts[i]) / len(y) for i, name in enumerate(classes)}


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    meta, x, rows, monitored = load(args.data)
    classes = list(meta["classes"])
    index_of = {name: i for i, name in enumerate(classes)}
    y = np.asarray([index_of[name] for name in rows["category"]], dtype=np.int64)

    order = np.argsort(rows["occurred_at_ms"], kind="stable")
    x, y, monitored = x[order], y[order], monitored[order]
    rows = {name: column[order] for name, column in rows.items()}
    n = len(y)
    n_fit, n_select = time_split(n, args.holdout_fraction)
    fit_rows, holdout = slice(0, n_fit), slice(n_fit, n)
    print(f"{n} rows x {meta['dims']} dims: {n_fit} training ({n_select} fit + {n_fit - n_select} validation), {n - n_fit} held out", file=sys.stderr)

    selection = []
    for c in args.c or C_GRID:
        t0 = time.perf_counter()
        candidate = fit(c, x[:n_select], y[:n_select])
        fit_seconds = time.perf_counter() - t0
        predicted = candidate.predict(x[n_select:n_fit])
        macro_f1 = float(f1_score(y[n_select:n_fit], predicted, average="macro"))
        selection.append({"C": c, "validation_macro_f1": macro_f1, "fit_seconds": fit_seconds, "iterations": int(candidate.n_iter_.max())})
        print(f"  C={c:g}: validation macro-F1 {macro_f1:.4f} ({fit_seconds:.1f} s, {int(candidate.n_iter_.max())} iterations)", file=sys.stderr)
    chosen_c = max(selection, key=lambda entry: entry["validation_macro_f1"])["C"]

    model = fit(chosen_c, x[fit_rows], y[fit_rows])
    if list(model.classes_) != list(range(len(classes))):
        sys.exit(f"the training part lacks a class: {model.classes_}")
    model_bytes = to_onnx_model(model, meta["dims"]).SerializeToString()
    sess = session(model_bytes)
    holdout_probabilities = onnx_probabilities(sess, x[holdout])
    sklearn_holdout = model.predict_proba(x[holdout])
    parity = check_parity(holdout_probabilities, sklearn_holdout, PARITY_TOLERANCE)

    holdout_metrics = metrics(y[holdout], holdout_probabilities, classes)
    train_metrics = metrics(y[fit_rows], onnx_probabilities(sess, x[fit_rows]), classes)
    predicted = holdout_probabilities.argmax(axis=1)
    matrix = confusion_matrix(y[holdout], predicted, labels=list(range(len(classes))))
    print(f"chosen C={chosen_c:g}: held-out macro-F1 {holdout_metrics['macro_f1']:.4f}, accuracy {holdout_metrics['accuracy']:.4f}, AUC {holdout_metrics['auc']:.4f}", file=sys.stderr)
    print("confusion matrix (rows actual, columns predicted):", classes, file=sys.stderr)
    for name, counts in zip(classes, matrix):
        print(f"  {name:>16} {' '.join(f'{c:6d}' for c in counts)}", file=sys.stderr)
    if args.evaluate_only:
        print(json.dumps({"dims": meta["dims"], "C": chosen_c, "holdout": holdout_metrics, "selection": selection, "feature_micros_per_row": meta["featureMicrosPerRow"], "onnx_batch_64_median_ms": median_latency_ms(sess, x[holdout], 64)}, indent=2))
        return

    pipeline_dir, version, out_dir = output_dir(args.models_dir, args.pipeline, args.version)

    occurred = rows["occurred_at_ms"]
    security = index_of["security"]
    top_probability = holdout_probabilities.max(axis=1)
    card = {
        "card_version": 1,
        "pipeline": args.pipeline,
        "version": version,
        "created_at": utc_now(),
        "algorithm": "logistic_regression",
        "hyperparameters": {"LogisticRegression": {"C": chosen_c, "solver": "lbfgs", "max_iter": MAX_ITER, "tol": TOLERANCE, "multinomial": True}},
        "feature_spec": meta["featureSpec"],
        "features": meta["features"],
        "monitored": meta["monitored"],
        "onnx": {
            "file": "model.onnx",
            "sha256": hashlib.sha256(model_bytes).hexdigest(),
            "input": ONNX_INPUT,
            "output": ONNX_OUTPUT,
            "positive_class_index": 0,
            "classes": classes,
            "opset": TARGET_OPSET,
            "max_abs_diff_vs_sklearn": parity,
        },
        "label": "the ground-truth queue of the generated event (5 % label noise, as from human triage)",
        "data": {
            "source": f"{meta['generator']} via {meta['exporter']}",
            "seed": meta["seed"],
            "start_ms": meta["startMs"],
            "spacing_ms": meta["spacingMs"],
            "rows": n,
            "split": "by occurred_at: oldest rows train, newest held out",
            "positives": "rows whose category is security (multiclass: the class the policy cares most about)",
            "training": {"rows": n_fit, "positives": int(np.sum(y[fit_rows] == security)), "window": {"from": iso(occurred[0]), "to": iso(occurred[n_fit - 1])}},
            "holdout": {"rows": n - n_fit, "positives": int(np.sum(y[holdout] == security)), "window": {"from": iso(occurred[n_fit]), "to": iso(occurred[-1])}},
        },
        "selection": {"rule": "highest validation macro-F1 over C", "candidates": selection},
        "metrics": {
            "holdout": holdout_metrics,
            "training": train_metrics,
            "confusion_matrix": {"labels": classes, "rows": "actual", "columns": "predicted", "counts": matrix.tolist()},
        },
        "inference": {
            "runtime": f"onnxruntime {ort.__version__} (Python), 1 thread, dense float32 input",
            **{f"batch_{batch}_median_ms": median_latency_ms(sess, x[holdout], batch) for batch in (1, 32, 64, 256)},
            "feature_micros_per_row": meta["featureMicrosPerRow"],
        },
        "reference": {
            "data": "holdout",
            "binning": BINNING,
            "features": {
                name: distribution(monitored[holdout][:, i], feature_edges(monitored[fit_rows][:, i]))
                for i, name in enumerate(meta["monitored"])
            },
            "score": distribution(top_probability, SCORE_EDGES),
            # A few rows only: each is a whole hashed text vector.
            "examples": reference_examples(sess, x[holdout], count=4),
            "category_mix": {"actual": mix(y[holdout], classes), "predicted": mix(predicted, classes)},
            "event_type_mix": {t: float(np.mean(rows["event_type"][holdout] == t)) for t in sorted(set(rows["event_type"]))},
        },
        "environment": environment(scipy=scipy.__version__),
        "training_seconds": time.perf_counter() - started,
    }
    # The first held-out rows (the split is by time, and time by index, so a contiguous run of indices).
    parity_indices = rows["index"][holdout][:PARITY_ROWS]
    parity_probabilities = sklearn_holdout[:PARITY_ROWS]
    if len(parity_indices) != len(parity_probabilities) or len(parity_indices) == 0:
        sys.exit(f"parity fixture has {len(parity_indices)} indices and {len(parity_probabilities)} rows of probabilities")
    parity_fixture = {
        "about": "scikit-learn predict_proba of held-out rows, for the TypeScript parity test; rows are regenerated from (seed, index)",
        "generator": meta["generator"],
        "seed": meta["seed"],
        "start_ms": meta["startMs"],
        "spacing_ms": meta["spacingMs"],
        "feature_spec": meta["featureSpec"],
        "classes": classes,
        "indices": [int(i) for i in parity_indices],
        "probabilities": parity_probabilities.tolist(),
    }

    write_version(out_dir, model_bytes, card, {"parity.json": json.dumps(parity_fixture) + "\n"})
    if args.activate:
        activate(pipeline_dir, version)
    print(json.dumps({"version": version, "dir": str(out_dir), "C": chosen_c, "holdout": holdout_metrics}, indent=2))


if __name__ == "__main__":
    main()
