#!/usr/bin/env python
"""Which bundle works best on a dataset: train each on the same folds and budget, evaluate each fold, compare.

    python scripts/compare.py --bundles unet2d,attention_unet2d --dataset_dir DATASET --folds 3 --epochs 20 \\
        --output_dir comparison
    python scripts/compare.py --bundles arunet3d,linknet3d --dataset_dir DATASET --folds 5 --minutes 15 \\
        --output_dir comparison --extra "arunet3d=--roi_size [64,64,64]" --extra "*=--num_workers 0"

For every bundle and fold ``i`` of ``K`` it runs ``python -m monai.bundle run training`` with
``--bundle_root OUT/<bundle>/fold_<i> --fold i --num_folds K`` (the same cross-validation split for every bundle:
``splits_final.json`` when the dataset has one), then the bundle's ``evaluate.json`` on that fold's validation
cases. ``--minutes M`` trains each fold for M minutes of wall time (evaluating the best validated model, else the
last checkpoint; validating every epoch unless ``--val_interval N``); ``--epochs N`` for N epochs. Results:

- ``OUT/comparison.csv``: one row per bundle and fold: the evaluation's mean metrics per label, parameters, training
  time;
- ``OUT/comparison.md``: mean and standard deviation over the folds per bundle;
- ``OUT/comparison.png``: Dice per bundle (mean and spread over folds), and Dice against training time.

An interrupted comparison resumes where it stopped: a fold whose training finished is not trained again
(``OUT/<bundle>/fold_<i>/train_done.json``), an evaluated one not evaluated again (``result.json``); a fold whose
training was interrupted trains again from its start, so that every fold gets the same budget.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shlex
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from custom_nets.files import write_csv_atomic, write_file_atomic, write_text_atomic

REPO = Path(__file__).resolve().parent.parent
TRAIN_DONE = "train_done.json"
RESULT = "result.json"
#: epochs given to a run bounded by --minutes (it is stopped by the clock long before)
UNBOUNDED_EPOCHS = 100_000
#: columns of the evaluations' mean rows that count, not score
COUNT_COLUMNS = ("slices", "cases")


class CompareError(RuntimeError):
    """A comparison step failed; the message is one line naming the bundle, fold and log."""


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _pairs(args: list[str]) -> dict[str, Any]:
    """``--id value`` pairs of a bundle command line as config overrides."""
    out, key = {}, None
    for token in args:
        if token.startswith("--"):
            key = token[2:]
            out[key] = True
        elif key is not None:
            out[key] = _value(token)
            key = None
    return out


def bundle_args(extra: list[str], name: str) -> list[str]:
    """The extra command-line arguments of bundle ``name`` (``--extra NAME=ARGS``; ``*=ARGS`` for every bundle)."""
    out: list[str] = []
    for item in extra:
        target, _, args = item.partition("=")
        if target in ("*", name):
            out += shlex.split(args)
    return out


def parse_config(bundle: str, config: str, overrides: dict[str, Any]):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(REPO / "bundles" / bundle / "configs" / config))
    for key, value in overrides.items():
        parser[key.replace("#", "::")] = value
    return parser


def parameter_count(bundle: str, overrides: dict[str, Any]) -> int:
    """Parameters of the bundle's network for the dataset's task (the trained fold's ``models/task.json``)."""
    import torch

    parser = parse_config(bundle, "train.json", overrides)
    parser["task"] = "$custom_nets.data.trained_task(@ckpt_dir, '')"
    with torch.device("meta"):
        network = parser.get_parsed_content("network_def")
    return sum(p.numel() for p in network.parameters())


def _interruptible() -> None:
    """In the child before exec: SIGINT at its default, so Python there raises ``KeyboardInterrupt`` (a background job
    of a non-interactive shell inherits SIGINT ignored, and the budget's stop would wait for the SIGKILL)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_logged(command: list[str], log: Path, what: str, timeout: float | None = None) -> float:
    """Run ``command`` with its output in ``log``; the wall time. Stopped (SIGINT, then SIGKILL) at ``timeout``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=_interruptible if os.name == "posix" else None)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            return time.perf_counter() - start
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    if code != 0:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
        raise CompareError(f"{what} failed (exit {code}): {lines[-1] if lines else 'no output'} (log: {log})")
    return time.perf_counter() - start


def monai_run(bundle: str, config: str, root: Path, args: list[str], run_id: str | None = None) -> list[str]:
    return [sys.executable, "-m", "monai.bundle", "run", *([run_id] if run_id else []),
            "--config_file", str(REPO / "bundles" / bundle / "configs" / config), "--bundle_root", str(root), *args]


