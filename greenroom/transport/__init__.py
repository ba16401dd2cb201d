"""The websocket side: the server, its connections and their send queues, auth, metrics, and
the Python client."""
