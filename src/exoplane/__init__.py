"""exoplane: a self-hostable implementation of Exotel's integration platform."""

__version__ = "0.1.0"
