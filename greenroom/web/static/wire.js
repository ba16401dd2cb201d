// The websocket side of the UI: calls with ids, batches split, reconnection with backoff.
// Knows the protocol's framing (docs/protocol.md) but nothing of the page.

const BACKOFF_FIRST = 100;   // ms, doubling to BACKOFF_MAX, jittered
const BACKOFF_MAX = 5000;
const CALL_TIMEOUT = 30000;  // a reply that never comes must not hang the UI

export class CommandError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

export class Wire {
  // handlers: { welcome(data), event(item), status("connecting" | "open" | "closed", detail) }
  constructor(url, handlers) {
    this.url = url;
    this.handlers = handlers;
    this.ws = null;
    this.nextId = 1;
    this.waiting = new Map();  // id -> {resolve, reject, timer}
    this.delay = BACKOFF_FIRST;
    this.everOpened = false;
    this.welcomed = false;  // the current connection's welcome has come: calls go out at once
    this.queued = new Set();  // calls made before that, sent when it comes
  }

  start() {
    this.handlers.status("connecting");
    const ws = new WebSocket(this.url, "greenroom.v1.json");
    this.ws = ws;
    ws.onopen = () => { this.delay = BACKOFF_FIRST; this.everOpened = true; };
    ws.onmessage = (e) => {
      const frame = JSON.parse(e.data);
      for (const item of Array.isArray(frame) ? frame : [frame]) this.receive(item);
    };
    ws.onclose = (e) => {
      this.ws = null;
      this.welcomed = false;
      this.failAll("the connection closed");
      // A refused handshake (wrong token, foreign origin) shows only as a close without a code.
      const hint = this.everOpened ? `closed (${e.code})` : "cannot connect: is the token right?";
      this.handlers.status("closed", hint);
      const wait = this.delay * (0.5 + Math.random());
      this.delay = Math.min(this.delay * 2, BACKOFF_MAX);
      setTimeout(() => this.start(), wait);
    };
  }

  receive(item) {
    if ("re" in item) {
      const pending = this.waiting.get(item.re);
      if (!pending) return;
      this.waiting.delete(item.re);
      clearTimeout(pending.timer);
      // onReply runs now, before the events that follow the reply in this frame (a
      // subscribe's replay); a promise's continuation would run only after them.
      if (item.ok) { pending.onReply?.(item.result); pending.resolve(item.result); }
      else pending.reject(new CommandError(item.error.code, item.error.message));
    } else if (item.event === "welcome") {
      this.welcomed = true;
      this.handlers.status("open");
      this.handlers.welcome(item.data);
      const queued = [...this.queued];
      this.queued.clear();
      for (const go of queued) go();
    } else {
      this.handlers.event(item);
    }
  }

  // A call made while (re)connecting goes out once the welcome has come, as the Python
  // client's does; it fails if that takes longer than a reply may.
  call(op, fields = {}, { onReply } = {}) {
    if (this.welcomed && this.ws?.readyState === WebSocket.OPEN) return this.send(op, fields, onReply);
    return new Promise((resolve, reject) => {
      const go = () => { clearTimeout(timer); this.send(op, fields, onReply).then(resolve, reject); };
      const timer = setTimeout(() => {
        this.queued.delete(go);
        reject(new CommandError("disconnected", "not connected"));
      }, CALL_TIMEOUT);
      this.queued.add(go);
    });
  }

  send(op, fields, onReply) {
    const id = this.nextId++;
    this.ws.send(JSON.stringify({ id, op, ...fields }));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new CommandError("timeout", `no reply to ${op}`));
      }, CALL_TIMEOUT);
      this.waiting.set(id, { resolve, reject, timer, onReply });
    });
  }

  failAll(message) {
    for (const { reject, timer } of this.waiting.values()) {
      clearTimeout(timer);
      reject(new CommandError("disconnected", message));
    }
    this.waiting.clear();
  }
}
