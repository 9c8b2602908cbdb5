#!/usr/bin/env python
"""The plan against a bundle's fixed defaults: one bundle, the same folds and budget, trained both ways.

    python scripts/benchmark_plan.py --bundle arunet3d --dataset_dir DATASET --folds 2 --minutes 3 \\
        --output_dir plan_benchmark --extra "*=--num_workers 0"

Runs ``scripts/compare.py`` twice on the one bundle: into ``OUT/planned`` with the plan computed from the data (the
bundles' default), and into ``OUT/defaults`` with ``--plan none`` (the bundle's own spacing, normalisation, patch and
batch size). Then writes ``OUT/plan_vs_defaults.md``: what each run trained with (target spacing, normalisation,
patch size, batch size), the epochs it trained in its budget, its training time and its evaluation per label (mean ±
standard deviation over the folds). Both comparisons resume like ``compare.py``; ``OUT/planned`` is an ordinary
``compare.py`` output folder, so comparing more bundles with the same arguments into it reuses this bundle's folds.

A benchmark, not a test: with a wall-time budget, the figures depend on the machine's load.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402

#: the runs: output sub-folder, column title, extra bundle arguments
RUNS = (("planned", "planned (from the data)", ""), ("defaults", "bundle defaults (`--plan none`)", "--plan none"))
METRIC_TITLES = {"dice": "Dice", "hd95": "HD95"}
EPOCH_LINE = re.compile(r"epoch (\d+)/\d+ done")


def describe_normalization(task: Any, plan: Mapping[str, Any] | None) -> str:
    """The intensity normalisation a run applied, in words: the plan's scheme per channel, else the bundle's own."""
    from custom_nets.transforms import intensity_normalization

    if plan:
        parts = []
        for entry in plan["normalization"]:
            if entry["scheme"] == "ct":
                low, high = entry["clip"]
                parts.append(f"ct: clip {low:.0f} to {high:.0f}, (x - {entry['mean']:.0f}) / {entry['std']:.0f}")
            else:
                parts.append(entry["scheme"])
        return parts[0] if len(set(parts)) == 1 else "; ".join(parts)  # one entry when every channel agrees
    transform = intensity_normalization(task)
    normalizer = getattr(transform, "normalizer", None)
    if normalizer is not None:  # NormalizeIntensityd
        where = " over the nonzero voxels" if normalizer.nonzero else ""
        return f"z-score per case{where}" + (", per channel" if normalizer.channel_wise else "")
    scaler = getattr(transform, "scaler", None)
    if scaler is not None and hasattr(scaler, "lower"):  # ScaleIntensityRangePercentilesd
        return f"percentiles {scaler.lower:g}-{scaler.upper:g} to 0-1 per case"
    if scaler is not None and hasattr(scaler, "a_min"):  # ScaleIntensityRanged
        return f"{scaler.a_min:g}-{scaler.a_max:g} to 0-1"
    return type(transform).__name__


def trained_settings(bundle: str, root: Path, overrides: Mapping[str, Any]) -> dict[str, str]:
    """What the fold in ``root`` trained with: its plan (``models/plans.json``; none: the bundle's defaults) and task
    (``models/task.json``) read through the bundle's own ``train.json`` ids and ``overrides``."""
    from custom_nets.planning import planned_pixdim

    parser = compare.parse_config(bundle, "train.json", {**overrides, "bundle_root": str(root)})
    parser["task"] = "$custom_nets.data.trained_task(@ckpt_dir, '')"
    parser["plans"] = "$custom_nets.planning.trained_plan(@ckpt_dir)"
    task, plan = parser.get_parsed_content("task"), parser.get_parsed_content("plans")
    spacing = planned_pixdim(plan, task)
    out = {"target spacing (mm)": " x ".join(f"{s:.2f}" for s in spacing) if spacing and any(spacing) else "as read",
           "normalisation": describe_normalization(task, plan)}
    for key, title in (("roi_size", "patch size"), ("batch_size", "batch size")):
        if key in parser:
            value = parser.get_parsed_content(key)
            out[title] = " x ".join(str(int(v)) for v in value) if isinstance(value, (list, tuple)) else str(value)
    return out


def epochs_trained(log: Path) -> int | None:
    """The last epoch a training log reports done (``TrainingProgressLogger``), or ``None``."""
    try:
        found = EPOCH_LINE.findall(log.read_text(errors="replace"))
    except OSError:
        return None
    return int(found[-1]) if found else None


def read_rows(csv_path: Path, bundle: str) -> list[dict[str, Any]]:
    """The rows of ``bundle`` in a ``comparison.csv``, numbers as floats (``fold`` as int)."""
    with open(csv_path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["bundle"] == bundle]
    out = []
    for r in rows:
        row: dict[str, Any] = {}
        for key, value in r.items():
            try:
                row[key] = int(value) if key == "fold" else (value if key == "bundle" else float(value))
            except ValueError:
                row[key] = value
        out.append(row)
    return out


def _metric_title(name: str) -> str:
    metric, _, label = name.partition("_")
    return f"{METRIC_TITLES.get(metric, metric)} {label.replace('_', ' ')}".strip()


def _cell(values: Sequence[float], digits: int = 3) -> str:
    mean, std = compare._spread(list(values))
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _joined(values: Sequence[str]) -> str:
    return " / ".join(dict.fromkeys(values))  # one value when every fold agrees


def plan_vs_defaults_table(bundle: str, runs: Mapping[str, Path], settings: Mapping[str, Sequence[Mapping[str, str]]],
                           ) -> str:
    """A Markdown table: one column per run (``runs``: title -> a ``compare.py`` output folder), rows for the
    settings (``settings``: title -> one dict per fold), epochs trained, training time, mean Dice and every metric
    per label of the folds (mean ± std); a setting both runs share is marked "(same)"."""
    rows = {title: read_rows(out / "comparison.csv", bundle) for title, out in runs.items()}
    empty = [title for title, r in rows.items() if not r]
    if empty:
        raise compare.CompareError(f"no result of {bundle} for {', '.join(empty)}")
    titles = list(runs)
    lines = [f"| {bundle} | " + " | ".join(titles) + " |", "|---|" + "---|" * len(titles)]
    keys = list(dict.fromkeys(k for per_fold in settings.values() for s in per_fold for k in s))
    for key in keys:
        cells = [_joined([s.get(key, "") for s in settings[t]]) for t in titles]
        same = len(set(cells)) == 1 and len(cells) > 1
        lines.append(f"| {key}{' (same)' if same else ''} | " + " | ".join(cells) + " |")
    epochs = []
    for t in titles:
        found = [epochs_trained(runs[t] / bundle / f"fold_{r['fold']}" / "train.log") for r in rows[t]]
        epochs.append(_cell([float(e) for e in found if e is not None], 1) if any(e is not None for e in found)
                      else "n/a")
    lines.append("| epochs trained per fold | " + " | ".join(epochs) + " |")
    lines.append("| training time per fold (s) | " + " | ".join(_cell([r["train_seconds"] for r in rows[t]], 0)
                                                              for t in titles) + " |")
    lines.append("| **mean Dice** | " + " | ".join(f"**{_cell([compare.dice_of(r) for r in rows[t]])}**"
                                                   for t in titles) + " |")
    metrics = sorted({k for r in rows[titles[0]] for k in r if k.split("_")[0] in METRIC_TITLES})
    for m in metrics:
        lines.append(f"| {_metric_title(m)} | " + " | ".join(_cell([float(r.get(m, "nan")) for r in rows[t]])
                                                            for t in titles) + " |")
    folds = sorted({r["fold"] for t in titles for r in rows[t]})
    return "\n".join(lines) + f"\n\nMean ± standard deviation over {len(folds)} fold(s).\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", required=True, help="the bundle (a folder of bundles/)")
    parser.add_argument("--dataset_dir", required=True, help="dataset folder")
    compare.add_budget_options(parser, folds=2)
    parser.add_argument("--output_dir", required=True, type=Path, help="OUT: OUT/planned, OUT/defaults, the table")
    parser.add_argument("--extra", action="append", default=[], metavar="ARGS",
                        help="extra bundle arguments for both runs, e.g. '--num_workers 0'")
    args = parser.parse_args(argv)
    from custom_nets.files import write_text_atomic

    out = args.output_dir.expanduser().resolve()
    common_extra = " ".join(args.extra)
    runs: dict[str, Path] = {}
    settings: dict[str, list[dict[str, str]]] = {}
    for folder, title, run_extra in RUNS:
        extra = f"*={common_extra} {run_extra}".strip()
        code = compare.main(["--bundles", args.bundle, "--dataset_dir", args.dataset_dir,
                             *compare.budget_arguments(args), "--output_dir", str(out / folder), "--extra", extra])
        if code:
            return code
        overrides = compare._pairs(compare.bundle_args([extra], args.bundle))
        runs[title] = out / folder
        settings[title] = [trained_settings(args.bundle, out / folder / args.bundle / f"fold_{i}", overrides)
                           for i in range(args.folds)]
    try:
        table = plan_vs_defaults_table(args.bundle, runs, settings)
    except (compare.CompareError, OSError) as err:
        print(f"benchmark_plan.py: {err}", file=sys.stderr)
        return 1
    path = out / "plan_vs_defaults.md"
    write_text_atomic(path, table)
    print(table)
    print(f"table: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