def mean_metrics(metrics_csv: Path) -> dict[str, float]:
    """The ``mean`` row of an evaluation's ``metrics.csv`` (numeric columns)."""
    with open(metrics_csv, newline="") as f:
        rows = list(csv.reader(f))
    header, mean = rows[0], next((r for r in rows[1:] if r and r[0] == "mean"), None)
    if mean is None:
        raise CompareError(f"{metrics_csv} has no 'mean' row")
    out = {}
    for name, value in zip(header[1:], mean[1:]):
        if name in COUNT_COLUMNS:
            continue
        try:
            out[name] = float(value)
        except ValueError:
            continue
    return out


def run_fold(bundle: str, fold: int, args: argparse.Namespace, dataset: str) -> dict[str, Any]:
    """Train (unless done) and evaluate (unless done) one fold of one bundle; its result row."""
    root = args.output_dir / bundle / f"fold_{fold}"
    result_path = root / RESULT
    if result_path.is_file():
        return json.loads(result_path.read_text())
    extra = bundle_args(args.extra, bundle)
    common = ["--dataset_dir", dataset, "--fold", str(fold), "--num_folds", str(args.folds)]
    done_path = root / TRAIN_DONE
    if not done_path.is_file():
        epochs = args.epochs if args.epochs else UNBOUNDED_EPOCHS
        val_interval = args.val_interval or (args.epochs if args.epochs else 1)
        command = monai_run(bundle, "train.json", root, [*common, "--epochs", str(epochs), "--val_interval",
                                                         str(val_interval), "--resume", "False", *extra], "training")
        print(f"{bundle} fold {fold}: training ({f'{args.epochs} epochs' if args.epochs else f'{args.minutes} min'})",
              flush=True)
        seconds = run_logged(command, root / "train.log", f"training {bundle} fold {fold}",
                             timeout=args.minutes * 60 if args.minutes else None)
        done_path.write_text(json.dumps({"train_seconds": round(seconds, 1)}))
    seconds = json.loads(done_path.read_text())["train_seconds"]
    overrides = {"bundle_root": str(root), **_pairs(common), **_pairs(extra)}
    val = parse_config(bundle, "train.json", overrides).get_parsed_content("val_datalist")
    val_path = root / "val_datalist.json"
    val_path.write_text(json.dumps(val, default=str))
    models = root / "models"
    eval_args = [*common, *extra, "--datalist", f"$__import__('json').load(open({str(val_path)!r}))"]
    if not (models / "model.pt").is_file():
        eval_args += ["--handlers#0#load_path", str(models / "checkpoint_last.pt")]
    print(f"{bundle} fold {fold}: evaluating {len(val)} validation case(s)", flush=True)
    run_logged(monai_run(bundle, "evaluate.json", root, eval_args), root / "evaluate.log",
               f"evaluating {bundle} fold {fold}")
    row = {"bundle": bundle, "fold": fold, "parameters": parameter_count(bundle, overrides),
           "train_seconds": seconds, **mean_metrics(root / "eval" / "metrics.csv")}
    write_text_atomic(result_path, json.dumps(row, indent=1))
    return row


def dice_of(row: dict[str, Any]) -> float:
    """The mean Dice over the labels of a result row."""
    values = [v for k, v in row.items() if k.startswith("dice") and isinstance(v, float) and not math.isnan(v)]
    return sum(values) / len(values) if values else float("nan")


def _spread(values: list[float]) -> tuple[float, float]:
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return float("nan"), float("nan")
    return statistics.fmean(finite), statistics.stdev(finite) if len(finite) > 1 else 0.0


