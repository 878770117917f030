"""Errors that end a variant or a sweep with a recorded, readable status."""


class UnsupportedVariant(Exception):
    """The recipe cannot be applied to this model on this runtime/device (stored as ``unsupported``)."""


class ModelLoadError(Exception):
    """The model cannot be loaded or exported at all: the sweep stops before any variant starts."""
