"""The test engines themselves: a real PostgreSQL and a real Redis answer."""

from __future__ import annotations

import socket

import psycopg

from tests.engines import Engine


def test_postgres_answers(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("select current_database(), 1 + 1").fetchone()
    assert row is not None and row[0].startswith("test_") and row[1] == 2


def test_redis_answers(bus_url: str, redis_engine: Engine) -> None:
    with socket.create_connection(("127.0.0.1", redis_engine.port), timeout=30) as sock:
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        assert sock.recv(16) == b"+PONG\r\n"