def write_tables(rows: list[dict[str, Any]], out: Path) -> None:
    """``comparison.csv`` (one row per bundle and fold) and ``comparison.md`` (mean ± std per bundle)."""
    metrics = sorted({k for r in rows for k in r if k not in ("bundle", "fold", "parameters", "train_seconds")})
    fields = ["bundle", "fold", "parameters", "train_seconds", *metrics]
    write_csv_atomic(out / "comparison.csv", [fields, *([r.get(k, "") for k in fields] for r in rows)])
    bundles = list(dict.fromkeys(r["bundle"] for r in rows))
    lines = ["| bundle | folds | parameters | training time (s) | mean Dice | " + " | ".join(metrics) + " |",
             "|" + "---|" * (5 + len(metrics))]
    for b in bundles:
        mine = [r for r in rows if r["bundle"] == b]
        cells = [b, str(len(mine)), f"{mine[0]['parameters']:,}"]
        for values in ([r["train_seconds"] for r in mine], [dice_of(r) for r in mine],
                       *[[float(r.get(m, "nan")) for r in mine] for m in metrics]):
            mean, std = _spread(values)
            cells.append(f"{mean:.3f} ± {std:.3f}" if abs(mean) < 100 else f"{mean:.0f} ± {std:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    write_text_atomic(out / "comparison.md", "\n".join(lines) + "\n\nMean ± standard deviation over the folds.\n")


def write_plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Dice per bundle (mean, spread over folds) and Dice against training time, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bundles = list(dict.fromkeys(r["bundle"] for r in rows))
    fig, (bars, scatter) = plt.subplots(1, 2, figsize=(10, 4))
    stats = [_spread([dice_of(r) for r in rows if r["bundle"] == b]) for b in bundles]
    bars.bar(bundles, [m for m, _ in stats], yerr=[s for _, s in stats], capsize=4, color="tab:blue")
    bars.set_ylabel("mean Dice over labels (± std over folds)")
    bars.set_ylim(0, 1)
    bars.tick_params(axis="x", rotation=30)
    for b in bundles:
        mine = [r for r in rows if r["bundle"] == b]
        scatter.scatter([r["train_seconds"] / 60 for r in mine], [dice_of(r) for r in mine], label=b)
    scatter.set_xlabel("training time per fold (min)")
    scatter.set_ylabel("mean Dice over labels")
    scatter.set_ylim(0, 1)
    scatter.legend()
    fig.tight_layout()
    write_file_atomic(path, lambda tmp: fig.savefig(tmp, dpi=100))
    plt.close(fig)


def add_budget_options(parser: argparse.ArgumentParser, folds: int) -> None:
    """The options of a cross-validated comparison's budget: ``--folds`` (default ``folds``), ``--epochs`` or
    ``--minutes`` per fold (one of them required) and ``--val_interval``; :func:`budget_arguments` passes them on."""
    parser.add_argument("--folds", type=int, default=folds, help=f"cross-validation folds (default {folds})")
    budget = parser.add_mutually_exclusive_group(required=True)
    budget.add_argument("--epochs", type=int, help="epochs per fold")
    budget.add_argument("--minutes", type=float, help="minutes of training per fold")
    parser.add_argument("--val_interval", type=int, default=None,
                        help="validate every N epochs (default: after the last epoch with --epochs, after every epoch "
                             "with --minutes, whose evaluation takes the best validated model)")


def budget_arguments(args: argparse.Namespace) -> list[str]:
    """The options of :func:`add_budget_options` in ``args``, as this script's command line takes them."""
    out = ["--folds", str(args.folds)]
    out += ["--epochs", str(args.epochs)] if args.epochs is not None else ["--minutes", str(args.minutes)]
    if args.val_interval is not None:
        out += ["--val_interval", str(args.val_interval)]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundles", required=True, help="comma-separated bundle names (folders of bundles/)")
    parser.add_argument("--dataset_dir", required=True, help="dataset folder, or 'demo' with --demo TASK")
    parser.add_argument("--demo", default=None, help="the demo task generated for --dataset_dir demo (e.g. lgg)")
    add_budget_options(parser, folds=5)
    parser.add_argument("--output_dir", required=True, type=Path, help="where each fold's run and the results go")
    parser.add_argument("--extra", action="append", default=[], metavar="BUNDLE=ARGS",
                        help="extra bundle arguments for one bundle ('*=' for all), e.g. '*=--num_workers 0'")
    args = parser.parse_args(argv)

    names = [b.strip() for b in args.bundles.split(",") if b.strip()]
    unknown = [b for b in names if not (REPO / "bundles" / b / "configs" / "train.json").is_file()]
    if unknown or not names:
        print(f"compare.py: unknown bundle(s) {unknown or args.bundles!r}; known: "
              f"{', '.join(sorted(p.name for p in (REPO / 'bundles').iterdir() if p.is_dir()))}", file=sys.stderr)
        return 2
    if args.folds < 2 or (args.epochs is not None and args.epochs < 1) or (args.minutes is not None and
                                                                           args.minutes <= 0) or (
            args.val_interval is not None and args.val_interval < 1):
        print("compare.py: --folds must be at least 2, the budget and --val_interval positive", file=sys.stderr)
        return 2
    args.output_dir = args.output_dir.expanduser().resolve()
    args.output_dir.mkdir(parents=True, exist_ok=True)
    dataset = args.dataset_dir
    from custom_nets.data import DatasetError

    try:
        if dataset.lower() == "demo":
            if not args.demo:
                raise CompareError("--dataset_dir demo needs --demo TASK (brats, lgg, ...): one demo for every bundle")
            from custom_nets.data.demo import make_demo

            dataset = str(make_demo(args.demo, args.output_dir / "demo_data"))
        else:
            from custom_nets.data import read_dataset

            dataset = str(read_dataset(dataset).root)
        rows = [run_fold(b, fold, args, dataset) for b in names for fold in range(args.folds)]
    except (CompareError, DatasetError, OSError) as err:
        print(f"compare.py: {err}", file=sys.stderr)
        return 1
    write_tables(rows, args.output_dir)
    write_plot(rows, args.output_dir / "comparison.png")
    print((args.output_dir / "comparison.md").read_text())
    print(f"per fold: {args.output_dir / 'comparison.csv'}; plot: {args.output_dir / 'comparison.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
