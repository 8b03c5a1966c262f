"""The sweep <-> analysis contract: what ``python -m sweep`` writes and ``analysis`` reads.

One module both sides import, so that a name, a column or a direction is stated once: the schema
version and file names (:mod:`contract.schema`), the metric registry (:mod:`contract.metrics`),
the description of a searched parameter (:mod:`contract.params`) and the on-disk layout of the
Parquet tables, written in parts and read as one table (:mod:`contract.tables`).
It imports neither torch nor Ray (only pyarrow), so the analysis installs without them.
"""

from contract.metrics import METRICS, Metric, metric, objective_metrics
from contract.params import SearchParam
from contract.schema import (
    CURVES_FILE,
    META_FILE,
    PHASES,
    READABLE_VERSIONS,
    SCHEMA_VERSION,
    SPLITS,
    STATUSES,
    STUDY_FILE,
    TASKS_FILE,
    TRIALS_FILE,
    study_name,
)

__all__ = [
    "CURVES_FILE",
    "META_FILE",
    "METRICS",
    "PHASES",
    "READABLE_VERSIONS",
    "SCHEMA_VERSION",
    "SPLITS",
    "STATUSES",
    "STUDY_FILE",
    "TASKS_FILE",
    "TRIALS_FILE",
    "Metric",
    "SearchParam",
    "metric",
    "objective_metrics",
    "study_name",
]
