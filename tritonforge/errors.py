"""The one exception the build raises for a model it cannot build."""


class BuildError(Exception):
    """A model (or the whole build) cannot go on; the message is one line naming the file and the cause."""
