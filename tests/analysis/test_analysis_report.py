"""``python -m analysis report``: files written, offline HTML, and exit code 2 on bad input."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from analysis_fixtures import FIXTURES

from analysis.protocol import sweep_protocol
from contract.formatting import format_param

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "analysis", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def report_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The report of every fixture sweep, built once through the CLI."""
    out = tmp_path_factory.mktemp("report")
    return out, _run("report", str(FIXTURES), "--out", str(out))


def test_report_writes_html_pdf_tables(report_run):
    out, done = report_run
    assert done.returncode == 0, done.stderr
    assert f"HTML report: {out / 'report.html'}" in done.stdout
    page = (out / "report.html").read_text()
    images = re.findall(r'<img alt="[^"]+" src="data:image/png;base64,', page)
    assert len(images) >= 7  # average, stability, matrix, curves, sensitivity, progress, importance
    captions = re.findall(r"<figcaption>Figure (\d+)\. ", page)
    assert captions == [str(k) for k in range(1, len(images) + 1)]  # a caption under every figure
    assert "<script" not in page and not re.search(r'(src|href)="(https?:)?//', page)  # offline
    pdf = (out / "report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-")
    boxes = set(re.findall(rb"/MediaBox\s*\[([^\]]*)\]", pdf))
    assert len(boxes) == 1 and [round(float(v)) for v in boxes.pop().split()] == [0, 0, 595, 842]
    assert len(re.findall(rb"/Subtype\s*/Image", pdf)) == len(images)  # the same figures
    for name in ("comparison", "best_configs", "test_metrics"):
        for suffix in (".md", ".csv", ".tex"):
            assert (out / "tables" / f"{name}{suffix}").stat().st_size > 0
    assert len(pd.read_csv(out / "tables" / "best_configs.csv")) > 0


def test_report_is_a_complete_record(report_run):
    """The summary first, then the tables, the figures and the protocol as the appendix; search
    vs final explained; nothing of the protocol left out."""
    out, _ = report_run
    page = (out / "report.html").read_text()
    headings = ("Summary", "Results", "Figures", "Appendix: protocol")
    order = [page.index(f"<h2>{h}") for h in headings]
    assert order == sorted(order)
    assert page.index("<h3>Protocol: sweep ewc-choice") > order[-1]
    for text in ("git commit", "versions", "started", "sampler", "budget", "early stopping",
                 "objective", "validation fraction", "seeds (search)", "final phase",
                 "selection bias", "search val_avg_acc (%)", "final val_avg_acc (%)",
                 "Fixed settings", "Searched space"):  # fmt: skip
        assert text in page, text
    assert page.count("<h3>Protocol: sweep ") == 3


def test_summary_leads_with_the_answer(results, report_run):
    """Before any protocol table: the reading, the method x scenario table, the chosen
    configuration of each method and cell with its cost, and the key figure."""
    from analysis.tables import best_configs

    out, _ = report_run
    page = html.unescape((out / "report.html").read_text())
    summary = page.split("<h2>Summary", 1)[1].split("<h2>", 1)[0]
    assert "Best test average accuracy per cell:" in summary and "Cost:" in summary
    assert "Table 1. Test average accuracy (%)" in summary
    assert "Table 2. Chosen configuration of each method and cell" in summary
    assert "Figure 1. Average accuracy vs tasks learned" in summary
    for _, row in best_configs(results).iterrows():
        assert row["params_shown"] in summary
        assert f"{100 * row['test_avg_acc_mean']:.1f} ±" in summary
    assert "Run record" not in summary and "Fixed settings" not in summary


def test_protocol_lists_every_fixed_setting_of_sweep_json(results, report_run):
    out, _ = report_run
    page = html.unescape((out / "report.html").read_text()).replace("<td >", "<td>")
    for name, info in results.sweeps.items():
        section = page.split(f"Protocol: sweep {name}", 1)[1].split("<h3>Protocol: ", 1)[0]
        fixed = sweep_protocol(results, name).fixed
        shown = {(r["setting"], r["value"]) for _, r in fixed.iterrows()}
        space = info.meta["space"]
        given = {**space.get("train", {}), **space.get("hyperparams", {})}
        assert given
        for setting, value in given.items():
            text = _value_text(value)
            assert (setting, text) in shown, (name, setting)
            row = f"<td>{setting}</td>\n      <td>{text}</td>"
            assert row in section, (name, setting)


def test_protocol_record_of_a_new_sweep(tmp_path: Path):
    """A sweep.json with the protocol record the sweep now writes: every recorded setting (the
    defaults included) and each study's sampler seed are in the report; a one-parameter sweep
    gets no importance figure."""
    from analysis.report import build_report
    from sweep.protocol import protocol_record
    from sweep.space import load_space

    sweep_copy = tmp_path / "quickstart"
    shutil.copytree(FIXTURES / "quickstart", sweep_copy)
    meta = json.loads((sweep_copy / "sweep.json").read_text())
    sets = ["train.epochs=1", "grid.n_tasks=3"]  # as its command line says
    assert all(f"--set {s}" in meta["command"] for s in sets)
    meta["protocol"] = protocol_record(load_space("quickstart.yaml", {"budget.trials": 6}, sets))
    (sweep_copy / "sweep.json").write_text(json.dumps(meta))
    report = build_report(sweep_copy, tmp_path / "report")
    page = html.unescape(report.html.read_text()).replace("<td >", "<td>")
    entries = meta["protocol"]["fixed"]["ewc"]
    assert len(entries["train"]) > 10 and "val_fraction" in entries["train"]
    for group in entries.values():
        for setting, entry in group.items():
            cells = (setting, _value_text(entry["value"]), entry["set_by"])
            assert "\n      ".join(f"<td>{c}</td>" for c in cells) in page, setting
    assert "<td>epochs</td>\n      <td>1</td>\n      <td>--set</td>" in page
    for study, seed in meta["protocol"]["sampler"]["study_seeds"].items():
        assert f"<td>{study}</td>\n      <td>{seed}</td>" in page
    assert "Importance" not in "".join(re.findall(r'<img alt="([^"]+)"', page))
    assert not any("importance" in p.name for p in report.figures)
    assert "with one it is 1 by definition" in page


