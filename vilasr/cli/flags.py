"""Command-line flags made from config dataclasses: one flag per field, its type, default and help
taken from the field, so the command line can never drift from the config it fills.

With presets (e.g. `RolloutConfig.for_eval()` / `.for_rl()` chosen by `--use`), a flag left out
takes the chosen preset's value: `config_from_args(..., base=preset)` replaces only the fields
given on the command line, and the help text shows each preset's value."""

from __future__ import annotations

import argparse
import dataclasses
import enum
import types
import typing
from collections.abc import Iterable, Mapping


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: X)" after a flag's help, except where there is nothing to show (a required
    flag, an on/off switch that is off, an empty list)."""

    def _get_help_string(self, action):
        default = action.default
        if action.required or default is None or default is False or default == [] or default == argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def _default(field: dataclasses.Field):
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def _value_type(hint):
    """(type, optional): `int | None` -> (int, True)."""
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        rest = [a for a in args if a is not type(None)]
        return rest[0], len(rest) < len(args)
    return hint, False


def _parser(kind, optional: bool):
    """A flag's argparse `type`: the field's type, and 'none' for None when the field allows it."""
    def parse(text: str):
        if optional and text.lower() == "none":
            return None
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}{' or none' if optional else ''}, "
                                             f"got {text!r}") from None
    parse.__name__ = kind.__name__
    return parse


def _shown(value) -> str:
    return "none" if value is None else str(value)


def add_config_flags(parser: argparse.ArgumentParser, config_class, names: Iterable[str],
                     presets: Mapping[str, object] | None = None, pick=lambda config: config) -> None:
    """Add `--field-name` for each named field of `config_class` (a dataclass). With `presets`
    (name -> config object), a flag left out is absent from the parsed args and its help shows
    each preset's value (`pick` maps a preset to the `config_class` object holding the field)."""
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    hints = typing.get_type_hints(config_class)
    for name in names:
        field = fields[name]
        kind, optional = _value_type(hints[name])
        flag = "--" + name.replace("_", "-")
        help_text = field.metadata.get("help", name.replace("_", " "))
        kw = {}
        if presets:
            values = ", ".join(f"{use}: {_shown(getattr(pick(cfg), name))}" for use, cfg in presets.items())
            kw = {"default": argparse.SUPPRESS, "help": f"{help_text} (defaults: {values})"}
        else:
            kw = {"default": _default(field), "help": help_text}
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif isinstance(kind, type) and issubclass(kind, enum.Enum):
            parser.add_argument(flag, type=kind, choices=list(kind), **kw)
        else:
            parser.add_argument(flag, type=_parser(kind, optional), **kw)


def given_flags(args: argparse.Namespace, names: Iterable[str]) -> dict:
    """The named flags the command line gave (flags added with `presets` are absent otherwise)."""
    return {name: getattr(args, name) for name in names if hasattr(args, name)}


def config_from_args(config_class, args: argparse.Namespace, names: Iterable[str], base=None, **more):
    """`config_class(**{name: args.name}, **more)`; with `base`, a copy of `base` with the fields
    the command line gave (and `more`) replaced."""
    given = given_flags(args, names)
    if base is None:
        return config_class(**given, **more)
    return dataclasses.replace(base, **given, **more)
