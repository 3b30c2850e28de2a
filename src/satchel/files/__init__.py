"""Files behind links: ``rules`` (ids, tokens, retention, links; pure), ``intake`` (a body
as it arrives), ``service`` (store, look up, count, delete, purge)."""
