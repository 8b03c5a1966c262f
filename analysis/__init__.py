"""clsweep analysis: sweep results (Parquet) -> tables, plots, reports. Never imports ray or sweep.

from analysis import load, best_configs, comparison_table
results = load_results("results/ewc")
best = best_configs(results)
"""

from analysis.load import AnalysisError, Results, load_results
from analysis.tables import best_configs, comparison_table

__all__ = ["AnalysisError", "Results", "best_configs", "comparison_table", "load_results"]
