"""Property-based fuzzing of the space validator (hypothesis): random structures, random edits of
the shipped spaces (as data, as text and as bytes). Whatever the input: no traceback, at most one
line on stderr (exit 2) or a valid plan (exit 0), and never Ray."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sweep.__main__ import main
from sweep.space.keys import SECTION_KEYS, SPACES_DIR, TOP_KEYS

EXAMPLES = int(os.environ.get("CLSWEEP_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SHIPPED = sorted(SPACES_DIR.glob("*.yaml"))
SHIPPED_DATA = {p.name: yaml.safe_load(p.read_text()) for p in SHIPPED}
KNOWN_KEYS = sorted(
    {*TOP_KEYS, *(k for keys in SECTION_KEYS.values() for k in keys)}
    | {"type", "low", "high", "step", "log", "choices", "lambda", "lr", "epochs", "hidden"}
)
NAMES = ["ewc", "si", "lwf", "tpe", "asha", "domain", "class", "permuted-digits", "val_avg_acc"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(NAMES),
)
keys = st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=10), st.integers(-3, 3))
structures = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=5)),
    max_leaves=25,
)
SPECIAL = [":", "-", "[", "]", "{", "}", "&a", "*a", "!!", "#", "\t", "'", '"', "\n", " ", "<<",
           "\x00", "\u2028", "?", "|", ">", "%", "@", "`", ",", "..", "1e999", "yes"]  # fmt: skip


def check(content: str | bytes, *extra: str) -> None:
    """The contract of a refusal, with Ray made unimportable for the call."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.yaml"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8", errors="surrogatepass")
        err, out = io.StringIO(), io.StringIO()
        blocked = {m: sys.modules.pop(m) for m in list(sys.modules) if m.split(".")[0] == "ray"}
        sys.modules["ray"] = None
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
                status = main(["--space", str(path), "--dry-run", "--out", tmp, *extra])
        finally:
            del sys.modules["ray"]
            sys.modules.update(blocked)
    lines = err.getvalue().splitlines()
    if status == 2:
        assert len(lines) == 1 and lines[0].startswith("error: fuzz.yaml"), lines
        assert out.getvalue() == ""
    else:
        assert status == 0 and lines == [], (status, lines)
        assert "sweep " in out.getvalue()


def dump(data) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


@FUZZ
@given(structures)
def test_random_structures(data):
    check(dump(data))


@FUZZ
@given(st.dictionaries(st.sampled_from(TOP_KEYS), structures, max_size=8))
def test_random_values_under_the_real_keys(data):
    check(dump(data))


@st.composite
def edited_space(draw):
    """A shipped space with one value replaced, a key removed or a key added, somewhere."""
    data = yaml.safe_load(yaml.safe_dump(SHIPPED_DATA[draw(st.sampled_from(sorted(SHIPPED_DATA)))]))
    node = data
    while True:
        if isinstance(node, dict) and node:
            key = draw(st.sampled_from(sorted(node, key=str)))
        elif isinstance(node, list) and node:
            key = draw(st.integers(0, len(node) - 1))
        else:
            break
        if not isinstance(node[key], (dict, list)) or draw(st.booleans()):
            action = draw(st.sampled_from(["replace", "remove", "add", "wrap"]))
            if action == "replace":
                node[key] = draw(structures)
            elif action == "remove" and isinstance(node, dict):
                del node[key]
            elif action == "add" and isinstance(node, dict):
                node[draw(keys)] = draw(structures)
            else:
                node[key] = [node[key]]
            break
        node = node[key]
    return data


@FUZZ
@given(edited_space())
def test_edited_shipped_spaces(data):
    check(dump(data))


@FUZZ
@given(
    st.sampled_from(SHIPPED),
    st.lists(
        st.tuples(st.floats(0, 1), st.integers(0, 8), st.sampled_from(SPECIAL)),
        min_size=1,
        max_size=4,
    ),
)
def test_text_edits_of_shipped_spaces(path, edits):
    """Characters that mean something in YAML inserted, or text cut out, anywhere."""
    text = path.read_text()
    for where, cut, insert in edits:
        at = int(where * len(text))
        text = text[:at] + insert + text[at + cut :]
    check(text)


@FUZZ
@given(st.sampled_from(SHIPPED), st.binary(min_size=1, max_size=8), st.floats(0, 1))
def test_byte_edits_of_shipped_spaces(path, junk, where):
    data = path.read_bytes()
    at = int(where * len(data))
    check(data[:at] + junk + data[at:])


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(KNOWN_KEYS + ["budget.trials", "a..b", ""]),
                          structures), min_size=1, max_size=3))  # fmt: skip
def test_random_set_values(sets):
    """--set KEY=VALUE: values are read as YAML and checked like the file."""
    shipped = (SPACES_DIR / "quickstart.yaml").read_text()
    extra = []
    for key, value in sets:
        text = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
        extra += ["--set", f"{key}={text}"]
    check(shipped, *extra)
