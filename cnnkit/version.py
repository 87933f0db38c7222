"""cnnkit's version: recorded in checkpoints, sent as the User-Agent, printed by --version."""

__version__ = "0.1.0"
