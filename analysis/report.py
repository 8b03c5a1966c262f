"""The sweep report: a complete record a researcher can cite, as one HTML page and one PDF.

It leads with the answer: a summary (the method x scenario table, the chosen configuration of
each method with its cost, the average accuracy vs tasks learned, and two lines that read them)
fills the HTML's first screen and the PDF's first page. Then the results (the chosen
configurations with the search's value beside the final phase's, the test metrics, the cost per
method and sweep, search against final phase; with sweeps of two or more selection protocols,
the protocols compared: :mod:`analysis.compare_protocols`), the figures, each numbered with a
caption, and last, as a complete appendix, the protocol of each sweep (run record, how it
searched, the searched space, every fixed setting, the sampler seeds). The content is built
once as a :class:`~analysis.document.Document` and rendered twice (:mod:`analysis.render_html`,
:mod:`analysis.render_pdf`), so the HTML and the PDF say the same. Tables are also written as
Markdown, CSV and LaTeX under ``tables/``, figures as PNG and PDF under ``figures/``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure as MplFigure

from analysis import plots
from analysis.compare_protocols import compare_protocols, protocol_labels, write_comparison
from analysis.compass import write_compass
from analysis.cost import cost_display, cost_numbers
from analysis.curves import has_curves, plot_accuracy_over_time
from analysis.document import Columns, Document, Figure, Heading, Table, Text
from analysis.load import STUDY, AnalysisError, Results, load_results
from analysis.order import cell_title, ordered_studies
from analysis.protocol import selection_caption, sweep_protocol
from analysis.render_html import write_html
from analysis.render_pdf import write_pdf
from analysis.summary import reading, summary_display, summary_numbers
from analysis.tables import (
    best_configs,
    chosen_trials,
    comparison_numbers,
    comparison_table,
    metrics_display,
    metrics_numbers,
    selection_display,
    selection_numbers,
    write_table,
)

TITLE = "clsweep sweep report"


@dataclass
class Report:
    """Where the report's files went."""

    html: Path
    pdf: Path
    tables: list[Path] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    compass: list[Path] = field(default_factory=list)


@dataclass
class _Plot:
    title: str
    caption: str
    make: Callable[[], MplFigure]


def build_report(
    paths: str | Path | Sequence[str | Path],
    out: str | Path,
    select_on: str = "val_avg_acc",
    compass: bool = False,
) -> Report:
    """Load the sweeps at ``paths`` and write report.html, report.pdf, tables/ and figures/ to
    ``out`` (and with ``compass`` each sweep's CLEVA-Compass JSON under compass/). A figure that
    the data cannot support (say, importance from two trials) becomes a note in the report
    instead of an error; input that supports nothing raises AnalysisError."""
    results = load_results(paths)
    best = best_configs(results, select_on=select_on)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = Report(html=out / "report.html", pdf=out / "report.pdf")
    document = Document(TITLE)
    document.add(Heading(TITLE, 1))
    document.add(Text(_generated(results)))
    _summary_section(document, report, results, best, out)
    document.add(Heading("Results", 2))
    document.add(Text(_how_to_read(select_on)))
    report.tables += _results_section(document, results, best, out / "tables")
    report.tables += _protocols_section(document, results, out / "tables")
    _figures_section(document, report, results, best, out / "figures")
    if report.notes:
        document.add(Heading("Figures left out", 2))
        for note in report.notes:
            document.add(Text(note, note=True))
    document.add(Heading("Appendix: protocol", 2))
    document.add(
        Text(
            "What each sweep ran, complete: where it came from, how it searched, the searched "
            "space, every fixed setting and where it was set, and each study's sampler seed."
        )
    )
    for name in sorted(results.sweeps):
        _protocol_section(document, results, name)
    write_html(document, report.html)
    write_pdf(document, report.pdf)
    if compass:
        report.compass = write_compass(results, out)
    return report


def _generated(results: Results) -> str:
    names = ", ".join(sorted(results.sweeps))
    return (
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC from {len(results.sweeps)} sweep(s): "
        f"{names}. The summary comes first; the protocol of each sweep is the appendix."
    )


