// Assistant text as Markdown, made safe: marked parses, highlight.js colours code blocks,
// DOMPurify keeps only harmless HTML. A model's text is untrusted input: no script it writes
// ever runs, HTML it writes shows as text, no remote image loads (images become links), links
// open in a new tab without a referrer.

import { Marked } from "./vendor/marked.js";
import DOMPurify from "./vendor/purify.js";
import hljs from "./vendor/highlight.js";
import bash from "./vendor/hl-bash.js";
import css from "./vendor/hl-css.js";
import diff from "./vendor/hl-diff.js";
import javascript from "./vendor/hl-javascript.js";
import json from "./vendor/hl-json.js";
import python from "./vendor/hl-python.js";
import typescript from "./vendor/hl-typescript.js";
import xml from "./vendor/hl-xml.js";

const LANGUAGES = { bash, css, diff, javascript, json, python, typescript, xml };
for (const [name, language] of Object.entries(LANGUAGES)) hljs.registerLanguage(name, language);

const escapeHtml = (text) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const marked = new Marked({
  gfm: true,
  renderer: {
    code({ text, lang }) {
      const name = (lang ?? "").trim().split(/\s+/, 1)[0].toLowerCase();
      const known = name && hljs.getLanguage(name);
      // No guessing of unlabelled code: it is slow on long blocks and often wrong.
      const body = known ? hljs.highlight(text, { language: name, ignoreIllegals: true }).value : escapeHtml(text);
      const label = known ? ` class="hljs language-${escapeHtml(name)}"` : ' class="hljs"';
      return `<pre><code${label}>${body}</code></pre>\n`;
    },
    // HTML the model writes shows as the text it is. It would be sanitized anyway, but even
    // parsing it (in DOMPurify's inert document) makes the browser report every inline handler
    // to the page's CSP, and HTML in a chat reply is more often an example than an intent.
    html({ text, block }) {
      return block ? `<pre><code>${escapeHtml(text.replace(/\n+$/, ""))}</code></pre>\n` : escapeHtml(text);
    },
    image({ href, text }) {
      // The page's CSP forbids remote images anyway; a link says what was meant.
      return `<a href="${escapeHtml(href ?? "")}">${escapeHtml(text || href || "image")}</a>`;
    },
  },
});

const PURIFY = {
  USE_PROFILES: { html: true },  // no SVG, no MathML
  FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "img", "video", "audio",
    "iframe", "object", "embed"],
  FORBID_ATTR: ["style", "class", "id"],
  ADD_ATTR: ["target"],
};

// highlight.js's classes on code are ours, not the model's: they are put back after purifying,
// on code elements only, and only `hljs...`/`language-...` names.
DOMPurify.addHook("uponSanitizeAttribute", (node, data) => {
  if (data.attrName === "class" && (node.nodeName === "CODE" || node.nodeName === "SPAN")
      && /^(hljs[\w-]*|language-[\w-]+)( (hljs[\w-]*|language-[\w-]+|[\w-]+_))*$/.test(data.attrValue)) {
    data.forceKeepAttr = true;
  }
});
DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.nodeName === "A") {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer");
  }
});

// Safe HTML for `text`.
export function markdownToHtml(text) {
  return DOMPurify.sanitize(marked.parse(text ?? ""), PURIFY);
}
