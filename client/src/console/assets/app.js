// coffer console: a single page talking to `coffer admin console`, which signs every call
// to coffer-server itself. Nothing here holds a key or a token: /api/... is forwarded by the
// console process with a fresh admin token, /console/... is evaluated by it locally.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const main = () => $("#main");
/** The page element if no navigation happened since a page started rendering in route
 *  generation `gen`, else null: a page whose data arrives late must not draw over its
 *  successor (the successor's own loaders would then find their elements gone). */
const current = gen => (gen === routeGen ? main() : null);

function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function toast(msg, bad) {
  const t = $("#toast");
  t.textContent = msg;
  t.className = bad ? "bad" : "";
  t.style.display = "block";
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (t.style.display = "none"), 5000);
}

/** A call through the console: JSON answer, or an Error carrying the problem's detail. */
async function call(method, path, body, raw) {
  const opts = { method, headers: {} };
  if (body !== undefined) {
    if (raw) {
      opts.body = body;
      opts.headers["content-type"] = "application/octet-stream";
    } else {
      opts.body = JSON.stringify(body);
      opts.headers["content-type"] = "application/json";
    }
  }
  const r = await fetch(path, opts);
  const text = await r.text();
  let data = text;
  try { data = text ? JSON.parse(text) : null; } catch (_) { /* not JSON */ }
  if (!r.ok) {
    const kind = data && data.type ? data.type.split("/").pop() + ": " : "";
    const err = new Error(`${r.status} ${kind}${data && data.detail ? data.detail : text}`);
    err.status = r.status;
    throw err;
  }
  return data;
}
const api = (method, path, body, raw) => call(method, "/api" + path, body, raw);

function b64(text) {
  const bytes = new TextEncoder().encode(text);
  let bin = "";
  bytes.forEach(b => (bin += String.fromCharCode(b)));
  return btoa(bin);
}

/** Human time: local date and time, with the UTC ISO form in the tooltip. */
function when(ms) {
  if (ms === null || ms === undefined) return "-";
  const d = new Date(ms);
  const pad = n => String(n).padStart(2, "0");
  const local = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return `<span class="time" title="${esc(d.toISOString())}">${local}</span>`;
}

function ago(ms) {
  const s = Math.round((Date.now() - ms) / 1000);
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

function size(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1048576) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1048576).toFixed(1)} MiB`;
}

function decisionCell(d) {
  return `<span class="${esc(d)}">${esc(d)}</span>`;
}

function tv(v) {
  if (!v || typeof v !== "object") return "-";
  return Object.entries(v).map(([k, n]) => `${esc(k)} ${esc(n)}`).join(", ") || "{}";
}

// ---------------------------------------------------------------- Rego editor

const KEYWORDS = new Set(["package", "import", "default", "if", "else", "not", "some", "every", "in", "contains", "with", "as", "true", "false", "null"]);
const BUILTINS = new Set(["count", "sum", "max", "min", "startswith", "endswith", "contains", "split", "concat", "sprintf", "to_number",
  "object", "array", "regex", "json", "base64", "time", "semver", "lower", "upper", "trim", "is_string", "is_number", "query_reference_value", "print"]);
const TOKEN = /(#[^\n]*)|("(?:[^"\\\n]|\\.)*"?|`[^`]*`?)|(\b\d+(?:\.\d+)?\b)|([A-Za-z_][A-Za-z0-9_]*)|(:=|==|!=|<=|>=|[=<>+\-*/%|&{}\[\]().,;:])|(\s+)|(.)/g;

/** Rego text as highlighted HTML, one span per line; `errLine` (1-based) marked. */
function highlight(src, errLine) {
  let html = "";
  let m;
  TOKEN.lastIndex = 0;
  while ((m = TOKEN.exec(src)) !== null) {
    const t = esc(m[0]);
    if (m[1]) html += `<span class="tok-com">${t}</span>`;
    else if (m[2]) html += `<span class="tok-str">${t}</span>`;
    else if (m[3]) html += `<span class="tok-num">${t}</span>`;
    else if (m[4]) html += KEYWORDS.has(m[0]) ? `<span class="tok-kw">${t}</span>` : BUILTINS.has(m[0]) ? `<span class="tok-bi">${t}</span>` : `<span class="tok-id">${t}</span>`;
    else if (m[5]) html += `<span class="tok-op">${t}</span>`;
    else html += t;
  }
  // Tokens never span lines except whitespace, which has no markup: split on newlines.
  return html.split("\n").map((l, i) => `<span class="line${i + 1 === errLine ? " err" : ""}" data-line="${i + 1}">${l || " "}</span>`).join("");
}

