// The page: projects in the sidebar with the sessions indicator and its popover, the chat of
// the selected project, toasts. Server state comes only from the protocol (docs/protocol.md);
// see chat.js for the seq rules and messages.js for how messages are drawn.

import { Chat } from "./chat.js";
import { blockNode, blocksOf, continues, el, fillBlock } from "./messages.js";
import { Wire } from "./wire.js";

const TOKEN_KEY = "greenroom.token";
const TOAST_MS = 20000;
const TICK_MS = 1000;  // the popover's "last activity" and its fresh summaries
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
// A turn's end, as a toast says it.
const ENDINGS = {
  completed: "finished", stopped: "stopped", failed: "failed", approval: "waits for approval",
};

const $ = (id) => document.getElementById(id);
const state = {
  wire: null,
  provider: null,
  projects: new Set(),
  sessions: new Map(),   // session id -> summary
  chat: null,            // the selected project's Chat
  renderedVersion: -1,
  blocks: [],            // what the committed messages show as (messages.js)
  openTools: new Set(),  // keys of the tool calls/results the user unfolded
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
  render();
  // Previews change with every token, and the server does not send an event for each: the
  // open popover asks for fresh summaries, and its times tick, once a second.
  setInterval(() => { if (!$("sessions-panel").hidden) { refreshSessions(); render(); } }, TICK_MS);
}

const call = (op, fields, options) => state.wire.call(op, fields, options);

function report(err) {
  toast({ title: "error", body: `${err.code ?? ""} ${err.message}`.trim(), kind: "failed" });
}

// -- server events

async function welcome(data) {
  // The shown session's events wait until the subscribe of resume() answers: lifecycle events
  // (sent to every connection) come before it, and applied now they would move the chat's seq
  // past events the replay has yet to bring (a reply cut by a restart would lose its start).
  if (state.chat?.session) state.chat.replayUntil = undefined;
  state.provider = data.provider;
  state.sessions = new Map(data.sessions.map((s) => [s.session, s]));
  for (const s of data.sessions) state.projects.add(s.project);
  // Turns that ended while no page was open: the same toasts as live ones.
  for (const note of data.notifications ?? []) onEvent(note);
  render();
  try {
    const { projects } = await call("listProjects");
    for (const p of projects) state.projects.add(p.project);
    render();
    const wanted = state.chat?.project ?? shownProject();
    if (state.chat?.session) await resume(state.chat);
    else if (state.chat?.deleted) await call("focusProject", { project: state.chat.project });
    else if (wanted) await select(wanted);
  } catch (err) { report(err); }
}

function onEvent(item) {
  const { event, data } = item;
  if (event === "notification") {
    notify(data);
  } else if (event === "sessionCreated" || event === "sessionUpdated") {
    state.sessions.set(data.session, data);
    state.projects.add(data.project);
  } else if (event === "sessionDeleted") {
    state.sessions.delete(item.session);
  } else if (event === "loadingChanged") {
    const s = state.sessions.get(item.session);
    const ended = !data.loading && data.reason !== "interrupted";
    if (s) {
      state.sessions.set(item.session, {
        ...s, loading: data.loading, error: data.error ?? s.error, approval: ended ? null : s.approval,
      });
    }
  }
  const chat = state.chat;
  if (chat && item.session && item.session === chat.session) chat.receive(item);
  render();
}

// The project shown now, or about to be (a reload: the one in the URL).
function shownProject() {
  return state.chat?.project ?? decodeURIComponent(location.hash.slice(1));
}

// -- choosing a project; reopening it after a reconnect

