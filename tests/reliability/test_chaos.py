"""Chaos: 50 sessions running turns while a seeded driver breaks everything it can.

In process (real websocket server on 127.0.0.1, real clock): the provider crashes session
actors on demand, fails and stalls mid-stream; the driver stops, deletes and recreates
sessions; recorders disconnect and resume all the time. Then, after quiescence, the
invariants: no session stuck running; every accepted message committed exactly once, in
order, on disk as in memory; the seq rule for resuming clients; no leaked task, file
descriptor or memory. The subprocess form (test_chaos_serve.py) adds kill -9.

The short form drives for a few seconds; set GREENROOM_CHAOS_SECONDS (e.g. 600) for a long run.
"""

from __future__ import annotations

import gc
import linecache
import random
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import attrs
import trio

from greenroom.agent.simulated import SimulatedProvider
from greenroom.config import SimulatedConfig, SupervisionConfig
from greenroom.protocol import commands as cmd
from greenroom.protocol.events import MessageAdded
from greenroom.runtime import Client, open_runtime
from greenroom.store.history import history_path, read_history
from tests.conftest import make_config
from tests.reliability.chaos import Recorder, check_seqs, seconds
from tests.reliability.support import ChaosProvider, open_fds, open_server
from tests.transport.test_server_support import TOKEN, WireClient, open_client

JSON = dict[str, Any]
SESSIONS = 50
RECORDERS = 3
SEED = 20240607
# Memory blocks (sys.getallocatedblocks) still allocated once the server is gone, beyond the
# baseline: a fixed part (caches of the libraries, modules imported on first use) and a part
# per driver action, measured at 50 to 65 blocks per action and not explained yet (reported:
# docs/reliability.md, "Open findings"). A leaked session or connection costs thousands of
# blocks each, so a leak of those per action still fails this bound.
MEMORY_TOLERANCE = 20_000
BLOCKS_PER_ACTION = 100
SIMULATED = SimulatedConfig(seed=5, tokens_per_second=200.0, reply_tokens=12)
# Generous restart intensity: the driver crashes sessions on purpose, giving up is tested
# elsewhere (tests/actors), and a fixed session count makes the task count comparable.
SUPERVISION = SupervisionConfig(max_restarts=1000, period=1.0, backoff_initial=0.01,
                                backoff_max=0.05)  # fmt: skip


@attrs.define(eq=False)
class Truth:
    """Every event of every session, from an in-process client of the runtime."""

    client: Client
    names: dict[str, dict[int, str]] = attrs.Factory(dict)
    added: dict[str, list[tuple[int, JSON]]] = attrs.Factory(dict)
    anomalies: list[Any] = attrs.Factory(list)

    def watch(self, session: str) -> None:
        self.client.subscribe(session)

    async def run(self) -> None:
        while True:
            try:
                event = await self.client.events.receive()
            except trio.EndOfChannel:
                return
            if event.session is None or event.seq is None:
                continue
            names = self.names.setdefault(event.session, {})
            if event.seq in names or (names and event.seq != max(names) + 1):
                self.anomalies.append((event.session, event.seq, event.name, max(names)))
            names[event.seq] = event.name
            if isinstance(event.data, MessageAdded):
                message = event.data.message
                self.added.setdefault(event.session, []).append(
                    (event.data.index, {"role": message.role, "content": message.content})
                )


