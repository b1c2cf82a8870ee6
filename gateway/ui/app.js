// jetkube's /ui/: a small page over the authenticated JSON APIs (object LIST, history.jetkube.io,
// audit.jetkube.io). Data is only ever put in the page with textContent, never as HTML.
"use strict";

// Served at /ui/ or at a tenant's /clusters/<tenant>/ui/: the APIs called are that tenant's.
const PREFIX = window.location.pathname.replace(/\/ui(\/.*)?$/, "");
const TOKEN_KEY = "jetkube.token" + (PREFIX ? ":" + PREFIX : "");
const $ = (id) => document.getElementById(id);

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

function showTokenState() {
  $("token-state").textContent = token() ? "token set (this tab only)" : "no token (client certificate, if any)";
}

function showError(text) {
  const e = $("error");
  e.textContent = text;
  e.hidden = !text;
}

// GET a path of this server; the bearer token when one is set (else the TLS client certificate
// authenticates). Non-2xx answers throw with the Status' code and message.
async function api(path, params) {
  const url = new URL(PREFIX + path, window.location.origin);
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== "" && v !== undefined && v !== null) url.searchParams.set(k, v);
  }
  const headers = { "Accept": "application/json" };
  if (token()) headers["Authorization"] = "Bearer " + token();
  const r = await fetch(url, { headers, credentials: "same-origin", cache: "no-store" });
  const text = await r.text();
  if (!r.ok) {
    let msg = text;
    try { const s = JSON.parse(text); msg = (s.reason ? s.reason + ": " : "") + (s.message || text); } catch (_) { /* not a Status */ }
    throw new Error(r.status + " " + msg);
  }
  return text;
}

async function apiJSON(path, params) { return JSON.parse(await api(path, params)); }

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text === undefined || text === null ? "" : String(text);
  row.appendChild(td);
  return td;
}

function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); }

// "configmaps", "cm", "deployments.apps": where to LIST it, from discovery.
async function resolveResource(name) {
  const dot = name.indexOf(".");
  const want = dot < 0 ? name : name.slice(0, dot);
  let gv = "v1", base = "/api/v1";
  if (dot >= 0) {
    const group = name.slice(dot + 1);
    const g = await apiJSON("/apis/" + encodeURIComponent(group));
    gv = g.preferredVersion.groupVersion;
    base = "/apis/" + gv;
  }
  const list = await apiJSON(base);
  for (const r of list.resources || []) {
    if (r.name.includes("/")) continue;
    if (r.name === want || r.singularName === want || (r.shortNames || []).includes(want) ||
        (r.kind || "").toLowerCase() === want) {
      return { base, plural: r.name, namespaced: r.namespaced, historyName: dot < 0 ? r.name : r.name + name.slice(dot) };
    }
  }
  throw new Error('the server does not know the resource "' + name + '"');
}

// Search: the LIST is read page by page through the API (limit/continue, 500 objects a page) and
// filtered by name here, until SEARCH_SHOWN more matches are shown or SEARCH_PAGES pages were read;
// "More results…" goes on from the next page. Every object of the list can be reached.
const SEARCH_PAGE = "500", SEARCH_SHOWN = 100, SEARCH_PAGES = 20;
let searchNext = null;

function resultRow(res, m) {
  const tr = document.createElement("tr");
  tr.className = "result";
  cell(tr, m.namespace);
  cell(tr, m.name);
  cell(tr, m.resourceVersion);
  cell(tr, m.creationTimestamp);
  const td = document.createElement("td");
  const b = document.createElement("button");
  b.type = "button";
  b.className = "open-history";
  b.textContent = "History";
  b.addEventListener("click", () => openHistory(res, m.namespace || "", m.name));
  td.appendChild(b);
  tr.appendChild(td);
  return tr;
}

async function searchPages() {
  const tbody = $("results").tBodies[0];
  const { res, path, filter } = searchNext;
  let cont = searchNext.cont, shown = 0;
  for (let pages = 0; pages < SEARCH_PAGES && shown < SEARCH_SHOWN; pages++) {
    const list = await apiJSON(path, { limit: SEARCH_PAGE, continue: cont });
    for (const item of list.items || []) {
      const m = item.metadata || {};
      if (filter && !(m.name || "").includes(filter)) continue;
      tbody.appendChild(resultRow(res, m));
      shown++;
    }
    searchNext.scanned += (list.items || []).length;
    cont = (list.metadata || {}).continue || "";
    if (!cont) break;
  }
  searchNext.cont = cont;
  const n = tbody.rows.length;
  $("search-count").textContent = n + " match" + (n === 1 ? "" : "es") + " in " + searchNext.scanned +
    " object" + (searchNext.scanned === 1 ? "" : "s") + (cont ? " read so far" : "");
  $("search-more").hidden = !cont;
  if (!cont) searchNext = null;
}

