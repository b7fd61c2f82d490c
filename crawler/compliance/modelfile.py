"""Strict pydantic models read from YAML files people edit, with errors a person can act on.

Policy files and notice files share this: a file is parsed safely with the
line of every value remembered (:mod:`crawler.compliance.yamlfile`), validated
against a strict model, and every problem is reported as
``FILE:LINE: field.path: message``, sorted by line, all of them at once.
"""

from __future__ import annotations

import os
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from crawler.compliance.files import NotAFile, read_regular_file
from crawler.compliance.yamlfile import LoadedYaml, YamlSyntaxError, load_yaml


class Strict(BaseModel):
    """Unknown fields are errors and values are frozen (STYLE: strict models)."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True, defer_build=True)



def yaml_files(folder: Path) -> list[Path]:
    """The ``*.yaml`` / ``*.yml`` files in ``folder`` (none if it does not exist), sorted.

    OSError when ``folder`` exists but is not a folder or cannot be listed:
    ``Path.glob`` would answer with no files at all, and no policy or notice
    file must never be mistaken for "nothing to enforce".
    """
    if not folder.is_dir():
        if folder.exists() or folder.is_symlink():
            raise OSError(f"{folder}: not a folder")
        return []
    with os.scandir(folder) as entries:
        return sorted(folder / e.name for e in entries if e.name.endswith((".yaml", ".yml")) and not e.name.startswith("."))

def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """The model inside ``annotation`` (``Model``, ``list[Model]``, ``Model | None``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _nested_model(typing.get_args(annotation)[0])
    if origin in (list, tuple, typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _nested_model(arg)
            if found is not None:
                return found
    return None


def model_at(top: type[BaseModel], loc: tuple[str | int, ...]) -> type[BaseModel]:
    """The model that holds the field at ``loc`` (walks nested models and lists)."""
    model = top
    for part in loc[:-1]:
        if not isinstance(part, str):
            continue
        field = model.model_fields.get(part)
        nested = _nested_model(field.annotation) if field is not None else None
        if nested is None:
            break
        model = nested
    return model


def describe(error: Any, top: type[BaseModel]) -> str:
    kind, message, given = error["type"], error["msg"], error.get("input")
    if kind == "extra_forbidden":
        return f"unknown field; accepted here: {', '.join(model_at(top, tuple(error['loc'])).model_fields)}"
    if kind == "missing":
        return "required field is missing"
    message = message.removeprefix("Value error, ")
    if kind == "literal_error":
        message = "must be " + message.removeprefix("Input should be ")
    return f"{message} (got {given!r})" if kind != "value_error" and not isinstance(given, dict) else message


def validation_errors(loaded: LoadedYaml, exc: ValidationError, top: type[BaseModel]) -> list[str]:
    found = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        path = ".".join(str(part) for part in loc) or "(file)"
        line = loaded.line_of(loc)
        found.append((line, f"{loaded.path}:{line}: {path}: {describe(error, top)}"))
    return [message for _, message in sorted(found, key=lambda pair: pair[0])]


def parse_model_file(
    path: Path, model: type[BaseModel], errors: list[str], missing: str, context: dict[str, Any] | None = None
) -> tuple[Any, LoadedYaml] | None:
    """``(instance, loaded)`` for a valid file, or None with every problem appended to ``errors``.

    ``context`` is pydantic's validation context, passed to the model's validators.
    """
    name = str(path)
    try:
        loaded = load_yaml(name, read_regular_file(path).decode("utf-8"))
    except FileNotFoundError:
        errors.append(f"{name}:1: (file): {missing}")
        return None
    except NotAFile as exc:
        # Said as it is: a FIFO, a device or a link to one is never opened or read.
        errors.append(str(exc))
        return None
    except UnicodeDecodeError as exc:
        errors.append(f"{name}:1: (file): not UTF-8 text (byte {exc.start})")
        return None
    except YamlSyntaxError as exc:
        errors.append(str(exc))
        return None
    except OSError as exc:
        errors.append(f"{name}:1: (file): cannot read ({exc.strerror or exc})")
        return None
    if not isinstance(loaded.data, dict):
        errors.append(f"{name}:1: (file): expected a mapping of fields, got {type(loaded.data).__name__}")
        return None
    try:
        return model.model_validate(loaded.data, context=context), loaded
    except ValidationError as exc:
        errors.extend(validation_errors(loaded, exc, model))
        return None
