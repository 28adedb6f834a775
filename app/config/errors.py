"""The error every configuration check raises."""


class ConfigError(ValueError):
    """A bad configuration key or value; the message says which."""
