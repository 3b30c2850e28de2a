"""Shares: several stored files under one link. ``rules`` (what a share may be, its
password, its session cookie, names for "download all"; pure), ``service`` (make,
change, delete, purge; who may add, see and download)."""