async function select(project) {
  closeDrawer();
  const previous = state.chat;
  if (previous?.project === project && (previous.session || previous.deleted)) return;
  if (previous?.session) call("unsubscribe", { session: previous.session }).catch(() => {});
  const chat = new Chat(project);
  state.chat = chat;
  state.openTools.clear();
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

// After a reconnect: everything since the last seq shown, and the focus again (the chat's
// events are held from the welcome on: see welcome()).
async function resume(chat) {
  await call("focusProject", { project: chat.project });
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
  $("delete").addEventListener("click", () => { if (state.chat?.session) askDelete(state.chat.session); });
  $("status").addEventListener("click", () => ($("sessions-panel").hidden ? openPanel() : closePanel()));
  $("stop-all").addEventListener("click", () => call("stopAll").catch(report));
  $("mcp-approve").addEventListener("click", approveMcp);
  $("menu").addEventListener("click", () => ($("sidebar").classList.contains("open") ? closeDrawer() : openDrawer()));
  $("confirm-cancel").addEventListener("click", () => $("confirm").close("cancel"));
  $("confirm-delete").addEventListener("click", () => $("confirm").close("delete"));
  $("confirm").addEventListener("close", confirmed);
  document.addEventListener("keydown", onKey);
  // A click outside the popover (and outside its button) closes it; else one outside the
  // phone's drawer closes that: one click, one thing closed, as with Escape.
  document.addEventListener("click", (e) => {
    const outside = (...ids) => !ids.some((id) => $(id).contains(e.target));
    if ($("confirm").open || !outside("confirm")) return;  // the dialog's own clicks
    if (!$("sessions-panel").hidden) {
      if (outside("sessions-panel", "status")) closePanel(false);
    } else if ($("sidebar").classList.contains("open") && outside("sidebar", "menu")) {
      closeDrawer();
    }
  });
  window.addEventListener("resize", () => { if (!$("sessions-panel").hidden) placePanel(); });
}

// Escape closes what is open (popover, drawer), else stops the turn being viewed.
function onKey(e) {
  if (e.key !== "Escape" || e.isComposing || $("confirm").open) return;  // the dialog has its own
  if (!$("sessions-panel").hidden) closePanel();
  else if ($("sidebar").classList.contains("open")) closeDrawer();
  else if (state.chat?.session && state.chat.loading) sessionCall("stopGeneration");
  else return;
  e.preventDefault();
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

// Allow or deny the tool call the viewed session waits on; the summary that follows redraws.
async function answerApproval(callId, allow, reason) {
  const session = state.chat?.session;
  if (!session) return;
  try {
    await call("approveToolCall", { session, call: callId, allow, ...(reason ? { reason } : {}) });
  } catch (err) {
    report(err);
    state.renderedVersion = -1;  // put the buttons back as they are now
    render();
  }
}

async function send() {
  const chat = state.chat;
  const content = $("input").value;
  if (!chat || !content.trim() || !(chat.session || chat.deleted)) return;
  $("input").value = "";
  try {
    if (!chat.session) await open(chat);  // the shown session was deleted: open the project again
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

// -- the popover, the drawer, the delete dialog

function openPanel() {
  $("sessions-panel").hidden = false;
  $("status").setAttribute("aria-expanded", "true");
  placePanel();
  refreshSessions();
  render();
}

function closePanel(focusBack = true) {
  $("sessions-panel").hidden = true;
  $("status").setAttribute("aria-expanded", "false");
  if (focusBack && $("status").offsetParent !== null) $("status").focus();
}

// Below the indicator, inside the window; its width is fixed in CSS, so it never jumps.
function placePanel() {
  const panel = $("sessions-panel");
  const anchor = $("status").getBoundingClientRect();
  const width = panel.offsetWidth;
  const left = Math.max(8, Math.min(anchor.left, window.innerWidth - width - 8));
  panel.style.left = `${left}px`;
  panel.style.top = `${anchor.bottom + 6}px`;
}

function openDrawer() {
  $("sidebar").classList.add("open");
  $("menu").setAttribute("aria-expanded", "true");
}

function closeDrawer() {
  if (!$("sidebar").classList.contains("open")) return;
  $("sidebar").classList.remove("open");
  $("menu").setAttribute("aria-expanded", "false");
}

let deleting = null;
function askDelete(session) {
  const summary = state.sessions.get(session);
  deleting = session;
  $("confirm-project").textContent = summary?.project ?? session;
  $("confirm").returnValue = "";
  $("confirm").showModal();
  $("confirm-cancel").focus();
}

function confirmed() {
  const session = deleting;
  deleting = null;
  if ($("confirm").returnValue === "delete" && session) call("deleteSession", { session }).catch(report);
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

function showConnection(status, detail) {
  const conn = $("conn");
  conn.textContent = status === "open" ? "" : status === "connecting" ? "connecting…" : `reconnecting: ${detail}`;
  conn.hidden = status === "open";
}

function plural(count, word) {
  return `${count} ${word}${count === 1 ? "" : "s"}`;
}

function renderTop() {
  const all = [...state.sessions.values()];
  const running = all.filter((s) => s.loading).length;
  const asking = all.filter((s) => s.approval).length;
  $("status-total").textContent = String(all.length);
  $("status-running").textContent = String(running);
  $("status-running").hidden = running === 0;
  $("status-approval").textContent = String(asking);
  $("status-approval").hidden = asking === 0;
  $("status-spinner").hidden = running === 0;
  const waiting = asking ? `, ${asking} waiting for approval` : "";
  const said = `${plural(all.length, "session")}, ${running} running${waiting}`;
  $("status").title = said;
  $("status").setAttribute("aria-label", `${said}: show them`);
  $("menu-running").textContent = String(running);
  $("menu-running").hidden = running === 0;
  $("menu-approval").textContent = String(asking);
  $("menu-approval").hidden = asking === 0;
  $("menu-spinner").hidden = running === 0;
  $("menu").setAttribute("aria-label", `projects (${running} running${waiting})`);
  const where = state.chat ? `${state.chat.project} · ` : "";
  document.title = `${running ? `(${running} running) ` : ""}${where}greenroom`;
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

// Spinner while a turn runs, red dot when the last turn failed (or was cut and waits for a
// resume), green dot when idle, nothing without a session.
function indicator(summary) {
  if (!summary) return { className: "ind", title: "no session" };
  if (summary.approval) return { className: "ind dot asking", title: `${summary.approval.tool} waits for approval` };
  if (summary.loading) return { className: "ind spinner", title: "running" };
  const bad = summary.status === "failed" || summary.status === "interrupted" || summary.error;
  return { className: `ind dot ${bad ? "bad" : "idle"}`, title: bad ? `${summary.status}: ${summary.error ?? ""}` : "idle" };
}

function renderProjects() {
  keyed($("projects"), [...state.projects].sort(), (name) => el("li", { dataset: { project: name } },
    el("button", { type: "button", onclick: () => select(name) },
      el("span", { className: "ind" }), el("span", { className: "name", textContent: name }))),
  (li, name) => {
    const summary = sessionOfProject(name);
    const selected = state.chat?.project === name;
    li.firstChild.classList.toggle("selected", selected);
    if (selected) li.firstChild.setAttribute("aria-current", "page");
    else li.firstChild.removeAttribute("aria-current");
    const { className, title } = indicator(summary);
    const ind = li.querySelector(".ind");
    ind.className = className;
    ind.title = title;
  });
}

// A running session is active now; an idle one's time ticks with the popover's clock.
function lastActivity(summary) {
  if (summary.loading) return "now";
  const s = Math.max(0, Math.round(Date.now() / 1000 - summary.lastActivity));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

function renderSessions() {
  const rows = [...state.sessions.values()].sort((a, b) => a.project.localeCompare(b.project));
  const bySession = new Map(rows.map((s) => [s.session, s]));
  $("sessions-empty").hidden = rows.length > 0;
  keyed($("sessions-rows"), rows.map((s) => s.session), (session) => el("tr", { dataset: { session } },
    el("td", {}, el("span", { className: "ind" }), el("button", { type: "button", className: "link go",
      onclick: () => {
        const s = state.sessions.get(session);
        closePanel(false);
        if (s) select(s.project);
      } })),
    el("td", { className: "msgs" }),
    el("td", { className: "when" }),
    el("td", { className: "preview" }),
    el("td", { className: "actions" },
      el("button", { type: "button", className: "stop", textContent: "stop",
        onclick: () => call("stopGeneration", { session }).catch(report) }),
      el("button", { type: "button", className: "delete", textContent: "delete",
        onclick: () => askDelete(session) }))),
  (row, session) => {
    const s = bySession.get(session);
    row.querySelector(".go").textContent = s.project;
    row.querySelector(".ind").className = indicator(s).className;
    row.querySelector(".msgs").textContent = String(s.messageCount);
    row.querySelector(".when").textContent = lastActivity(s);
    row.querySelector(".preview").textContent = s.approval
      ? `${s.approval.tool} waits for approval` : s.loading ? (s.preview ?? "") : "";
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
  $("chat-name").textContent = chat?.deleted ? "session deleted" : chat?.name ?? "";
  $("input").disabled = !(ready || chat?.deleted);
  $("send").disabled = !(ready || chat?.deleted);
  $("new-chat").disabled = !ready;
  $("delete").disabled = !ready;
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
  renderQueue(chat);
  const box = $("messages");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  const version = chat ? `${chat.project}/${chat.version}/${chat.deleted}/${chat.approval?.call}` : "";
  if (state.renderedVersion !== version) {
    state.blocks = chat ? blocksOf(chat.messages) : [];
    const approval = chat?.approval ? { call: chat.approval.call, onAnswer: answerApproval } : null;
    const options = { label: simulatedLabel, open: state.openTools, approval };
    const empty = chat ? emptyState(chat) : null;
    box.replaceChildren(...state.blocks.map((block) => blockNode(block, options)),
      el("div", { id: "streaming" }), ...(empty ? [empty] : []));
    state.renderedVersion = version;
  }
  renderStreaming(chat);
  if (atBottom) box.scrollTop = box.scrollHeight;
}

function emptyState(chat) {
  if (chat.messages.length || chat.streaming) return null;
  const text = chat.deleted
    ? "The session was deleted. Its history file stays in the project folder: a new message opens the project again, which picks it up."
    : chat.session ? "No messages yet: say what to do." : "Opening…";
  return el("p", { id: "empty", className: "muted", textContent: text });
}

function renderQueue(chat) {
  const queued = chat?.queued ?? [];
  $("queue").hidden = queued.length === 0;
  $("queued").textContent = queued.length ? `${queued.length} queued` : "";
  keyed($("queue-items"), queued.map((_, i) => String(i)), queuedItem, (li, i) => {
    const text = queued[Number(i)];
    li.preview = text;  // what this × names: the server checks it is still at this index
    li.firstChild.textContent = text;
    li.firstChild.title = text;
  });
}

function queuedItem() {
  const cancel = el("button", { type: "button", className: "cancel-queued", textContent: "×",
    title: "cancel this message", ariaLabel: "Cancel queued message" });
  const li = el("li", {}, el("span", { className: "queued-text" }), cancel);
  cancel.addEventListener("click", () => cancelQueued(cancel, Number(li.dataset.key), li.preview));
  return li;
}

// The item goes when the summary (sessionUpdated) says so, not before: a conflict (the text
// started as a turn, or the queue moved) leaves the queue as the server has it, and says so.
async function cancelQueued(button, index, preview) {
  const session = state.chat?.session;
  if (!session) return;
  button.disabled = true;
  try {
    await call("cancelQueued", { session, index, preview });
  } catch (err) {
    if (err.code !== "conflict") report(err);
    else toast({ title: "not cancelled", kind: "failed",
      body: "That message already started as a turn, or the queue changed: check the queue again." });
  } finally {
    button.disabled = false;
    render();  // each × names its text as the last summary has it again
  }
}

function simulatedLabel() {
  return state.provider === "simulated" ? el("span", { className: "label", textContent: "simulated" }) : null;
}

// The text being streamed. When it continues a reply cut by a restart (the last block is a
// stopped assistant text), the two show as one reply, exactly as the committed messages will.
function renderStreaming(chat) {
  const slot = $("streaming");
  if (!slot) return;
  const partial = chat?.streaming;
  const last = state.blocks[state.blocks.length - 1];
  const lastNode = slot.previousElementSibling;
  const joined = Boolean(partial && continues(last));
  if (lastNode) lastNode.hidden = joined;
  if (!partial) { slot.replaceChildren(); slot.className = ""; return; }
  slot.className = "msg assistant streaming";
  if (drawLater(partial.text)) return;
  const block = {
    role: "assistant",
    text: joined ? last.text + partial.text : partial.text,
    resumed: joined,
    stopped: false,
    streaming: true,
    toolCalls: partial.toolCalls ?? [],
  };
  stream.at = performance.now();
  fillBlock(slot, block, { label: simulatedLabel, open: state.openTools, key: "streaming" });
  stream.cost = performance.now() - stream.at;
}

// A long reply is parsed again on each redraw while it streams: past LONG_STREAM characters
// the redraws are spaced so that parsing takes at most a tenth of the time; a timer makes
// sure the last text is drawn.
const LONG_STREAM = 20000;
const stream = { cost: 0, at: 0, timer: null };
function drawLater(text) {
  const wait = stream.at + stream.cost * 10 - performance.now();
  if (text.length <= LONG_STREAM || wait <= 0) return false;
  stream.timer ??= setTimeout(() => { stream.timer = null; render(); }, wait);
  return true;
}

// -- toasts

// A turn ended, or a tool call waits for approval, where this page is not looking:
// "<project> finished", "<project> waits for approval", with View.
function notify(data) {
  const project = data.project;
  if (project && project === shownProject()) return;  // seen already
  const ending = ENDINGS[data.kind];
  const title = project && ending ? `${project} ${ending}` : data.title;
  const body = data.kind === "failed" ? explain(data.body ?? "") : data.body;
  toast({ title, body, kind: data.kind, view: project });
}

function toast({ title, body, kind, view }) {
  const node = el("div", { className: `toast ${kind ?? ""}`, role: "status" },
    el("strong", { textContent: title }),
    el("div", { className: "body", textContent: (body ?? "").slice(0, 160) }),
    view ? el("button", { type: "button", className: "view", textContent: "View",
      onclick: () => { node.remove(); select(view); } }) : null,
    el("button", { type: "button", className: "close", textContent: "×", title: "dismiss",
      ariaLabel: "dismiss" }));
  node.querySelector(".close").addEventListener("click", () => node.remove());
  $("toasts").append(node);
  setTimeout(() => node.remove(), TOAST_MS);
}

start();
