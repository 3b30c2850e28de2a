"""aiohttp routes and handlers only: parse, call a core, stream."""
