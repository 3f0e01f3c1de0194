"""The one error the zoo raises for a person to read."""


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message says why and what to do, and names no local path."""
