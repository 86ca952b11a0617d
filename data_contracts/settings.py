"""Settings declared once: a frozen pydantic model per stage; command-line options derive from it.

Each field carries its default, its help text (`description`) and its bounds (`ge`, `gt`, a
`Literal` of choices) in one place; constructing the model validates them, and a violation is a
one-line UsageError that names the setting. `add_arguments` turns the fields into argparse
options (`--image-size` for `image_size`), `from_arguments` reads them back (unset options keep
the defaults), and `to_argv` writes a config back as the options that rebuild it (what a
torchrun rank is started with). Nothing here imports torch or prefect: `--help` stays fast.
"""
from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Iterable
from typing import Any, Literal, TypeVar, get_args, get_origin

import pydantic
from pydantic.fields import FieldInfo

from .errors import UsageError

M = TypeVar("M", bound=pydantic.BaseModel)


class Settings(pydantic.BaseModel):
    """Base of the stage configs: frozen, unknown keys refused, validated at construction."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")


def build(model: type[M], values: dict[str, Any], origin: str = "settings", as_flags: bool = False) -> M:
    """`model(**values)`, with a validation error as one line naming the setting and the rule.

    `as_flags` names a setting as its command-line option (`--shards-per-task`), for CLI users.
    """
    try:
        return model(**values)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        loc = [str(p) for p in first.get("loc", ())]
        msg = str(first.get("msg")).removeprefix("Value error, ")
        if not loc:  # a rule across settings (a model validator): its message names them
            raise UsageError(f"{origin}: {msg}") from None
        name = flag(loc[-1]) if as_flags else ".".join(loc)
        raise UsageError(f"{origin}: {name}: {msg} (got {first.get('input')!r})") from None


def check_value(model: type[pydantic.BaseModel], name: str, value: Any, origin: str = "settings",
                as_flag: bool = True) -> Any:
    """`value` checked against the type and bounds `model` declares for `name`, or the same one-line UsageError.

    For library functions that take one setting as a plain argument: the bound is read from its
    one declaration, never written again beside it.
    """
    field = model.model_fields[name]
    try:
        return pydantic.TypeAdapter(typing.Annotated[field.annotation, field]).validate_python(value)
    except pydantic.ValidationError as exc:
        msg = str(exc.errors()[0].get("msg")).removeprefix("Value error, ")
        raise UsageError(f"{origin}: {flag(name) if as_flag else name}: {msg} (got {value!r})") from None


def with_values(model: type[M], base: M | None, values: dict[str, Any], origin: str = "settings",
                as_flags: bool = False) -> M:
    """`base` (or the defaults) with the `values` that are not None set, validated again."""
    given = {k: v for k, v in values.items() if v is not None}
    if not given:
        return base if base is not None else build(model, {}, origin)
    return build(model, {**(base.model_dump() if base is not None else {}), **given}, origin, as_flags)


def field_of(model: type[pydantic.BaseModel], name: str, optional: bool = False,
             **overrides: Any) -> tuple[Any, FieldInfo]:
    """A field of another stage's config, for a section that exposes it (same help and bounds).

    `overrides` change what a section means differently (a scheduled run's own default, say);
    `optional` lets the section leave it unset (None: the stage's default applies).
    """
    field = model.model_fields[name]
    annotation = field.annotation | None if optional else field.annotation
    return annotation, (FieldInfo.merge_field_infos(field, **overrides) if overrides else field)


def section(name: str, doc: str, fields: dict[str, tuple[Any, Any]]) -> type[Settings]:
    """A Settings model made of `fields` ({name: (annotation, FieldInfo)}), e.g. a radsim.toml table."""
    return pydantic.create_model(name, __base__=Settings, __doc__=doc, **fields)  # type: ignore[call-overload]


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def scalar_type(annotation: Any) -> tuple[Any, bool]:
    """The field's base type and whether None is allowed."""
    origin = get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return (args[0] if len(args) == 1 else str), len(args) < len(get_args(annotation))
    return annotation, False


def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, model: type[pydantic.BaseModel],
                  include: Iterable[str] | None = None, metavars: dict[str, str] | None = None) -> None:
    """One option per field (all, or `include`): type, choices, default and help from the model."""
    names = list(include) if include is not None else list(model.model_fields)
    for name in names:
        field = model.model_fields[name]
        base, optional = scalar_type(field.annotation)
        default = field.get_default(call_default_factory=True)
        shown = "none" if default is None else ",".join(map(str, default)) if isinstance(default, tuple) else default
        text = f"{field.description or ''} (default: {shown})".strip()
        kw: dict[str, Any] = {"default": None, "help": text.replace("%", "%%"), "dest": name}
        if base is bool:
            parser.add_argument(flag(name), action=argparse.BooleanOptionalAction, **kw)
            continue
        if get_origin(base) is Literal:
            kw["choices"] = list(get_args(base))
        elif base in (int, float, str):
            kw["type"] = base
        if metavars and name in metavars:
            kw["metavar"] = metavars[name]
        parser.add_argument(flag(name), **kw)


def from_arguments(model: type[M], args: argparse.Namespace, base: M | None = None, origin: str = "command line") -> M:
    """The model with every option the user gave; the others keep `base`'s values (or the defaults)."""
    return with_values(model, base, {name: getattr(args, name, None) for name in model.model_fields}, origin,
                       as_flags=True)


def to_argv(config: pydantic.BaseModel, include: Iterable[str] | None = None) -> list[str]:
    """The options that rebuild `config` through `from_arguments` (fields left at None are omitted)."""
    argv: list[str] = []
    for name in (list(include) if include is not None else list(type(config).model_fields)):
        value = getattr(config, name)
        if value is None:
            continue
        if isinstance(value, bool):
            argv.append(flag(name) if value else "--no-" + name.replace("_", "-"))
        else:
            argv += [flag(name), str(value)]
    return argv
