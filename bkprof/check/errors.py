"""The one error of the check library: a bad configuration, exit 2 in the CLI."""


class ThresholdError(ValueError):
    """A bad threshold configuration; the message is one line naming the file or the entry."""


def read_text(path, what: str) -> str:
    """The UTF-8 text of the file `path`; ThresholdError, one line naming `what` (e.g. "baseline file X"), otherwise."""
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ThresholdError(f"{what} does not exist") from None
    except IsADirectoryError:
        raise ThresholdError(f"{what} is a folder, not a file") from None
    except OSError as error:
        raise ThresholdError(f"{what} cannot be read: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise ThresholdError(f"{what} is not UTF-8 text (byte {error.start}: {error.reason})") from None
