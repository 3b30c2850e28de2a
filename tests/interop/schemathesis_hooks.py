"""Loaded by schemathesis (SCHEMATHESIS_HOOKS): how to make tus chunk bodies."""

import schemathesis
from hypothesis import strategies as st

schemathesis.openapi.media_type("application/offset+octet-stream", st.binary(max_size=256))
