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
- ``frames``: the subprotocols, and what a frame holds: commands in; replies, errors, welcome out.
- ``parsing``: a client frame's bytes to an object, with every check on hostile input.
- ``decoding``: a parsed frame to the command it names, every field checked.
- ``replies``: each command's result, and replies, errors, events, welcome as plain objects.
- ``codec``: frames in and out in a connection's subprotocol; names again what the four above
  define, as the one place to import the wire from.
- ``encodings``: each event and summary encoded once per format, for every connection.
- ``resume``: where a client's stream of each session resumes after a reconnect.
"""
