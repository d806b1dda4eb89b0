"""The error `vilasr synth` raises for a request it cannot carry out as given."""


class SynthError(ValueError):
    """A synth request (flags, output folder, sizes) that cannot work; the message says what to do.
    The command line prints it as one line and exits with status 2."""
