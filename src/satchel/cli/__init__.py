"""The `satchel` command: ``main`` (serve, admin, the argument parser), ``client`` (the
command-line client)."""