def _how_to_read(select_on: str) -> str:
    return (
        "How to read it: accuracies are in percent, forgetting, BWT and FWT in percentage "
        "points (pp); 'mean ± SEM (n=k)' is the mean over k seeds and its standard error, the "
        "sample standard deviation over √k; a number without ± rests on one seed. Parameter "
        "values are shown to 4 significant digits (exact in the CSV files and trials.parquet). "
        "Each method is searched on its own in each scenario cell; configurations are chosen on "
        f"validation ({select_on}) and reported on test, which no choice ever looks at. "
        "Scenarios are ordered task-, domain-, class-incremental throughout."
    )


def _summary_section(
    document: Document, report: Report, results: Results, best: pd.DataFrame, out: Path
) -> None:
    """The answer first: who wins where, with which configuration, at what cost."""
    select_on = best["select_on"].iloc[0]
    protocol = selection_caption(results)
    comparison_caption = (
        "Test average accuracy (%) of each method's chosen configuration per scenario and "
        f"benchmark: mean ± SEM (n seeds). Chosen on {select_on}. Rows: fine-tuning (lower "
        f"bound) first, joint training (upper bound) last. {protocol}"
    )
    summary_caption = (
        f"Chosen configuration of each method and cell (best mean {select_on} over the final "
        "phase's fresh seeds), its test average accuracy and its study's cost (search + "
        f"final). {protocol}"
    )
    comparison = Table(comparison_table(best), comparison_caption)
    chosen = Table(summary_display(results, best), summary_caption)
    left = [Text(reading(results, best)), comparison, chosen]
    key = _figure(report, _key_plot(results, best), out / "figures")
    if key is not None:
        key.key = True
    document.add(Heading("Summary", 2))
    document.add(Columns(left, [key] if key is not None else []))
    folder = out / "tables"
    report.tables += write_table(
        comparison.frame, folder, "comparison", comparison_numbers(best), comparison_caption
    )
    report.tables += write_table(
        chosen.frame, folder, "summary", summary_numbers(results, best), summary_caption
    )


def _key_plot(results: Results, best: pd.DataFrame) -> _Plot:
    return _Plot(
        "Average accuracy vs tasks learned",
        "Each method at its chosen configuration; test average accuracy over the tasks "
        "learned so far (Lopez-Paz & Ranzato 2017), mean ± SEM band over the seeds of the "
        "tables. One panel per cell, on one y-axis.",
        lambda: plots.plot_average_accuracy(results, best),
    )


def _figure(report: Report, plot: _Plot, folder: Path) -> Figure | None:
    """Draw and save ``plot``; a figure the data cannot support becomes a note (None)."""
    try:
        fig = plot.make()
    except AnalysisError as err:
        report.notes.append(f"{plot.title}: {err}")
        return None
    paths = plots.save_figure(fig, folder / _slug(plot.title))
    report.figures += paths
    return Figure(paths[0], plot.title, plot.caption)


def _protocol_section(document: Document, results: Results, name: str) -> None:
    protocol = sweep_protocol(results, name)
    document.add(Heading(f"Protocol: sweep {name}", 3))
    document.add(Table(protocol.record, f"Run record of sweep {name}.", key_value=True))
    document.add(Table(protocol.search, f"How sweep {name} searched.", key_value=True))
    document.add(
        Table(
            protocol.searched,
            f"Searched space of sweep {name}: each parameter's distribution as the sampler "
            "drew from it (column: its column in trials.parquet).",
        )
    )
    document.add(
        Table(
            protocol.fixed,
            f"Fixed settings of sweep {name}: every setting its trials shared, as they ran with "
            "it (set by: the space file, a --set override, the default, or, for sweeps that did "
            "not record their defaults, read from trials.parquet).",
        )
    )
    if protocol.study_seeds is not None:
        document.add(
            Table(
                protocol.study_seeds,
                f"Sampler seed of each study of sweep {name} (derived from the sweep's seed and "
                "the cell, so that cells explore differently).",
            )
        )


