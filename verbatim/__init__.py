"""Verbatim: answers questions only with verbatim, attributed quotes from your documents."""

__version__ = "0.1.0"
