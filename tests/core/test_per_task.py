"""Per-task hyperparameter selection (De Lange et al. 2021, Algorithm 1; cl_core/per_task.py) on
split digits: the learning rate is the grid's best at fine-tuning, and the stability knob
follows the decay rule, checked attempt by attempt."""

from __future__ import annotations

import pytest

from cl_core.config import RunConfig
from cl_core.errors import ClsweepError
from cl_core.per_task import PerTaskSettings, per_task_train
from cl_core.trainer import train

TOY = dict(benchmark="split-digits", scenario="class", n_tasks=5, hidden=(32,), iterations=60,
           epochs=None, batch_size=32)  # fmt: skip


def _choices(cfg: RunConfig, settings: PerTaskSettings) -> list:
    reports = list(per_task_train(cfg, settings=settings))
    assert [r.tasks_learned for r in reports] == list(range(cfg.n_tasks + 1))
    return [r.choice for r in reports[1:]]


def test_no_margin_keeps_the_first_attempt_so_lambda_doubles_each_task():
    """p = 1: the threshold is 0, met by any attempt that does not diverge; each task then
    starts one decay step (α = 0.5) above the previous one's value: λ = 100, 200, ..., 1600."""
    cfg = RunConfig(**TOY, method="ewc", method_params={"lambda": 100.0})
    choices = _choices(cfg, PerTaskSettings(drop=1.0, lr_grid=(1e-2, 1e-3)))
    assert [c.values["lambda"] for c in choices] == [100.0, 200.0, 400.0, 800.0, 1600.0]
    assert all(len(c.attempts) == 1 for c in choices)


@pytest.mark.parametrize(
    ("method", "knobs"), [("ewc", {"lambda": 1e5}), ("derpp", {"alpha": 3.0, "beta": 3.0})]
)
def test_every_attempt_follows_the_decay_rule(method, knobs):
    """p = 0: an attempt is kept only if it is as good as fine-tuning on the task, so some
    tasks decay; every attempt's knob is the previous one's times α, the last kept one is the
    first at or above the threshold (or the last allowed), and lr is the grid's best."""
    settings = PerTaskSettings(drop=0.0, decay=0.5, lr_grid=(1e-2, 2e-3), max_attempts=3)
    cfg = RunConfig(**TOY, method=method, method_params=knobs)
    choices = _choices(cfg, settings)
    start = dict(knobs)
    decayed = 0
    for choice in choices:
        best_lr, best = max(choice.finetune, key=lambda item: item[1])
        assert [lr for lr, _ in choice.finetune] == [1e-2, 2e-3]
        assert choice.lr == best_lr and choice.finetune_acc == best
        assert choice.threshold == pytest.approx(best)
        if choice.task > 0:
            start = {k: v / 0.5 for k, v in start.items()}
        for i, (values, accuracy) in enumerate(choice.attempts):
            assert values == {k: v * 0.5**i for k, v in start.items()}
            last = i == len(choice.attempts) - 1
            assert (accuracy >= choice.threshold or i == 2) if last else accuracy < choice.threshold
        assert choice.values == choice.attempts[-1][0]
        decayed += len(choice.attempts) - 1
        start = dict(choice.values)
    assert decayed > 0  # the toy does exercise the decay


def test_the_same_config_gives_the_same_choices_and_numbers():
    cfg = RunConfig(**TOY, method="si", method_params={"c": 10.0})
    settings = PerTaskSettings(drop=0.05, lr_grid=(1e-2, 1e-3), max_attempts=2)
    first = list(per_task_train(cfg, settings=settings))
    second = list(per_task_train(cfg, settings=settings))
    assert [r.test_acc for r in first] == [r.test_acc for r in second]
    assert [r.choice for r in first] == [r.choice for r in second]


def test_a_method_without_a_stability_knob_is_refused():
    with pytest.raises(
        ClsweepError, match="declares no stability hyperparameter.*ewc \\(lambda\\)"
    ):
        list(per_task_train(RunConfig(**TOY, method="er")))


def test_bad_settings_are_refused():
    with pytest.raises(ClsweepError, match="decay"):
        list(per_task_train(RunConfig(**TOY, method="ewc"), settings=PerTaskSettings(decay=1.0)))


def test_a_run_stopped_after_task_2_continues_from_its_checkpoint(tmp_path):
    """With a checkpoint file, a per-task run that stops after its second task (the generator
    abandoned, as a killed process leaves it) and is run again replays the rounds it had, with
    their choices, and ends with the numbers and choices of an uninterrupted run."""
    cfg = RunConfig(**TOY, method="ewc", method_params={"lambda": 1e4})
    settings = PerTaskSettings(drop=0.0, lr_grid=(1e-2, 2e-3), max_attempts=2)
    whole = list(per_task_train(cfg, settings=settings))
    path = tmp_path / "run.pt"
    first = per_task_train(cfg, settings=settings, checkpoint=path)
    stopped = [next(first) for _ in range(3)]  # rounds 0, 1 and 2
    first.close()
    assert path.exists()
    again = list(per_task_train(cfg, settings=settings, checkpoint=path))
    assert [r.test_acc for r in again] == [r.test_acc for r in whole]
    assert [r.choice for r in again] == [r.choice for r in whole]
    assert [r.choice for r in again[:3]] == [r.choice for r in stopped]
    # a task after the restart decays its knob: it started from the value the replay carried
    assert any(len(r.choice.attempts) > 1 for r in again[3:])
    assert not path.exists()  # removed once the run ended


def test_a_checkpoint_is_continued_only_under_the_protocol_that_wrote_it(tmp_path):
    cfg = RunConfig(**TOY, method="ewc")
    settings = PerTaskSettings(lr_grid=(1e-2,), max_attempts=1)
    path = tmp_path / "run.pt"
    run = per_task_train(cfg, settings=settings, checkpoint=path)
    next(run), next(run)
    run.close()
    with pytest.raises(ClsweepError, match="written by per-task selection .*not by a plain run"):
        list(train(cfg, checkpoint=path))
    other = PerTaskSettings(lr_grid=(1e-3,), max_attempts=1)
    with pytest.raises(ClsweepError, match="lr_grid.*0.01.*not by per-task selection.*0.001"):
        list(per_task_train(cfg, settings=other, checkpoint=path))
    plain = tmp_path / "plain.pt"
    list(train(cfg, checkpoint=plain, keep_checkpoint=True))
    with pytest.raises(ClsweepError, match="written by a plain run, not by per-task selection"):
        list(per_task_train(cfg, settings=settings, checkpoint=plain))
