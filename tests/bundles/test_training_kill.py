"""Fault injection: training killed with SIGKILL at random points, resumed each time (issue 21).

Each resume may lose at most the epoch in progress, and ``model.pt`` is always the best validated model so far. The
training is a tiny standalone script wired with the bundles' handlers (``ResumableCheckpoint`` with the validator,
``ValidationHandler``, ``BestModelSaver``, ``FinalModelSaver``); its validation scores are random per epoch and per
attempt, so a redone epoch scores differently from the one that was lost.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from custom_nets.handlers import model_record

SCRIPT = r'''
import random, sys, time
from pathlib import Path
import torch
from ignite.engine import Events
from ignite.metrics import Metric
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.handlers import ValidationHandler
from custom_nets.handlers import BestModelSaver, FinalModelSaver, ResumableCheckpoint

folder, attempt, epochs = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
log = open(folder / "events.log", "a", buffering=1)


class Score(Metric):  # a random validation score per (epoch, attempt)
    def reset(self): pass
    def update(self, output): pass
    def compute(self): raise NotImplementedError
    def completed(self, engine, name):
        engine.state.metrics[name] = random.Random(f"{engine.state.epoch}-{attempt}").random()


class Logged:  # after every other handler: what has certainly happened
    def __init__(self, event, text): self.event, self.text = event, text
    def attach(self, engine): engine.add_event_handler(self.event, lambda e: log.write(self.text(e) + "\n"))


torch.manual_seed(0)
network = torch.nn.Linear(8, 2)
optimizer = torch.optim.SGD(network.parameters(), lr=0.01)
data = [{"image": torch.randn(4, 8), "label": torch.randn(4, 2)} for _ in range(4)]
evaluator = SupervisedEvaluator(
    device=torch.device("cpu"), val_data_loader=data[:1], network=network, key_val_metric={"score": Score()},
    val_handlers=[BestModelSaver(folder, network),
                  Logged(Events.EPOCH_COMPLETED, lambda e: f"validated {e.state.epoch} {e.state.metrics['score']!r}")])
trainer = SupervisedTrainer(
    device=torch.device("cpu"), max_epochs=epochs, train_data_loader=data, network=network, optimizer=optimizer,
    loss_function=torch.nn.MSELoss(),
    train_handlers=[ResumableCheckpoint(folder, {"model": network, "optimizer": optimizer}, validator=evaluator),
                    ValidationHandler(validator=evaluator, interval=2, epoch_level=True),
                    FinalModelSaver(folder, network),
                    Logged(Events.STARTED, lambda e: f"started {e.state.epoch}"),
                    Logged(Events.EPOCH_COMPLETED, lambda e: f"completed {e.state.epoch}")])
trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: time.sleep(0.05))
trainer.run()
log.write("finished\n")
'''


def events(folder: Path) -> list[list[str]]:
    path = folder / "events.log"
    return [line.split() for line in path.read_text().splitlines()] if path.is_file() else []


def checkpoint_epoch(folder: Path) -> int:
    import torch

    trainer = torch.load(folder / "checkpoint_last.pt", weights_only=True)["trainer"]  # ignite saves iterations
    return int(trainer["iteration"]) // int(trainer["epoch_length"])


def check_model_is_best_so_far(folder: Path) -> None:
    validated = [float(e[2]) for e in events(folder) if e[0] == "validated"]
    if not validated:
        return
    record = model_record(folder / "model.pt")
    assert record is not None and record["kind"] == "validated", "model.pt must be a validated model with its record"
    # at least the best logged score; more only if a validation wrote model.pt and was killed before its log line
    assert record["metric"] >= max(validated), f"model.pt scores {record['metric']}, the best so far {max(validated)}"


@pytest.mark.slow
def test_training_survives_random_kills(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    epochs, kills = 40, 6  # enough epochs that no run finishes before its kill (a finished run is not resumed)
    rng = random.Random(21)
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    command = [sys.executable, str(script), str(tmp_path)]
    for attempt in range(kills):
        before = len(events(tmp_path))
        process = subprocess.Popen([*command, str(attempt), str(epochs)], env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE)
        while not any(e[0] == "started" for e in events(tmp_path)[before:]):  # wait until it trains
            assert process.poll() is None, process.stderr.read().decode()[-3000:]
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.2))  # an epoch takes about 0.25 s: kills land anywhere, writes included
        assert process.poll() is None, "the run ended before its kill"
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        process.stderr.close()
        completed = [int(e[1]) for e in events(tmp_path) if e[0] == "completed"]
        if completed:
            # every completed epoch is in the checkpoint: the next run loses at most the epoch that was in progress
            assert checkpoint_epoch(tmp_path) >= max(completed)
        check_model_is_best_so_far(tmp_path)
    started = [int(e[1]) for e in events(tmp_path) if e[0] == "started"]
    assert len(started) == kills and started[0] == 0 and max(started) > 0, f"the runs must resume: {started}"

    result = subprocess.run([*command, str(kills), str(epochs)], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert events(tmp_path)[-1] == ["finished"]
    assert checkpoint_epoch(tmp_path) == epochs
    check_model_is_best_so_far(tmp_path)
    record = json.loads((tmp_path / "model.json").read_text())
    assert record["kind"] == "validated" and record["epoch"] % 2 == 0
