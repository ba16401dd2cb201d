// The page: projects in the sidebar, the sessions list, the chat of the selected project, toasts.
// Server state comes only from the protocol (docs/protocol.md); see chat.js for the seq rules.

import { Chat } from "./chat.js";
import { Wire } from "./wire.js";

const TOKEN_KEY = "greenroom.token";
const TOAST_MS = 20000;
const SESSIONS_POLL_MS = 1000;
const ERROR_MEANINGS = {
  auth: "the provider refused the API key",
  quota: "the provider account is out of quota or credit",
  rate_limit: "the provider is rate-limiting: wait a little, then resume",
  model_not_found: "the configured model does not exist for this provider",
  context_length: "the chat is too long for the model: start a new chat",
  server: "the provider had a server error: resume to try again",
  network: "the provider could not be reached",
  timeout: "the provider did not answer in time: resume to try again",
  bad_response: "the provider sent a reply greenroom could not read",
};

const $ = (id) => document.getElementById(id);
const state = {
  wire: null,
  provider: null,
  projects: new Set(),
  sessions: new Map(),   // session id -> summary
  chat: null,            // the selected project's Chat
  renderedVersion: -1,
};

// -- start: the token comes from ?token=, then lives in sessionStorage, out of the address bar

function takeToken() {
  const url = new URL(location.href);
  const given = url.searchParams.get("token");
  if (given) {
    sessionStorage.setItem(TOKEN_KEY, given);
    url.searchParams.delete("token");
    history.replaceState(null, "", url.pathname + url.search + url.hash);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

function start() {
  const token = takeToken();
  if (!token) {
    $("login").hidden = false;
    $("login").addEventListener("submit", (e) => {
      e.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, $("login-token").value.trim());
      location.reload();
    });
    return;
  }
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const url = `${scheme}//${location.host}/ws?token=${encodeURIComponent(token)}`;
  state.wire = new Wire(url, { welcome, event: onEvent, status: showConnection });
  bindControls();
  state.wire.start();
  // Previews change with every token, and the server does not send an event for each: the
  // open sessions list asks for fresh summaries instead.
  setInterval(() => { if (!$("sessions-panel").hidden) refreshSessions(); }, SESSIONS_POLL_MS);
}

const call = (op, fields, options) => state.wire.call(op, fields, options);

function report(err) {
  toast({ title: "error", body: `${err.code ?? ""} ${err.message}`.trim(), kind: "failed" });
}

// -- server events

async function welcome(data) {
  state.provider = data.provider;
  state.sessions = new Map(data.sessions.map((s) => [s.session, s]));
  for (const s of data.sessions) state.projects.add(s.project);
  for (const note of data.notifications ?? []) onEvent(note);
  render();
  try {
    const { projects } = await call("listProjects");
    for (const p of projects) state.projects.add(p.project);
    render();
    const wanted = state.chat?.project ?? decodeURIComponent(location.hash.slice(1));
    if (state.chat?.session) await resume(state.chat);
    else if (wanted) await select(wanted);
  } catch (err) { report(err); }
}

function onEvent(item) {
  const { event, data } = item;
  if (event === "notification") {
    toast({ ...data, open: data.project });
  } else if (event === "sessionCreated" || event === "sessionUpdated") {
    state.sessions.set(data.session, data);
    state.projects.add(data.project);
  } else if (event === "sessionDeleted") {
    state.sessions.delete(item.session);
  } else if (event === "loadingChanged") {
    const s = state.sessions.get(item.session);
    if (s) state.sessions.set(item.session, { ...s, loading: data.loading, error: data.error ?? s.error });
  }
  const chat = state.chat;
  if (chat && item.session && item.session === chat.session) chat.receive(item);
  render();
}

// -- choosing a project; reopening it after a reconnect

async function select(project) {
  const previous = state.chat;
  if (previous?.project === project && previous.session) return;
  if (previous?.session) call("unsubscribe", { session: previous.session }).catch(() => {});
  const chat = new Chat(project);
  state.chat = chat;
  location.hash = encodeURIComponent(project);
  render();
  try {
    await call("focusProject", { project });
    await open(chat);
  } catch (err) { report(err); }
}

// openSession, then subscribe since its seq: the events in between are replayed.
async function open(chat, attempts = 3) {
  const { session, mcp } = await call("openSession", { project: chat.project });
  if (state.chat !== chat) return;  // the user moved on meanwhile
  chat.load(session);
  chat.mcp = mcp ?? null;
  state.sessions.set(session.session, summaryOf(session));
  render();
  await subscribe(chat, attempts);
}

async function subscribe(chat, attempts) {
  const onReply = (result) => { if (state.chat === chat && !result.reset) chat.subscribed(result.seq); };
  const result = await call("subscribe", { session: chat.session, since: chat.seq }, { onReply });
  // The missed events are gone: the state has everything.
  if (result.reset && state.chat === chat && attempts > 1) await open(chat, attempts - 1);
  render();
}

// After a reconnect: everything since the last seq shown, and the focus again.
async function resume(chat) {
  await call("focusProject", { project: chat.project });
  chat.replayUntil = undefined;
  await subscribe(chat, 3);
}

function summaryOf(sessionState) {
  const { messages, streaming, seq, ...summary } = sessionState;
  return summary;
}

// -- controls

function bindControls() {
  $("new-project").addEventListener("submit", async (e) => {
    e.preventDefault();
    const name = $("new-project-name").value.trim();
    if (!name) return;
    try {
      await call("createProject", { project: name });
      state.projects.add(name);
      $("new-project-name").value = "";
      await select(name);
    } catch (err) { report(err); }
  });
  $("composer").addEventListener("submit", (e) => { e.preventDefault(); send(); });
  $("input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); send(); }
  });
  $("stop").addEventListener("click", () => sessionCall("stopGeneration"));
  $("new-chat").addEventListener("click", () => sessionCall("newChat"));
  $("resume").addEventListener("click", () => sessionCall("resumeSession"));
  $("status").addEventListener("click", () => {
    const panel = $("sessions-panel");
    panel.hidden = !panel.hidden;
    $("status").setAttribute("aria-expanded", String(!panel.hidden));
    if (!panel.hidden) refreshSessions();
  });
  $("stop-all").addEventListener("click", () => call("stopAll").catch(report));
  $("mcp-approve").addEventListener("click", approveMcp);
}

