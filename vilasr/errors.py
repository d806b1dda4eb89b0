"""Typed errors of the vilasr package; each message says what is wrong and what to do.

The command line (vilasr/cli/main.py) prints any of these as one line and exits with status 2."""


class VilasrError(Exception):
    """Base class of vilasr's own errors."""


class ConfigError(VilasrError, ValueError):
    """A configuration value is missing, inconsistent or unsupported."""


class CheckpointError(VilasrError):
    """A checkpoint folder is missing files or tensors, or does not match the model config."""


class InputError(VilasrError, ValueError):
    """A file, folder or value given on the command line cannot be used as it is."""