class Editor {
  constructor(root, text, onChange) {
    root.innerHTML = `<div class="editor"><div class="gutter"></div><div class="code"><pre aria-hidden="true"></pre><textarea spellcheck="false" id="rego"></textarea></div></div>`;
    this.box = $(".editor", root);
    this.gutter = $(".gutter", root);
    this.pre = $("pre", root);
    this.ta = $("textarea", root);
    this.ta.value = text;
    this.errLine = null;
    this.onChange = onChange;
    this.ta.addEventListener("input", () => { this.render(); this.onChange(); });
    this.ta.addEventListener("keydown", e => {
      if (e.key === "Tab") {
        e.preventDefault();
        const s = this.ta.selectionStart;
        this.ta.setRangeText("    ", s, this.ta.selectionEnd, "end");
        this.render();
        this.onChange();
      }
    });
    this.render();
  }
  get value() { return this.ta.value; }
  setError(line) { this.errLine = line; this.render(); }
  render() {
    const text = this.ta.value;
    const lines = text.split("\n").length;
    this.pre.innerHTML = highlight(text, this.errLine);
    this.gutter.innerHTML = Array.from({ length: lines }, (_, i) => `<div class="${i + 1 === this.errLine ? "err" : ""}" data-line="${i + 1}">${i + 1}</div>`).join("");
    const h = lines * 20 + 12;
    this.ta.style.height = this.pre.style.height = `${h}px`;
    const w = Math.max(...text.split("\n").map(l => l.length)) * 8 + 40;
    this.ta.style.width = this.pre.style.width = `max(100%, ${w}px)`;
  }
}

/** Line diff (LCS) of `a` to `b` as HTML. */
function diff(a, b) {
  const x = a.split("\n"), y = b.split("\n");
  const n = x.length, m = y.length;
  const L = Array.from({ length: n + 1 }, () => new Int32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--)
    L[i][j] = x[i] === y[j] ? L[i + 1][j + 1] + 1 : Math.max(L[i + 1][j], L[i][j + 1]);
  const out = [];
  let i = 0, j = 0, changes = 0;
  while (i < n || j < m) {
    if (i < n && j < m && x[i] === y[j]) { out.push(`<div class="same">  ${esc(x[i])}</div>`); i++; j++; }
    else if (j < m && (i >= n || L[i][j + 1] >= L[i + 1][j])) { out.push(`<div class="add">+ ${esc(y[j])}</div>`); j++; changes++; }
    else { out.push(`<div class="del">- ${esc(x[i])}</div>`); i++; changes++; }
  }
  return { html: out.join(""), changes };
}

// ---------------------------------------------------------------- pages

