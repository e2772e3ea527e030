"""tune-repo's one error type."""


class TuneError(RuntimeError):
    """tune-repo cannot tune this model (or at all); the message is one line."""
