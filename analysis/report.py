"""The sweep report: one self-contained HTML page, a multi-page PDF and the tables, from Parquet.

The HTML embeds every figure as a base64 PNG and has no scripts or external links, so it opens
offline (copied off a cluster, attached to an e-mail). The PDF holds a summary page and the same
figures, one per page, via matplotlib's PdfPages.
"""

from __future__ import annotations

import base64
import html
import re
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from analysis import plots
from analysis.curves import CURVES_FILE, plot_accuracy_over_time
from analysis.load import STUDY, AnalysisError, Results, load_results
from analysis.tables import (
    best_configs,
    best_configs_display,
    chosen_trials,
    comparison_table,
    write_table,
)


@dataclass
class Report:
    """Where the report's files went."""

    html: Path
    pdf: Path
    tables: list[Path] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class _Section:
    title: str
    caption: str
    make: Callable[[], Figure]


def build_report(
    paths: str | Path | Sequence[str | Path], out: str | Path, select_on: str = "val_avg_acc"
) -> Report:
    """Load the sweeps at ``paths`` and write report.html, report.pdf, tables/ and figures/ to
    ``out``. A figure that the data cannot support (say, importance from two trials) becomes a
    note in the report instead of an error; input that supports nothing raises AnalysisError."""
    results = load_results(paths)
    best = best_configs(results, select_on=select_on)
    comparison = comparison_table(best)
    out = Path(out)
    report = Report(html=out / "report.html", pdf=out / "report.pdf")
    report.tables += write_table(comparison, out / "tables", "comparison")
    best_display = best_configs_display(best)
    report.tables += write_table(best_display, out / "tables", "best_configs", numbers=best)

    blocks: list[str] = []
    with PdfPages(report.pdf) as pdf:
        pdf.savefig(_summary_page(results, comparison))
        for section in _sections(results, best):
            try:
                fig = section.make()
            except AnalysisError as err:
                report.notes.append(f"{section.title}: {err}")
                title, message = html.escape(section.title), html.escape(str(err))
                blocks.append(f"<h3>{title}</h3><p class=note>{message}</p>")
                continue
            stem = out / "figures" / _slug(section.title)
            report.figures += plots.save_figure(fig, stem)
            pdf.savefig(fig)
            png = base64.b64encode(stem.with_suffix(".png").read_bytes()).decode("ascii")
            blocks.append(
                f"<h3>{html.escape(section.title)}</h3><p>{html.escape(section.caption)}</p>"
                f'<img alt="{html.escape(section.title)}" src="data:image/png;base64,{png}">'
            )
        if report.notes:
            pdf.savefig(_notes_page(report.notes))
        info = pdf.infodict()
        info["Title"] = "clsweep sweep report"
    report.html.write_text(_html(results, comparison, best_display, blocks))
    return report


def _sections(results: Results, best: pd.DataFrame) -> list[_Section]:
    """Every figure of the report, in reading order: answers first, diagnostics after."""
    sections = [
        _Section(
            "Average accuracy vs tasks learned",
            "Each method at its best configuration (chosen on validation); test average accuracy "
            "over the tasks learned so far (R5), mean ± SEM over the seeds of the table.",
            lambda: plots.plot_average_accuracy(results, best),
        ),
    ]
    if any((info.path / CURVES_FILE).is_file() for info in results.sweeps.values()):
        sections.append(
            _Section(
                "Accuracy over time (task-free stream)",
                "Test accuracy averaged over all tasks against training steps, mean ± SEM over "
                "the seeds (shaded: the transitions between tasks); below, each task's accuracy.",
                lambda: plot_accuracy_over_time(results),
            )
        )
    sections += [
        _Section(
            "Stability vs plasticity",
            "Every completed trial: validation forgetting (x, lower = more stable) against "
            "plasticity, the accuracy on a task just after learning it (y). Dashed: Pareto front.",
            lambda: plots.plot_stability_plasticity(results),
        ),
    ]
    for _, row in best.iterrows():
        trial_id = chosen_trials(results, row)["trial_id"].iloc[0]
        name = f"{row['method']}, {row['benchmark']}/{row['scenario']}/{row['n_tasks']}"
        sections += [
            _Section(
                f"Accuracy matrix: {name}",
                "One trial of the best configuration. Row i: test accuracy on each task after "
                "learning i tasks; reading down a column shows forgetting.",
                lambda s=row["sweep"], t=trial_id: plots.plot_accuracy_matrix(results, s, t),
            ),
            _Section(
                f"Per-task accuracy: {name}",
                "The same trial: each task's test accuracy as further tasks are learned.",
                lambda s=row["sweep"], t=trial_id: plots.plot_task_curves(results, s, t),
            ),
        ]
    for sweep in sorted(results.sweeps):
        studies = sorted(results.trials.loc[results.trials["sweep"] == sweep, STUDY].unique())
        sections += [
            _Section(
                f"Sensitivity: sweep {sweep}",
                "Search objective against each searched hyperparameter (one point per trial).",
                lambda s=sweep: plots.plot_sensitivity(results, s),
            ),
            _Section(
                f"Search progress: sweep {sweep}",
                "Best objective so far against the trial number: still rising means search longer.",
                lambda s=sweep: plots.plot_search_progress(results, s),
            ),
        ]
        sections += [
            _Section(
                f"Importance: sweep {sweep}, {study}",
                "Share of the objective's variation due to each hyperparameter, by two of "
                "Optuna's evaluators, from the completed search trials.",
                lambda s=sweep, u=study: plots.plot_importance(results, s, u),
            )
            for study in studies
        ]
    return sections


