"""Command-line flags made from config dataclasses: one flag per field, its default and help taken
from the field, so the command line can never drift from the config it fills."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterable


def _default(field: dataclasses.Field):
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def add_config_flags(parser: argparse.ArgumentParser, config_class, names: Iterable[str], *,
                     unset_is_none: bool = False) -> None:
    """Add `--field-name` for each named field of `config_class` (a dataclass). With
    `unset_is_none`, a flag the user does not give parses as None (so a preset or a config file
    can supply the value); its help still shows the field's default."""
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    for name in names:
        field = fields[name]
        default = _default(field)
        flag = "--" + name.replace("_", "-")
        help_text = field.metadata.get("help", name.replace("_", " "))
        parsed_default = None if unset_is_none else default
        if unset_is_none:
            help_text += f" (default: {default})"
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=parsed_default, help=help_text)
        else:
            parser.add_argument(flag, type=type(default), default=parsed_default, help=help_text)


def given_flags(args: argparse.Namespace, names: Iterable[str]) -> dict:
    """The named flags the user gave (those not None), as config field values."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def config_from_args(config_class, args: argparse.Namespace, names: Iterable[str], **more):
    """`config_class(**{name: args.name for name in names}, **more)`."""
    return config_class(**{name: getattr(args, name) for name in names}, **more)
