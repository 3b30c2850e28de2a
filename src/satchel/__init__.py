"""Satchel: asynchronous file delivery — resumable on-the-fly folder ZIPs."""

__version__ = "0.1.0"
