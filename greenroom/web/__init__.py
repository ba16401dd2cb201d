"""The reference web UI: static files in ``static/``, served over plain HTTP on the websocket's
port (see docs/web-ui.md)."""
