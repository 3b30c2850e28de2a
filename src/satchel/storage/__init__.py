"""Where uploaded bytes live. Local files by default."""
