"""Training callbacks: every trainer reports stages, epochs and episodes through one protocol."""

from __future__ import annotations

import io

import numpy as np
import pytest

from swifthydra.callbacks import (
    CVAE,
    CVAE_FINETUNE,
    DETECTOR,
    DETECTOR_FINETUNE,
    MOME,
    Callback,
    EpisodeLog,
    PrintLog,
    ProgressBar,
)
from swifthydra.detectors import MambaDetector, MoME
from swifthydra.exceptions import InvalidInputError
from swifthydra.generative import CVAE as CVAEModel

TINY = {"max_epochs": 3, "min_epochs": 1, "d_model": 4, "n_layers": 1, "batch_size": 64}


class Recorder(Callback):
    def __init__(self):
        self.events = []

    def on_stage_begin(self, stage, total=None):
        self.events.append(("begin", stage, total))

    def on_epoch_end(self, stage, record):
        self.events.append(("epoch", stage, dict(record)))

    def on_stage_end(self, stage):
        self.events.append(("end", stage))

    def on_episode_begin(self, episode, total):
        self.events.append(("episode_begin", episode, total))

    def on_episode_end(self, episode, total, record):
        self.events.append(("episode_end", episode, total, dict(record)))

    def epochs(self, stage):
        return [e[2] for e in self.events if e[0] == "epoch" and e[1] == stage]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(160, 5)).astype(np.float32)
    y = np.zeros(160, dtype=np.int64)
    y[:12] = 1
    X[:12] += 3
    return X, y


def test_detector_reports_each_epoch_between_stage_begin_and_end(data):
    X, y = data
    rec = Recorder()
    det = MambaDetector(**TINY, random_state=0).fit(X, y, callbacks=[rec])
    assert rec.events[0] == ("begin", DETECTOR, 3)
    assert rec.events[-1] == ("end", DETECTOR)
    assert rec.epochs(DETECTOR) == det.history_  # the very records of history_, not parsed text
    det.partial_fit(X, y, epochs=2, callbacks=rec)
    assert rec.events[-4] == ("begin", DETECTOR_FINETUNE, 2)
    assert len(rec.epochs(DETECTOR_FINETUNE)) == 2
    assert rec.events[-1] == ("end", DETECTOR_FINETUNE)


def test_callbacks_do_not_stay_attached_after_fit(data):
    X, y = data
    rec = Recorder()
    det = MambaDetector(**TINY, random_state=0).fit(X, y, callbacks=[rec])
    n = len(rec.events)
    det.partial_fit(X, y, epochs=1)
    assert len(rec.events) == n


def test_callbacks_do_not_change_the_model(data):
    X, y = data
    plain = MambaDetector(**TINY, random_state=0).fit(X, y)
    watched = MambaDetector(**TINY, random_state=0).fit(X, y, callbacks=[Recorder(), EpisodeLog(io.StringIO())])
    np.testing.assert_array_equal(plain.decision_function(X), watched.decision_function(X))


def test_mome_announces_its_total_epochs(data):
    X, y = data
    rec = Recorder()
    MoME(n_experts=2, max_epochs=2, min_epochs=1, d_model=4, random_state=0).fit(X, y, callbacks=rec)
    begin = [e for e in rec.events if e[0] == "begin"]
    assert begin[0][1] == MOME and begin[0][2] >= len(rec.epochs(MOME)) >= 1
    assert rec.events[-1] == ("end", MOME)


def test_cvae_reports_fit_and_fine_tuning(data):
    X, y = data
    rec = Recorder()
    model = CVAEModel(latent_dim=2, epochs=3, random_state=0).fit(X, y, callbacks=[rec])
    assert rec.events[0] == ("begin", CVAE, 3)
    assert rec.epochs(CVAE) == model.loss_curve_
    model.partial_fit(X, y, epochs=2, callbacks=[rec])
    assert len(rec.epochs(CVAE_FINETUNE)) == 2


def test_verbose_prints_the_epoch_records(data, capsys):
    X, y = data
    det = MambaDetector(**TINY, random_state=0, verbose=True).fit(X, y)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(det.history_)
    assert lines[0].startswith("epoch=1 train_loss=")


def test_a_callback_that_is_not_a_callback_is_a_clear_error(data):
    X, y = data
    with pytest.raises(InvalidInputError, match="Callback instances"):
        MambaDetector(**TINY, random_state=0).fit(X, y, callbacks=[print])


