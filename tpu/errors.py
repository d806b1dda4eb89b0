"""The tpu package's typed error; the command line prints it as one line (exit status 2)."""


class TpuError(ValueError):
    """A mesh, topology or placement request that cannot work; the message says what to do."""
