"""What the training scripts share: ONNX export and sessions, timing, the model
card's reference distributions, and where and how a new model version is
written (models/<pipeline>/<version>/).

Imported as a sibling module by training/train.py (its own folder is on
sys.path when run as a script) and by training/ticket-triage/train.py (which
puts training/ on sys.path first).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import skl2onnx
import sklearn
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType

TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
ONNX_INPUT = "features"
ONNX_OUTPUT = "probabilities"
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
BINNING = "counts[i] counts values v with edges[i-1] < v <= edges[i]; counts has len(edges)+1 entries, the first open below, the last open above"
VERSION_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]*"


def add_common_arguments(parser: argparse.ArgumentParser, data_help: str, pipeline: str) -> None:
    """--data, --pipeline, --models-dir and --version, in that order."""
    parser.add_argument("--data", required=True, type=Path, help=data_help)
    parser.add_argument("--pipeline", default=pipeline)
    parser.add_argument("--models-dir", default=Path("models"), type=Path)
    parser.add_argument("--version", help="default: <pipeline>-<UTC date>.<next free number>")


def time_split(n: int, holdout_fraction: float) -> tuple[int, int]:
    """(n_fit, n_select) of rows sorted by time: the oldest n_fit train, the rest are held out;
    of the training part, the oldest n_select fit candidates and the rest validate them."""
    n_fit = int(round(n * (1 - holdout_fraction)))
    return n_fit, int(round(n_fit * 0.8))


def to_onnx_model(model, n_features: int) -> onnx.ModelProto:
    """A fitted classifier (or a scikit-learn pipeline ending in one) as ONNX: float32
    input `features` [None, n_features], class probabilities as a plain tensor (no zipmap)."""
    classifier = model.steps[-1][1] if hasattr(model, "steps") else model
    return to_onnx(
        model,
        initial_types=[(ONNX_INPUT, FloatTensorType([None, n_features]))],
        options={id(classifier): {"zipmap": False}},
        target_opset=TARGET_OPSET,
    )


def session(model_bytes: bytes) -> ort.InferenceSession:
    """One thread, no spinning, all graph optimizations: as the Node processors run it."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def median_ms(call: Callable[[], object], runs: int = 200, warmup: int = 20) -> float:
    """Median wall time of `call` in milliseconds, after `warmup` untimed calls."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def check_parity(onnx_values: np.ndarray, sklearn_values: np.ndarray, tolerance: float) -> float:
    """The largest absolute difference between ONNX and scikit-learn outputs; exits when over tolerance."""
    parity = float(np.max(np.abs(onnx_values - sklearn_values)))
    if parity > tolerance:
        sys.exit(f"ONNX and scikit-learn disagree by {parity} on held-out rows; not exporting")
    return parity


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


def feature_edges(train_values: np.ndarray, missing: float | None = None) -> list[float]:
    """Fixed bin edges from the training data: binary features split at 0.5; others at
    deciles, with the `missing` sentinel (when given and present) in a bin of its own."""
    if np.all(np.isin(np.unique(train_values), (0.0, 1.0))):
        return [0.5]
    present = train_values if missing is None else train_values[train_values != missing]
    edges = sorted({round(float(q), 6) for q in np.quantile(present, np.linspace(0.1, 0.9, 9))})
    if missing is not None and np.any(train_values == missing):
        edges = [missing] + [edge for edge in edges if edge > missing]
    return edges


def reference_examples(sess: ort.InferenceSession, x: np.ndarray, count: int = 32) -> dict:
    """`count` feature rows spread evenly over `x`, with the class probabilities onnxruntime
    gives them: the card's proof of what the file computes. `sluice model register` and the
    score stage score the rows again and refuse the version if any probability differs by
    more than 1e-6 (a wrong file, a wrong signature, or a runtime that computes otherwise)."""
    n = x.shape[0]
    rows = x[np.linspace(0, n - 1, num=min(count, n), dtype=np.int64)]
    rows = (rows.toarray() if hasattr(rows, "toarray") else np.asarray(rows)).astype(np.float32)  # scipy sparse (text features) or dense
    probabilities = sess.run([ONNX_OUTPUT], {ONNX_INPUT: rows})[0]
    return {
        "output": ONNX_OUTPUT,
        "rows": [[float(value) for value in row] for row in rows],
        "probabilities": [[float(value) for value in row] for row in probabilities],
    }


def iso(ms: float) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc).isoformat().replace("+00:00", "Z")


def utc_now() -> str:
    """The card's created_at: now, UTC, to the second."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def next_version(pipeline_dir: Path, pipeline: str) -> str:
    today = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    taken = [
        int(match.group(1))
        for child in (pipeline_dir.iterdir() if pipeline_dir.exists() else [])
        if (match := re.fullmatch(rf"{re.escape(pipeline)}-{today}\.(\d+)", child.name))
    ]
    return f"{pipeline}-{today}.{max(taken, default=0) + 1}"


def output_dir(models_dir: Path, pipeline: str, version: str | None) -> tuple[Path, str, Path]:
    """(models/<pipeline>, the version, models/<pipeline>/<version>); exits when the version
    is not a valid name or already exists (model versions are immutable)."""
    pipeline_dir = models_dir / pipeline
    version = version or next_version(pipeline_dir, pipeline)
    if not re.fullmatch(VERSION_PATTERN, version):
        sys.exit(f"version '{version}' may only contain letters, digits, '.', '_' and '-'")
    out_dir = pipeline_dir / version
    if out_dir.exists():
        sys.exit(f"{out_dir} already exists; model versions are immutable, pick another --version")
    return pipeline_dir, version, out_dir


def environment(**extra: str) -> dict:
    """The card's environment: the versions that made the model; `extra` (e.g. scipy) after numpy."""
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        **extra,
        "scikit-learn": sklearn.__version__,
        "skl2onnx": skl2onnx.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
    }


def write_version(out_dir: Path, model_bytes: bytes, card: dict, extra_files: dict[str, str] | None = None) -> None:
    """Writes model.onnx, card.json and any `extra_files` (name: text) into a new out_dir."""
    out_dir.mkdir(parents=True)
    (out_dir / "model.onnx").write_bytes(model_bytes)
    (out_dir / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    for name, text in (extra_files or {}).items():
        (out_dir / name).write_text(text)


def activate(pipeline_dir: Path, version: str) -> None:
    """Points models/<pipeline>/ACTIVE at `version`."""
    (pipeline_dir / "ACTIVE").write_text(version + "\n")