async function overview() {
  const m = main();
  m.innerHTML = `<h1>Overview</h1><div class="cards" id="cards"></div>
    <h2>Last 24 hours</h2><div id="stats" class="muted">…</div>
    <h2>Recent attestations</h2><div id="recent-att">…</div>
    <h2>Recent refusals</h2><div id="recent-deny">…</div>`;
  const card = (n, l, cls = "") => `<div class="card"><div class="n ${cls}">${esc(n)}</div><div class="l">${esc(l)}</div></div>`;
  const [health, ready, pols, res, rvs] = await Promise.allSettled([
    api("GET", "/healthz"), api("GET", "/readyz"), api("GET", "/kbs/v0/attestation-policies"),
    api("GET", "/coffer/v1/resources"), api("GET", "/kbs/v0/rvps/query")]);
  $("#cards").innerHTML =
    card(health.status === "fulfilled" ? "up" : "down", "server (/healthz)", health.status === "fulfilled" ? "ok" : "bad") +
    card(ready.status === "fulfilled" ? "ready" : "not ready", "database (/readyz)", ready.status === "fulfilled" ? "ok" : "bad") +
    card(pols.status === "fulfilled" ? Object.keys(pols.value).length + 1 : "?", "policies (attestation + resource)") +
    card(res.status === "fulfilled" ? res.value.length : "?", "resources") +
    card(rvs.status === "fulfilled" ? Object.keys(rvs.value).length : "?", "reference values");
  const stats = await api("GET", "/coffer/v1/audit/stats");
  $("#stats").innerHTML = stats.counts.length === 0 ? "No audit rows." :
    `<div class="cards">${stats.counts.map(c => card(c.count, `${c.action} ${c.decision}`, c.decision === "deny" ? "bad" : "")).join("")}</div>`;
  const att = await api("GET", "/coffer/v1/audit?action=attest&limit=10");
  $("#recent-att").innerHTML = auditTable(att.entries, true);
  const deny = await api("GET", "/coffer/v1/audit?decision=deny&limit=10");
  $("#recent-deny").innerHTML = auditTable(deny.entries, true);
}

function auditTable(rows, compact) {
  if (!rows.length) return `<p class="muted">None.</p>`;
  return `<table class="audit"><thead><tr><th>#</th><th>time</th><th>action</th><th>decision</th><th>TEE</th><th>client</th>
    <th>session</th><th>resource / actor</th><th>verdict · trust vector</th><th>reason</th></tr></thead><tbody>${rows.map(r => `
    <tr data-seq="${r.seq}"><td class="mono">${r.seq}</td><td>${when(r.at_ms)}${compact ? ` <span class="muted">${ago(r.at_ms)}</span>` : ""}</td>
    <td>${esc(r.action)}</td><td>${decisionCell(r.decision)}</td><td>${esc(r.tee ?? "-")}</td><td class="mono">${esc(r.client_addr ?? "-")}</td>
    <td class="mono">${esc((r.session_id ?? "-").slice(0, 10))}</td>
    <td class="mono">${esc(r.resource ?? "")}${r.actor ? ` <span class="muted">by ${esc(r.actor)}</span>` : ""}</td>
    <td>${r.verdict ? `<span class="${esc(r.verdict)}">${esc(r.verdict)}</span> · ${tv(r.trust_vector)}` : "-"}</td>
    <td>${esc(r.detail ?? "")}${r.has_claims ? ` <a href="#/audit/${r.seq}">claims</a>` : ""}</td></tr>`).join("")}</tbody></table>`;
}

// Policies --------------------------------------------------------

let policyState = null;

async function policies(id) {
  const gen = routeGen;
  const ids = Object.keys(await api("GET", "/kbs/v0/attestation-policies")).sort();
  const all = ["resource-policy", ...ids];
  id = id || "resource-policy";
  const isNew = id === "new";
  const m = current(gen);
  if (!m) return;
  m.innerHTML = `<h1>Policies</h1><div class="split"><div class="list" id="plist">
      ${all.map(p => `<a href="#/policies/${encodeURIComponent(p)}" class="${p === id ? "active" : ""}">${esc(p)}
        <span class="muted">${p === "resource-policy" ? "resource" : "attestation"}</span></a>`).join("")}
      <a href="#/policies/new" class="${isNew ? "active" : ""}">+ new attestation policy</a></div>
    <div><div class="row"><label class="f">policy id<input id="pid" value="${isNew ? "" : esc(id)}" ${isNew ? "" : "readonly"}></label>
      <span class="muted" id="pmeta"></span></div>
      <div id="ed"></div><div id="editor-status"></div>
      <div class="row"><button class="primary" id="upload">Upload</button><button id="revert">Revert to active</button></div>
      <div class="tabs"><button id="tab-test" class="active">Test against recorded attestations</button><button id="tab-diff">Diff against active</button></div>
      <div id="pane"></div></div></div>`;
  let active = "";
  let kind = id === "resource-policy" ? "resource" : "attestation";
  if (!isNew) {
    try {
      const p = await api("GET", `/coffer/v1/policies/${encodeURIComponent(id)}`);
      if (!current(gen)) return;
      active = p.body;
      kind = p.kind;
      $("#pmeta").textContent = `${p.kind} policy, updated ${new Date(p.updated_at * 1000).toLocaleString()}`;
    } catch (e) { toast(e.message, true); }
  } else {
    active = "";
    $("#pmeta").textContent = "attestation policy (new)";
  }
  const start = isNew ? 'package policy\n\nimport rego.v1\n\ndefault executables := 33\n\nexecutables := 3 if {\n    input.sample.svn == "1"\n}\n' : active;
  policyState = { id, kind, active, pane: "test" };
  const ed = new Editor($("#ed"), start, () => { scheduleCheck(); if (policyState.pane === "diff") showDiff(); });
  policyState.editor = ed;
  $("#revert").onclick = () => { ed.ta.value = policyState.active; ed.render(); scheduleCheck(); };
  $("#upload").onclick = uploadPolicy;
  $("#tab-test").onclick = () => switchPane("test");
  $("#tab-diff").onclick = () => switchPane("diff");
  await checkNow();
  await switchPane("test");
}