def _results_section(
    document: Document, results: Results, best: pd.DataFrame, folder: Path
) -> list[Path]:
    select_on = best["select_on"].iloc[0]
    protocol = selection_caption(results)
    chosen_caption = (
        "Chosen configuration of each method and cell: its parameter values, the "
        f"{select_on} it won the search with (one seed), and its mean ± SEM over the final "
        f"phase's fresh seeds (the number it was chosen by). {protocol}"
    )
    metrics_caption = (
        "Test metrics of the chosen configurations (average accuracy and BWT, FWT: Lopez-Paz & "
        "Ranzato 2017; forgetting: Chaudhry et al. 2018): mean ± SEM over n seeds; accuracies "
        f"in %, forgetting, BWT and FWT in percentage points. {protocol}"
    )
    cost_caption = (
        "Cost per method and sweep (last row: the sweep's total), search / final phase: the "
        "trials' summed wall time, CPU time and GPU time (a fractional GPU counted as its "
        "share), and the largest trainable-parameter count, stored samples (the memory budget) "
        "and peak device memory (CUDA only) of its trials. 'not recorded': a sweep written "
        "before results schema 4."
    )
    selection = selection_display(best)
    metrics = metrics_display(best)
    costs = cost_numbers(results)
    document.add(Heading("Chosen configurations: search vs final", 3))
    document.add(Text(_selection_bias_text(best)))
    document.add(Table(selection, chosen_caption))
    document.add(Table(metrics, metrics_caption))
    document.add(Heading("Cost", 3))
    document.add(Table(cost_display(costs), cost_caption))
    return [
        *write_table(selection, folder, "best_configs", selection_numbers(best), chosen_caption),
        *write_table(metrics, folder, "test_metrics", metrics_numbers(best), metrics_caption),
        *write_table(cost_display(costs), folder, "cost", costs, cost_caption),
    ]


def _protocols_section(document: Document, results: Results, folder: Path) -> list[Path]:
    """With sweeps of two or more selection protocols: what each chose, its test accuracy, rank
    and cost, side by side, and whether the ranking changes (:mod:`analysis.compare_protocols`)."""
    if len(set(protocol_labels(results).values())) < 2:
        return []
    document.add(Heading("Selection protocols compared", 2))
    try:
        comparison = compare_protocols(results)
    except AnalysisError as err:
        document.add(Text(f"No comparison: {err}", note=True))
        return []
    document.add(
        Text(
            "The same methods under each selection protocol of the sweeps given: how the "
            "protocol's search chose the hyperparameters decides which configuration is "
            "reported, and can change how the methods rank (Cha & Cho 2024, 'Hyperparameters "
            "in Continual Learning: A Reality Check'; docs/selection.md)."
        )
    )
    document.add(Table(comparison.display, comparison.caption))
    document.add(Text("Reading: " + " ".join(f"{line}." for line in comparison.reading)))
    return write_comparison(comparison, folder)


def _selection_bias_text(best: pd.DataFrame) -> str:
    select_on = best["select_on"].iloc[0]
    text = (
        f"The search value is the {select_on} the chosen configuration reached in the search, "
        "on the search's one seed. It was picked as the best of all configurations searched "
        "(the 'search candidates' column: the completed configurations of its search) on that "
        "very number, so it is biased upward: part of its lead is the luck of one run "
        "(selection bias, the winner's curse). The final value re-runs the configuration with "
        "fresh seeds that played no part in the search; its mean estimates how good the "
        "configuration really is, and is usually lower. The test numbers come from those same "
        "fresh-seed runs."
    )
    if (best["source"] == "final").any() and (best["source"] == "search").any():
        text += " Cells without a final phase report the search trial itself."
    elif (best["source"] == "search").all():
        text += (
            " These sweeps had no final phase, so the reported numbers are the search trials "
            "themselves and carry that bias; add a final phase to the space to remove it."
        )
    return text


def _figures_section(
    document: Document, report: Report, results: Results, best: pd.DataFrame, folder: Path
) -> None:
    document.add(Heading("Figures", 2))
    for plot in _plots(results, best):
        figure = _figure(report, plot, folder)
        if figure is not None:
            document.add(figure)
    one_param = [
        f"{study} (sweep {sweep})"
        for sweep in sorted(results.sweeps)
        for study in sorted(set(results.trials.loc[results.trials["sweep"] == sweep, STUDY]))
        if _searched_in(results, sweep, study) < 2
    ]
    if one_param:
        document.add(
            Text(
                "Hyperparameter importance is shown only for studies that searched two or more "
                "parameters: with one it is 1 by definition. Searched one: "
                f"{'; '.join(one_param)}; the sensitivity figure shows all there is."
            )
        )


