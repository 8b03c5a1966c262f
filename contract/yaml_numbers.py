"""YAML numbers as a reader expects them: ``1.0e5`` and ``1e-4`` are floats (YAML 1.2), where
PyYAML's YAML 1.1 resolver reads a float without a dot, or with an exponent but no sign, as a
string. The sweep reads spaces, and the registry re-reads them for their hash, with it."""

from __future__ import annotations

import re

import yaml

FLOAT = re.compile(
    r"""^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[0-9][0-9_]*[eE][-+]?[0-9]+|\.inf|\.Inf|\.INF|\.nan|\.NaN|\.NAN)$""",
    re.X,
)


def read_floats_as_yaml_1_2(loader: type[yaml.SafeLoader]) -> None:
    """Make ``loader`` (a SafeLoader subclass) resolve YAML 1.2 floats."""
    loader.add_implicit_resolver("tag:yaml.org,2002:float", FLOAT, list("-+0123456789."))
