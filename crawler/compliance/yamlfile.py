"""Safe YAML loading that remembers the line of every value.

Policy and notice files are edited by people; errors must name the file,
the line and the field. PyYAML's SafeLoader builds only plain data (no
object construction from tags); composing the node tree first gives us the
line of each key and list item, which pydantic's error locations are then
mapped back onto.

Nesting is bounded (:data:`MAX_NESTING`): PyYAML composes nodes recursively,
so a few hundred bytes of nested brackets would end in a ``RecursionError``
with no file name. Files people edit never come near the bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Location = tuple[str | int, ...]

#: The deepest nesting of lists and mappings accepted in a YAML file the
#: project reads (policies, notices, cassettes). The shipped files need 4 or 5.
MAX_NESTING = 32


class YamlSyntaxError(ValueError):
    def __init__(self, path: str, line: int, column: int, problem: str) -> None:
        super().__init__(f"{path}:{line}:{column}: YAML syntax error: {problem}")
        self.path, self.line, self.column, self.problem = path, line, column, problem


class YamlTooDeep(YamlSyntaxError):
    """Lists and mappings nested deeper than :data:`MAX_NESTING` (reported as ``FILE:LINE: nested deeper than N``)."""

    def __init__(self, path: str, line: int, column: int, limit: int = MAX_NESTING) -> None:
        super().__init__(path, line, column, f"nested deeper than {limit}")
        self.args = (f"{path}:{line}: nested deeper than {limit}",)

    def __str__(self) -> str:
        return str(self.args[0])


def check_nesting(stream: Any, name: str, limit: int = MAX_NESTING) -> None:
    """Raise :class:`YamlTooDeep` at the first list or mapping nested deeper than ``limit``.

    Reads parser events only (PyYAML's parser is a state machine, not
    recursive; libyaml's when it is available), so any depth is safe to check.
    Syntax errors are left to the real load.
    """
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    depth = 0
    try:
        for event in yaml.parse(stream, Loader=loader):
            if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                depth += 1
                if depth > limit:
                    mark = event.start_mark
                    raise YamlTooDeep(name, mark.line + 1, mark.column + 1, limit)
            elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                depth -= 1
    except yaml.YAMLError:
        return


@dataclass
class LoadedYaml:
    path: str
    data: Any
    lines: dict[Location, int] = field(default_factory=dict)

    def line_of(self, loc: Location) -> int:
        """The line of the deepest known prefix of ``loc`` (1 when nothing matches)."""
        for end in range(len(loc), -1, -1):
            line = self.lines.get(tuple(loc[:end]))
            if line is not None:
                return line
        return 1


def _index(node: yaml.Node, loc: Location, lines: dict[Location, int]) -> None:
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            child = (*loc, key)
            lines[child] = key_node.start_mark.line + 1
            _index(value_node, child, lines)
    elif isinstance(node, yaml.SequenceNode):
        for position, item in enumerate(node.value):
            _index(item, (*loc, position), lines)


class _Loader(yaml.SafeLoader):
    """SafeLoader that leaves dates and times as text.

    PyYAML would build ``date`` objects itself and crash on ``2024-02-30``
    with no line; as text, the model validates them and the error names the
    file, line and field like any other.

    Aliases (``*name``) are refused: files written by people do not need
    them, and a few nested aliases expand to billions of values (a "billion
    laughs" file would hang every command that reads the folder).
    """

    def __init__(self, stream: Any, name: str = "<yaml>") -> None:
        super().__init__(stream)
        self.file_name = name
        self.depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"aliases (*{event.anchor}) are not allowed here; write the value out", event.start_mark
            )
        if not self.check_event(yaml.SequenceStartEvent, yaml.MappingStartEvent):
            return super().compose_node(parent, index)
        # Composing recurses once per level: stop long before Python's limit.
        if self.depth >= MAX_NESTING:
            mark = self.peek_event().start_mark
            raise YamlTooDeep(self.file_name, mark.line + 1, mark.column + 1)
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


_Loader.add_constructor("tag:yaml.org,2002:timestamp", lambda loader, node: loader.construct_scalar(node))


def _check_duplicate_keys(name: str, node: yaml.Node) -> None:
    """A key given twice in one mapping is an error (YAML says so; PyYAML keeps the last silently)."""
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key_node, value_node in current.value:
                key = str(key_node.value)
                if key in seen:
                    mark = key_node.start_mark
                    raise YamlSyntaxError(name, mark.line + 1, mark.column + 1, f"duplicate key {key!r} (first at line {seen[key]})")
                seen[key] = key_node.start_mark.line + 1
                stack.append(value_node)
        elif isinstance(current, yaml.SequenceNode):
            stack.extend(current.value)


def load_yaml(path: str | Path, text: str | None = None) -> LoadedYaml:
    """Parse one YAML document safely; raise YamlSyntaxError with file, line and column."""
    name = str(path)
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise YamlSyntaxError(name, 1, exc.start + 1, "the file is not UTF-8 text") from None
    try:
        loader = _Loader(text, name)
        try:
            node = loader.get_single_node()
            if node is not None:
                _check_duplicate_keys(name, node)
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except YamlSyntaxError:
        raise
    except RecursionError:
        # Not expected with the nesting bound; never a traceback all the same.
        raise YamlTooDeep(name, 1, 1) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise YamlSyntaxError(name, line, column, " ".join(filter(None, [exc.context, exc.problem])) or str(exc)) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(name, 1, 1, str(exc).splitlines()[0]) from None
    lines: dict[Location, int] = {}
    if node is not None:
        _index(node, (), lines)
    return LoadedYaml(name, data, lines)
