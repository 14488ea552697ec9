"""The one error of the check library: a bad configuration, exit 2 in the CLI."""


class ThresholdError(ValueError):
    """A bad threshold configuration; the message is one line naming the file or the entry."""
