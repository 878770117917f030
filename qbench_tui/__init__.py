"""qbench's terminal app and command line. Never imports torch or another engine library."""

__version__ = "0.1.0"
