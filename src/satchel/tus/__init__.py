"""Resumable uploads (tus 1.0): ``rules`` (the protocol, pure), ``service`` (the bytes and
the records)."""
