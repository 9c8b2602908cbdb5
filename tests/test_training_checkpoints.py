"""Checkpoint handlers of the training configs: resuming, finished runs, and the model file inference loads.

These are the behaviours MONAI Label relies on when it sends short, repeated training requests to a bundle.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest
import torch
from conftest import REPO
from ignite.engine import Events
from ignite.metrics import Metric
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.handlers import ValidationHandler

from custom_nets.handlers import (
    BestModelSaver,
    FinalModelSaver,
    ResumableCheckpoint,
    ResumeError,
    TrainingProgressLogger,
    model_record,
)


def make_trainer(ckpt_dir: Path, max_epochs: int, extra_handlers: list | None = None) -> SupervisedTrainer:
    torch.manual_seed(0)
    network = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
    data = [{"image": torch.randn(2, 3), "label": torch.randn(2, 1)} for _ in range(3)]
    handlers = [
        ResumableCheckpoint(save_dir=ckpt_dir, save_dict={"model": network, "optimizer": optimizer}),
        FinalModelSaver(save_dir=ckpt_dir, network=network),
        *(extra_handlers or []),
    ]
    return SupervisedTrainer(device=torch.device("cpu"), max_epochs=max_epochs, train_data_loader=data, network=network,
                             optimizer=optimizer, loss_function=torch.nn.MSELoss(), train_handlers=handlers)  # fmt: skip


def state(module: torch.nn.Module) -> dict:
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_a_run_without_validation_leaves_its_final_weights_as_model_pt(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, max_epochs=2)
    trainer.run()
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    assert all(torch.equal(saved[k], v) for k, v in trainer.network.state_dict().items())


def test_a_model_written_during_the_run_is_kept(tmp_path: Path) -> None:
    best = {}

    class SaveBestAtFirstEpoch:  # stands in for CheckpointSaver on the validation metric
        def attach(self, engine) -> None:
            engine.add_event_handler(Events.EPOCH_COMPLETED(once=1), self.save)

        def save(self, engine) -> None:
            best.update(state(engine.network))
            torch.save(best, tmp_path / "model.pt")

    trainer = make_trainer(tmp_path, max_epochs=3, extra_handlers=[SaveBestAtFirstEpoch()])
    trainer.run()
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    assert all(torch.equal(saved[k], best[k]) for k in best), "the best model must not be replaced by the last one"
    assert not all(torch.equal(saved[k], v) for k, v in trainer.network.state_dict().items())


def test_resuming_an_unfinished_run_continues_it(tmp_path: Path, caplog) -> None:
    make_trainer(tmp_path, max_epochs=2).run()
    caplog.set_level(logging.INFO)
    trainer = make_trainer(tmp_path, max_epochs=3)
    epochs = []
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda e: epochs.append(e.state.epoch))
    trainer.run()
    assert "resuming training from" in caplog.text
    assert epochs == [3], "only the missing third epoch runs"


def test_a_finished_run_is_not_resumed_but_trained_again_from_its_weights(tmp_path: Path, caplog) -> None:
    first = make_trainer(tmp_path, max_epochs=2)
    first.run()
    finished_weights = state(first.network)
    caplog.set_level(logging.INFO)
    again = make_trainer(tmp_path, max_epochs=2)  # e.g. a second training request from MONAI Label
    epochs = []
    again.add_event_handler(Events.EPOCH_STARTED, lambda e: epochs.append(e.state.epoch))
    loaded = {}
    again.add_event_handler(Events.STARTED, lambda e: loaded.update(state(e.network)))
    again.run()
    assert "from a finished run (2 epochs)" in caplog.text
    assert epochs == [1, 2], "a new run of max_epochs, not zero epochs"
    assert all(torch.equal(loaded[k], finished_weights[k]) for k in loaded), "it starts from the finished weights"
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    assert all(torch.equal(saved[k], v) for k, v in again.network.state_dict().items()), "model.pt holds the new run"


# ----------------------------------------------------------------------------------------------------------------------
# The best validated model across resumes (issue 21): model.pt is replaced only by a better validated model
# ----------------------------------------------------------------------------------------------------------------------


class ScriptedScore(Metric):
    """A validation "metric" whose value at each epoch the test chooses: {epoch: score}."""

    def __init__(self, scores: dict[int, float]) -> None:
        self.scores = scores
        super().__init__()

    def reset(self) -> None:
        pass

    def update(self, output) -> None:
        pass

    def compute(self) -> float:
        raise NotImplementedError

    def completed(self, engine, name: str) -> None:
        engine.state.metrics[name] = self.scores[engine.state.epoch]


def make_validated_trainer(ckpt_dir: Path, max_epochs: int, scores: dict[int, float], val_interval: int = 1,
                           width: int = 1) -> SupervisedTrainer:
    """A tiny trainer validated every ``val_interval`` epochs with scripted scores, wired as the bundles are."""
    torch.manual_seed(0)
    network = torch.nn.Linear(3, width)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
    data = [{"image": torch.randn(2, 3), "label": torch.randn(2, width)} for _ in range(3)]
    evaluator = SupervisedEvaluator(device=torch.device("cpu"), val_data_loader=data[:1], network=network,
                                    key_val_metric={"val_score": ScriptedScore(scores)},
                                    val_handlers=[BestModelSaver(save_dir=ckpt_dir, network=network)])
    handlers = [
        ResumableCheckpoint(save_dir=ckpt_dir, save_dict={"model": network, "optimizer": optimizer},
                            validator=evaluator),
        ValidationHandler(validator=evaluator, interval=val_interval, epoch_level=True),
        FinalModelSaver(save_dir=ckpt_dir, network=network),
        TrainingProgressLogger(),
    ]
    return SupervisedTrainer(device=torch.device("cpu"), max_epochs=max_epochs, train_data_loader=data, network=network,
                             optimizer=optimizer, loss_function=torch.nn.MSELoss(), train_handlers=handlers)  # fmt: skip


def test_a_resumed_run_replaces_model_pt_only_with_a_better_model(tmp_path: Path, caplog) -> None:
    scores = {1: 0.5, 2: 0.9, 3: 0.4, 4: 0.6, 5: 0.7, 6: 0.95}
    first = make_validated_trainer(tmp_path, max_epochs=3, scores=scores)
    first.run()  # best at epoch 2, then interrupted after epoch 3 (max_epochs stands in for the interruption)
    best_bytes = (tmp_path / "model.pt").read_bytes()
    assert model_record(tmp_path / "model.pt")["epoch"] == 2
    saved = torch.load(tmp_path / "checkpoint_last.pt", weights_only=True)
    assert saved["validation"]["best_metric"] == 0.9 and saved["validation"]["best_metric_epoch"] == 2

    caplog.set_level(logging.INFO)
    resumed = make_validated_trainer(tmp_path, max_epochs=5, scores=scores)
    resumed.run()  # epochs 4 and 5 validate at 0.6 and 0.7: worse than epoch 2's 0.9
    assert "resuming training from" in caplog.text
    assert (tmp_path / "model.pt").read_bytes() == best_bytes, "a worse epoch after a resume replaced the best model"
    assert "model.pt stays the model of epoch 2 (val_score 0.9000)" in caplog.text

    again = make_validated_trainer(tmp_path, max_epochs=6, scores=scores)
    again.run()  # epoch 6: 0.95, a new best
    record = model_record(tmp_path / "model.pt")
    assert record["kind"] == "validated" and record["epoch"] == 6 and record["metric"] == 0.95
    written = torch.load(tmp_path / "model.pt", weights_only=True)
    assert all(torch.equal(written[k], v) for k, v in again.network.state_dict().items())


def test_a_kill_between_model_pt_and_the_checkpoint_keeps_the_best(tmp_path: Path) -> None:
    """model.pt is written during validation, checkpoint_last.pt after: a kill in between must not lose the best."""
    make_validated_trainer(tmp_path, max_epochs=1, scores={1: 0.5}).run()
    epoch1 = (tmp_path / "checkpoint_last.pt").read_bytes()
    make_validated_trainer(tmp_path, max_epochs=2, scores={1: 0.5, 2: 0.9}).run()
    best_bytes = (tmp_path / "model.pt").read_bytes()
    (tmp_path / "checkpoint_last.pt").write_bytes(epoch1)  # as if killed after model.pt, before the checkpoint
    # the redone epoch 2 validates worse this time (0.7 beats epoch 1's 0.5, not the lost epoch 2's 0.9)
    make_validated_trainer(tmp_path, max_epochs=4, scores={2: 0.7, 3: 0.8, 4: 0.6}).run()
    assert (tmp_path / "model.pt").read_bytes() == best_bytes
    assert model_record(tmp_path / "model.pt")["metric"] == 0.9


def test_a_run_that_never_validates_keeps_a_validated_model_pt(tmp_path: Path, caplog) -> None:
    make_validated_trainer(tmp_path, max_epochs=2, scores={1: 0.5, 2: 0.9}).run()  # e.g. `make demo`
    validated = (tmp_path / "model.pt").read_bytes()
    caplog.set_level(logging.INFO)
    short = make_validated_trainer(tmp_path, max_epochs=3, scores={}, val_interval=5)  # finished run: new run, no val
    short.run()
    assert (tmp_path / "model.pt").read_bytes() == validated, "unvalidated final weights replaced a validated model"
    final = torch.load(tmp_path / "model_final.pt", weights_only=True)
    assert all(torch.equal(final[k], v) for k, v in short.network.state_dict().items())
    assert model_record(tmp_path / "model_final.pt")["kind"] == "final"
    assert "saved the final weights as" in caplog.text and "model_final.pt" in caplog.text
    assert "stays the validated model of epoch 2, val_score 0.9000" in caplog.text


def test_a_model_pt_of_unknown_origin_is_not_replaced_by_unvalidated_weights(tmp_path: Path) -> None:
    torch.save(torch.nn.Linear(3, 1).state_dict(), tmp_path / "model.pt")  # e.g. from before model records
    before = (tmp_path / "model.pt").read_bytes()
    make_trainer(tmp_path, max_epochs=1).run()
    assert (tmp_path / "model.pt").read_bytes() == before
    assert (tmp_path / "model_final.pt").is_file()


@pytest.mark.parametrize("damage", ["garbage", "truncated", "another network", "not a training checkpoint"])
def test_a_checkpoint_that_cannot_be_resumed_says_so_in_one_line(tmp_path: Path, damage: str) -> None:
    make_validated_trainer(tmp_path, max_epochs=1, scores={1: 0.5}).run()
    path = tmp_path / "checkpoint_last.pt"
    if damage == "garbage":
        path.write_bytes(os.urandom(1000))
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:300])
    elif damage == "another network":
        make_validated_trainer(tmp_path / "other", max_epochs=1, scores={1: 0.5}, width=4).run()
        shutil.copy(tmp_path / "other" / "checkpoint_last.pt", path)
    else:
        torch.save(torch.nn.Linear(3, 1).state_dict(), path)
    before = path.read_bytes()
    with pytest.raises(ResumeError) as error:
        make_validated_trainer(tmp_path, max_epochs=2, scores={1: 0.5, 2: 0.6})
    message = str(error.value)
    assert "\n" not in message and str(path) in message and "--resume False" in message
    assert {"another network": "does not fit", "not a training checkpoint": "not a training checkpoint"}.get(
        damage, "not a readable checkpoint") in message
    assert path.read_bytes() == before, "the checkpoint must not be overwritten"


def test_training_progress_logs_an_eta(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO)
    make_validated_trainer(tmp_path, max_epochs=2, scores={1: 0.1, 2: 0.2}).run()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]
    assert len(lines) == 2 and lines[0].startswith("epoch 1/2 done in") and "ETA 0:00:" in lines[0]
    assert lines[1].endswith("ETA 0:00:00)")


def test_eta_is_the_mean_pace_times_what_is_left() -> None:
    from custom_nets.handlers import _eta

    assert _eta(10.0, 2, 3) == "0:00:15"
    assert _eta(7.0, 0, 1) == "0:00:07"  # nothing done yet: the time so far stands for one unit
    assert _eta(5.0, 5, 0) == _eta(5.0, 5, -2) == "0:00:00"
    assert _eta(20 * 3600.0, 1, 2) == "40:00:00"  # hours beyond a day are not wrapped


def test_the_template_handlers_keep_the_best_model_across_a_resume(tmp_path: Path) -> None:
    """The bundle templates' own handler dicts (scripts/bundle_templates/common.py), parsed by MONAI's ConfigParser."""
    import sys

    from monai.bundle import ConfigParser

    sys.path.insert(0, str(REPO / "scripts"))
    from bundle_templates import common

    def config(epochs: int, scores: dict[int, float]) -> ConfigParser:
        parser = ConfigParser({
            "imports": ["$import torch", "$from monai.handlers import from_engine"],
            "ckpt_dir": str(tmp_path / "models"), "log_dir": str(tmp_path / "runs"), "device": "$torch.device('cpu')",
            "resume": True, "amp": False, "epochs": epochs, "val_interval": 1, "learning_rate": 0.1,
            "network": {"_target_": "torch.nn.Linear", "in_features": 3, "out_features": 1},
            "optimizer": common.optimizer(), "lr_scheduler": common.lr_scheduler(),
            "loss": {"_target_": "torch.nn.MSELoss"},
            "data": "$[{'image': torch.ones(2, 3) * i, 'label': torch.ones(2, 1)} for i in range(2)]",
            "train": {"dataloader": "@data", "inferer": {"_target_": "SimpleInferer"},
                      "handlers": common.train_handlers(), "trainer": common.trainer()},
            "validate": {"handlers": [common.best_model_saver()], "evaluator": {
                "_target_": "SupervisedEvaluator", "device": "@device", "val_data_loader": "@data",
                "network": "@network",
                "key_val_metric": {"val_score": ScriptedScore(scores)}, "val_handlers": "@validate#handlers"}},
        })
        return parser

    config(3, {1: 0.2, 2: 0.8, 3: 0.3}).get_parsed_content("train#trainer").run()
    model = tmp_path / "models" / "model.pt"
    best = model.read_bytes()
    assert model_record(model)["epoch"] == 2
    config(5, {4: 0.5, 5: 0.7}).get_parsed_content("train#trainer").run()
    assert model.read_bytes() == best, "a resumed run replaced the best model with a worse one"


def test_a_bundle_run_that_cannot_resume_ends_with_one_line(tmp_path: Path) -> None:
    """``python -m monai.bundle run training`` with a damaged checkpoint_last.pt: one error line, the file untouched."""
    import subprocess
    import sys

    from conftest import copy_bundle

    bundle = copy_bundle("unet2d", tmp_path)
    checkpoint = bundle / "models" / "checkpoint_last.pt"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(os.urandom(3000))
    before = checkpoint.read_bytes()
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-m", "monai.bundle", "run", "training", "--config_file",
                             str(bundle / "configs" / "train.json"), "--epochs", "1", "--num_workers", "0"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "ResumeError: cannot resume training from" in errors[0], result.stderr[-3000:]
    assert "not a readable checkpoint" in errors[0] and "Traceback" not in result.stderr
    assert checkpoint.read_bytes() == before


@pytest.mark.parametrize("epochs,expected", [(3, [2, 3]), (4, [2, 4]), (1, [1])])
def test_periodic_validation_also_validates_after_the_last_epoch(epochs: int, expected: list[int]) -> None:
    """A run of fewer (or not a multiple of) val_interval epochs still validates its final weights, once."""
    from ignite.engine import Engine

    from custom_nets.handlers import PeriodicValidation

    from monai.engines import Evaluator

    class Validator(Evaluator):
        def __init__(self) -> None:  # no data, no network: only records when it is asked to run
            self.epochs: list[int] = []

        def run(self, global_epoch: int = 1) -> None:
            self.epochs.append(global_epoch)

    validator = Validator()
    trainer = Engine(lambda engine, batch: None)
    PeriodicValidation(validator=validator, interval=2).attach(trainer)
    trainer.run([0, 1], max_epochs=epochs)
    assert validator.epochs == expected
