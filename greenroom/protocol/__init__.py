"""The vocabulary everything else stands on, sans I/O: no sockets, no tasks, no clocks, and no
import of trio or of any other part of greenroom (tests/protocol/test_layering.py checks).

- ``chat``: chat messages and tool calls (the OpenAI shape), thinking blocks.
- ``events``: the events a session publishes, their payloads, ``Summary``, the statuses.
- ``text``: streamed text, accumulated once (the partial message, runs of merged deltas).
- ``state``: ``SessionState`` and the one reducer that applies an event to it.
- ``commands``: the operations of docs/protocol.md, one frozen class each, with what each
  gives back and whether it is safe to send twice.
- ``results``: the values executing a command gives back (those that need a class).
- ``values``: what a command's fields may hold (project and preset names, bounds).
- ``errors``: the one exception tree; each error carries its protocol code.
- ``convert``: the one converter between these classes and plain objects (wire and storage).
- ``codec``: frames in and out, with every check on hostile input; replies and the welcome.
- ``encodings``: each event and summary encoded once per format, for every connection.
- ``resume``: where a client's stream of each session resumes after a reconnect.
"""