def _plots(results: Results, best: pd.DataFrame) -> list[_Plot]:
    """Every figure after the summary's, in reading order: answers first, diagnostics after."""
    selection = best["select_on"].iloc[0]
    out: list[_Plot] = []
    if has_curves(results):
        out.append(
            _Plot(
                "Accuracy over time (task-free stream)",
                "Test accuracy averaged over all tasks against training steps, mean ± SEM band "
                "over the seeds (shaded: the transitions between tasks); below, each task's "
                "accuracy.",
                lambda: plot_accuracy_over_time(results),
            )
        )
    out.append(
        _Plot(
            "Stability vs plasticity",
            "Every completed trial: validation forgetting (x, lower = more stable) against "
            "plasticity, the accuracy on a task just after learning it (y). Dashed: the Pareto "
            "front. One panel per cell, on shared axes.",
            lambda: plots.plot_stability_plasticity(results),
        )
    )
    out.append(
        _Plot(
            "Accuracy vs cost",
            "Each method at its chosen configuration: test average accuracy (mean ± SEM) "
            "against what its study cost, search and final phase together (GPU-hours where "
            "trials held a GPU, else CPU-hours; log axis). Up and left is better. One panel per "
            "cell, on one y-axis.",
            lambda: plots.plot_accuracy_cost(results, best),
        )
    )
    for _, row in best.iterrows():
        trial_id = chosen_trials(results, row)["trial_id"].iloc[0]
        name = f"{row['method']}, {cell_title(row['benchmark'], row['scenario'], row['n_tasks'])}"
        out += [
            _Plot(
                f"Accuracy matrix: {name}",
                f"One trial (seed in the title) of the configuration chosen on {selection}. Row "
                "i: test accuracy on each task after learning i tasks; reading down a column "
                "shows forgetting; faded cells are tasks not yet learned.",
                lambda s=row["sweep"], t=trial_id: plots.plot_accuracy_matrix(results, s, t),
            ),
            _Plot(
                f"Per-task accuracy: {name}",
                "The same trial: each task's test accuracy as further tasks are learned (dotted "
                "before the task is learned); dashed black: the average accuracy.",
                lambda s=row["sweep"], t=trial_id: plots.plot_task_curves(results, s, t),
            ),
        ]
    for sweep in sorted(results.sweeps):
        info = results.sweep(sweep)
        out += [
            _Plot(
                f"Sensitivity: sweep {sweep}",
                f"Search objective ({info.objective[0]}) of each completed search trial against "
                "each searched parameter, one panel per cell, all on one y-axis. Trials stopped "
                "early by the scheduler (their value averages fewer tasks and is not comparable) "
                "and diverged trials are drawn apart, in the strip under each panel, at the "
                "number of tasks they reached.",
                lambda s=sweep: plots.plot_sensitivity(results, s),
            ),
            _Plot(
                f"Search progress: sweep {sweep}",
                "Best objective so far over completed trials against the trial number, one panel "
                "per cell; still rising at the end means the search was too short. Stopped and "
                "diverged trials are marked on the bottom edge.",
                lambda s=sweep: plots.plot_search_progress(results, s),
            ),
        ]
        trials = results.trials[results.trials["sweep"] == sweep]
        out += [
            _Plot(
                f"Importance: sweep {sweep}, {study}",
                "Share of the objective's variation due to each searched parameter, by two of "
                "Optuna's evaluators (fANOVA, PED-ANOVA), from the completed search trials; "
                "evaluators that agree give a ranking to trust.",
                lambda s=sweep, u=study: plots.plot_importance(results, s, u),
            )
            for study in ordered_studies(trials[trials["phase"] == "search"])
            if study in set(trials[STUDY]) and _searched_in(results, sweep, study) >= 2
        ]
    return out


def _searched_in(results: Results, sweep: str, study: str) -> int:
    """How many parameters the study searched (a parameter of other methods only is not)."""
    trials = results.trials
    method = trials.loc[(trials["sweep"] == sweep) & (trials[STUDY] == study), "method"].iloc[0]
    return sum(p.applies_to(method) for p in results.sweeps[sweep].params)


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