// A project's .mcp.json starts programs: its servers run only once the user approves the
// exact contents shown (the hash); a file changed meanwhile is refused, and shown again.
async function approveMcp() {
  const chat = state.chat;
  if (!chat?.mcp?.hash) return;
  try {
    const { mcp } = await call("trustMcpConfig", { project: chat.project, hash: chat.mcp.hash });
    chat.mcp = mcp;
  } catch (err) {
    report(err);
    try { chat.mcp = (await call("mcpConfig", { project: chat.project })).mcp; } catch (e) { /* shown */ }
  }
  render();
}

function describeServer(server) {
  const what = server.type === "http" ? server.url : [server.command, ...(server.args ?? [])].join(" ");
  const names = server.env ?? server.headers ?? [];
  return `${server.name}: ${what}${names.length ? ` (sets ${names.join(", ")})` : ""}`;
}

async function send() {
  const chat = state.chat;
  const content = $("input").value;
  if (!chat?.session || !content.trim()) return;
  $("input").value = "";
  try {
    await call("sendMessage", { session: chat.session, content });
  } catch (err) {
    $("input").value = content;  // nothing was sent: keep what the user wrote
    report(err);
  }
}

async function refreshSessions() {
  try {
    const { sessions } = await call("listSessions");
    for (const s of sessions) state.sessions.set(s.session, s);
    render();
  } catch (err) { /* shown by the connection status; the next tick tries again */ }
}

function sessionCall(op) {
  const session = state.chat?.session;
  if (session) call(op, { session }).catch(report);
}

