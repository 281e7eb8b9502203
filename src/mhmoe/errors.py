"""One exception family, so the CLI can print a one-line message instead of a traceback."""


class MhmoeError(Exception):
    """Base of every error the library raises on purpose; its message is one line naming what is wrong."""


class ConfigError(MhmoeError, ValueError):
    """An impossible setting: the message names the field (and the module, where one is involved)."""


class AdapterFileError(MhmoeError):
    """A saved adapter that is missing, corrupt, or belongs to another model."""


class ModelLoadError(MhmoeError):
    """A base model that cannot be found or loaded."""


class CheckpointError(MhmoeError):
    """A run's checkpoint that is missing, truncated or tampered with, or a run that cannot be resumed."""