def test_print_log_and_episode_log_write_one_line_per_event():
    out = io.StringIO()
    log = PrintLog(out)
    log.on_epoch_end(DETECTOR, {"epoch": 1, "train_loss": 0.5})
    log.on_episode_end(0, 3, {"episode": 0, "val_auc": 0.91})
    assert out.getvalue().splitlines() == ["epoch=1 train_loss=0.5", "[swifthydra] episode=0 val_auc=0.91"]
    out = io.StringIO()
    ep = EpisodeLog(out)
    ep.on_episode_begin(1, 3)
    ep.on_stage_begin(DETECTOR_FINETUNE, 2)
    ep.on_epoch_end(DETECTOR_FINETUNE, {})
    ep.on_epoch_end(DETECTOR_FINETUNE, {})
    ep.on_stage_end(DETECTOR_FINETUNE)
    ep.on_episode_end(1, 3, {"kept": 16, "val_auc": 0.9, "seconds": 2.0})
    lines = out.getvalue().splitlines()
    assert lines[0] == "episode 1/2 ..."
    assert lines[1].startswith("  detector fine-tuning: 2 epochs")
    assert lines[2] == "episode 1/2 done kept=16 val_auc=0.9 [2.0 s]"


def test_progress_bar_tracks_stages_and_episodes():
    out = io.StringIO()
    bar = ProgressBar(out)
    bar.on_episode_begin(0, 2)
    bar.on_stage_begin(DETECTOR, 3)
    stage_task = bar._stages[DETECTOR]
    bar.on_epoch_end(DETECTOR, {"epoch": 1})
    assert bar._progress.tasks[[t.id for t in bar._progress.tasks].index(stage_task)].completed == 1
    assert bar._progress.tasks[[t.id for t in bar._progress.tasks].index(stage_task)].total == 3
    bar.on_stage_end(DETECTOR)
    bar.on_episode_end(0, 2, {})
    episodes = bar._progress.tasks[0]
    assert (episodes.completed, episodes.total) == (1, 2)
    bar.close()
    assert bar._progress is None


def test_progress_bar_and_episode_log_follow_two_stages_side_by_side():
    out = io.StringIO()
    bar = ProgressBar(out)
    bar.on_episode_begin(0, 2)
    bar.on_stage_begin(DETECTOR, 3)
    bar.on_stage_begin(CVAE, 5)
    bar.on_epoch_end(CVAE, {})
    bar.on_epoch_end(DETECTOR, {})
    bar.on_epoch_end(CVAE, {})
    done = {t.description: (t.completed, t.total) for t in bar._progress.tasks}
    assert done["episode 0: C-VAE"] == (2, 5) and done[f"episode 0: {DETECTOR}"] == (1, 3)
    bar.on_stage_end(CVAE)
    assert [t.description for t in bar._progress.tasks][-1] == f"episode 0: {DETECTOR}"
    bar.on_stage_end(DETECTOR)
    bar.close()
    out = io.StringIO()
    log = EpisodeLog(out)
    log.on_stage_begin(DETECTOR, 3)
    log.on_stage_begin(CVAE, 5)
    for _ in range(3):
        log.on_epoch_end(CVAE, {})
    log.on_epoch_end(DETECTOR, {})
    log.on_stage_end(CVAE)
    log.on_stage_end(DETECTOR)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith(f"  {CVAE}: 3 epochs") and lines[1].startswith(f"  {DETECTOR}: 1 epochs")


def test_swift_hydra_reports_episodes_and_the_stages_inside_them(data):
    from _presets import MICRO
    from swifthydra import SwiftHydra
    from swifthydra.callbacks import PPO

    X, y = data
    rec = Recorder()
    est = SwiftHydra(**MICRO, random_state=0).fit(X, y, callbacks=[rec])
    kinds = [e[0] for e in rec.events]
    episode_events = [e for e in rec.events if e[0].startswith("episode")]
    total = 1 + MICRO["episodes"]
    assert episode_events[0] == ("episode_begin", 0, total)
    ends = [e for e in episode_events if e[0] == "episode_end"]
    assert [e[1] for e in ends] == list(range(len(est.history_)))
    assert [e[3] for e in ends] == est.history_  # the rows of history_ themselves
    # every stage that begins also ends, in order, and nothing reports outside a stage
    open_stage = None
    for e in rec.events:
        if e[0] == "begin":
            assert open_stage is None
            open_stage = e[1]
        elif e[0] == "epoch":
            assert e[1] == open_stage
        elif e[0] == "end":
            assert e[1] == open_stage
            open_stage = None
    stages = [e[1] for e in rec.events if e[0] == "begin"]
    assert stages[:2] == [DETECTOR, CVAE]
    assert {PPO, DETECTOR_FINETUNE, CVAE_FINETUNE, MOME} <= set(stages)
    assert kinds[-1] == "end" and stages[-1] == MOME  # the mixture of experts is trained last


def test_swift_hydra_verbose_2_prints_one_line_per_episode(data, capsys):
    from _presets import MICRO
    from swifthydra import SwiftHydra

    X, y = data
    est = SwiftHydra(**MICRO, random_state=0, verbose=2).fit(X, y)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("[swifthydra]")]
    assert len(lines) == len(est.history_)
    assert lines[0].startswith("[swifthydra] episode=0 ")
