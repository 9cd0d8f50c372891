"""The distortion gate on real adverse-condition photos and on deliberately unusable frames.

Usage::

    .venv/bin/python bench/adverse_weather_baseline.py [--real DIR] [--manifest CSV]
        [--unusable DIR] [--csv OUT.csv]

``--real`` (default ``/work/data/adverse/real``) holds the photos listed in ``--manifest``
(default ``bench/data/adverse_weather/MANIFEST.csv``; re-gather them with
``bench/gather_adverse_weather.py``). ``--unusable`` (default ``/work/data/adverse/unusable``)
holds the output of ``bench/unusable_variants.py`` with its ``unusable.csv``. Every image goes
through the real path: ``decode_image`` (full size) then ``assess_quality`` under the default
``QualityThresholds``. Prints, per condition and per unusable kind, the rejection rate, the
reason codes and the spread (min / 5th pct / median / 95th pct / max) of each metric, then
the issue-18 targets: at most 5 % of the real photos rejected, at least 95 % of the
unusable ones. ``--csv`` writes one row per image (metrics and verdict). Exit status is 0;
this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from traffic_platform.domain.errors import TrafficPlatformError
from traffic_platform.domain.images import decode_image
from traffic_platform.domain.quality import QualityThresholds, assess_quality

MAX_BYTES = 25 * 1024 * 1024
MAX_PIXELS = 50_000_000
METRICS = ("sharpness", "brightness", "contrast", "clipped_share", "uniform_share")
HERE = Path(__file__).resolve().parent


def judge(path: Path, t: QualityThresholds) -> dict:
    """Metrics and verdict of one file (decode failures count as rejected)."""
    try:
        decoded = decode_image(
            path.read_bytes(),
            declared_content_type=None,
            max_bytes=MAX_BYTES,
            max_pixels=MAX_PIXELS,
        )
    except TrafficPlatformError as exc:
        return {
            "ok": False,
            "reasons": [exc.code],
            "long_side": float("nan"),
            **{m: float("nan") for m in METRICS},
        }
    report = assess_quality(decoded.image, t)
    long_side = max(report.metrics["width"], report.metrics["height"])
    return {
        "ok": report.ok,
        "reasons": list(report.reasons),
        "long_side": long_side,
        **{m: report.metrics[m] for m in METRICS},
    }


FORMATS = {
    "sharpness": "{:.3f}",
    "brightness": "{:.1f}",
    "contrast": "{:.1f}",
    "clipped_share": "{:.3f}",
    "uniform_share": "{:.3f}",
}


def spread(values: list[float], metric: str) -> str:
    v = np.asarray([x for x in values if x == x], dtype=float)
    if not v.size:
        return "-"
    return " / ".join(FORMATS[metric].format(x) for x in np.percentile(v, [0, 5, 50, 95, 100]))


def size_bin(long_side: float) -> str:
    if long_side != long_side:
        return "undecodable"
    if long_side < 640:
        return "long side < 640 px"
    if long_side < 1280:
        return "long side 640-1279 px"
    return "long side >= 1280 px"


def table(groups: dict[str, list[dict]], title: str) -> tuple[int, int]:
    print(f"\n## {title}\n")
    print("| group | n | rejected | rate | reasons |")
    print("|---|---:|---:|---:|---|")
    total = rejected = 0
    for name, rows in sorted(groups.items()):
        n = len(rows)
        r = sum(not x["ok"] for x in rows)
        reasons = Counter(code for x in rows for code in x["reasons"])
        total, rejected = total + n, rejected + r
        print(
            f"| {name} | {n} | {r} | {r / n:.1%} | {', '.join(f'{k} {v}' for k, v in reasons.most_common())} |"
        )
    print(f"| **all** | {total} | {rejected} | {rejected / max(total, 1):.1%} | |")
    print("\nMetric spread, min / p5 / median / p95 / max:\n")
    print("| group | " + " | ".join(METRICS) + " |")
    print("|---|" + "---|" * len(METRICS))
    for name, rows in sorted(groups.items()):
        print(f"| {name} | " + " | ".join(spread([x[m] for x in rows], m) for m in METRICS) + " |")
    return total, rejected


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--real", type=Path, default=Path("/work/data/adverse/real"))
    ap.add_argument(
        "--manifest", type=Path, default=HERE / "data" / "adverse_weather" / "MANIFEST.csv"
    )
    ap.add_argument("--unusable", type=Path, default=Path("/work/data/adverse/unusable"))
    ap.add_argument("--csv", type=Path)
    args = ap.parse_args(argv[1:])
    t = QualityThresholds()
    out_rows = []

    real: dict[str, list[dict]] = defaultdict(list)
    by_source: dict[str, list[dict]] = defaultdict(list)
    by_size: dict[str, list[dict]] = defaultdict(list)
    missing = 0
    with open(args.manifest, newline="") as f:
        for row in csv.DictReader(f):
            path = args.real / row["file"]
            if not path.exists():
                missing += 1
                continue
            res = judge(path, t)
            real[row["condition"]].append(res)
            by_source[row["original_dataset"].split(" ")[0]].append(res)
            by_size[size_bin(res["long_side"])].append(res)
            out_rows.append({"set": "real", "file": row["file"], "group": row["condition"], **res})
    if missing:
        print(f"warning: {missing} manifest files missing under {args.real}", file=sys.stderr)

    unusable: dict[str, list[dict]] = defaultdict(list)
    listing = args.unusable / "unusable.csv"
    if listing.exists():
        with open(listing, newline="") as f:
            for row in csv.DictReader(f):
                res = judge(args.unusable / row["file"], t)
                unusable[row["kind"]].append(res)
                out_rows.append(
                    {"set": "unusable", "file": row["file"], "group": row["kind"], **res}
                )

    print(f"thresholds: {t}")
    n_real, r_real = table(real, "Real adverse-condition photos, by condition")
    table(by_source, "Real adverse-condition photos, by original dataset")
    table(by_size, "Real adverse-condition photos, by original size")
    n_bad, r_bad = table(unusable, "Unusable versions, by kind") if unusable else (0, 0)
    print("\n## Issue-18 targets\n")
    print(
        f"- real photos rejected: {r_real}/{n_real} = {r_real / max(n_real, 1):.1%} (target <= 5 %)"
    )
    if n_bad:
        print(f"- unusable rejected: {r_bad}/{n_bad} = {r_bad / n_bad:.1%} (target >= 95 %)")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(
                f, fieldnames=["set", "file", "group", "ok", "reasons", "long_side", *METRICS]
            )
            w.writeheader()
            for r in out_rows:
                w.writerow({**r, "reasons": ";".join(r["reasons"])})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