function switchPane(which) {
  policyState.pane = which;
  $("#tab-test").classList.toggle("active", which === "test");
  $("#tab-diff").classList.toggle("active", which === "diff");
  return which === "diff" ? showDiff() : showTestPane();
}

function showDiff() {
  const d = diff(policyState.active, policyState.editor.value);
  $("#pane").innerHTML = `<p class="muted" id="diff-summary">${d.changes} changed line(s) against the active policy</p><div class="diff" id="diff">${d.html}</div>`;
}

async function showTestPane() {
  const pane = $("#pane");
  const resource = policyState.kind === "resource";
  pane.innerHTML = `<div class="row">${resource ? `<label class="f">resource path<input id="tpath" value="default/aliyun/model-decryption-key" size="40"></label>` : ""}
    <button id="run-test" class="primary">Run the draft</button><span class="muted">on the recorded claims of this server's successful attestations; nothing is uploaded</span></div>
    <div id="test-rows">…</div>`;
  const page = await api("GET", "/coffer/v1/audit?action=attest&decision=allow&limit=20");
  policyState.recorded = page.entries;
  $("#test-rows").innerHTML = page.entries.length === 0 ? `<p class="muted">No recorded attestations yet.</p>` :
    `<table id="test-table"><thead><tr><th></th><th>#</th><th>time</th><th>TEE</th><th>client</th><th>recorded</th><th>draft: ${resource ? "allow" : "status · trust vector"}</th></tr></thead><tbody>
    ${page.entries.map((r, i) => `<tr data-seq="${r.seq}"><td><input type="checkbox" class="pick" value="${r.seq}" ${i < 10 ? "checked" : ""}></td>
      <td class="mono">${r.seq}</td><td>${when(r.at_ms)}</td><td>${esc(r.tee)}</td><td class="mono">${esc(r.client_addr ?? "-")}</td>
      <td><span class="${esc(r.verdict)}">${esc(r.verdict)}</span> · ${tv(r.trust_vector)}</td><td class="result muted">not run</td></tr>`).join("")}</tbody></table>`;
  $("#run-test").onclick = runTest;
}

async function runTest() {
  const seqs = [...document.querySelectorAll(".pick:checked")].map(c => Number(c.value));
  if (!seqs.length) { toast("Pick at least one recorded attestation", true); return; }
  const body = { kind: policyState.kind, text: policyState.editor.value, seqs };
  if (policyState.kind === "resource") body.resource = $("#tpath").value;
  let res;
  try { res = await call("POST", "/console/test", body); } catch (e) { toast(e.message, true); return; }
  for (const r of res.results) {
    const cell = $(`#test-table tr[data-seq="${r.seq}"] .result`);
    if (!cell) continue;
    cell.classList.remove("muted");
    if (r.error) cell.innerHTML = `<span class="bad">${esc(r.error)}</span>`;
    else if (policyState.kind === "resource") cell.innerHTML = r.allow ? `<span class="allow">allow</span>` : `<span class="deny">deny</span>`;
    else cell.innerHTML = `<span class="${esc(r.status)}">${esc(r.status)}</span> · ${tv(r.trust_vector)}`;
  }
}

