"""Checkpoint handlers of the training configs: resuming, finished runs, and the model file inference loads.

These are the behaviours MONAI Label relies on when it sends short, repeated training requests to a bundle.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from ignite.engine import Events
from monai.engines import SupervisedTrainer

from custom_nets.handlers import FinalModelSaver, ResumableCheckpoint


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
