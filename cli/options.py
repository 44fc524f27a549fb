"""Command-line options made from config dataclasses, so each setting is declared once: in its field.

A field `chunk_size: int = field(default=1000, metadata={"help": ...})` becomes `--chunk-size N`
with that help, its default shown, its type from the annotation and its choices from
`metadata["choices"]`. Every option defaults to None, "not given", so the dataclass default applies
and a saved index config is not overridden by values the user never typed.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Union, get_args, get_origin, get_type_hints

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


@dataclass(frozen=True)
class ConfigOptions:
    """The fields of one config dataclass that a command offers as options.

    only: the fields offered (default: every field of a type the command line can express);
    skip: fields left out; prefix: put before each flag (`embedding-` gives `--embedding-model`);
    flags: other spellings for a field (`{"k": ("-k",)}`); choices: for a field whose dataclass
    names none (`{"mode": MODES}`).
    """

    config: type
    only: tuple[str, ...] | None = None
    skip: tuple[str, ...] = ()
    prefix: str = ""
    flags: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    choices: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    def fields(self) -> list[dataclasses.Field]:
        hints = get_type_hints(self.config)
        chosen = [f for f in dataclasses.fields(self.config) if f.name not in self.skip]
        if self.only is not None:
            unknown = set(self.only) - {f.name for f in chosen}
            if unknown:
                raise TypeError(f"{self.config.__name__} has no fields {sorted(unknown)}")
            return [f for f in chosen if f.name in self.only]
        return [f for f in chosen if _expressible(hints[f.name])]

    def dest(self, name: str) -> str:
        return (self.prefix + name).replace("-", "_")

    def flag_names(self, name: str) -> tuple[str, ...]:
        return self.flags.get(name) or ("--" + (self.prefix + name).replace("_", "-"),)

    def add_to(self, parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
        hints = get_type_hints(self.config)
        for f in self.fields():
            hint = hints[f.name]
            help_text = f.metadata.get("help")
            if not help_text:
                raise TypeError(f"{self.config.__name__}.{f.name} has no metadata['help'] for --help")
            choices = self.choices.get(f.name, f.metadata.get("choices"))
            shown = f"{help_text} ({_default_text(f, choices)})".replace("%", "%%")
            flags, dest = self.flag_names(f.name), self.dest(f.name)
            if hint is bool:
                parser.add_argument(*flags, dest=dest, action="store_const", const=True, help=shown)
                parser.add_argument(
                    *(_negated(flag) for flag in flags if flag.startswith("--")),
                    dest=dest,
                    action="store_const",
                    const=False,
                    help=argparse.SUPPRESS,
                )
                continue
            parser.add_argument(
                *flags,
                dest=dest,
                type=_converter(hint, choices),
                default=None,
                metavar=_metavar(hint, choices, dest),
                help=shown,
            )

    def given(self, args: argparse.Namespace) -> dict[str, Any]:
        """The values of this config's fields that the user typed, by field name."""
        values = {f.name: getattr(args, self.dest(f.name), None) for f in self.fields()}
        return {name: value for name, value in values.items() if value is not None}

    def build(self, args: argparse.Namespace, base: Any = None) -> Any:
        """`base` (or the dataclass defaults) with the values the user typed; the dataclass checks them."""
        given = self.given(args)
        return dataclasses.replace(base, **given) if base is not None else self.config(**given)

    def argv(self, config: Any) -> list[str]:
        """The options `build` turns back into `config`: each field that differs from its default, as
        flag and value (for a command that starts another with the same settings)."""
        hints = get_type_hints(self.config)
        default = self.config()
        out: list[str] = []
        for f in self.fields():
            value = getattr(config, f.name)
            if value == getattr(default, f.name):
                continue
            flag = self.flag_names(f.name)[0]
            if hints[f.name] is bool:
                out.append(flag if value else _negated(flag))
            else:
                out += [flag, ",".join(value) if isinstance(value, list) else _choice_text(value)]
        return out


def _negated(flag: str) -> str:
    return "--no-" + flag[2:]


def _members(hint: Any) -> tuple[Any, ...]:
    """The types in an annotation, without None: `int | None` -> (int,), `list[str] | str` -> (list[str], str)."""
    if get_origin(hint) in (Union, types.UnionType):
        return tuple(a for a in get_args(hint) if a is not type(None))
    return (hint,)


def _expressible(hint: Any) -> bool:
    return all(m in (int, float, str, bool) or get_origin(m) is list for m in _members(hint))


def _as_bool(text: str) -> bool | None:
    lowered = text.strip().lower()
    return True if lowered in _TRUE else False if lowered in _FALSE else None


def _choice_text(choice: Any) -> str:
    return str(choice).lower() if isinstance(choice, bool) else str(choice)


def _converter(hint: Any, choices: Iterable[Any] | None) -> Callable[[str], Any]:
    """argparse `type=`: text -> the field's type; a bad value raises ArgumentTypeError (exit 2)."""
    members = _members(hint)
    allowed = tuple(choices) if choices is not None else None

    def convert(text: str) -> Any:
        value: Any = None
        if list in {get_origin(m) for m in members}:
            # A list of names, comma-separated; a word the field also takes as a string stays one.
            if str in members and allowed is not None and text in allowed:
                return text
            names = [part.strip() for part in text.split(",") if part.strip()]
            if not names:
                raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated names")
            return names
        for member in members:
            try:
                if member is bool:
                    value = _as_bool(text)
                elif member in (int, float):
                    value = member(text)
                elif member is str:
                    value = text
            except ValueError:
                value = None
            if value is not None:
                break
        if value is None:
            raise argparse.ArgumentTypeError(f"{text!r}: expected {' or '.join(_name(m) for m in members)}")
        if allowed is not None and value not in allowed and isinstance(value, str):
            # Choices are matched without regard to case: --init-lora-weights PiSSA means pissa.
            value = next((c for c in allowed if isinstance(c, str) and c.lower() == value.lower()), value)
        if allowed is not None and value not in allowed:
            names = ", ".join(_choice_text(c) for c in allowed)
            raise argparse.ArgumentTypeError(f"{text!r}: use one of {names}")
        return value

    return convert


def _name(hint: Any) -> str:
    if get_origin(hint) is list:
        return "comma-separated names"
    return {int: "a whole number", float: "a number", bool: "true or false"}.get(hint, "text")


def _metavar(hint: Any, choices: Iterable[Any] | None, dest: str) -> str:
    if choices is not None and get_origin(_members(hint)[0]) is not list:
        return "{" + ",".join(_choice_text(c) for c in choices) + "}"
    return {int: "N", float: "X"}.get(_members(hint)[0], dest.upper())


def _default_text(f: dataclasses.Field, choices: Iterable[Any] | None) -> str:
    if f.default is not dataclasses.MISSING:
        default = f.default
    elif f.default_factory is not dataclasses.MISSING:
        default = f.default_factory()
    else:
        return "required"
    if default is None or default == "":
        return "default: not set"
    if isinstance(default, (list, tuple)):
        default = ",".join(map(str, default))
    elif isinstance(default, bool):
        default = _choice_text(default) if choices else ("on" if default else "off")
    return f"default: {default}"
