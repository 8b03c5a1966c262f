"""Task-free streams: schedules by hand, the drawn task mix, consolidation counts, curves."""

import pytest
import torch
from helpers import digits_setup

from cl_core.config import RunConfig
from cl_core.errors import ClsweepError
from cl_core.methods.si import SI
from cl_core.stream import StreamContext, StreamSampler, StreamSchedule
from cl_core.trainer import train

STREAM = dict(
    benchmark="split-digits",
    scenario="class",
    n_tasks=5,
    hidden=(16,),
    iterations=30,
    epochs=None,
    batch_size=16,
)


def test_fuzzy_schedule_by_hand():
    s = StreamSchedule("fuzzy-boundaries", n_tasks=3, iters_per_task=100, transition=40)
    assert s.total == 300 and s.window(1) == (80, 120) and s.window(2) == (180, 220)
    assert s.probs(0).tolist() == [1, 0, 0] and s.probs(79).tolist() == [1, 0, 0]
    assert s.probs(80)[1].item() == pytest.approx(0.5 / 40)  # (i - start + 1/2) / w
    assert s.probs(100)[1].item() == pytest.approx(20.5 / 40)
    assert s.probs(119).tolist() == pytest.approx([0.5 / 40, 39.5 / 40, 0])
    assert s.probs(120).tolist() == [0, 1, 0] and s.probs(299).tolist() == [0, 0, 1]
    assert [s.seen(i) for i in (0, 79, 80, 179, 180, 299)] == [1, 1, 2, 2, 3, 3]
    academic = StreamSchedule("academic", 3, 100)
    assert academic.probs(99).tolist() == [1, 0, 0] and academic.probs(100).tolist() == [0, 1, 0]
    assert StreamSchedule("random", 4, 10).probs(7).tolist() == [0.25] * 4


def _sampler(kind, batch_size, iters=100, transition=40):
    cfg, base, _ = digits_setup(**{**STREAM, "iterations": iters})
    schedule = StreamSchedule(kind, 5, iters, transition)
    ctx = StreamContext(cfg, base.seq, torch.device("cpu"), schedule)
    return ctx, schedule, StreamSampler(ctx, schedule, batch_size)