// -- drawing; several events in one frame cost one redraw

let pending = false;
function render() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => {
    pending = false;
    renderTop();
    renderProjects();
    renderChat();
    if (!$("sessions-panel").hidden) renderSessions();
  });
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node[key] = value;
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function showConnection(status, detail) {
  const conn = $("conn");
  conn.textContent = status === "open" ? "" : status === "connecting" ? "connecting…" : `reconnecting: ${detail}`;
  conn.hidden = status === "open";
}

function renderTop() {
  const all = [...state.sessions.values()];
  const running = all.filter((s) => s.loading).length;
  $("status").textContent = `${all.length} session${all.length === 1 ? "" : "s"} · ${running} running`;
  const provider = $("provider");
  provider.hidden = !state.provider;
  provider.textContent = state.provider === "simulated" ? "simulated replies" : state.provider ?? "";
  provider.classList.toggle("simulated", state.provider === "simulated");
}

function sessionOfProject(project) {
  for (const s of state.sessions.values()) if (s.project === project) return s;
  return null;
}

// Rows are kept by key and updated in place: a node replaced under the pointer loses the click.
function keyed(container, keys, create, update) {
  const old = new Map([...container.children].map((node) => [node.dataset.key, node]));
  const nodes = keys.map((key) => {
    const node = old.get(key) ?? create(key);
    node.dataset.key = key;
    update(node, key);
    return node;
  });
  if (nodes.length !== container.children.length || nodes.some((n, i) => container.children[i] !== n)) {
    container.replaceChildren(...nodes);
  }
}

function indicatorClass(summary) {
  if (!summary) return "ind";
  if (summary.loading) return "ind spinner";
  const bad = summary.status === "failed" || summary.status === "interrupted" || summary.error;
  return `ind dot ${bad ? "bad" : "idle"}`;
}

function renderProjects() {
  keyed($("projects"), [...state.projects].sort(), (name) => el("li", { dataset: { project: name } },
    el("button", { type: "button", onclick: () => select(name) },
      el("span", { className: "ind" }), el("span", { className: "name", textContent: name }))),
  (li, name) => {
    const summary = sessionOfProject(name);
    li.firstChild.classList.toggle("selected", state.chat?.project === name);
    const ind = li.querySelector(".ind");
    ind.className = indicatorClass(summary);
    ind.title = summary ? (summary.loading ? "running" : summary.status) : "no session";
  });
}

function ago(seconds) {
  const s = Math.max(0, Math.round(Date.now() / 1000 - seconds));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  return `${Math.floor(s / 3600)}h ago`;
}

function renderSessions() {
  const rows = [...state.sessions.values()].sort((a, b) => b.lastActivity - a.lastActivity);
  const bySession = new Map(rows.map((s) => [s.session, s]));
  keyed($("sessions-rows"), rows.map((s) => s.session), (session) => el("tr", { dataset: { session } },
    el("td", {}, el("a", { href: "#", onclick: (e) => {
      e.preventDefault();
      const s = state.sessions.get(session);
      if (s) select(s.project);
    } })),
    el("td", { className: "count" }),
    el("td", { className: "when" }),
    el("td", { className: "preview" }),
    el("td", {},
      el("button", { type: "button", className: "stop", textContent: "stop",
        onclick: () => call("stopGeneration", { session }).catch(report) }),
      el("button", { type: "button", className: "delete", textContent: "delete",
        onclick: () => call("deleteSession", { session }).catch(report) }))),
  (row, session) => {
    const s = bySession.get(session);
    row.querySelector("a").textContent = s.project;
    row.querySelector(".count").textContent = String(s.messageCount);
    row.querySelector(".when").textContent = ago(s.lastActivity);
    row.querySelector(".preview").textContent = s.loading ? (s.preview ?? "").slice(0, 50) : "";
    row.querySelector(".stop").disabled = !s.loading;
  });
}

