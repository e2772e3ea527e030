"""The one refusal of the fleet commands."""


class FleetError(Exception):
    """Publishing or syncing cannot go on; the message is one line naming the bucket, file and cause."""