def _value_text(value) -> str:
    """A setting as a reader re-types it: hidden sizes as '400,400', floats exactly."""
    if value is None:
        return "none"
    if isinstance(value, list):
        return ",".join(format_param(v) for v in value)
    return format_param(value)


def _one_error_line(done: subprocess.CompletedProcess, text: str) -> None:
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], done.stderr


def test_not_a_sweep_exits_2(tmp_path: Path):
    _one_error_line(_run("report", str(tmp_path), "--out", str(tmp_path / "o")), "is not a sweep")
    _one_error_line(
        _run("report", str(tmp_path / "nope"), "--out", str(tmp_path / "o")), "does not exist"
    )


def test_zero_completed_trials_exits_2(sweep_copy: Path, tmp_path: Path):
    trials = pd.read_parquet(sweep_copy / "trials.parquet")
    trials[trials["status"] != "completed"].to_parquet(sweep_copy / "trials.parquet")
    _one_error_line(
        _run("report", str(sweep_copy), "--out", str(tmp_path / "o")), "no completed trials"
    )


def test_usage_error_exits_2(tmp_path: Path):
    assert _run("report", str(FIXTURES)).returncode == 2  # --out missing: argparse, exit 2


def test_unsupported_figure_becomes_a_note(sweep_copy: Path, tmp_path: Path):
    from analysis.report import build_report

    trials = pd.read_parquet(sweep_copy / "trials.parquet")
    search = trials[(trials["phase"] == "search") & (trials["status"] == "completed")]
    kept = pd.concat([search.head(2), trials[trials["phase"] == "final"]])
    kept.to_parquet(sweep_copy / "trials.parquet")
    report = build_report(sweep_copy, tmp_path / "report")
    assert any("importance needs at least 3 completed search trials" in n for n in report.notes)
    assert "importance needs at least 3 completed search trials" in report.html.read_text()
    assert report.pdf.stat().st_size > 0


def test_pdf_table_too_wide_breaks_only_its_longest_words():
    """Columns whose words cannot all fit give way from the widest: short names and numbers
    keep their width (by hand: words 10, 20, 100, 200 in 150 points: a cap of 60)."""
    from analysis import render_pdf

    render_pdf._styles()  # registers the fonts
    assert render_pdf._capped([10, 200, 20, 100], 150) == [10, 60, 20, 60]
    assert render_pdf._capped([10, 20], 150) == [10, 20]
    rows = [["method", "searched on"], ["ewc", "permuted-digits/domain/3 " * 3]]
    method = render_pdf.pdfmetrics.stringWidth("method", render_pdf.BOLD, 6.2)
    method += 2 * render_pdf.CELL_PADDING + 2  # its cell's padding
    widths, fits = render_pdf._column_widths(rows, 1, method + 40, 6.2)
    assert not fits  # the paths' words do not fit in 40 points
    assert widths == pytest.approx([method, 40])  # the header word stays whole


def test_pdf_keeps_each_heading_with_what_it_heads(tmp_path: Path):
    """A heading is never a flowable of its own (left alone at a page's foot): it travels in
    one KeepTogether with the start of the block it heads (a table: its caption and itself)."""
    import matplotlib.pyplot as plt
    from reportlab.platypus import KeepTogether, Paragraph

    from analysis import render_pdf
    from analysis.document import Document, Figure, Heading, Table, Text

    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1], [0, 1])
    png = tmp_path / "line.png"
    fig.savefig(png)
    plt.close(fig)
    document = Document("t")
    for block in (
        Heading("Results"),
        Text("words " * 400),
        Heading("Figures"),
        Heading("Part", 3),
        Figure(png, "a line", "its caption"),
        Heading("Tables", 3),
        Table(pd.DataFrame({"a": [1]}), "a table"),
    ):
        document.add(block)
    styles = render_pdf._styles()
    story = render_pdf._story(document, styles, 170 * render_pdf.mm, 250 * render_pdf.mm)
    headings = [f for f in story if isinstance(f, Paragraph) and f.style.name.startswith("h")]
    assert headings == []
    kept = [f for f in story if isinstance(f, KeepTogether)]
    texts = [[getattr(p, "text", None) for p in k._content] for k in kept]
    assert texts[0][:1] == ["Results"] and len(texts[0]) == 2  # with its paragraph
    assert texts[1][:2] == ["Figures", "Part"] and isinstance(kept[1]._content[2], KeepTogether)
    table = kept[2]._content  # the heading, the table's caption and the table itself
    assert texts[2][0] == "Tables" and "a table" in texts[2][1]
    assert len(table) == 3 and type(table[2]).__name__ == "Table"
    render_pdf.write_pdf(document, tmp_path / "t.pdf")  # and it renders
    assert (tmp_path / "t.pdf").read_bytes().startswith(b"%PDF")