@attrs.define(eq=False)
class Driver:
    """The seeded source of trouble."""

    wire: WireClient
    provider: ChaosProvider
    truth: Truth
    rng: random.Random
    sessions: dict[str, str] = attrs.Factory(dict)  # project -> live session
    accepted: dict[str, list[str]] = attrs.Factory(dict)  # session -> texts accepted
    discarded: dict[str, list[str]] = attrs.Factory(dict)
    deleted: set[str] = attrs.Factory(set)
    # What a session opened with (a project's new session starts from its newest history).
    initial: dict[str, list[JSON]] = attrs.Factory(dict)
    counts: Counter[str] = attrs.Factory(Counter)
    _k: int = 0

    async def call(self, op: str, **fields: Any) -> JSON:
        reply = await self.wire.reply(await self.wire.send(op, **fields))
        self.wire.events.clear()  # lifecycle events: not what the driver looks at
        self.counts[f"{op}:{'ok' if reply['ok'] else reply['error']['code']}"] += 1
        return reply

    async def open(self, project: str) -> None:
        reply = await self.call("openSession", project=project)
        session = reply["result"]["session"]["session"]
        self.sessions[project] = session
        self.initial[session] = reply["result"]["session"]["messages"]
        self.truth.watch(session)

    def message(self, project: str) -> str:
        self._k += 1
        k, tag = self._k, f"<{project}>"
        kind = self.rng.choices(["text", "tool", "fail", "fail-before", "stall"],
                                weights=[50, 20, 12, 6, 4])[0]  # fmt: skip
        if kind == "tool":
            return f"create file f{k}.txt with c{k} {tag}"
        tokens = self.rng.randint(3, 60)
        rate = self.rng.choice([50, 100, 200, 400])
        extra = {"text": "", "fail": "[[fail:server]]", "fail-before": "[[fail-before:network]]",
                 "stall": "[[stall]]"}[kind]  # fmt: skip
        return f"m{k} {tag} [[tokens:{tokens}]] [[rate:{rate}]] {extra}"

    async def step(self) -> None:
        project = self.rng.choice(sorted(self.sessions))
        session = self.sessions[project]
        action = self.rng.choices(
            ["send", "crash", "stop", "delete", "resume", "reopen"],
            weights=[60, 10, 12, 3, 8, 7],
        )[0]
        self.counts[action] += 1
        if action == "send":
            text = self.message(project)
            reply = await self.call("sendMessage", session=session, content=text)
            if reply["ok"]:
                self.accepted.setdefault(session, []).append(text)
        elif action == "crash":  # the session's next stream crashes it
            self.provider.arm(project)
            text = self.message(project)
            reply = await self.call("sendMessage", session=session, content=text)
            if reply["ok"]:
                self.accepted.setdefault(session, []).append(text)
        elif action == "stop":
            reply = await self.call("stopGeneration", session=session)
            if reply["ok"]:
                self.discarded.setdefault(session, []).extend(reply["result"]["discarded"])
        elif action == "delete":
            await self.call("deleteSession", session=session)
            self.deleted.add(session)
            del self.sessions[project]
            await self.open(project)  # a new session for the project
        elif action == "resume":
            await self.call("resumeSession", session=session)
        elif action == "reopen":
            await self.call("openSession", project=project)

    async def quiesce(self) -> dict[str, JSON]:
        """Stop everything and wait until no session is loading; the final summaries."""
        self.provider.armed.clear()
        with trio.fail_after(60):
            while True:
                listed = (await self.call("listSessions"))["result"]["sessions"]
                loading = [s for s in listed if s["loading"]]
                if not loading:
                    return {s["session"]: s for s in listed}
                for summary in loading:
                    reply = await self.call("stopGeneration", session=summary["session"])
                    if reply["ok"]:
                        self.discarded.setdefault(summary["session"], []).extend(
                            reply["result"]["discarded"]
                        )
                await trio.sleep(0.1)