def test_fuzzy_stream_task_mix_at_each_step_matches_the_schedule():
    ctx, schedule, sampler = _sampler("fuzzy-boundaries", batch_size=1000)
    c = ctx.scenario.classes_per_task
    for i in range(schedule.total):
        batch, rows, tasks = sampler.batch(i)
        p = schedule.probs(i)
        share = torch.bincount(tasks, minlength=5).float() / len(tasks)
        bound = 4 * (p * (1 - p) / len(tasks)).sqrt() + 1e-9
        assert torch.all((share - p).abs() <= bound), (i, share, p)
        assert torch.equal(batch.task, tasks)  # every sample carries its own task
        assert torch.equal(batch.label // c, tasks)  # and is a sample of that task's classes


def test_each_task_cycles_through_all_its_rows_before_repeating():
    ctx, schedule, sampler = _sampler("academic", batch_size=64)
    n = len(ctx.seq.tasks[0].train_idx)
    rows = torch.cat([sampler.batch(i)[1] for i in range(n // 64)])
    assert len(set(rows.tolist())) == len(rows)  # no repeats within a pass
    batch, _, tasks = sampler.batch(schedule.iters_per_task)  # academic: whole batches
    assert batch.task == 1 and torch.all(tasks == 1)


def test_update_every_consolidates_the_expected_number_of_times(monkeypatch):
    calls = {"after": [], "before": 0}
    after, before = SI.after_task, SI.before_task

    def counting_after(self, model, task):
        calls["after"].append(len(self.ctx.train_rows([task])[0]))  # the window of samples
        after(self, model, task)

    def counting_before(self, model, task):
        calls["before"] += 1
        before(self, model, task)

    monkeypatch.setattr(SI, "after_task", counting_after)
    monkeypatch.setattr(SI, "before_task", counting_before)
    cfg = RunConfig(
        **STREAM, method="si", stream="fuzzy-boundaries", transition=20, update_every=40
    )
    reports = list(train(cfg))
    assert len(calls["after"]) == 150 // 40 == 3  # after steps 40, 80, 120 of 5 x 30
    assert calls["before"] == 1 + 3
    assert calls["after"] == [40 * 16] * 3  # each consolidation sees its 40 steps' samples
    assert [r.tasks_learned for r in reports] == [0, 1, 2, 3, 4, 5]


def test_stream_run_reports_nominal_task_ends_and_the_curve():
    cfg = RunConfig(**STREAM, method="finetune", stream="academic", eval_every=20)
    reports = list(train(cfg))
    assert [r.tasks_learned for r in reports] == [0, 1, 2, 3, 4, 5]
    steps = sorted({p.iteration for r in reports for p in r.curve})
    assert steps == [0, 20, 30, 40, 60, 80, 90, 100, 120, 140, 150]  # every 20 and task ends
    points = [p for r in reports for p in r.curve]
    assert len(points) == len(steps) * 5 * 2  # every task, val and test
    at_end = {p.task: p.accuracy for p in points if p.iteration == 150 and p.split == "test"}
    assert [at_end[j] for j in range(5)] == reports[-1].test_acc
    again = [p for r in train(cfg) for p in r.curve]
    assert again == points  # deterministic under the seeds


def test_replay_weights_current_and_replay_equally_in_a_stream():
    from cl_core.methods.dgr import DGR
    from cl_core.params import resolve

    ctx, _, _ = _sampler("fuzzy-boundaries", 8)
    method = DGR(resolve(DGR.hyperparams, {}, "dgr"), ctx)
    assert method.current_weight(4) == 0.5


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(scenario="task"), "cannot run task-IL"),
        (dict(iterations=None, epochs=1), "needs iterations"),
        (dict(transition=40), "must not exceed iterations"),
        (dict(method="joint"), "needs task boundaries"),
        (dict(method="fromp"), "needs task boundaries"),
        (dict(method="er"), "needs task boundaries"),  # memories take a whole task's data
        (dict(method="agem"), "needs task boundaries"),
        (dict(method="icarl"), "needs task boundaries"),
        (dict(stream="fuzzy"), "unknown stream"),
    ],
)
def test_stream_settings_are_validated(change, message):
    values = {**STREAM, "method": "ewc", "stream": "fuzzy-boundaries", "transition": 20, **change}
    with pytest.raises(ClsweepError, match=message):
        RunConfig(**values).validated()


def test_reservoir_replay_runs_on_a_stream():
    cfg = RunConfig(**STREAM, method="der", stream="academic")
    assert cfg.validated().method == "der"  # DER's reservoir needs no boundaries


def test_ewc_keeps_consolidating_in_the_last_tasks_stretch(monkeypatch):
    """Task-based EWC skips the Fisher after the last task (nothing uses it); a stream goes on
    training after every consolidation, so each one counts."""
    import cl_core.methods.ewc as ewc

    latest = []
    fisher = ewc.fisher_diagonal

    def counting(model, ctx, task, *args):
        latest.append(task)
        return fisher(model, ctx, task, *args)

    monkeypatch.setattr(ewc, "fisher_diagonal", counting)
    cfg = RunConfig(**STREAM, method="ewc", stream="academic", update_every=25)
    list(train(cfg))
    assert latest == [0, 1, 2, 3, 4, 4]  # after steps 25, 50, ..., 150 of 5 x 30


def test_lwf_warms_up_its_head_on_the_window_of_a_stream(monkeypatch):
    from cl_core.methods.lwf import LwF

    rows = []
    warm_up = LwF._warm_up_head

    def recording(self, model, task):
        rows.append(len(self.ctx.train_rows([task])[0]))
        warm_up(self, model, task)

    monkeypatch.setattr(LwF, "_warm_up_head", recording)
    cfg = RunConfig(
        **STREAM,
        method="lwf",
        method_params={"warmup_epochs": 1},
        stream="academic",
        update_every=40,
    )
    list(train(cfg))
    assert rows == [40 * 16] * 3  # consolidations after steps 40, 80, 120: their 40 steps' samples
