"""Task-free streams: schedules by hand, the drawn task mix, consolidation counts, curves; each
member of a population draws its own stream, the one it draws alone."""

import numpy as np
import pytest
import torch
from helpers import make_method, population_setup

from cl_core.config import RunConfig
from cl_core.errors import ClsweepError
from cl_core.methods.si import SI
from cl_core.population import train_population
from cl_core.stream import StreamSampler, StreamSchedule
from cl_core.trainer import RunResult, train
from cl_core.validation import validated

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


def _sampler(kind, batch_size, iters=100, transition=40, seeds=(0,)):
    _, ctx, _ = population_setup(
        [{"train_seed": s} for s in seeds], **{**STREAM, "iterations": iters}
    )
    ctx.task_free = True
    schedule = StreamSchedule(kind, 5, iters, transition)
    return ctx, schedule, StreamSampler(ctx, schedule, batch_size)


def test_fuzzy_stream_task_mix_at_each_step_matches_the_schedule():
    ctx, schedule, sampler = _sampler("fuzzy-boundaries", batch_size=1000, seeds=(0, 1))
    c = ctx.scenario.classes_per_task
    for i in range(schedule.total):
        batch, rows, tasks = sampler.batch(i)
        p = schedule.probs(i)
        for m in range(2):  # each member's own draw follows the schedule
            share = torch.bincount(tasks[m], minlength=5).float() / tasks.shape[1]
            bound = 4 * (p * (1 - p) / tasks.shape[1]).sqrt() + 1e-9
            assert torch.all((share - p).abs() <= bound), (i, m, share, p)
        assert torch.equal(batch.task, tasks)  # every sample carries its own task
        assert torch.equal(batch.label // c, tasks)  # and is a sample of that task's classes
        if 0 < p.max() < 1:
            assert not torch.equal(tasks[0], tasks[1])  # the members draw their own mixes


def test_each_task_cycles_through_all_its_rows_before_repeating():
    ctx, schedule, sampler = _sampler("academic", batch_size=64, seeds=(0, 1))
    n = len(ctx.seq.tasks[0].train_idx)
    rows = torch.cat([sampler.batch(i)[1] for i in range(n // 64)], dim=1)
    for m in range(2):
        assert len(set(rows[m].tolist())) == rows.shape[1]  # no repeats within a pass
    assert not torch.equal(rows[0], rows[1])
    batch, _, tasks = sampler.batch(schedule.iters_per_task)  # academic: whole batches
    assert batch.task == 1 and torch.all(tasks == 1)


@pytest.mark.parametrize("kind", ["academic", "fuzzy-boundaries", "random"])
def test_a_member_draws_the_stream_it_draws_alone(kind):
    _, _, alone = _sampler(kind, batch_size=16, seeds=(5,))
    _, _, population = _sampler(kind, batch_size=16, seeds=(2, 5, 9))
    for i in range(0, 500, 7):  # past the first cycle through each task's rows
        batch, rows, tasks = population.batch(i)
        own_batch, own_rows, own_tasks = alone.batch(i)
        assert torch.equal(rows[1], own_rows[0]) and torch.equal(tasks[1], own_tasks[0])
        assert torch.equal(batch.x[1], own_batch.x[0])


def test_update_every_consolidates_the_expected_number_of_times(monkeypatch):
    calls = {"after": [], "before": 0}
    after, before = SI.after_task, SI.before_task

    def counting_after(self, model, task):
        calls["after"].append(self.ctx.train_rows([task])[0].shape)  # the window of samples
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
    assert calls["after"] == [(1, 40 * 16)] * 3  # each consolidation sees its 40 steps' samples
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
    """In a stream the current batch and the replay weigh ½ each, whatever the task (the
    reference's stream training), not 1/(t+1) as at task boundaries; per member."""
    from cl_core.models import ModelFactory

    ctx, _, sampler = _sampler("fuzzy-boundaries", 8, seeds=(0, 1))
    method = make_method("dgr", ctx, {"z_dim": 8})
    assert method.current_weight(4) == 0.5
    model = method.build_model(ModelFactory(ctx.cfgs, ctx.input_shape, 10, ctx.device))
    method.after_task(model, 0)
    batch, _, _ = sampler.batch(250)
    noise, replay = method.noise.state_dict(), method.replay_random.state_dict()
    current = method.current_loss(model, batch)
    replayed = method.replay_loss(model, 8, 4)
    method.noise.load_state_dict(noise)
    method.replay_random.load_state_dict(replay)
    total = method.loss(model, batch, 4)
    assert total.shape == (2,)
    torch.testing.assert_close(total, (current + replayed) / 2, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(current, replayed)


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
        validated(RunConfig(**values))


def test_reservoir_replay_runs_on_a_stream():
    cfg = RunConfig(**STREAM, method="der", stream="academic")
    assert validated(cfg).method == "der"  # DER's reservoir needs no boundaries


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
        rows.append(self.ctx.train_rows([task])[0].shape)
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
    # consolidations after steps 40, 80, 120: their 40 steps' samples
    assert rows == [(1, 40 * 16)] * 3


@pytest.mark.parametrize("method", ["finetune", "ewc", "si", "lwf", "der", "derpp"])
def test_streams_train_as_populations_member_by_member(method):
    """A task-free stream of 3 members (seeds, learning rates and the method's floats differ):
    each member's accuracy matrix and curve are its single run's, up to one evaluation sample
    per cell (float32 rounding of batched matmuls can flip an argmax)."""
    floats = {
        "ewc": "lambda",
        "si": "c",
        "lwf": "temperature",
        "der": "alpha",
        "derpp": "beta",
    }
    members = []
    for m, scale in enumerate((1.0, 10.0, 0.3)):
        params = {floats[method]: scale} if method in floats else {}
        members.append(
            RunConfig(
                **STREAM,
                method=method,
                stream="fuzzy-boundaries",
                transition=20,
                update_every=25,
                eval_every=20,
                train_seed=m,
                lr=1e-3 * (1 + m),
                method_params=params,
                device="cpu",
            )
        )
    rounds = list(train_population(members))
    results = []
    for i, cfg in enumerate(members):
        ours = [r[i] for r in rounds]
        theirs = list(train(cfg))
        result = RunResult.from_reports(cfg, ours)
        alone = RunResult.from_reports(cfg, theirs)
        assert result.status == alone.status == "completed"
        resolution = {split: 1 / _rows(cfg, split) for split in ("val", "test")}
        # one sample of a task's rows (val: ~36, test: ~80 per split-digits task)
        for split in ("val", "test"):
            diff = np.abs(getattr(result, f"acc_{split}") - getattr(alone, f"acc_{split}"))
            assert np.all(diff <= resolution[split] + 1e-9)
        ours_curve = [p for r in ours for p in r.curve]
        their_curve = [p for r in theirs for p in r.curve]
        assert [(p.iteration, p.task, p.split) for p in ours_curve] == [
            (p.iteration, p.task, p.split) for p in their_curve
        ]
        for a, b in zip(ours_curve, their_curve, strict=True):
            assert abs(a.accuracy - b.accuracy) <= resolution[a.split][a.task] + 1e-9
        results.append(result)
    assert not np.array_equal(results[0].acc_test, results[2].acc_test)


def _rows(cfg: RunConfig, split: str) -> np.ndarray:
    """Evaluation rows per task (one column per task)."""
    from cl_core.data import build_tasks, load_dataset

    seq = build_tasks(cfg, load_dataset(cfg))
    return np.array([len(t.val_idx if split == "val" else t.test_idx) for t in seq.tasks])
