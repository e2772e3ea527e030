"""The one error serve-repo raises."""


class ServeError(Exception):
    """serve-repo could not bring the repository up; the message says which model and why."""
