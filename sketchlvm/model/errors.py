"""Errors a caller of the model may catch without importing torch or open_clip (the serving install)."""


class WeightsUnavailableError(RuntimeError):
    """The requested CLIP weights could not be loaded; the message says what was looked for and how to fix it."""

