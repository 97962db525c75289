"""Build signup-risk's drill model: the champion wrapped in an ONNX graph that
inverts it, so its score (P(risky)) is 1 - the champion's for every input.

A drill model exists so teams can rehearse a bad promotion end to end (detect
the decision mix jumping, roll back, replay the window) on real machinery. Its
card is marked `"drill": true`; `sluice model promote` refuses it without
`--drill`.

The wrapper keeps the champion's graph whole (input `features`, same
operators), renames its output, and appends three nodes:
    risky = probabilities[:, 1:2]       (Slice)
    inverted_risky = 1 - risky          (Sub)
    probabilities = [risky, inverted_risky]   (Concat: legit' = risky, risky' = 1 - risky)

Reads the training CSV (training/export-data.ts) only to describe the drill
model honestly in its card: held-out metrics and the score's reference
distribution on the same held-out rows as the champion, and reference examples
(feature rows with the probabilities onnxruntime gives them) that
`sluice model register` and the score stage check to within 1e-6.

    training/.venv/bin/python training/drill.py --data training/data/signups.csv
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from common import ONNX_OUTPUT, distribution, environment, reference_examples, session, time_split, utc_now, write_version
from train import SCORE_EDGES, load, metrics, onnx_scores

DRILL_VERSION = "signup-risk-drill-inverted"
WRAPPED_OUTPUT = "champion_probabilities"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path, help="CSV from training/export-data.ts (the champion's training data)")
    parser.add_argument("--models-dir", default=Path("models"), type=Path)
    parser.add_argument("--pipeline", default="signup-risk")
    parser.add_argument("--champion", help="the version to wrap; default: the one named in models/<pipeline>/ACTIVE")
    parser.add_argument("--version", default=DRILL_VERSION)
    parser.add_argument("--holdout-fraction", default=0.2, type=float)
    return parser.parse_args()


def inverted(champion: onnx.ModelProto) -> onnx.ModelProto:
    """The champion's graph with its probabilities output replaced by [p_risky, 1 - p_risky]."""
    model = onnx.ModelProto()
    model.CopyFrom(champion)
    graph = model.graph
    outputs = [output for output in graph.output if output.name == ONNX_OUTPUT]
    if len(outputs) != 1:
        sys.exit(f"the champion has no single '{ONNX_OUTPUT}' output; cannot wrap it")
    for node in graph.node:
        node.output[:] = [WRAPPED_OUTPUT if name == ONNX_OUTPUT else name for name in node.output]
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array([1], dtype=np.int64), "drill_start"),
            numpy_helper.from_array(np.array([2], dtype=np.int64), "drill_end"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "drill_axis"),
            numpy_helper.from_array(np.array(1.0, dtype=np.float32), "drill_one"),
        ]
    )
    graph.node.extend(
        [
            helper.make_node("Slice", [WRAPPED_OUTPUT, "drill_start", "drill_end", "drill_axis"], ["drill_risky"], name="drill_risky"),
            helper.make_node("Sub", ["drill_one", "drill_risky"], ["drill_inverted"], name="drill_inverted"),
            helper.make_node("Concat", ["drill_risky", "drill_inverted"], [ONNX_OUTPUT], name="drill_concat", axis=1),
        ]
    )
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(ONNX_OUTPUT, TensorProto.FLOAT, [None, 2]))
    graph.name = f"{graph.name}_drill_inverted"
    onnx.checker.check_model(model)
    return model


def main() -> None:
    args = parse_args()
    pipeline_dir = args.models_dir / args.pipeline
    champion_version = args.champion or (pipeline_dir / "ACTIVE").read_text().strip()
    champion_dir = pipeline_dir / champion_version
    champion_card = json.loads((champion_dir / "card.json").read_text())
    champion_bytes = (champion_dir / champion_card["onnx"]["file"]).read_bytes()
    if hashlib.sha256(champion_bytes).hexdigest() != champion_card["onnx"]["sha256"]:
        sys.exit(f"{champion_dir}: model.onnx does not match its card; restore it before wrapping it")
    out_dir = pipeline_dir / args.version
    if out_dir.exists():
        sys.exit(f"{out_dir} already exists; model versions are immutable, remove it first to rebuild the drill (it is not a real version)")

    features, x, y, _risk, occurred = load(args.data)
    if features != champion_card["features"]:
        sys.exit(f"{args.data} has other feature columns than {champion_version}; regenerate it with training/export-data.ts")
    order = np.argsort(occurred, kind="stable")
    x, y = x[order], y[order]
    n_fit, _ = time_split(len(y), args.holdout_fraction)
    holdout = slice(n_fit, len(y))

    model_bytes = inverted(onnx.load_from_string(champion_bytes)).SerializeToString()
    drill, champion = session(model_bytes), session(champion_bytes)
    drill_scores = onnx_scores(drill, x[holdout])
    gap = float(np.max(np.abs(drill_scores - (1.0 - onnx_scores(champion, x[holdout])))))
    if gap > 1e-6:
        sys.exit(f"the drill model's score differs from 1 - the champion's by {gap}; not writing it")

    card = {
        **champion_card,
        "version": args.version,
        "created_at": utc_now(),
        "drill": True,
        "algorithm": f"drill_inverted({champion_card['algorithm']})",
        "description": f"DRILL ONLY: scores 1 - {champion_version}'s score for every input; for rehearsing detection, rollback and replay",
        "wraps": {"version": champion_version, "sha256": champion_card["onnx"]["sha256"], "max_abs_diff_vs_one_minus_champion": gap},
        "onnx": {
            **{key: value for key, value in champion_card["onnx"].items() if key != "max_abs_diff_vs_sklearn"},
            "sha256": hashlib.sha256(model_bytes).hexdigest(),
        },
        "metrics": {"holdout": {**metrics(y[holdout], drill_scores), "ground_truth_auc": champion_card["metrics"]["holdout"]["ground_truth_auc"]}},
        "reference": {
            **champion_card["reference"],
            "score": distribution(drill_scores, SCORE_EDGES),
            "examples": reference_examples(drill, x[holdout]),
        },
        "environment": environment(),
    }
    card.pop("selection", None)
    card.pop("inference", None)
    write_version(out_dir, model_bytes, card)
    print(json.dumps({"version": args.version, "dir": str(out_dir), "wraps": champion_version, "holdout_auc": card["metrics"]["holdout"]["auc"]}, indent=2))


if __name__ == "__main__":
    main()
