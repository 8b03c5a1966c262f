"""``python -m analysis report``: files written, offline HTML, and exit code 2 on bad input."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
from analysis_fixtures import FIXTURES

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "analysis", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_report_writes_html_pdf_tables(tmp_path: Path):
    out = tmp_path / "report"
    done = _run("report", str(FIXTURES), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert f"HTML report: {out / 'report.html'}" in done.stdout
    page = (out / "report.html").read_text()
    images = re.findall(r'<img alt="[^"]+" src="data:image/png;base64,', page)
    assert len(images) >= 7  # average, stability, matrix, curves, sensitivity, progress, importance
    assert "<script" not in page and not re.search(r'(src|href)="(https?:)?//', page)  # offline
    pdf = (out / "report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-") and len(re.findall(rb"/Type\s*/Page\b", pdf)) == len(
        images
    ) + 1 + ("note:" in done.stdout)
    for name in ("comparison", "best_configs"):
        for suffix in (".md", ".csv", ".tex"):
            assert (out / "tables" / f"{name}{suffix}").stat().st_size > 0
    assert len(pd.read_csv(out / "tables" / "best_configs.csv")) > 0


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