let checkTimer = null;
function scheduleCheck() {
  clearTimeout(checkTimer);
  checkTimer = setTimeout(checkNow, 300);
}

/** Compiles the draft with regorus (in the console process); marks the error line. */
async function checkNow() {
  const res = await call("POST", "/console/check", { text: policyState.editor.value });
  const st = $("#editor-status");
  if (!st) return res.ok; // the page was left meanwhile
  policyState.ok = res.ok;
  if (res.ok) {
    st.className = "ok";
    st.textContent = "compiles";
    policyState.editor.setError(null);
  } else {
    const e = res.errors[0];
    st.className = "err";
    st.textContent = e.line ? `line ${e.line}, column ${e.col}: ${e.message}` : e.message;
    policyState.editor.setError(e.line || null);
  }
  $("#upload").disabled = !res.ok;
  return res.ok;
}

async function uploadPolicy() {
  if (!(await checkNow())) { toast("The draft does not compile", true); return; }
  const text = policyState.editor.value;
  try {
    if (policyState.kind === "resource") {
      await api("POST", "/kbs/v0/resource-policy", { policy: b64(text) });
    } else {
      const id = $("#pid").value.trim();
      if (!id) { toast("Give the policy an id", true); return; }
      await api("POST", "/kbs/v0/attestation-policy", { type: "rego", policy_id: id, policy: b64(text) });
      policyState.id = id;
    }
    toast(`Uploaded ${policyState.id}`);
    const target = `#/policies/${encodeURIComponent(policyState.id)}`;
    if (location.hash !== target) location.hash = target; // the router shows it
    else await policies(policyState.id);
  } catch (e) { toast(e.message, true); }
}

// Resources -------------------------------------------------------

async function resources() {
  const gen = routeGen;
  const rows = await api("GET", "/coffer/v1/resources");
  const m = current(gen);
  if (!m) return;
  m.innerHTML = `<h1>Resources</h1><p class="muted">Names, sizes and update times only: values are never shown or sent to this page.</p>
    <form class="row" id="upform"><label class="f">path (repository/type/tag)<input id="rpath" size="44" required placeholder="default/aliyun/model-decryption-key"></label>
    <label class="f">value from file<input type="file" id="rfile" required></label><button class="primary">Upload</button></form>
    <table id="res-table"><thead><tr><th>path</th><th>size</th><th>updated</th><th></th></tr></thead><tbody>
    ${rows.map(r => `<tr data-path="${esc(r.path)}"><td class="mono">${esc(r.path)}</td><td>${size(r.size)}</td><td>${when(r.updated_at * 1000)}</td>
      <td><button class="danger del">Delete</button></td></tr>`).join("") || `<tr><td colspan="4" class="muted">No resources.</td></tr>`}</tbody></table>`;
  $("#upform").onsubmit = async e => {
    e.preventDefault();
    const file = $("#rfile").files[0];
    const path = $("#rpath").value.trim();
    try {
      await api("POST", `/kbs/v0/resource/${path.split("/").map(encodeURIComponent).join("/")}`, await file.arrayBuffer(), true);
      toast(`Stored ${path}`);
      resources();
    } catch (err) { toast(err.message, true); }
  };
  document.querySelectorAll("#res-table .del").forEach(b => (b.onclick = async () => {
    const path = b.closest("tr").dataset.path;
    if (!confirm(`Delete ${path}?`)) return;
    try {
      await api("DELETE", `/kbs/v0/resource/${path.split("/").map(encodeURIComponent).join("/")}`);
      toast(`Deleted ${path}`);
      resources();
    } catch (err) { toast(err.message, true); }
  }));
}

// Reference values ------------------------------------------------

