"""Reviewers' labels from ClickHouse, as training rows (train.py --with-labels).

A label (sluice.labels, written by the ClickHouse sink from <p>.feedback) says
what a reviewer decided for an event; it carries no features. The features are
the ones the score stage computed for that event, kept in sluice.model_outputs
(feature_names / feature_values: for signup-risk every model feature, by name).
So a labeled event becomes a training row by joining its latest label to the
model output of the model version that decided it: the exact numbers the model
saw, computed by the serving code, never recomputed here.

Labels are read over ClickHouse's HTTP interface (SLUICE_CLICKHOUSE_URL, default
http://127.0.0.1:8123; CLICKHOUSE_USER / CLICKHOUSE_PASSWORD), with SQL that
runs on ClickHouse 18.16 and current ClickHouse.

    python training/labels.py --pipeline signup-risk --days 90    # prints what it would use, as JSON
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request

DEFAULT_URL = "http://127.0.0.1:8123"
# signup-risk's decisions as a binary label: a reviewer's block is a risky signup, an approve is not.
# Any other decision (review is never a reviewer's answer) is not a label for this model.
SIGNUP_RISK_CLASSES = {"block": 1, "approve": 0}


def label_sql(pipeline: str, days: int) -> str:
    """Latest label per event, joined to the deciding model version's features (18.16 and current ClickHouse)."""
    if not re.fullmatch(r"[A-Za-z0-9._-]+", pipeline):
        raise ValueError(f"pipeline name {pipeline!r}: letters, digits, '.', '_' and '-' only")
    if not isinstance(days, int) or days < 1:
        raise ValueError(f"days must be a whole number >= 1, got {days!r}")
    return f"""SELECT event_id, given_label, item_kind, version, names, vals
FROM
(
    SELECT
        event_id,
        argMax(label, labeled_at_ms) AS given_label,
        argMax(kind, labeled_at_ms) AS item_kind,
        argMax(model_version, labeled_at_ms) AS version
    FROM sluice.labels
    WHERE pipeline = '{pipeline}' AND labeled_at >= now() - INTERVAL {days} DAY
    GROUP BY event_id
)
ANY LEFT JOIN
(
    SELECT
        event_id,
        model_version AS version,
        argMax(feature_names, scored_at_ms) AS names,
        argMax(feature_values, scored_at_ms) AS vals
    FROM sluice.model_outputs
    WHERE pipeline = '{pipeline}'
    GROUP BY event_id, model_version
) USING (event_id, version)
ORDER BY event_id
FORMAT JSONEachRow"""


def fetch(sql: str, url: str | None = None) -> list[dict]:
    """Runs a query over ClickHouse's HTTP interface; a server that cannot be reached or refuses the query exits naming the fix."""
    base = url or os.environ.get("SLUICE_CLICKHOUSE_URL") or DEFAULT_URL
    params = {}
    if os.environ.get("CLICKHOUSE_USER"):
        params["user"] = os.environ["CLICKHOUSE_USER"]
    if os.environ.get("CLICKHOUSE_PASSWORD"):
        params["password"] = os.environ["CLICKHOUSE_PASSWORD"]
    target = base.rstrip("/") + "/" + (f"?{urllib.parse.urlencode(params)}" if params else "")
    request = urllib.request.Request(target, data=sql.encode("utf-8"), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            text = response.read().decode("utf-8")
    except urllib.error.HTTPError as error:
        detail = error.read().decode("utf-8", "replace").strip().splitlines()[0:1]
        sys.exit(f"ClickHouse at {base} refused the label query ({error.code}: {detail[0] if detail else ''}); is the schema current? Run: npx sluice clickhouse migrate")
    except (urllib.error.URLError, OSError) as error:
        sys.exit(f"Cannot reach ClickHouse at {base} for the labels ({error}); start the stack (npx sluice stack up) or set SLUICE_CLICKHOUSE_URL")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def labeled_rows(rows: list[dict], features: list[str], classes: dict[str, int]) -> tuple[list[list[float]], list[int], dict]:
    """Training rows (features in `features` order, label as a class index) and what was used or skipped, and why."""
    x: list[list[float]] = []
    y: list[int] = []
    stats = {"labels": len(rows), "used": 0, "positives": 0, "by_kind": {}, "skipped": {"no_features": 0, "features_mismatch": 0, "not_a_class": 0}}
    for row in rows:
        cls = classes.get(row.get("given_label", ""))
        if cls is None:
            stats["skipped"]["not_a_class"] += 1
            continue
        names, values = row.get("names") or [], row.get("vals") or []
        if not names:
            stats["skipped"]["no_features"] += 1
            continue
        by_name = dict(zip(names, values))
        if any(name not in by_name for name in features):
            stats["skipped"]["features_mismatch"] += 1
            continue
        x.append([float(by_name[name]) for name in features])
        y.append(cls)
        stats["used"] += 1
        stats["positives"] += cls
        kind = row.get("item_kind") or "review"
        stats["by_kind"][kind] = stats["by_kind"].get(kind, 0) + 1
    return x, y, stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", default="signup-risk", help="the pipeline instance whose labels to read")
    parser.add_argument("--days", default=90, type=int, help="labels of the last N days")
    parser.add_argument("--features", help="comma-separated feature names (default: those of training/data/signups.csv.meta.json)")
    parser.add_argument("--url", help=f"ClickHouse HTTP URL (default SLUICE_CLICKHOUSE_URL or {DEFAULT_URL})")
    args = parser.parse_args()
    features = args.features.split(",") if args.features else json.load(open("training/data/signups.csv.meta.json"))["features"]
    x, y, stats = labeled_rows(fetch(label_sql(args.pipeline, args.days), args.url), features, SIGNUP_RISK_CLASSES)
    print(json.dumps({"pipeline": args.pipeline, **stats, "rows": [dict(features=row, label=label) for row, label in zip(x, y)]}))


if __name__ == "__main__":
    main()
