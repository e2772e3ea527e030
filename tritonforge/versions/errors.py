"""The one refusal of repo-versions."""


class VersionsError(ValueError):
    """A change refused before anything was written; the message names the model and the cause."""
