"""The one exception type users see: a clear, one-line message and a non-zero exit."""


class NMTError(Exception):
    """A user-facing error (bad input, bad config, bad checkpoint): printed as one line."""


class Interrupted(KeyboardInterrupt):
    """A run stopped by a signal after saving its state; the CLI exits with 128 + the signal."""

    def __init__(self, message: str, exit_status: int = 130):
        super().__init__(message)
        self.exit_status = exit_status