async function search(ev) {
  ev.preventDefault();
  showError("");
  clear($("results").tBodies[0]);
  $("search-count").textContent = "";
  $("search-more").hidden = true;
  searchNext = null;
  try {
    const res = await resolveResource($("search-resource").value.trim());
    const ns = $("search-namespace").value.trim();
    const path = res.namespaced && ns ? res.base + "/namespaces/" + encodeURIComponent(ns) + "/" + res.plural
      : res.base + "/" + res.plural;
    searchNext = { res, path, filter: $("search-name").value.trim(), cont: "", scanned: 0 };
    await searchPages();
  } catch (e) {
    showError(e.message);
  }
}

async function moreResults() {
  if (!searchNext) return;
  try { await searchPages(); } catch (e) { showError(e.message); }
}

let historyNext = null;

function revisionItem(rev) {
  const li = document.createElement("li");
  li.className = "revision";
  const meta = document.createElement("div");
  meta.className = "meta";
  const add = (cls, text) => {
    const s = document.createElement("span");
    s.className = cls;
    s.textContent = text;
    meta.appendChild(s);
  };
  add("rv", "rv " + rev.resourceVersion);
  add("time", rev.time);
  add("verb", rev.verb + (rev.subresource ? "/" + rev.subresource : ""));
  add("type", rev.type);
  add("user", (rev.user || {}).username || "");
  if (rev.impersonatedBy) add("impersonator", "impersonated by " + rev.impersonatedBy.username);
  if (rev.userAgent) add("agent", rev.userAgent);
  li.appendChild(meta);
  // The change as a unified diff of the object's YAML (the server's, as `jetkube history --diff`
  // prints it), one element per line so that added and removed lines can be told apart.
  const pre = document.createElement("pre");
  pre.className = "diff";
  for (const line of (rev.diff || "").split("\n")) {
    if (!line) continue;
    const span = document.createElement("span");
    span.className = line.startsWith("@@") ? "hunk" : line.startsWith("+++") || line.startsWith("---") ? "file"
      : line.startsWith("+") ? "add" : line.startsWith("-") ? "del" : "ctx";
    span.textContent = line + "\n";
    pre.appendChild(span);
  }
  li.appendChild(pre);
  return li;
}

async function loadHistoryPage() {
  const { path, cont } = historyNext;
  const body = await apiJSON(path, { limit: "100", continue: cont, diff: "yaml" });
  for (const rev of body.items || []) $("timeline").appendChild(revisionItem(rev));
  const next = (body.metadata || {}).continue;
  historyNext = next ? { path, cont: next } : null;
  $("history-more").hidden = !next;
}

async function openHistory(res, namespace, name) {
  showError("");
  clear($("timeline"));
  $("history").hidden = false;
  $("history-target").textContent = res.historyName + " " + (namespace ? namespace + "/" : "") + name;
  const path = "/apis/history.jetkube.io/v1/" + (namespace ? "namespaces/" + encodeURIComponent(namespace) + "/" : "") +
    encodeURIComponent(res.historyName) + "/" + encodeURIComponent(name);
  historyNext = { path, cont: "" };
  try { await loadHistoryPage(); } catch (e) { showError(e.message); }
}

async function moreHistory() {
  if (!historyNext) return;
  try { await loadHistoryPage(); } catch (e) { showError(e.message); }
}

async function audit(ev) {
  ev.preventDefault();
  showError("");
  const tbody = $("audit").tBodies[0];
  clear(tbody);
  $("audit-count").textContent = "";
  const q = {};
  for (const k of ["user", "verb", "resource", "namespace", "since", "until", "limit"]) q[k] = $("audit-" + k).value.trim();
  try {
    const text = await api("/apis/audit.jetkube.io/v1/events", q);
    let n = 0;
    for (const line of text.split("\n")) {
      if (!line.trim()) continue;
      const rec = JSON.parse(line);
      const ref = rec.objectRef || {};
      const tr = document.createElement("tr");
      tr.className = "record";
      cell(tr, rec.stageTimestamp || rec.requestReceivedTimestamp);
      cell(tr, (rec.user || {}).username);
      cell(tr, rec.verb);
      cell(tr, ref.resource ? ref.resource + (ref.subresource ? "/" + ref.subresource : "") : rec.requestURI);
      cell(tr, ref.namespace);
      cell(tr, ref.name);
      cell(tr, (rec.responseStatus || {}).code);
      cell(tr, rec.auditID);
      tbody.appendChild(tr);
      n++;
    }
    $("audit-count").textContent = n + " record" + (n === 1 ? "" : "s");
  } catch (e) {
    showError(e.message);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const t = $("token").value.trim();
    if (t) sessionStorage.setItem(TOKEN_KEY, t); else sessionStorage.removeItem(TOKEN_KEY);
    $("token").value = "";
    showTokenState();
  });
  $("token-forget").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); showTokenState(); });
  $("search-form").addEventListener("submit", search);
  $("audit-form").addEventListener("submit", audit);
  $("history-more").addEventListener("click", moreHistory);
  $("search-more").addEventListener("click", moreResults);
  showTokenState();
});