async def test_chaos_in_process(tmp_path: Path) -> None:
    duration = seconds(6.0)
    gc.collect()
    memory_before = sys.getallocatedblocks()
    fds_before = open_fds()
    tasks_before = trio.lowlevel.current_statistics().tasks_living
    inner = SimulatedProvider(seed=5, tokens_per_second=200.0, reply_tokens=12)
    provider = ChaosProvider(inner=inner)
    rng = random.Random(SEED)
    with trio.fail_after(duration + 120):
        async with (
            open_server(
                tmp_path, provider=provider, simulated=SIMULATED, supervision=SUPERVISION,
                flush_interval=0.2,
            ) as running,
            running.runtime.connect(capacity=10_000_000) as observer,
            trio.open_nursery() as nursery,
        ):  # fmt: skip
            truth = Truth(client=observer)
            nursery.start_soon(truth.run)
            opened = {}
            for i in range(SESSIONS):
                view = await running.runtime.execute(cmd.OpenSession(project=f"p{i:02}"))
                opened[view.summary.project] = view.summary.session
                truth.watch(view.summary.session)
            await trio.sleep(0.5)  # the first snapshots are written
            tasks_idle = trio.lowlevel.current_statistics().tasks_living
            fds_idle = open_fds()
            async with open_client(running.address) as wire:
                await wire.next_item()
                driver = Driver(wire=wire, provider=provider, truth=truth, rng=rng)
                driver.sessions.update(opened)
                live_sessions = driver.sessions
                driver.initial.update({session: [] for session in opened.values()})
                recorders = [
                    Recorder(
                        address=running.address,
                        token=TOKEN,
                        rng=random.Random(SEED + i),
                        sessions=lambda: sorted(live_sessions.values()),
                    )
                    for i in range(RECORDERS)
                ]
                async with trio.open_nursery() as chaos:
                    for recorder in recorders:
                        chaos.start_soon(recorder.run)
                    deadline = trio.current_time() + duration
                    while trio.current_time() < deadline:
                        await driver.step()
                        await trio.sleep(rng.uniform(0, 0.002))
                    summaries = await driver.quiesce()
                    await trio.sleep(0.5)  # the recorders catch up
                    chaos.cancel_scope.cancel()

                # -- no session stuck --
                live = set(driver.sessions.values())
                assert set(summaries) == live
                for summary in summaries.values():
                    assert summary["status"] in {"idle", "failed", "interrupted"}, summary
                states = {}
                for project, session in driver.sessions.items():
                    reply = await driver.call("openSession", project=project)
                    states[session] = reply["result"]["session"]
                stats = (await driver.call("stats"))["result"]

                # -- every accepted message committed exactly once, in order --
                for session, state in states.items():
                    check_messages(session, state, driver, truth)

                # -- the seq rule, as seen by resuming clients --
                assert not truth.anomalies, truth.anomalies[:10]
                merged = sum(check_seqs(r, truth.names) for r in recorders)

            await trio.sleep(0.3)  # the recorders' and the driver's connections wind down
            with trio.fail_after(10):
                while running.server.statistics().connections:  # noqa: ASYNC110 - polling the server
                    await trio.sleep(0.05)
                # With every chaos connection gone and every session idle, the process is
                # back to what it held with 50 idle sessions before the chaos.
                while trio.lowlevel.current_statistics().tasks_living > tasks_idle:  # noqa: ASYNC110 - polling the server
                    await trio.sleep(0.05)
                # A journal segment that rotated lately stays open until the next sync.
                while open_fds() > fds_idle:  # noqa: ASYNC110 - polling the process
                    await trio.sleep(0.05)
            assert trio.lowlevel.current_statistics().tasks_living == tasks_idle
            assert open_fds() <= fds_idle
            nursery.cancel_scope.cancel()
    # -- after the whole server is gone: nothing left behind --
    assert trio.lowlevel.current_statistics().tasks_living == tasks_before
    assert open_fds() == fds_before

    # -- on disk: the same messages, exactly once, in order --
    config = make_config(tmp_path)
    reopened = {s for s, initial in driver.initial.items() if initial}
    async with open_runtime(config) as restored:
        for session, state in states.items():
            again = await restored.get_state(session)
            # Sessions reopened right after their project's session was deleted included:
            # they once lost lines to the deleted session's late appends.
            assert [_plain(m) for m in again.messages] == [_wire(m) for m in state["messages"]]
            path = history_path(config.projects_root / state["project"], state["name"])
            on_disk = read_history(path) if path.exists() else []
            assert [_plain(m) for m in on_disk] == [_wire(m) for m in state["messages"]]

    report = (
        f"\nchaos in process: {duration:.0f}s, {sum(driver.counts.values())} actions "
        f"{dict(driver.counts)}, crashes {provider.crashes}, restarts {stats['restarts']}, "
        f"recorder connections {sum(r.connections for r in recorders)}, events recorded "
        f"{sum(r.events for r in recorders)}, merged jumps {merged}, resets "
        f"{sum(r.resets for r in recorders)}, reopened sessions {len(reopened)}"
    )
    assert provider.crashes > 0 and stats["restarts"] >= provider.crashes
    # What the test itself kept (its records, the tracebacks it printed) is not the server's.
    actions = sum(driver.counts.values())
    del recorders, truth, driver, states, provider, inner, running, observer, wire, restored
    linecache.clearcache()
    gc.collect()
    leaked = sys.getallocatedblocks() - memory_before
    print(f"{report}, memory blocks left {leaked}")
    assert leaked < MEMORY_TOLERANCE + BLOCKS_PER_ACTION * actions, f"{leaked} blocks left"


def _plain(message: Any) -> JSON:
    return {"role": message.role, "content": message.content}


def _wire(message: JSON) -> JSON:
    return {"role": message["role"], "content": message.get("content")}


def check_messages(session: str, state: JSON, driver: Driver, truth: Truth) -> None:
    messages = state["messages"]
    initial = driver.initial[session]
    assert messages[: len(initial)] == initial, session
    # Every messageAdded was published once, in index order, and is the final history.
    added = truth.added.get(session, [])
    indexes = [i for i, _ in added]
    assert indexes == list(range(len(initial), len(initial) + len(added))), (session, indexes)
    assert [_wire(m) for m in initial] + [m for _, m in added] == [_wire(m) for m in messages]
    # Every accepted message is there exactly once, unless a stop discarded it from the queue.
    users = Counter(m["content"] for m in messages[len(initial) :] if m["role"] == "user")
    assert all(n == 1 for n in users.values()), (session, users.most_common(3))
    expected = Counter(driver.accepted.get(session, [])) - Counter(
        driver.discarded.get(session, [])
    )
    assert users == expected, (session, users - expected, expected - users)
    # In the order they were sent.
    order = [m["content"] for m in messages[len(initial) :] if m["role"] == "user"]
    sent = [t for t in driver.accepted.get(session, []) if t in users]
    assert order == sent, session