function explain(error) {
  const kind = error.split(":", 1)[0];
  const meaning = ERROR_MEANINGS[kind];
  return meaning ? `${meaning} (${error})` : error;
}

function renderChat() {
  const chat = state.chat;
  const ready = Boolean(chat?.session);
  $("chat-title").textContent = chat ? chat.project : "pick or create a project";
  $("chat-name").textContent = chat?.name ?? "";
  $("queued").textContent = chat?.queued.length ? `${chat.queued.length} queued` : "";
  $("input").disabled = !ready;
  $("send").disabled = !ready;
  $("new-chat").disabled = !ready;
  $("stop").disabled = !(ready && chat.loading);
  $("error").hidden = !chat?.error;
  $("error-text").textContent = chat?.error ? `The turn failed: ${explain(chat.error)}` : "";
  const mcp = chat?.mcp;
  const asking = mcp?.state === "untrusted" || mcp?.state === "invalid";
  $("mcp").hidden = !asking;
  if (asking) {
    $("mcp-text").textContent = mcp.state === "invalid"
      ? `This project's .mcp.json is unusable, so its MCP servers do not start: ${mcp.error}`
      : "This project's .mcp.json would start these MCP servers, with your permissions. They do not start until you approve them:";
    $("mcp-servers").replaceChildren(...(mcp.servers ?? []).map((s) => el("li", { textContent: describeServer(s) })));
    $("mcp-approve").hidden = mcp.state === "invalid";
  }
  const box = $("messages");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  if (!chat) {
    box.replaceChildren();
    state.renderedVersion = -1;
  } else if (state.renderedVersion !== `${chat.project}/${chat.version}`) {
    box.replaceChildren(...chat.messages.map(renderMessage), el("div", { id: "streaming" }));
    state.renderedVersion = `${chat.project}/${chat.version}`;
  }
  renderStreaming(chat);
  if (atBottom) box.scrollTop = box.scrollHeight;
}

function simulatedLabel() {
  return state.provider === "simulated" ? el("span", { className: "label", textContent: "simulated" }) : null;
}

function toolCall(call) {
  const fn = call.function ?? call;  // committed {function: {name, arguments}} or streamed {name, arguments}
  return el("div", { className: "tool-call", textContent: `→ ${fn.name ?? "…"}(${fn.arguments ?? ""})` });
}

function renderMessage(message) {
  const role = message.role;
  if (role === "tool") {
    return el("div", { className: "msg tool" },
      el("div", { className: "tool-result", textContent: `← ${message.content ?? ""}` }));
  }
  return el("div", { className: `msg ${role}` },
    role === "assistant" ? simulatedLabel() : null,
    el("div", { className: "text", textContent: message.content ?? "" }),
    ...(message.tool_calls ?? []).map(toolCall),
    message.stopped ? el("div", { className: "muted", textContent: "(cut short)" }) : null);
}

function renderStreaming(chat) {
  const slot = $("streaming");
  if (!slot) return;
  const partial = chat?.streaming;
  if (!partial) { slot.replaceChildren(); slot.className = ""; return; }
  slot.className = "msg assistant streaming";
  const text = slot.querySelector(".text") ?? el("div", { className: "text" });
  text.textContent = partial.text;
  slot.replaceChildren(...[simulatedLabel(), text, ...(partial.toolCalls ?? []).map(toolCall)].filter(Boolean));
}

// -- toasts

function toast({ title, body, kind, open }) {
  const node = el("div", { className: `toast ${kind ?? ""}`, role: "status" },
    el("strong", { textContent: title }),
    el("div", { className: "body", textContent: (body ?? "").slice(0, 160) }),
    open ? el("button", { type: "button", className: "open", textContent: "open",
      onclick: () => { node.remove(); select(open); } }) : null,
    el("button", { type: "button", className: "close", textContent: "×", title: "dismiss",
      onclick: () => node.remove() }));
  $("toasts").append(node);
  setTimeout(() => node.remove(), TOAST_MS);
}

start();