def _status_counts(results: Results) -> pd.DataFrame:
    counts = results.trials.groupby(["sweep", "phase", "status"]).size().unstack(fill_value=0)
    counts.columns.name = None
    return counts.reset_index()


def _summary_page(results: Results, comparison: pd.DataFrame) -> Figure:
    """PDF page 1: what was loaded, trials by status, and the method x scenario table."""
    fig = Figure(figsize=(11.69, 8.27), layout="constrained")  # A4 landscape
    sweeps = "\n".join(f"  {name}: {info.path}" for name, info in sorted(results.sweeps.items()))
    fig.suptitle("clsweep sweep report", fontsize=16, x=0.02, ha="left")
    top, middle, bottom = fig.subfigures(3, 1, height_ratios=[1, 1.3, 2])
    top.text(
        0.0, 0.95,
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC from {len(results.sweeps)} sweep(s):\n"
        f"{sweeps}",
        va="top", fontsize=10,
    )  # fmt: skip
    _draw_table(middle, "Trials by sweep, phase and status", _status_counts(results))
    _draw_table(
        bottom,
        "Test average accuracy (%) of each method's best configuration (chosen on validation), "
        "mean ± SEM (n seeds)",
        comparison.reset_index(),
    )
    return fig


def _notes_page(notes: list[str]) -> Figure:
    """Last PDF page: the figures the data could not support, and why."""
    fig = Figure(figsize=(11.69, 8.27))
    text = "\n\n".join(textwrap.fill(note, 130) for note in notes)
    fig.text(0.03, 0.95, "Figures left out", fontsize=14, va="top")
    fig.text(0.03, 0.89, text, fontsize=10, va="top")
    return fig


def _draw_table(fig: Figure, title: str, frame: pd.DataFrame) -> None:
    """A DataFrame as a matplotlib table with a title (two-level column labels on two lines)."""
    ax = fig.add_subplot()
    ax.axis("off")
    ax.set_title(title, loc="left", fontsize=11)
    labels = [
        "\n".join(map(str, c)).strip() if isinstance(c, tuple) else str(c) for c in frame.columns
    ]
    table = ax.table(
        cellText=[[str(v) for v in row] for row in frame.to_numpy()],
        colLabels=labels,
        loc="upper left",
        cellLoc="center",
    )
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    table.auto_set_column_width(list(range(len(labels))))
    for (row, _), cell in table.get_celld().items():
        cell.set_height(0.16 if row == 0 else 0.1)


def _html(
    results: Results, comparison: pd.DataFrame, best_display: pd.DataFrame, blocks: list[str]
) -> str:
    sweeps = "".join(
        f"<li><b>{html.escape(name)}</b>: {html.escape(str(info.path))}"
        f" ({html.escape(str(info.meta.get('command') or ''))})</li>"
        for name, info in sorted(results.sweeps.items())
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>clsweep sweep report</title>
<style>
body {{ font-family: sans-serif; max-width: 1150px; margin: 2em auto; padding: 0 1em; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }}
th, td {{ border: 1px solid #bbb; padding: 0.3em 0.6em; text-align: right; }}
th {{ background: #eee; }}
img {{ max-width: 100%; border: 1px solid #ddd; }}
.note {{ color: #8a5a00; }}
</style></head><body>
<h1>clsweep sweep report</h1>
<p>Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Accuracies in percent; ± is the standard
error of the mean over seeds (sample std / √n); configurations are chosen on validation and
reported on test.</p>
<h2>Sweeps</h2><ul>{sweeps}</ul>
{_status_counts(results).to_html(index=False)}
<h2>Method × scenario (test average accuracy)</h2>
{comparison.to_html()}
<h2>Best configuration per method and cell</h2>
{best_display.to_html(index=False)}
<h2>Figures</h2>
{"".join(blocks)}
</body></html>
"""


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
