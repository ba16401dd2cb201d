// The shown session's chat, kept in step with its events: no event applied twice, none skipped.
//
// The order of things (docs/protocol.md, "Reconnect and resume"): openSession gives the state
// and its seq S; subscribe since S answers with the latest seq N, then replays S+1..N, then live
// events follow. Lifecycle events of the session (sent to every connection) may overtake the
// replay: they are held until the replay reaches N, and anything at or below the last seq
// handled is dropped.

export class Chat {
  constructor(project) {
    this.project = project;
    this.session = null;      // null until openSession answers
    this.name = "";
    this.messages = [];
    this.streaming = null;    // {text, length (code points), toolCalls} or null
    this.loading = false;
    this.error = null;
    this.queued = [];
    this.seq = 0;             // the last seq applied
    this.replayUntil = undefined; // undefined: subscribe not answered yet; null: live
    this.held = [];
    this.version = 0;         // grows when `messages` changes, so the page redraws them
    this.mcp = null;          // the project's .mcp.json as openSession showed it (docs/mcp.md)
    this.deleted = false;     // the session was deleted while shown: a new message opens one
    this.approval = null;     // the tool call waiting for the user's approval: {call, tool} or null
  }

  load(state) {
    this.session = state.session;
    this.name = state.name;
    this.messages = state.messages;
    this.streaming = state.streaming ? partial(state.streaming.content ?? "", state.streaming.tool_calls) : null;
    this.loading = state.loading;
    this.error = state.error;
    this.queued = state.queued ?? [];
    this.approval = state.approval ?? null;
    this.seq = state.seq;
    this.replayUntil = undefined;
    this.held = [];
    this.deleted = false;
    this.version++;
  }

  // The reply to subscribe: `seq` is the latest; the replay up to it follows.
  subscribed(seq) {
    this.replayUntil = seq;
    // What came before the reply is either in the replay (at or below seq) or newer: keep that.
    const held = this.held.filter((item) => item.seq > seq);
    this.held = [];
    this.finishReplayIfDone(held);
  }

  receive(item) {
    if (this.replayUntil === undefined) { this.held.push(item); return; }
    if (item.seq === null || item.seq <= this.seq) return;
    if (this.replayUntil !== null && item.seq > this.replayUntil) { this.held.push(item); return; }
    this.apply(item);
    this.seq = item.seq;
    if (this.replayUntil !== null) this.finishReplayIfDone([]);
  }

  finishReplayIfDone(extra) {
    this.held.push(...extra);
    if (this.seq < this.replayUntil) return;
    this.replayUntil = null;
    const held = this.held.sort((a, b) => a.seq - b.seq);
    this.held = [];
    for (const item of held) this.receive(item);
  }

  apply({ event, data }) {
    switch (event) {
      case "streamingUpdate":
        this.streaming = withDelta(this.streaming ?? partial("", null), data);
        break;
      case "messageAdded":
        this.messages = this.messages.slice(0, data.index);
        this.messages.push(data.message);
        if (data.message.role === "assistant") this.streaming = null;
        this.version++;
        break;
      case "loadingChanged":
        this.loading = data.loading;
        if (data.loading) this.error = null;
        else this.streaming = null;
        if (data.reason === "failed") this.error = data.error;
        // A turn that ended no longer waits; one interrupted by a restart waits again.
        if (!data.loading && data.reason !== "interrupted") this.approval = null;
        break;
      case "approvalRequested":
        this.approval = { call: data.call, tool: data.tool };
        break;
      case "sessionUpdated":
        if (data.name !== this.name) {  // newChat: an empty chat under a new name
          this.name = data.name;
          this.messages = [];
          this.streaming = null;
          this.version++;
        }
        this.loading = data.loading;
        this.queued = data.queued ?? [];
        this.error = data.error;  // the summary is authoritative, as on the server
        this.approval = data.approval ?? null;
        break;
      case "sessionDeleted":
        this.session = null;
        this.name = "";
        this.messages = [];
        this.streaming = null;
        this.loading = false;
        this.error = null;
        this.queued = [];
        this.approval = null;
        this.deleted = true;
        this.version++;
        break;
    }
  }
}

function partial(text, toolCalls) {
  return { text, length: codePoints(text), toolCalls: toolCalls ?? null };
}

// Writes `delta` at code point `offset`; a delta that ends within what is held brings nothing.
export function withDelta(current, { offset, delta, toolCalls }) {
  const end = offset + codePoints(delta);
  const calls = toolCalls ?? current.toolCalls;
  if (end <= current.length) return { ...current, toolCalls: calls };
  const text = offset === current.length
    ? current.text + delta
    : Array.from(current.text).slice(0, offset).join("") + delta;
  return { text, length: end, toolCalls: calls };
}

function codePoints(text) {
  // Only astral characters make code points differ from UTF-16 units; count them when present.
  return /[\uD800-\uDFFF]/.test(text) ? Array.from(text).length : text.length;
}
