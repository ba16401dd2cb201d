// The chat's messages as the page shows them: committed messages become blocks (a turn cut by a
// restart and resumed is one reply), blocks become nodes (Markdown for the assistant, plain text
// for the user, tool calls and results folded under a one-line summary).
//
// What is shown depends on the committed messages alone, so a page that followed a restart and
// a page loaded afterwards show exactly the same thing.

import { markdownToHtml } from "./markdown.js";

const SUMMARY_CHARS = 90;
export const RESUMED = "resumed after an interruption";

// A stopped assistant message followed by another assistant message was resumed (a restart, a
// crash, or a failed turn that was resumed): the two texts are one reply. A stopped message
// followed by anything else was stopped for good (stopGeneration, newChat, a failure not resumed).
export function blocksOf(messages) {
  const blocks = [];
  const toolNames = new Map();  // tool_call_id -> the tool's name
  messages.forEach((message, index) => {
    const calls = message.tool_calls ?? [];
    for (const call of calls) toolNames.set(call.id, call.function?.name);
    const last = blocks[blocks.length - 1];
    if (message.role === "assistant" && continues(last)) {
      last.text += message.content ?? "";
      last.resumed = true;
      last.stopped = Boolean(message.stopped);
      last.toolCalls = calls;
      last.last = index;
      return;
    }
    blocks.push({
      role: message.role,
      text: message.content ?? "",
      stopped: Boolean(message.stopped),
      resumed: false,
      toolCalls: calls,
      toolName: message.role === "tool" ? toolNames.get(message.tool_call_id) : undefined,
      first: index,
      last: index,
    });
  });
  return blocks;
}

// Whether the next assistant text goes on in `block`.
export function continues(block) {
  return Boolean(block && block.role === "assistant" && block.stopped && !block.toolCalls.length);
}

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node[key] = value;
  }
  node.append(...children.filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

// Markdown is parsed once per distinct text: a redraw after a new message reuses the others.
const htmlCache = new Map();
function html(text) {
  let value = htmlCache.get(text);
  if (value === undefined) {
    value = markdownToHtml(text);
    if (htmlCache.size > 400) htmlCache.clear();
    htmlCache.set(text, value);
  }
  return value;
}

// Fills `node` (a .text element) with the rendered Markdown of `text`, if it changed. Text
// being streamed is not cached: each frame's text is new, and would only push the rest out.
export function fillMarkdown(node, text, cache = true) {
  if (node.dataset.source === text) return;
  node.dataset.source = text;
  node.innerHTML = cache && text.length <= 20000 ? html(text) : markdownToHtml(text);
}

function oneLine(text) {
  const line = (text ?? "").trim().split("\n", 1)[0];
  return line.length > SUMMARY_CHARS ? `${line.slice(0, SUMMARY_CHARS - 1)}…` : line;
}

// A call's arguments in one line: the values, joined ("notes.txt, hello"); raw text while the
// JSON is still streaming.
function argumentsSummary(text) {
  try {
    const value = JSON.parse(text || "{}");
    if (value && typeof value === "object" && !Array.isArray(value)) {
      return oneLine(Object.values(value).map((v) => (typeof v === "string" ? v : JSON.stringify(v))).join(", "));
    }
  } catch { /* partial JSON while streaming */ }
  return oneLine(text);
}

function pretty(text) {
  try { return JSON.stringify(JSON.parse(text), null, 2); } catch { return text ?? ""; }
}

// A collapsed tool call: "→ write_file  notes.txt, hello"; open, the arguments in full.
export function toolCallNode(call, key, open) {
  const fn = call.function ?? call;  // committed {function: {name, arguments}} or streamed {name, arguments}
  return foldable("tool-call", key, open, `→ ${fn.name ?? "…"}`, argumentsSummary(fn.arguments), pretty(fn.arguments));
}

function toolResultNode(block, key, open) {
  return foldable("tool-result", key, open, `← ${block.toolName ?? "tool"}`, oneLine(block.text), block.text);
}

function foldable(kind, key, open, name, summary, body) {
  const node = el("details", { className: `tool ${kind}`, dataset: { key } },
    el("summary", {}, el("span", { className: "tool-name", textContent: name }),
      el("span", { className: "tool-summary", textContent: summary })),
    el("pre", { className: "tool-body", textContent: body }));
  node.open = open.has(key);
  node.addEventListener("toggle", () => { if (node.open) open.add(key); else open.delete(key); });
  return node;
}

// Under a tool call that waits for the user: allow, or deny with an optional reason the model
// reads. `approval` is {call, onAnswer(allow, reason)}; the buttons turn off once clicked.
function approvalNode(call, approval) {
  const reason = el("input", { className: "approval-reason", type: "text", maxLength: 2000,
    placeholder: "reason (optional, the model reads it)", ariaLabel: "reason for denying" });
  const answer = (allow) => {
    for (const button of node.querySelectorAll("button")) button.disabled = true;
    approval.onAnswer(call.id, allow, allow ? undefined : reason.value.trim() || undefined);
  };
  const node = el("div", { className: "approval", role: "group", dataset: { call: call.id },
    ariaLabel: `approve ${call.function?.name ?? "the call"}` },
  el("span", { className: "approval-text", textContent: "waits for your approval" }),
  el("button", { type: "button", className: "allow", textContent: "allow", onclick: () => answer(true) }),
  el("button", { type: "button", className: "deny danger", textContent: "deny", onclick: () => answer(false) }),
  reason);
  return node;
}

// One block's node. `label` is an extra node for assistant replies (the "simulated" tag);
// `open` the keys of the tool details the user unfolded, kept across redraws; `approval` the
// call waiting for the user, if any (see approvalNode).
export function blockNode(block, { label, open, approval }) {
  if (block.role === "tool") {
    return el("div", { className: "msg tool" }, toolResultNode(block, `r${block.first}`, open));
  }
  const node = el("div", { className: `msg ${block.role}`, dataset: { index: String(block.first) } });
  fillBlock(node, block, { label, open, approval, key: `c${block.last}` });
  return node;
}

// The inside of a message node: used for committed blocks and for the streaming one alike.
export function fillBlock(node, block, { label, open, key, approval }) {
  const assistant = block.role === "assistant";
  const text = node.querySelector(":scope > .text") ?? el("div", { className: assistant ? "text md" : "text" });
  if (assistant) fillMarkdown(text, block.text, !block.streaming);
  else text.textContent = block.text;
  node.replaceChildren(...[
    assistant ? label?.() : null,
    text,
    ...block.toolCalls.flatMap((call, i) => [
      toolCallNode(call, `${key}.${i}`, open),
      approval && !block.streaming && call.id === approval.call ? approvalNode(call, approval) : null,
    ]),
    block.resumed ? el("div", { className: "marker resumed", textContent: RESUMED }) : null,
    block.stopped && !block.streaming ? el("div", { className: "muted cut", textContent: "(cut short)" }) : null,
  ].filter(Boolean));
}