async function referenceValues() {
  const gen = routeGen;
  const rvs = await api("GET", "/kbs/v0/rvps/query");
  const names = Object.keys(rvs).sort();
  const m = current(gen);
  if (!m) return;
  m.innerHTML = `<h1>Reference values</h1>
    <form class="row" id="rvform"><label class="f">name<input id="rvname" required></label>
    <label class="f">value (JSON, e.g. ["1"], or a plain string)<input id="rvvalue" size="60" required></label><button class="primary">Add</button></form>
    <table id="rv-table"><thead><tr><th>name</th><th>value</th><th></th></tr></thead><tbody>
    ${names.map(n => `<tr data-name="${esc(n)}"><td class="mono">${esc(n)}</td><td class="mono">${esc(JSON.stringify(rvs[n]))}</td>
      <td><button class="danger del">Delete</button></td></tr>`).join("") || `<tr><td colspan="3" class="muted">No reference values.</td></tr>`}</tbody></table>`;
  $("#rvform").onsubmit = async e => {
    e.preventDefault();
    const name = $("#rvname").value.trim();
    let value = $("#rvvalue").value;
    try { value = JSON.parse(value); } catch (_) { /* a plain string */ }
    try {
      await api("POST", "/kbs/v0/reference-value", { version: "0.1.0", type: "sample", payload: b64(JSON.stringify({ [name]: value })) });
      toast(`Reference value ${name} set`);
      referenceValues();
    } catch (err) { toast(err.message, true); }
  };
  document.querySelectorAll("#rv-table .del").forEach(b => (b.onclick = async () => {
    const name = b.closest("tr").dataset.name;
    if (!confirm(`Delete ${name}?`)) return;
    try {
      await api("DELETE", `/kbs/v0/rvps/delete/${encodeURIComponent(name)}`);
      toast(`Deleted ${name}`);
      referenceValues();
    } catch (err) { toast(err.message, true); }
  }));
}

// Audit -----------------------------------------------------------

const auditState = { offset: 0, limit: 50, filters: {} };

function auditQuery(extra) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(auditState.filters)) if (v) q.set(k, v);
  for (const [k, v] of Object.entries(extra)) q.set(k, v);
  return q.toString();
}

async function audit(seq) {
  if (seq) return auditRow(seq);
  const f = auditState.filters;
  const sel = (id, opts) => `<select id="${id}"><option value="">any</option>${opts.map(o => `<option ${f[id] === o ? "selected" : ""}>${o}</option>`).join("")}</select>`;
  main().innerHTML = `<h1>Audit</h1>
    <form class="row" id="afilter">
      <label class="f">since<input type="datetime-local" id="since" step="1" value="${esc(f.sinceLocal ?? "")}"></label>
      <label class="f">until<input type="datetime-local" id="until" step="1" value="${esc(f.untilLocal ?? "")}"></label>
      <label class="f">action${sel("action", ["attest", "release", "admin"])}</label>
      <label class="f">decision${sel("decision", ["allow", "deny", "ok"])}</label>
      <label class="f">TEE<input id="tee" size="8" value="${esc(f.tee ?? "")}"></label>
      <label class="f">resource (prefix*)<input id="resource" size="28" value="${esc(f.resource ?? "")}"></label>
      <label class="f">session<input id="session" size="14" value="${esc(f.session ?? "")}"></label>
      <button class="primary">Filter</button><button type="button" id="clear">Clear</button>
      <button type="button" id="export-json">Export JSON</button><button type="button" id="export-csv">Export CSV</button></form>
    <div class="pager"><button id="prev">‹ newer</button><span id="range"></span><button id="next">older ›</button></div>
    <div id="arows">…</div>`;
  $("#afilter").onsubmit = e => {
    e.preventDefault();
    const v = id => $("#" + id).value.trim();
    const ms = id => (v(id) ? String(new Date(v(id)).getTime()) : "");
    auditState.filters = { since: ms("since"), until: ms("until"), sinceLocal: v("since"), untilLocal: v("until"),
      action: v("action"), decision: v("decision"), tee: v("tee"), resource: v("resource"), session: v("session") };
    auditState.offset = 0;
    loadAudit();
  };
  $("#clear").onclick = () => { auditState.filters = {}; auditState.offset = 0; audit(); };
  $("#prev").onclick = () => { auditState.offset = Math.max(0, auditState.offset - auditState.limit); loadAudit(); };
  $("#next").onclick = () => { auditState.offset += auditState.limit; loadAudit(); };
  $("#export-json").onclick = () => exportAudit("json");
  $("#export-csv").onclick = () => exportAudit("csv");
  await loadAudit();
}

