"""The one exception type users see: a clear, one-line message and a non-zero exit."""


class NMTError(Exception):
    """A user-facing error (bad input, bad config, bad checkpoint): printed as one line."""
