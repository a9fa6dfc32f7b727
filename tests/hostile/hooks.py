"""schemathesis hooks for tests/hostile/run.sh (loaded through SCHEMATHESIS_HOOKS)."""

import schemathesis

# TUS chunks (PATCH /storage/upload) are raw bytes under their own media type.
schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")