function apiFilters() {
  const { sinceLocal, untilLocal, ...rest } = auditState.filters;
  return rest;
}

async function loadAudit() {
  const saved = auditState.filters;
  auditState.filters = apiFilters();
  const q = auditQuery({ limit: auditState.limit, offset: auditState.offset });
  auditState.filters = saved;
  const page = await api("GET", `/coffer/v1/audit?${q}`);
  if (!$("#range")) return; // the audit page was left while the rows were on their way
  const first = page.entries.length ? page.offset + 1 : 0;
  $("#range").textContent = `rows ${first}–${page.offset + page.entries.length} of ${page.total}`;
  $("#prev").disabled = page.offset === 0;
  $("#next").disabled = page.offset + page.entries.length >= page.total;
  $("#arows").innerHTML = auditTable(page.entries, false);
}

const CSV_COLUMNS = ["seq", "at_ms", "time_utc", "action", "decision", "tee", "client_addr", "session_id", "resource", "actor", "verdict", "trust_vector", "claims_digest", "detail"];

async function exportAudit(format) {
  const saved = auditState.filters;
  auditState.filters = apiFilters();
  const rows = [];
  try {
    for (let offset = 0; offset < 100000; offset += 1000) {
      const page = await api("GET", `/coffer/v1/audit?${auditQuery({ limit: 1000, offset })}`);
      rows.push(...page.entries);
      if (offset + page.entries.length >= page.total || page.entries.length === 0) break;
    }
  } finally { auditState.filters = saved; }
  let blob, name;
  if (format === "json") {
    blob = new Blob([JSON.stringify(rows, null, 1)], { type: "application/json" });
    name = "coffer-audit.json";
  } else {
    const cell = v => { const s = v === null || v === undefined ? "" : typeof v === "object" ? JSON.stringify(v) : String(v); return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s; };
    const lines = [CSV_COLUMNS.join(",")].concat(rows.map(r => CSV_COLUMNS.map(c => cell(c === "time_utc" ? new Date(r.at_ms).toISOString() : r[c])).join(",")));
    blob = new Blob([lines.join("\n") + "\n"], { type: "text/csv" });
    name = "coffer-audit.csv";
  }
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  a.id = "download-link";
  document.body.appendChild(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  toast(`Exported ${rows.length} rows`);
}

async function auditRow(seq) {
  const gen = routeGen;
  const r = await api("GET", `/coffer/v1/audit/${encodeURIComponent(seq)}`);
  const m = current(gen);
  if (!m) return;
  m.innerHTML = `<h1>Audit row ${esc(r.seq)}</h1><p><a href="#/audit">‹ all rows</a></p>${auditTable([r], false)}
    <h2>Verified claims</h2><pre class="json" id="claims">${esc(JSON.stringify(r.claims ?? null, null, 2))}</pre>`;
}

// ---------------------------------------------------------------- router

const PAGES = { overview, policies, resources, "reference-values": referenceValues, audit };

let routeGen = 0;

async function route() {
  const gen = ++routeGen;
  const [, page = "overview", arg] = (location.hash || "#/overview").split("/");
  document.querySelectorAll("header nav a").forEach(a => a.classList.toggle("active", a.dataset.page === page));
  const fn = PAGES[page] || overview;
  try { await fn(arg ? decodeURIComponent(arg) : undefined); }
  catch (e) {
    // A page left before it finished loading does not report over its successor.
    if (gen === routeGen) main().innerHTML = `<h1>Error</h1><p class="bad" id="page-error">${esc(e.message)}</p>`;
  }
}

window.addEventListener("hashchange", route);
call("GET", "/console/info").then(i => ($("#server").textContent = `server ${i.server}`)).catch(() => {});
route();
