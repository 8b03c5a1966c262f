"""Reading YAML that a user wrote, with bounds: every way the text can go wrong is a one-line error.

Plain ``yaml.safe_load`` keeps the last of two equal keys, follows anchors and aliases without
limit (a small file can expand to gigabytes: the "billion laughs"), recurses once per nesting level
(a deep file ends in RecursionError) and reads ``1e7`` as a string (YAML 1.1). Here:

- the text is parsed as a stream of events first (PyYAML's parser keeps its own stack), so nesting
  deeper than :data:`MAX_DEPTH` is refused before anything recurses;
- the composed node graph is measured without recursion, counting each alias as the copy it
  becomes: more than :data:`MAX_NODES` values, a nesting deeper than :data:`MAX_DEPTH` after
  expansion, or an alias inside its own anchor are refused;
- a key written twice in one mapping is refused (a key merged with ``<<:`` and then written
  explicitly is YAML's documented override, and stays allowed);
- scientific notation (``1e-3``) reads as a number.
"""

from __future__ import annotations

from typing import Any

import yaml

from contract.yaml_numbers import read_floats_as_yaml_1_2

MAX_DEPTH = 16  # mappings/lists inside each other; a space file needs 4
MAX_NODES = 20_000  # values after alias expansion; the shipped spaces have about 100
MERGE_TAG = "tag:yaml.org,2002:merge"


class YamlRefused(Exception):
    """Text that is not a usable YAML document: ``where`` (a line, or "YAML") and ``problem``."""

    def __init__(self, where: str, problem: str, fix: str) -> None:
        self.where, self.problem, self.fix = where, problem, fix
        super().__init__(f"{where}: {problem}; {fix}")


class _Loader(yaml.SafeLoader):
    """SafeLoader with numbers in scientific notation and refused duplicate keys."""

    explicit_keys: dict[int, set[int]]  # mapping node id -> ids of keys written in it

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, yaml.MappingNode):
            raise yaml.constructor.ConstructorError(
                None, None, f"expected a mapping node, but found {node.id}", node.start_mark
            )
        self.flatten_mapping(node)
        mapping: dict[Any, Any] = {}
        written: set[Any] = set()
        explicit = self.explicit_keys.get(id(node), set())
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    "found a list or mapping as a key",
                    key_node.start_mark,
                ) from None
            if id(key_node) in explicit:
                if key in written:
                    raise YamlRefused(
                        f"line {key_node.start_mark.line + 1}",
                        f"key {key!r} appears twice in one mapping",
                        "keep one of them (YAML would silently use the last)",
                    )
                written.add(key)
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping


read_floats_as_yaml_1_2(_Loader)


def load_yaml(text: str) -> Any:
    """Parse one YAML document with the bounds of the module docstring; YamlRefused if not."""
    try:
        _check_nesting(text)
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            loader.explicit_keys = _measure(node)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except YamlRefused:
        raise
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "YAML"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        fix = "fix the syntax (indentation, colons, brackets, tags)"
        raise YamlRefused(where, f"cannot parse YAML ({problem})", fix) from None
    except (ValueError, OverflowError, RecursionError, MemoryError) as exc:
        # e.g. an integer of more digits than Python converts, a date out of range
        problem = f"a value cannot be read ({type(exc).__name__})"
        raise YamlRefused("YAML", problem, "write plain numbers, names and lists") from None


def _check_nesting(text: str) -> None:
    """Refuse nesting deeper than MAX_DEPTH, reading events (no recursion)."""
    depth = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise YamlRefused(
                    f"line {event.start_mark.line + 1}",
                    f"nesting deeper than {MAX_DEPTH} levels",
                    "a space file needs a few levels; flatten the structure",
                )
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def _measure(root: yaml.Node) -> dict[int, set[int]]:
    """Check the expanded size and depth of the node graph; return, per mapping node, the ids of
    the keys written in it (not merged into it with ``<<``).

    Iterative post-order walk with memoised (size, depth) per node, so that a chain of aliases
    is measured in linear time, and a node met again while still open is an alias to itself.
    """
    sizes: dict[int, tuple[int, int]] = {}
    explicit: dict[int, set[int]] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            kids = _children(node)
            size = 1 + sum(sizes[id(k)][0] for k in kids)
            depth = 1 + max((sizes[id(k)][1] for k in kids), default=0)
            if size > MAX_NODES:
                raise YamlRefused(
                    f"line {node.start_mark.line + 1}",
                    f"anchors and aliases expand to more than {MAX_NODES} values",
                    "write the values out, or use fewer aliases",
                )
            if depth > MAX_DEPTH + 1:
                raise YamlRefused(
                    f"line {node.start_mark.line + 1}",
                    f"aliases nest values deeper than {MAX_DEPTH} levels",
                    "flatten the structure",
                )
            sizes[key] = (size, depth)
            open_nodes.discard(key)
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            raise YamlRefused(
                f"line {node.start_mark.line + 1}",
                "an alias refers to the value that contains it",
                "remove the recursive alias",
            )
        open_nodes.add(key)
        stack.append((node, True))
        if isinstance(node, yaml.MappingNode):
            explicit[key] = {id(k) for k, _ in node.value if k.tag != MERGE_TAG}
        for kid in _children(node):
            if id(kid) in open_nodes:
                raise YamlRefused(
                    f"line {kid.start_mark.line + 1}",
                    "an alias refers to the value that contains it",
                    "remove the recursive alias",
                )
            if id(kid) not in sizes:
                stack.append((kid, False))
    return explicit


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []
