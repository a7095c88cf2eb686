// Strata dashboard: a small hash-routed single-page app over the JSON API
// described by /api/openapi.json. No build step, no dependencies: plain
// ES2020, HTML built with an escaping template tag, charts drawn as SVG.

'use strict';

// ---------------------------------------------------------------------------
// HTML building: every interpolated value is escaped unless wrapped in raw().

class Raw {
  constructor(s) { this.s = s; }
  toString() { return this.s; }
}
const raw = (s) => new Raw(String(s));

function esc(s) {
  return String(s)
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

function toHtml(v) {
  if (v === null || v === undefined || v === false) return '';
  if (v instanceof Raw) return v.s;
  if (Array.isArray(v)) return v.map(toHtml).join('');
  return esc(v);
}

function html(strings, ...vals) {
  let out = strings[0];
  for (let i = 0; i < vals.length; i++) out += toHtml(vals[i]) + strings[i + 1];
  return new Raw(out);
}

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

// ---------------------------------------------------------------------------
// Formatting

const NUM = new Intl.NumberFormat('en-US', { maximumFractionDigits: 2 });
const NUM6 = new Intl.NumberFormat('en-US', { maximumFractionDigits: 6 });

function fmtNum(n, digits) {
  if (n === null || n === undefined || n === '') return '';
  const x = Number(n);
  if (!Number.isFinite(x)) return String(n);
  return (digits === 6 ? NUM6 : NUM).format(x);
}

/** Parses an RFC 3339 timestamp (any number of fraction digits; no zone = UTC). */
function parseTs(s) {
  if (s === null || s === undefined || s === '') return null;
  if (s instanceof Date) return s;
  let t = String(s).trim().replace(' ', 'T');
  t = t.replace(/(\.\d{3})\d+/, '$1');
  if (/^\d{4}-\d{2}-\d{2}$/.test(t)) t += 'T00:00:00Z';
  else if (!/(Z|[+-]\d{2}:?\d{2})$/i.test(t)) t += 'Z';
  const d = new Date(t);
  return Number.isNaN(d.getTime()) ? null : d;
}

const pad2 = (n) => String(n).padStart(2, '0');

/** Local time as YYYY-MM-DD HH:MM:SS. */
function fmtTs(s) {
  const d = parseTs(s);
  if (!d) return s ? String(s) : '';
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ` +
    `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
}

function fmtShortTs(s) {
  const d = parseTs(s);
  if (!d) return '';
  return `${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
}

/** A humanised duration: 850 ms, 4.2 s, 3 min 12 s, 2 h 5 min, 1 d 3 h. */
function fmtDur(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '';
  const neg = ms < 0;
  ms = Math.abs(ms);
  let out;
  if (ms < 1000) out = `${Math.round(ms)} ms`;
  else if (ms < 10000) out = `${(ms / 1000).toFixed(1)} s`;
  else if (ms < 60000) out = `${Math.round(ms / 1000)} s`;
  else if (ms < 3600000) {
    const m = Math.floor(ms / 60000), s = Math.round((ms % 60000) / 1000);
    out = s ? `${m} min ${s} s` : `${m} min`;
  } else if (ms < 86400000) {
    const h = Math.floor(ms / 3600000), m = Math.round((ms % 3600000) / 60000);
    out = m ? `${h} h ${m} min` : `${h} h`;
  } else {
    const d = Math.floor(ms / 86400000), h = Math.round((ms % 86400000) / 3600000);
    out = h ? `${d} d ${h} h` : `${d} d`;
  }
  return neg ? `-${out}` : out;
}

function durationMs(start, end) {
  const a = parseTs(start), b = parseTs(end);
  if (!a || !b) return null;
  return b - a;
}

function fmtAgo(s) {
  const d = parseTs(s);
  if (!d) return '';
  const ms = Date.now() - d.getTime();
  return ms >= 0 ? `${fmtDur(ms)} ago` : `in ${fmtDur(-ms)}`;
}

// ---------------------------------------------------------------------------
// Status colours, shared by badges, lineage nodes and charts.

const STATUS_COLORS = {
  success: '#2e9d5b', pass: '#2e9d5b', resolved: '#2e9d5b', fresh: '#2e9d5b',
  failed: '#d64545', fail: '#d64545', error: '#d64545', firing: '#d64545',
  running: '#2f74d0', pending: '#9aa5b1', queued: '#9aa5b1',
  skipped: '#b8875a', upstream_failed: '#b8875a',
  interrupted: '#e07b24', resumed: '#7e5bc2',
  warn: '#d99a00', stale: '#d99a00',
  never: '#c3c9d2',
};

function statusColor(s) {
  if (s === null || s === undefined) return STATUS_COLORS.never;
  return STATUS_COLORS[String(s).toLowerCase()] || '#7b8794';
}

function statusClass(s) {
  const k = s === null || s === undefined ? 'never' : String(s).toLowerCase();
  return STATUS_COLORS[k] ? `st-${k}` : 'st-other';
}

function badge(status, extra = '') {
  const label = status === null || status === undefined ? 'never run' : status;
  return html`<span class="badge ${statusClass(status)} ${extra}">${label}</span>`;
}

function sevBadge(sev) {
  const k = String(sev || 'info').toLowerCase();
  return html`<span class="sev sev-${['error', 'warn', 'info'].includes(k) ? k : 'info'}">${k}</span>`;
}

// ---------------------------------------------------------------------------
// API access

const TOKEN_KEY = 'strata_token';

class ApiError extends Error {
  constructor(status, message, path) {
    super(message);
    this.status = status;
    this.path = path;
  }
}

async function api(path, { method = 'GET', body } = {}) {
  const headers = { Accept: 'application/json' };
  const token = localStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  const init = { method, headers };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, `cannot reach the server (${e.message})`, path);
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch (_) { data = null; }
  }
  if (!res.ok) {
    const msg = data && typeof data.error === 'string' ? data.error
      : `HTTP ${res.status} ${res.statusText || ''}`.trim();
    const err = new ApiError(res.status, msg, path);
    if (res.status === 401) needSignIn(err);
    throw err;
  }
  if (data === null && text) throw new ApiError(res.status, `the server sent a response that is not JSON (${path})`, path);
  return data;
}

const enc = encodeURIComponent;

// ---------------------------------------------------------------------------
// Error banner

function showError(err, context) {
  if (err && err.status === 401) return; // the sign-in form is shown instead
  const banner = $('#banner');
  const msg = err instanceof Error ? err.message : String(err);
  const what = context ? `${context}: ` : '';
  const item = document.createElement('div');
  item.className = 'banner-item';
  item.innerHTML = toHtml(html`<span class="banner-icon" aria-hidden="true">!</span>
    <span class="banner-text">${what}${msg}${err && err.status ? html` <span class="banner-code">(HTTP ${err.status})</span>` : ''}</span>
    <button type="button" class="banner-close" title="Dismiss" aria-label="Dismiss">×</button>`);
  item.querySelector('.banner-close').addEventListener('click', () => {
    item.remove();
    if (!banner.children.length) banner.hidden = true;
  });
  banner.appendChild(item);
  while (banner.children.length > 3) banner.firstElementChild.remove();
  banner.hidden = false;
}

function clearErrors() {
  const banner = $('#banner');
  banner.innerHTML = '';
  banner.hidden = true;
}

// ---------------------------------------------------------------------------
// Session: who am I, sign-in

const state = { me: null, project: null, models: null };
const isAdmin = () => !!(state.me && state.me.scope === 'admin');

let signInShown = false;

function needSignIn(err) {
  if (signInShown) return;
  signInShown = true;
  stopTimers();
  document.body.classList.add('signed-out');
  state.me = null;
  renderUser();
  const had = !!localStorage.getItem(TOKEN_KEY);
  const app = $('#app');
  app.innerHTML = toHtml(html`
    <section class="signin card">
      <h1>Sign in</h1>
      <p>This Strata server needs an API token (<code>[serve.tokens.NAME]</code> in <code>strata.toml</code>).</p>
      ${had ? html`<p class="signin-error">The stored token was refused: ${err.message}</p>` : ''}
      <form id="signin-form" autocomplete="off">
        <label for="signin-token">Token</label>
        <input id="signin-token" type="password" placeholder="paste your token" autocomplete="off" required>
        <button type="submit" class="btn primary">Sign in</button>
      </form>
    </section>`);
  $('#signin-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const tok = $('#signin-token').value.trim();
    if (!tok) return;
    localStorage.setItem(TOKEN_KEY, tok);
    signInShown = false;
    document.body.classList.remove('signed-out');
    clearErrors();
    start();
  });
  $('#signin-token').focus();
}

function renderUser() {
  const el = $('#user');
  if (!state.me) { el.innerHTML = ''; return; }
  el.innerHTML = toHtml(html`<span class="user-name" title="signed in as">${state.me.name}</span>
    <span class="scope scope-${state.me.scope}">${state.me.scope}</span>
    <button type="button" class="linkbtn" id="signout">Sign out</button>`);
  $('#signout').addEventListener('click', () => {
    localStorage.removeItem(TOKEN_KEY);
    state.me = null;
    needSignIn(new ApiError(401, 'signed out'));
  });
  document.body.classList.toggle('is-admin', isAdmin());
}

function setProject(name) {
  if (!name || state.project === name) return;
  state.project = name;
  $('#project-name').textContent = name;
  document.title = `${name} · Strata`;
}

async function start() {
  try {
    state.me = await api('/api/me');
  } catch (e) {
    if (e.status !== 401) {
      showError(e, 'Cannot load /api/me');
      $('#app').innerHTML = toHtml(html`<p class="empty">The dashboard could not start.</p>`);
    }
    return;
  }
  renderUser();
  // The project name for the header; a failure here is shown, not fatal.
  api('/api/overview').then((o) => setProject(o.project)).catch((e) => showError(e, 'Cannot load the project name'));
  route();
}

// ---------------------------------------------------------------------------
// Router

let generation = 0;
const timers = new Set();

function stopTimers() {
  for (const t of timers) clearTimeout(t);
  timers.clear();
}

function later(fn, ms) {
  const t = setTimeout(() => { timers.delete(t); fn(); }, ms);
  timers.add(t);
  return t;
}

const ROUTES = [
  [/^\/?$/, 'overview', (m, gen) => pageOverview(gen)],
  [/^\/lineage$/, 'lineage', (m, gen) => pageLineage(gen)],
  [/^\/runs$/, 'runs', (m, gen) => pageRuns(gen)],
  [/^\/runs\/(.+)$/, 'runs', (m, gen) => pageRun(gen, m[1])],
  [/^\/models\/(.+)$/, 'lineage', (m, gen) => pageModel(gen, m[1])],
  [/^\/products(?:\/(.+))?$/, 'products', (m, gen) => pageProducts(gen, m[1])],
  [/^\/explore(?:\/(.+))?$/, 'explore', (m, gen) => pageExplore(gen, m[1])],
];

function currentPath() {
  const h = location.hash.replace(/^#/, '');
  const p = h.split('?')[0];
  return p || '/';
}

function route() {
  if (!state.me) return;
  stopTimers();
  const path = currentPath();
  let found = null;
  for (const [re, nav, fn] of ROUTES) {
    const m = path.match(re);
    if (m) {
      found = { nav, fn, m: m.map((x) => (x === undefined ? x : safeDecode(x))) };
      break;
    }
  }
  $$('#nav a').forEach((a) => a.classList.toggle('active', !!found && a.dataset.nav === found.nav));
  const gen = ++generation;
  redraw = null;
  clearErrors();
  const app = $('#app');
  if (!found) {
    app.innerHTML = toHtml(html`<section class="card"><h1>Not found</h1><p>No page at <code>#${path}</code>. <a href="#/">Go to the overview</a>.</p></section>`);
    return;
  }
  app.innerHTML = '<p class="muted loading">Loading…</p>';
  Promise.resolve()
    .then(() => found.fn(found.m, gen))
    .catch((e) => {
      if (gen !== generation) return;
      if (e && e.status === 401) return;
      showError(e);
      app.innerHTML = toHtml(html`<section class="card"><h1>Could not load this page</h1><p class="error-text">${e && e.message ? e.message : e}</p></section>`);
    });
}

/** True while the page that captured `gen` is still the one shown. */
const alive = (gen) => gen === generation && !signInShown;

function safeDecode(s) {
  try { return decodeURIComponent(s); } catch (_) { return s; }
}

function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

window.addEventListener('hashchange', () => {
  if (!signInShown) route();
});

window.addEventListener('unhandledrejection', (e) => {
  const r = e.reason;
  if (r && r.status === 401) { e.preventDefault(); return; }
  showError(r, 'Unexpected error');
});

function mount(gen, content) {
  if (!alive(gen)) return false;
  $('#app').innerHTML = toHtml(content);
  return true;
}

const modelLink = (name) => html`<a href="#/models/${enc(name)}" class="mono">${name}</a>`;
const runLink = (id) => html`<a href="#/runs/${enc(id)}" class="mono">${id}</a>`;

function numCell(v, digits) {
  return html`<td class="num">${v === null || v === undefined ? html`<span class="muted">–</span>` : fmtNum(v, digits)}</td>`;
}

// ---------------------------------------------------------------------------
// Overview

async function pageOverview(gen) {
  const o = await api('/api/overview');
  setProject(o.project);
  const c = o.counts || {};
  const tile = (label, value, href, bad) => html`
    <a class="tile ${bad && value > 0 ? `tile-${bad}` : ''}" href="${href}">
      <span class="tile-value">${fmtNum(value || 0)}</span>
      <span class="tile-label">${label}</span>
    </a>`;
  const conditions = o.conditions || [];
  const order = { error: 0, warn: 1 };
  conditions.sort((a, b) => (order[a.severity] ?? 2) - (order[b.severity] ?? 2));
  const fresh = o.freshness || [];
  const runs = o.recent_runs || [];
  const alerts = o.open_alerts || [];
  mount(gen, html`
    <div class="page-head">
      <h1>Overview</h1>
      <span class="muted small">generated ${fmtTs(o.generated_at)}</span>
    </div>
    <section class="tiles" id="tiles">
      ${tile('tables', c.tables, '#/lineage', null)}
      ${tile('failing checks', c.failing_checks, '#/lineage', 'bad')}
      ${tile('stale tables', c.stale_tables, '#/lineage', 'warn')}
      ${tile('failed tasks', c.failed_tasks, '#/runs', 'bad')}
      ${tile('open alerts', c.open_alerts, '#/', 'bad')}
    </section>
    <section class="card">
      <h2>Conditions <span class="count">${conditions.length}</span></h2>
      ${conditions.length ? html`<ul class="conditions">
        ${conditions.map((x) => html`<li class="condition sevline-${['error', 'warn'].includes(x.severity) ? x.severity : 'info'}">
          <div class="cond-main">
            ${sevBadge(x.severity)} <span class="cond-kind">${x.kind}</span>
            <span class="cond-subject">${x.subject}</span>
          </div>
          <div class="cond-summary">${x.summary}</div>
          ${x.tables && x.tables.length ? html`<div class="cond-tables">${x.tables.map((t) => html`${modelLink(t)} `)}</div>` : ''}
        </li>`)}
      </ul>` : html`<p class="allclear">All clear: no failing checks, failed tasks or stale tables.</p>`}
    </section>
    <div class="grid2">
      <section class="card">
        <h2>Freshness</h2>
        ${fresh.length ? html`<table class="data">
          <thead><tr><th>table</th><th>loaded at</th><th class="num">lag</th><th class="num">SLA</th><th></th></tr></thead>
          <tbody>${fresh.map((f) => html`<tr class="${f.stale ? 'row-stale' : ''}">
            <td>${modelLink(f.table)}</td>
            <td class="ts">${f.loaded_at ? fmtTs(f.loaded_at) : html`<span class="muted">never</span>`}</td>
            <td class="num">${f.lag_seconds === null || f.lag_seconds === undefined ? '' : fmtDur(f.lag_seconds * 1000)}</td>
            <td class="num" title="${f.sla_from ? `from ${f.sla_from}` : ''}">${f.sla_seconds ? fmtDur(f.sla_seconds * 1000) : html`<span class="muted">–</span>`}</td>
            <td>${f.stale ? html`<span class="badge st-stale">stale</span>` : f.sla_seconds ? html`<span class="badge st-fresh">fresh</span>` : ''}</td>
          </tr>`)}</tbody></table>` : html`<p class="empty">No table has been loaded yet.</p>`}
      </section>
      <section class="card">
        <h2>Open alerts <span class="count">${alerts.length}</span></h2>
        ${alerts.length ? html`<ul class="alerts">${alerts.map((a) => html`<li class="alert">
          <div>${badge(a.status)} <span class="cond-kind">${a.kind}</span> <span class="cond-subject">${a.subject}</span></div>
          <div class="cond-summary">${a.summary}</div>
          <div class="muted small">rule ${a.rule} · opened ${fmtTs(a.opened_at)} (${fmtAgo(a.opened_at)}) · sent ${fmtNum(a.sends || 0)}×${a.last_error ? html` · <span class="error-text">last error: ${a.last_error}</span>` : ''}</div>
        </li>`)}</ul>` : html`<p class="allclear">No open alerts.</p>`}
      </section>
    </div>
    <section class="card">
      <h2>Recent runs</h2>
      ${runsTable(runs)}
      <p class="more"><a href="#/runs">All runs →</a></p>
    </section>`);
}

function runsTable(runs) {
  if (!runs.length) return html`<p class="empty">No runs yet.</p>`;
  return html`<table class="data runs">
    <thead><tr><th>run</th><th>status</th><th>trigger</th><th>selection</th><th>started</th><th class="num">duration</th><th>resumed from</th></tr></thead>
    <tbody>${runs.map((r) => {
      const end = r.ended_at || (r.status === 'running' ? new Date() : null);
      return html`<tr>
        <td>${runLink(r.run_id)}</td>
        <td>${badge(r.status)}</td>
        <td>${r.trigger}</td>
        <td>${r.selection ? html`<code>${r.selection}</code>` : html`<span class="muted">everything</span>`}</td>
        <td class="ts">${fmtTs(r.started_at)}</td>
        <td class="num">${end ? fmtDur(durationMs(r.started_at, end)) : ''}</td>
        <td>${r.resumed_from ? runLink(r.resumed_from) : ''}</td>
      </tr>`;
    })}</tbody></table>`;
}

// ---------------------------------------------------------------------------
// Lineage

const LAYER_ORDER = ['bronze', 'silver', 'gold'];

function layoutLineage(nodes, edges) {
  const layers = [...LAYER_ORDER];
  for (const n of nodes) if (!layers.includes(n.layer)) layers.push(n.layer);
  const cols = layers.map((l) => nodes.filter((n) => n.layer === l));
  const byName = new Map(nodes.map((n) => [n.name, n]));
  const ups = new Map(nodes.map((n) => [n.name, []]));
  const downs = new Map(nodes.map((n) => [n.name, []]));
  for (const e of edges) {
    if (!byName.has(e.from) || !byName.has(e.to)) continue;
    ups.get(e.to).push(e.from);
    downs.get(e.from).push(e.to);
  }
  // Barycentre ordering: sweep left to right by upstream positions, then
  // right to left by downstream positions, a few times.
  const pos = new Map();
  const setPos = () => cols.forEach((c) => c.forEach((n, i) => pos.set(n.name, (i + 0.5) / c.length)));
  cols.forEach((c) => c.sort((a, b) => a.name.localeCompare(b.name)));
  setPos();
  const bary = (name, nbrs, fallback) => {
    const ps = nbrs.map((x) => pos.get(x)).filter((x) => x !== undefined);
    return ps.length ? ps.reduce((s, x) => s + x, 0) / ps.length : fallback;
  };
  for (let iter = 0; iter < 4; iter++) {
    for (let ci = 1; ci < cols.length; ci++) {
      const c = cols[ci];
      const key = new Map(c.map((n) => [n.name, bary(n.name, ups.get(n.name), pos.get(n.name))]));
      c.sort((a, b) => key.get(a.name) - key.get(b.name) || a.name.localeCompare(b.name));
      setPos();
    }
    for (let ci = cols.length - 2; ci >= 0; ci--) {
      const c = cols[ci];
      const key = new Map(c.map((n) => [n.name, bary(n.name, downs.get(n.name), pos.get(n.name))]));
      c.sort((a, b) => key.get(a.name) - key.get(b.name) || a.name.localeCompare(b.name));
      setPos();
    }
  }
  // Final pass left to right so that downstream follows upstream.
  for (let ci = 1; ci < cols.length; ci++) {
    const c = cols[ci];
    const key = new Map(c.map((n) => [n.name, bary(n.name, ups.get(n.name), pos.get(n.name))]));
    c.sort((a, b) => key.get(a.name) - key.get(b.name) || a.name.localeCompare(b.name));
    setPos();
  }
  return { layers, cols, ups, downs };
}

async function pageLineage(gen) {
  const g = await api('/api/lineage');
  const nodes = g.nodes || [];
  const edges = g.edges || [];
  const failing = nodes.filter((n) => n.failing_checks > 0).length;
  const stale = nodes.filter((n) => n.stale).length;
  if (!mount(gen, html`
    <div class="page-head">
      <h1>Lineage</h1>
      <span class="muted small">${fmtNum(nodes.length)} tables · ${fmtNum(edges.length)} edges${failing ? ` · ${failing} with failing checks` : ''}${stale ? ` · ${stale} stale` : ''}</span>
    </div>
    <section class="card lineage-card">
      <div class="legend">${legendItems()}</div>
      <div id="lineage" class="lineage"></div>
    </section>`)) return;
  if (!nodes.length) {
    $('#lineage').innerHTML = toHtml(html`<p class="empty">The project has no tables.</p>`);
    return;
  }
  drawLineage($('#lineage'), nodes, edges);
  onResizeRedraw(() => drawLineage($('#lineage'), nodes, edges));
}

function legendItems() {
  const sw = (color, label, cls = '') => html`<span class="legend-item"><span class="swatch ${cls}" style="background:${color}"></span>${label}</span>`;
  return html`${sw(STATUS_COLORS.success, 'success')}${sw(STATUS_COLORS.failed, 'failed')}
    ${sw(STATUS_COLORS.skipped, 'skipped / upstream failed')}${sw(STATUS_COLORS.running, 'running')}
    ${sw(STATUS_COLORS.interrupted, 'interrupted')}${sw(STATUS_COLORS.never, 'never run')}
    <span class="legend-item"><span class="swatch ring ring-fail"></span>failing checks</span>
    <span class="legend-item"><span class="swatch ring ring-stale"></span>stale</span>`;
}

function drawLineage(container, nodes, edges) {
  const { layers, cols, ups, downs } = layoutLineage(nodes, edges);
  const W = Math.max(container.clientWidth || 1100, 640);
  const nCols = layers.length;
  const colW = W / nCols;
  const nodeW = Math.min(250, colW - 70);
  const nodeH = 58;
  const gapY = 22;
  const top = 46;
  const maxRows = Math.max(...cols.map((c) => c.length), 1);
  const H = top + maxRows * (nodeH + gapY) + 10;
  const place = new Map();
  cols.forEach((c, ci) => {
    const x = ci * colW + (colW - nodeW) / 2;
    const colH = c.length * (nodeH + gapY) - gapY;
    const fullH = maxRows * (nodeH + gapY) - gapY;
    const y0 = top + (fullH - colH) / 2;
    c.forEach((n, i) => place.set(n.name, { x, y: y0 + i * (nodeH + gapY), col: ci }));
  });
  const paths = [];
  for (const e of edges) {
    const a = place.get(e.from), b = place.get(e.to);
    if (!a || !b) continue;
    let d;
    if (a.col === b.col) {
      // Same column: bulge out to the right.
      const x = a.x + nodeW, y1 = a.y + nodeH / 2, y2 = b.y + nodeH / 2;
      d = `M${x},${y1} C${x + 50},${y1} ${x + 50},${y2} ${x + 4},${y2}`;
    } else if (a.col < b.col) {
      const x1 = a.x + nodeW, y1 = a.y + nodeH / 2, x2 = b.x - 4, y2 = b.y + nodeH / 2;
      const dx = Math.max(40, (x2 - x1) / 2);
      d = `M${x1},${y1} C${x1 + dx},${y1} ${x2 - dx},${y2} ${x2},${y2}`;
    } else {
      // Upstream in a later layer (unusual): route from its left side.
      const x1 = a.x, y1 = a.y + nodeH / 2, x2 = b.x + nodeW + 4, y2 = b.y + nodeH / 2;
      const dx = Math.max(40, (x1 - x2) / 2);
      d = `M${x1},${y1} C${x1 - dx},${y1} ${x2 + dx},${y2} ${x2},${y2}`;
    }
    paths.push(html`<path class="edge" d="${d}" data-from="${e.from}" data-to="${e.to}" marker-end="url(#arrow)"></path>`);
  }
  const heads = layers.map((l, ci) => html`<div class="col-head" style="left:${ci * colW}px;width:${colW}px">
      <span class="layer layer-${LAYER_ORDER.includes(l) ? l : 'other'}">${l}</span>
      <span class="muted small">${cols[ci].length}</span></div>`);
  const colBgs = layers.map((l, ci) => html`<div class="col-bg" style="left:${ci * colW + 8}px;width:${colW - 16}px;height:${H}px"></div>`);
  const nodeEls = nodes.map((n) => {
    const p = place.get(n.name);
    const color = statusColor(n.status);
    const rings = `${n.failing_checks > 0 ? 'has-failing' : ''} ${n.stale ? 'is-stale' : ''}`;
    const title = `${n.name}\nstatus: ${n.status ?? 'never run'}\nkind: ${n.kind}` +
      (n.failing_checks ? `\nfailing checks: ${n.failing_checks}` : '') + (n.stale ? '\nstale' : '');
    return html`<a class="node ${statusClass(n.status)} ${rings}" data-table="${n.name}" href="#/models/${enc(n.name)}"
        style="left:${p.x}px;top:${p.y}px;width:${nodeW}px;height:${nodeH}px;--st:${color}" title="${title}">
      <span class="node-name">${n.name}</span>
      <span class="node-meta"><span class="node-status">${n.status ?? 'never run'}</span> · ${n.kind}</span>
      ${n.failing_checks > 0 ? html`<span class="node-dot" title="${n.failing_checks} failing check(s)">${n.failing_checks}</span>` : ''}
      ${n.stale ? html`<span class="node-stale">stale</span>` : ''}
    </a>`;
  });
  container.style.height = `${H}px`;
  container.innerHTML = toHtml(html`${colBgs}${heads}
    <svg class="edges" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" aria-hidden="true">
      <defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
        <path d="M0,0 L10,5 L0,10 z" class="arrowhead"></path></marker></defs>
      ${paths}
    </svg>
    ${nodeEls}`);
  // Hover: highlight a node's edges and neighbours.
  $$('.node', container).forEach((el) => {
    const name = el.dataset.table;
    el.addEventListener('mouseenter', () => {
      container.classList.add('focus');
      const near = new Set([name, ...(ups.get(name) || []), ...(downs.get(name) || [])]);
      $$('.node', container).forEach((o) => o.classList.toggle('near', near.has(o.dataset.table)));
      $$('.edge', container).forEach((p) => p.classList.toggle('hot', p.dataset.from === name || p.dataset.to === name));
    });
    el.addEventListener('mouseleave', () => {
      container.classList.remove('focus');
      $$('.near', container).forEach((o) => o.classList.remove('near'));
      $$('.edge.hot', container).forEach((p) => p.classList.remove('hot'));
    });
  });
}

// ---------------------------------------------------------------------------
// Runs

async function pageRuns(gen) {
  const runs = await api('/api/runs?limit=50');
  if (!mount(gen, html`
    <div class="page-head">
      <h1>Runs</h1>
      ${isAdmin() ? html`<form class="inline-form" id="trigger-form">
        <label class="inline-label" for="run-select">select</label>
        <input id="run-select" type="text" placeholder="everything, or e.g. +gold.daily_revenue" size="40">
        <button type="submit" class="btn primary" id="trigger-run">▶ Run now</button>
      </form>` : ''}
    </div>
    <section class="card">${runsTable(runs)}</section>`)) return;
  const form = $('#trigger-form');
  if (form) {
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const btn = $('#trigger-run');
      btn.disabled = true;
      const sel = $('#run-select').value.trim();
      try {
        const started = await api('/api/runs', { method: 'POST', body: sel ? { select: sel } : {} });
        go(`#/runs/${enc(started.run_id)}`);
      } catch (err) {
        showError(err, 'Cannot start the run');
        btn.disabled = false;
      }
    });
  }
}

async function pageRun(gen, id) {
  let first = true;
  const load = async () => {
    let r;
    try {
      r = await api(`/api/runs/${enc(id)}`);
    } catch (e) {
      if (first) throw e;
      if (!alive(gen)) return;
      showError(e, 'Cannot refresh the run');
      later(load, 3000);
      return;
    }
    if (!alive(gen)) return;
    renderRun(gen, r, first);
    first = false;
    if (r.status === 'running') later(load, 1000);
  };
  await load();
}

function renderRun(gen, r, first) {
  const tasks = r.tasks || [];
  const running = r.status === 'running';
  const end = r.ended_at || (running ? new Date() : null);
  const counts = {};
  for (const t of tasks) counts[t.status] = (counts[t.status] || 0) + 1;
  const canResume = isAdmin() && (r.status === 'failed' || r.status === 'interrupted');
  const y = window.scrollY;
  const content = html`
    <div class="page-head">
      <h1>Run <span class="mono">${r.run_id}</span></h1>
      <span id="run-status" class="badge big ${statusClass(r.status)}">${r.status}</span>
      ${running ? html`<span class="live"><span class="pulse"></span>live, refreshing every second</span>` : ''}
      <span class="spacer"></span>
      ${canResume ? html`<button type="button" class="btn primary" id="resume-run">↻ Resume</button>` : ''}
    </div>
    <section class="card">
      <dl class="facts">
        <div><dt>trigger</dt><dd>${r.trigger}</dd></div>
        <div><dt>selection</dt><dd>${r.selection ? html`<code>${r.selection}</code>` : html`<span class="muted">everything</span>`}</dd></div>
        <div><dt>started</dt><dd>${fmtTs(r.started_at)}</dd></div>
        <div><dt>ended</dt><dd>${r.ended_at ? fmtTs(r.ended_at) : html`<span class="muted">–</span>`}</dd></div>
        <div><dt>duration</dt><dd>${end ? fmtDur(durationMs(r.started_at, end)) : html`<span class="muted">–</span>`}</dd></div>
        <div><dt>tasks</dt><dd>${fmtNum(tasks.length)}${Object.keys(counts).length ? html` <span class="muted small">(${Object.entries(counts).map(([k, v]) => `${v} ${k}`).join(', ')})</span>` : ''}</dd></div>
        ${r.interval && r.interval.length ? html`<div class="span2"><dt>interval</dt><dd>${fmtTs(r.interval[0])} → ${fmtTs(r.interval[1])}</dd></div>` : ''}
        ${r.full_refresh ? html`<div><dt>full refresh</dt><dd>yes</dd></div>` : ''}
        ${r.resumed_from ? html`<div><dt>resumed from</dt><dd>${runLink(r.resumed_from)}</dd></div>` : ''}
      </dl>
    </section>
    <section class="card">
      <h2>Timeline</h2>
      <div id="gantt" class="chart"></div>
    </section>
    <section class="card">
      <h2>Tasks</h2>
      ${tasks.length ? html`<table class="data tasks">
        <thead><tr><th>task</th><th>kind</th><th>status</th><th class="num">attempts</th><th class="num">rows read</th><th class="num">written</th><th class="num">quarantined</th><th class="num">dropped</th><th class="num">duration</th><th>error / message</th></tr></thead>
        <tbody>${tasks.map((t) => {
          const tend = t.ended_at || (t.status === 'running' ? new Date() : null);
          return html`<tr>
            <td>${t.model ? modelLink(t.model) : ''}${t.model && t.task !== t.model ? html` <span class="muted small">${t.task}</span>` : !t.model ? html`<span class="mono">${t.task}</span>` : ''}</td>
            <td>${t.kind}</td>
            <td>${badge(t.status)}</td>
            ${numCell(t.attempts)}${numCell(t.rows_read)}${numCell(t.rows_written)}
            <td class="num ${t.rows_quarantined ? 'warn-text' : ''}">${fmtNum(t.rows_quarantined ?? '')}</td>
            ${numCell(t.rows_dropped)}
            <td class="num">${t.started_at && tend ? fmtDur(durationMs(t.started_at, tend)) : ''}</td>
            <td class="errcell">${t.error ? html`<pre class="err">${t.error}</pre>` : t.message ? html`<span class="muted">${t.message}</span>` : ''}</td>
          </tr>`;
        })}</tbody></table>` : html`<p class="empty">No task has started yet.</p>`}
    </section>`;
  if (!mount(gen, content)) return;
  if (!first) window.scrollTo(0, y);
  drawGantt($('#gantt'), r);
  onResizeRedraw(() => drawGantt($('#gantt'), r));
  const resume = $('#resume-run');
  if (resume) {
    resume.addEventListener('click', async () => {
      resume.disabled = true;
      try {
        const started = await api(`/api/runs/${enc(r.run_id)}/resume`, { method: 'POST' });
        go(`#/runs/${enc(started.run_id)}`);
      } catch (e) {
        showError(e, 'Cannot resume the run');
        resume.disabled = false;
      }
    });
  }
}

/** Tick step (in the axis unit) giving about `target` ticks over `span`. */
function niceStep(span, target) {
  if (!(span > 0)) return 1;
  const raw0 = span / target;
  const mag = Math.pow(10, Math.floor(Math.log10(raw0)));
  const f = raw0 / mag;
  const nf = f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10;
  return nf * mag;
}

function niceTimeStep(spanMs, target) {
  const steps = [1, 2, 5, 10, 20, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000, 15000, 30000,
    60000, 120000, 300000, 600000, 900000, 1800000, 3600000, 7200000, 10800000, 21600000, 43200000, 86400000];
  const want = spanMs / target;
  for (const s of steps) if (s >= want) return s;
  return Math.ceil(want / 86400000) * 86400000;
}

function fmtTick(ms) {
  if (ms === 0) return '0';
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60000) return `${+(ms / 1000).toFixed(1)} s`;
  if (ms < 3600000) return `${+(ms / 60000).toFixed(1)} min`;
  return `${+(ms / 3600000).toFixed(1)} h`;
}

function drawGantt(el, r) {
  const tasks = r.tasks || [];
  if (!tasks.length) {
    el.innerHTML = toHtml(html`<p class="empty">No task yet.</p>`);
    return;
  }
  const now = Date.now();
  const runStart = parseTs(r.started_at);
  const spans = tasks.map((t) => {
    const s = parseTs(t.started_at);
    let e = parseTs(t.ended_at);
    if (s && !e && t.status === 'running') e = new Date(Math.max(now, s.getTime()));
    return { t, s, e };
  });
  const times = [];
  if (runStart) times.push(runStart.getTime());
  for (const x of spans) { if (x.s) times.push(x.s.getTime()); if (x.e) times.push(x.e.getTime()); }
  const runEnd = parseTs(r.ended_at);
  if (runEnd) times.push(runEnd.getTime());
  if (r.status === 'running') times.push(now);
  const t0 = Math.min(...times);
  let t1 = Math.max(...times);
  if (!(t1 > t0)) t1 = t0 + 1000;
  const W = Math.max(el.clientWidth || 1100, 600);
  const labelW = Math.min(260, Math.max(140, Math.max(...tasks.map((t) => String(t.task).length)) * 7.4 + 24));
  const rightPad = 80;
  const rowH = 28;
  const axisH = 30;
  const H = axisH + tasks.length * rowH + 8;
  const plotW = W - labelW - rightPad;
  const span = t1 - t0;
  const x = (ms) => labelW + ((ms - t0) / span) * plotW;
  const step = niceTimeStep(span, Math.max(3, Math.floor(plotW / 110)));
  const ticks = [];
  for (let v = 0; v <= span + 1e-9; v += step) ticks.push(v);
  const parts = [];
  // zebra rows and grid
  tasks.forEach((_, i) => {
    if (i % 2 === 1) parts.push(html`<rect x="0" y="${axisH + i * rowH}" width="${W}" height="${rowH}" class="g-zebra"></rect>`);
  });
  for (const v of ticks) {
    const xx = x(t0 + v);
    parts.push(html`<line x1="${xx}" x2="${xx}" y1="${axisH - 4}" y2="${H - 8}" class="g-grid"></line>`);
    parts.push(html`<text x="${xx}" y="${axisH - 10}" class="g-tick" text-anchor="middle">${fmtTick(v)}</text>`);
  }
  parts.push(html`<line x1="${labelW}" x2="${labelW + plotW}" y1="${axisH - 4}" y2="${axisH - 4}" class="g-axis"></line>`);
  spans.forEach(({ t, s, e }, i) => {
    const y = axisH + i * rowH;
    parts.push(html`<text x="${labelW - 10}" y="${y + rowH / 2 + 4}" text-anchor="end" class="g-label">${t.task}</text>`);
    if (s && e) {
      const x1 = x(s.getTime()), x2 = Math.max(x(e.getTime()), x1 + 3);
      const d = e - s;
      const tip = `${t.task}: ${t.status}\n${fmtTs(t.started_at)} → ${t.ended_at ? fmtTs(t.ended_at) : 'now'}\n${fmtDur(d)}`;
      const href = `#/models/${enc(t.model || t.task)}`;
      parts.push(html`<a href="${href}"><rect x="${x1}" y="${y + 6}" width="${x2 - x1}" height="${rowH - 12}" rx="3"
        fill="${statusColor(t.status)}" class="g-bar ${t.status === 'running' ? 'g-running' : ''}"><title>${tip}</title></rect></a>`);
      parts.push(html`<text x="${x2 + 6}" y="${y + rowH / 2 + 4}" class="g-dur">${fmtDur(d)}</text>`);
    } else if (s) {
      // Started, never ended (e.g. interrupted): a dot at its start.
      const x1 = x(s.getTime());
      const left = x1 > labelW + plotW * 0.6;
      parts.push(html`<circle cx="${x1}" cy="${y + rowH / 2}" r="5" fill="${statusColor(t.status)}"><title>${t.task}: ${t.status}, started ${fmtTs(t.started_at)}, no end time</title></circle>`);
      parts.push(html`<text x="${left ? x1 - 10 : x1 + 10}" y="${y + rowH / 2 + 4}" text-anchor="${left ? 'end' : 'start'}" class="g-note" fill="${statusColor(t.status)}">${t.status} · started, no end time</text>`);
    } else {
      parts.push(html`<text x="${labelW + 6}" y="${y + rowH / 2 + 4}" class="g-note" fill="${statusColor(t.status)}">${t.status} · not started</text>`);
    }
  });
  if (r.status === 'running') {
    const xn = x(now);
    parts.push(html`<line x1="${xn}" x2="${xn}" y1="${axisH - 4}" y2="${H - 8}" class="g-now"></line>`);
  }
  el.innerHTML = toHtml(html`<svg class="gantt" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="task timeline">${parts}</svg>
    <div class="muted small axis-caption">time since ${fmtTs(new Date(t0))}</div>`);
}

// ---------------------------------------------------------------------------
// Model page

async function pageModel(gen, name) {
  const m = await api(`/api/models/${enc(name)}`);
  const f = m.freshness;
  const history = m.history || [];
  const checks = m.checks || [];
  const checkHistory = m.check_history || [];
  const versions = m.versions || [];
  const columns = m.columns || [];
  const latest = history.length ? history[history.length - 1] : null;
  const info = (label, value, wide) => html`<div class="${wide ? 'wide' : ''}"><dt>${label}</dt><dd>${value === null || value === undefined || value === '' ? html`<span class="muted">–</span>` : value}</dd></div>`;
  const links = (arr) => (arr && arr.length ? html`${arr.map((n) => html`<li>${modelLink(n)}</li>`)}` : html`<li class="muted">none</li>`);
  if (!mount(gen, html`
    <div class="page-head">
      <span class="layer layer-${LAYER_ORDER.includes(m.layer) ? m.layer : 'other'}">${m.layer}</span>
      <h1 id="model-name" class="mono">${m.name}</h1>
      ${latest ? badge(latest.status) : badge(null)}
      <span class="spacer"></span>
      <a class="btn" href="#/explore/${enc(m.name)}">Explore data →</a>
    </div>
    ${m.description ? html`<p class="lead">${m.description}</p>` : ''}
    <div class="grid-model">
      <section class="card">
        <h2>About</h2>
        <dl class="facts two">
          ${info('layer', m.layer)}
          ${info('kind', m.kind)}
          ${info('owner', m.owner)}
          ${info('partitioning', m.partitioning)}
          ${info('Delta version', m.version === null || m.version === undefined ? null : fmtNum(m.version))}
          ${info('last built', m.last_built ? fmtTs(m.last_built) : null)}
          ${info('defined in', m.defined_in ? html`<code>${m.defined_in}</code>` : null, true)}
          ${info('tags', m.tags && m.tags.length ? m.tags.map((t) => html`<span class="chip">${t}</span>`) : null)}
          ${info('products', m.products && m.products.length ? m.products.map((p) => html`<a class="chip chip-link" href="#/products/${enc(p)}">${p}</a>`) : null)}
        </dl>
      </section>
      <section class="card">
        <h2>Lineage</h2>
        <div class="updown">
          <div><h3>← upstream <span class="count">${(m.upstream || []).length}</span></h3><ul class="links">${links(m.upstream)}</ul></div>
          <div><h3>downstream → <span class="count">${(m.downstream || []).length}</span></h3><ul class="links">${links(m.downstream)}</ul></div>
        </div>
        <p class="small"><a href="#/lineage">Show in the lineage graph</a></p>
      </section>
      <section class="card">
        <h2>Freshness</h2>
        ${f ? html`<dl class="facts">
          ${info('loaded at', f.loaded_at ? fmtTs(f.loaded_at) : null)}
          ${info('data time', f.data_time ? fmtTs(f.data_time) : null)}
          ${info('lag', f.lag_seconds === null || f.lag_seconds === undefined ? null : fmtDur(f.lag_seconds * 1000))}
          ${info('SLA', f.sla_seconds ? html`${fmtDur(f.sla_seconds * 1000)}${f.sla_from ? html` <span class="muted small">(${f.sla_from})</span>` : ''}` : null)}
          ${info('status', f.stale ? html`<span class="badge st-stale">stale</span>` : f.sla_seconds ? html`<span class="badge st-fresh">fresh</span>` : html`<span class="muted">no SLA</span>`)}
        </dl>` : html`<p class="empty">No freshness information.</p>`}
      </section>
    </div>
    <div class="grid2">
      <section class="card"><h2>Rows per run</h2><div id="chart-rows" class="chart"></div></section>
      <section class="card"><h2>Duration per run</h2><div id="chart-duration" class="chart"></div></section>
    </div>
    <div class="grid2">
      <section class="card">
        <h2>Schema <span class="count">${columns.length}</span></h2>
        ${columns.length ? html`<table class="data"><thead><tr><th>column</th><th>type</th><th>nullable</th><th>description</th><th>derived from</th></tr></thead>
          <tbody>${columns.map((c) => html`<tr><td class="mono">${c.name}</td><td><code class="type">${c.ty}</code></td>
            <td>${c.nullable === false ? 'not null' : c.nullable === true ? html`<span class="muted">nullable</span>` : ''}</td>
            <td>${c.description || ''}</td>
            <td class="mono">${(c.derived_from || []).map((d) => html`<div>${d}</div>`)}</td></tr>`)}</tbody></table>` : html`<p class="empty">No columns known yet.</p>`}
      </section>
      <section class="card">
        <h2>Checks <span class="count">${checks.length}</span></h2>
        ${checks.length ? html`<table class="data"><thead><tr><th>check</th><th>on failure</th><th>last status</th><th class="num">failing rows</th><th>last checked</th></tr></thead>
          <tbody>${checks.map((c) => html`<tr><td class="mono">${c.name}</td><td>${c.on_failure}</td>
            <td>${c.last_status ? badge(c.last_status) : html`<span class="muted">never run</span>`}</td>
            ${numCell(c.last_failing)}<td class="ts">${c.last_checked ? fmtTs(c.last_checked) : ''}</td></tr>`)}</tbody></table>` : html`<p class="empty">No checks declared.</p>`}
      </section>
    </div>
    <section class="card">
      <h2>SQL</h2>
      ${m.sql ? html`<pre class="sql"><code>${m.sql}</code></pre>` : html`<p class="empty">No SQL: ${m.kind === 'source' ? 'a source table, loaded by ingest.' : 'not a SQL model.'}</p>`}
    </section>
    <section class="card">
      <h2>Check history <span class="count">${checkHistory.length}</span></h2>
      ${checkHistory.length ? html`<div class="scroll"><table class="data"><thead><tr><th>checked at</th><th>check</th><th>kind</th><th>severity</th><th>status</th><th class="num">failing rows</th><th>action</th><th>run</th><th>sample</th></tr></thead>
        <tbody>${checkHistory.map((c) => html`<tr><td class="ts">${fmtTs(c.checked_at)}</td><td class="mono">${c.check_name}</td><td>${c.kind}</td><td>${c.severity}</td>
          <td>${badge(c.status)}</td>${numCell(c.failing_rows)}<td>${c.action || ''}</td><td>${c.run_id ? runLink(c.run_id) : ''}</td>
          <td>${c.sample && c.sample !== '[]' ? html`<code class="sample" title="${c.sample}">${c.sample}</code>` : ''}</td></tr>`)}</tbody></table></div>` : html`<p class="empty">No check results yet.</p>`}
    </section>
    <section class="card">
      <h2>Delta versions <span class="count">${versions.length}</span></h2>
      ${versions.length ? html`<div class="scroll"><table class="data"><thead><tr><th class="num">version</th><th>timestamp</th><th>operation</th><th>run</th></tr></thead>
        <tbody>${versions.map((v) => html`<tr>${numCell(v.version)}<td class="ts">${v.timestamp ? fmtTs(v.timestamp) : ''}</td><td>${v.operation || ''}</td>
          <td>${v.run_id ? runLink(v.run_id) : ''}</td></tr>`)}</tbody></table></div>` : html`<p class="empty">No Delta versions yet.</p>`}
    </section>`)) return;
  drawModelCharts(history);
  onResizeRedraw(() => drawModelCharts(history));
}

function drawModelCharts(history) {
  const runs = history.filter((t) => t.status !== 'pending');
  const rowsEl = $('#chart-rows');
  const durEl = $('#chart-duration');
  if (!runs.length) {
    rowsEl.innerHTML = durEl.innerHTML = toHtml(html`<p class="empty">Never built.</p>`);
    return;
  }
  const label = (t) => fmtShortTs(t.started_at || t.ended_at) || fmtShortTs(runIdTime(t.run_id)) || '–';
  const hasTableRows = runs.some((t) => t.table_rows !== null && t.table_rows !== undefined);
  rowsEl.innerHTML = toHtml(barChart({
    width: rowsEl.clientWidth,
    bars: runs.map((t) => ({
      label: label(t), value: t.rows_written || 0, color: t.status === 'success' ? '#4c8bd6' : statusColor(t.status),
      href: t.run_id ? `#/runs/${enc(t.run_id)}` : null,
      title: `run ${t.run_id}\n${t.status}\nrows written: ${fmtNum(t.rows_written || 0)}${t.table_rows !== null && t.table_rows !== undefined ? `\ntable rows: ${fmtNum(t.table_rows)}` : ''}`,
    })),
    barLabel: 'rows written',
    line: hasTableRows ? { label: 'table rows (right axis)', values: runs.map((t) => (t.table_rows === null || t.table_rows === undefined ? null : t.table_rows)) } : null,
    fmtY: (v) => fmtNum(v),
  }));
  durEl.innerHTML = toHtml(barChart({
    width: durEl.clientWidth,
    bars: runs.map((t) => {
      const d = durationMs(t.started_at, t.ended_at);
      return {
        label: label(t), value: d === null ? 0 : d / 1000, color: statusColor(t.status),
        href: t.run_id ? `#/runs/${enc(t.run_id)}` : null,
        title: `run ${t.run_id}\n${t.status}\nduration: ${d === null ? 'unknown' : fmtDur(d)}`,
      };
    }),
    barLabel: 'seconds (colour: task status)',
    fmtY: (v) => `${fmtNum(v)} s`,
  }));
}

/** The start time encoded in a run id such as 20260101T020000Z-1a2b3c, if any. */
function runIdTime(id) {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z/.exec(String(id || ''));
  return m ? `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}Z` : null;
}

function niceMax(max) {
  if (!(max > 0)) return { max: 1, step: 0.25 };
  const step = niceStep(max, 4);
  return { max: Math.ceil(max / step - 1e-9) * step || step, step };
}

/** A vertical bar chart with an optional line on a right axis. */
function barChart({ width, bars, barLabel, line, fmtY, height = 230 }) {
  const W = Math.max(width || 500, 320);
  const H = height;
  const m = { l: 62, r: line ? 62 : 16, t: 14, b: 44 };
  const pw = W - m.l - m.r, ph = H - m.t - m.b;
  const yMax = niceMax(Math.max(0, ...bars.map((b) => b.value)));
  const y = (v) => m.t + ph - (v / yMax.max) * ph;
  const n = bars.length;
  const slot = pw / n;
  const bw = Math.max(2, Math.min(46, slot * 0.7));
  const parts = [];
  for (let v = 0; v <= yMax.max + 1e-9; v += yMax.step) {
    parts.push(html`<line x1="${m.l}" x2="${m.l + pw}" y1="${y(v)}" y2="${y(v)}" class="c-grid"></line>`);
    parts.push(html`<text x="${m.l - 8}" y="${y(v) + 4}" text-anchor="end" class="c-tick">${fmtY(v)}</text>`);
  }
  const labelEvery = Math.max(1, Math.ceil(n / Math.max(1, Math.floor(pw / 80))));
  bars.forEach((b, i) => {
    const cx = m.l + slot * (i + 0.5);
    const h = Math.max(b.value > 0 ? 1 : 0, m.t + ph - y(b.value));
    const rect = html`<rect x="${cx - bw / 2}" y="${m.t + ph - h}" width="${bw}" height="${h}" rx="2" fill="${b.color}" class="c-bar"><title>${b.title || `${b.label}: ${fmtY(b.value)}`}</title></rect>`;
    parts.push(b.href ? html`<a href="${b.href}">${rect}</a>` : rect);
    if (!(b.value > 0)) {
      // A run without a value (not run, or nothing written): a small mark at the base.
      const mark = html`<rect x="${cx - bw / 2}" y="${m.t + ph - 3}" width="${bw}" height="3" fill="${b.color}" opacity="0.8"><title>${b.title || b.label}</title></rect>`;
      parts.push(b.href ? html`<a href="${b.href}">${mark}</a>` : mark);
    }
    if (i % labelEvery === 0 || i === n - 1 && n <= 3) {
      parts.push(html`<text x="${cx}" y="${m.t + ph + 16}" text-anchor="middle" class="c-tick">${b.label}</text>`);
    }
  });
  parts.push(html`<line x1="${m.l}" x2="${m.l + pw}" y1="${m.t + ph}" y2="${m.t + ph}" class="c-axis"></line>`);
  parts.push(html`<line x1="${m.l}" x2="${m.l}" y1="${m.t}" y2="${m.t + ph}" class="c-axis"></line>`);
  const legend = [html`<span class="legend-item"><span class="swatch" style="background:${bars.length ? bars[bars.length - 1].color : '#4c8bd6'}"></span>${barLabel}</span>`];
  if (line) {
    const vals = line.values.filter((v) => v !== null);
    const lMax = niceMax(Math.max(0, ...vals));
    const ly = (v) => m.t + ph - (v / lMax.max) * ph;
    for (let v = 0; v <= lMax.max + 1e-9; v += lMax.step) {
      parts.push(html`<text x="${m.l + pw + 8}" y="${ly(v) + 4}" class="c-tick c-tick-line">${fmtNum(v)}</text>`);
    }
    const pts = [];
    line.values.forEach((v, i) => { if (v !== null) pts.push([m.l + slot * (i + 0.5), ly(v)]); });
    if (pts.length > 1) parts.push(html`<polyline points="${pts.map((p) => p.join(',')).join(' ')}" class="c-line"></polyline>`);
    pts.forEach(([px, py]) => parts.push(html`<circle cx="${px}" cy="${py}" r="3" class="c-dot"></circle>`));
    parts.push(html`<line x1="${m.l + pw}" x2="${m.l + pw}" y1="${m.t}" y2="${m.t + ph}" class="c-axis"></line>`);
    legend.push(html`<span class="legend-item"><span class="swatch line-swatch"></span>${line.label}</span>`);
  }
  parts.push(html`<text x="${m.l + pw / 2}" y="${H - 6}" text-anchor="middle" class="c-caption">run start (oldest → newest)</text>`);
  return html`<svg width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" class="barchart" role="img">${parts}</svg>
    <div class="legend small">${legend}</div>`;
}

// ---------------------------------------------------------------------------
// Products

async function pageProducts(gen, focus) {
  const products = await api('/api/products');
  if (!mount(gen, html`
    <div class="page-head"><h1>Data products</h1><span class="muted small">${fmtNum(products.length)} products</span></div>
    ${products.length ? html`<section class="products">${products.map((p) => html`
      <article class="card product ${focus === p.name ? 'focus' : ''}" id="product-${p.name}">
        <header class="product-head">
          <h2>${p.name}</h2>
          ${p.fresh === true ? html`<span class="badge st-fresh">fresh</span>` : p.fresh === false ? html`<span class="badge st-failed">not fresh</span>` : html`<span class="badge st-never">no SLA</span>`}
        </header>
        ${p.description ? html`<p>${p.description}</p>` : html`<p class="muted">No description.</p>`}
        <dl class="facts">
          <div><dt>owner</dt><dd>${p.owner || html`<span class="muted">–</span>`}</dd></div>
          <div><dt>SLA</dt><dd>${p.freshness ? html`fresh within <b>${p.freshness}</b>` : html`<span class="muted">none</span>`}</dd></div>
          <div><dt>consumers</dt><dd>${p.consumers && p.consumers.length ? p.consumers.map((c) => html`<span class="chip">${c}</span>`) : html`<span class="muted">–</span>`}</dd></div>
          <div><dt>access</dt><dd>${p.access && p.access.length ? p.access.map((c) => html`<span class="chip chip-access">${c}</span>`) : html`<span class="muted">–</span>`}</dd></div>
          <div><dt>tables</dt><dd>${p.models && p.models.length ? p.models.map((t) => html`<span class="tbl-link">${modelLink(t)} <a class="small" href="#/explore/${enc(t)}">explore</a></span>`) : html`<span class="muted">–</span>`}</dd></div>
        </dl>
      </article>`)}</section>` : html`<section class="card"><p class="empty">No data products are declared. Declare one with <code>[products.NAME]</code> in strata.toml.</p></section>`}`)) return;
  if (focus) {
    const el = document.getElementById(`product-${focus}`);
    if (el) el.scrollIntoView({ block: 'center' });
  }
}

// ---------------------------------------------------------------------------
// Explorer

const explore = { table: null, where: '', orderBy: '', offset: 0, limit: 50, by: '', metric: 'count(*)', sliceWhere: '' };

async function pageExplore(gen, name) {
  if (!state.models) state.models = await api('/api/models');
  const models = state.models;
  if (!alive(gen)) return;
  if (name && explore.table !== name) {
    Object.assign(explore, { table: name, where: '', orderBy: '', offset: 0, by: '', metric: 'count(*)', sliceWhere: '' });
  }
  const known = models.some((x) => x.name === name);
  mount(gen, html`
    <div class="page-head">
      <h1>Explorer</h1>
      <label class="inline-label" for="table-select">table</label>
      <select id="table-select">
        <option value="" ${name ? '' : 'selected'} disabled>choose a table…</option>
        ${models.map((x) => html`<option value="${x.name}" ${x.name === name ? 'selected' : ''}>${x.name}</option>`)}
        ${name && !known ? html`<option value="${name}" selected>${name}</option>` : ''}
      </select>
      ${name ? html`<a class="small" href="#/models/${enc(name)}">model page →</a>` : ''}
    </div>
    ${name ? html`
    <section class="card">
      <h2>Preview</h2>
      <form class="toolbar" id="preview-form">
        <label>where <input id="f-where" type="text" placeholder="SQL condition, e.g. region = 'EU'" value="${explore.where}" size="40"></label>
        <label>order by <input id="f-order" type="text" placeholder="column [desc]" value="${explore.orderBy}" size="18"></label>
        <button type="submit" class="btn primary">Apply</button>
        <span class="spacer"></span>
        <span id="page-info" class="muted small"></span>
        <button type="button" class="btn" id="prev-page">‹ Prev</button>
        <button type="button" class="btn" id="next-page">Next ›</button>
      </form>
      <div class="scroll-x" id="preview-wrap"><p class="muted loading">Loading…</p></div>
    </section>
    <section class="card">
      <h2>Slice and dice</h2>
      <form class="toolbar" id="slice-form">
        <label>by <input id="s-by" type="text" placeholder="columns, comma-separated" value="${explore.by}" size="24" required></label>
        <label>metric <input id="s-metric" type="text" placeholder="count(*)" value="${explore.metric}" size="22"></label>
        <label>where <input id="s-where" type="text" placeholder="SQL condition (optional)" value="${explore.sliceWhere}" size="30"></label>
        <button type="submit" class="btn primary" id="slice-run">Slice</button>
      </form>
      <div class="grid-slice">
        <div id="slice-chart" class="chart"></div>
        <div id="slice-table" class="scroll"></div>
      </div>
    </section>` : html`<section class="card"><p class="empty">Pick a table to preview its rows and slice it.</p></section>`}`);
  $('#table-select').addEventListener('change', (e) => go(`#/explore/${enc(e.target.value)}`));
  if (!name) return;
  $('#preview-form').addEventListener('submit', (e) => {
    e.preventDefault();
    explore.where = $('#f-where').value.trim();
    explore.orderBy = $('#f-order').value.trim();
    explore.offset = 0;
    loadPreview(gen, name);
  });
  $('#prev-page').addEventListener('click', () => {
    explore.offset = Math.max(0, explore.offset - explore.limit);
    loadPreview(gen, name);
  });
  $('#next-page').addEventListener('click', () => {
    explore.offset += explore.limit;
    loadPreview(gen, name);
  });
  $('#slice-form').addEventListener('submit', (e) => {
    e.preventDefault();
    explore.by = $('#s-by').value.trim();
    explore.metric = $('#s-metric').value.trim() || 'count(*)';
    explore.sliceWhere = $('#s-where').value.trim();
    loadSlice(gen, name);
  });
  loadPreview(gen, name);
  if (explore.by) loadSlice(gen, name);
  else $('#slice-chart').innerHTML = toHtml(html`<p class="empty">Choose columns to slice by, e.g. <code>${suggestBy(models.find((x) => x.name === name))}</code>.</p>`);
}

function suggestBy(model) {
  const cols = (model && model.columns) || [];
  const c = cols.find((x) => /string|text|varchar|utf8|date|bool/i.test(x.ty || '') && !x.name.startsWith('_')) || cols[0];
  return c ? c.name : 'column';
}

const isNumericType = (ty) => /int|decimal|numeric|float|double|real/i.test(ty || '');
const decimalScale = (ty) => {
  const m = /decimal\s*\(\s*\d+\s*,\s*(\d+)\s*\)/i.exec(ty || '');
  return m ? Math.min(+m[1], 20) : null;
};
const fmtCache = new Map();
function fmtScaled(v, scale) {
  if (!fmtCache.has(scale)) fmtCache.set(scale, new Intl.NumberFormat('en-US', { minimumFractionDigits: scale, maximumFractionDigits: scale }));
  return fmtCache.get(scale).format(Number(v));
}
const isIdColumn = (name) => /(^id$|_id$|Id$)/.test(name || '');

function cell(v, col) {
  if (v === null || v === undefined) return html`<td class="null">null</td>`;
  if (typeof v === 'number') {
    const scale = decimalScale(col && col.type);
    return html`<td class="num">${isIdColumn(col && col.name) ? String(v) : scale !== null ? fmtScaled(v, scale) : fmtNum(v, 6)}</td>`;
  }
  if (typeof v === 'boolean') return html`<td>${String(v)}</td>`;
  if (typeof v === 'object') return html`<td class="mono small">${JSON.stringify(v)}</td>`;
  if (col && isNumericType(col.type) && /^-?\d+(\.\d+)?$/.test(v)) {
    const scale = decimalScale(col.type);
    return html`<td class="num">${isIdColumn(col.name) ? v : scale !== null ? fmtScaled(v, scale) : fmtNum(v, 6)}</td>`;
  }
  return html`<td>${v}</td>`;
}

function rowsTable(data, id) {
  const cols = data.columns || [];
  const rows = data.rows || [];
  const numeric = cols.map((c, i) => isNumericType(c.type) || rows.some((r) => typeof r[i] === 'number'));
  return html`<table class="data" ${id ? raw(`id="${esc(id)}"`) : ''}>
    <thead><tr>${cols.map((c, i) => html`<th class="${numeric[i] ? 'num' : ''}">${c.name}<span class="coltype">${c.type}</span></th>`)}</tr></thead>
    <tbody>${rows.map((r) => html`<tr>${cols.map((c, i) => cell(r[i], c))}</tr>`)}</tbody>
  </table>`;
}

async function loadPreview(gen, name) {
  const wrap = $('#preview-wrap');
  const params = new URLSearchParams({ limit: String(explore.limit), offset: String(explore.offset) });
  if (explore.where) params.set('where', explore.where);
  if (explore.orderBy) params.set('order_by', explore.orderBy);
  wrap.classList.add('busy');
  let page;
  try {
    page = await api(`/api/tables/${enc(name)}/rows?${params}`);
  } catch (e) {
    if (!alive(gen)) return;
    wrap.classList.remove('busy');
    showError(e, 'Cannot load rows');
    wrap.innerHTML = toHtml(html`<p class="error-text">${e.message}</p>`);
    return;
  }
  if (!alive(gen)) return;
  wrap.classList.remove('busy');
  const total = page.total ?? 0;
  const from = total ? page.offset + 1 : 0;
  const to = page.offset + (page.rows || []).length;
  $('#page-info').textContent = `rows ${fmtNum(from)}–${fmtNum(to)} of ${fmtNum(total)}`;
  $('#prev-page').disabled = page.offset <= 0;
  $('#next-page').disabled = to >= total;
  wrap.innerHTML = toHtml((page.rows || []).length ? rowsTable(page, 'preview')
    : html`<table class="data" id="preview"><tbody></tbody></table><p class="empty">No rows${explore.where ? ' match the filter' : ''}.</p>`);
}

async function loadSlice(gen, name) {
  const chart = $('#slice-chart');
  const tbl = $('#slice-table');
  const by = explore.by.split(',').map((s) => s.trim()).filter(Boolean);
  if (!by.length) {
    showError('Give at least one column to slice by.');
    return;
  }
  const params = new URLSearchParams({ by: by.join(',') });
  if (explore.metric) params.set('metric', explore.metric);
  if (explore.sliceWhere) params.set('where', explore.sliceWhere);
  chart.classList.add('busy');
  let data;
  try {
    data = await api(`/api/tables/${enc(name)}/slice?${params}`);
  } catch (e) {
    if (!alive(gen)) return;
    chart.classList.remove('busy');
    showError(e, 'Cannot slice');
    chart.innerHTML = toHtml(html`<p class="error-text">${e.message}</p>`);
    tbl.innerHTML = '';
    return;
  }
  if (!alive(gen)) return;
  chart.classList.remove('busy');
  const cols = data.columns || [];
  const rows = data.rows || [];
  // The slice key: the columns named in `by` (else the first by.length columns);
  // the metric: the first other column.
  const lower = by.map((b) => b.toLowerCase());
  let keyIdx = cols.map((c, i) => (lower.includes(String(c.name).toLowerCase()) ? i : -1)).filter((i) => i >= 0);
  if (keyIdx.length !== by.length) keyIdx = by.map((_, i) => i).filter((i) => i < cols.length);
  const metricIdx = cols.findIndex((_, i) => !keyIdx.includes(i));
  tbl.innerHTML = toHtml(rows.length ? rowsTable(data, 'slice-result') : html`<p class="empty">No rows.</p>`);
  if (metricIdx < 0 || !rows.length) {
    chart.innerHTML = toHtml(html`<p class="empty">Nothing to chart.</p>`);
    return;
  }
  const bars = rows.map((r) => ({
    label: keyIdx.map((i) => (r[i] === null || r[i] === undefined ? 'null' : typeof r[i] === 'object' ? JSON.stringify(r[i]) : String(r[i]))).join(' / '),
    value: Number(r[metricIdx]),
  }));
  const drawSlice = () => {
    chart.innerHTML = toHtml(hBarChart({ width: chart.clientWidth, bars, metric: cols[metricIdx].name, key: keyIdx.map((i) => cols[i].name).join(' / ') }));
  };
  drawSlice();
  onResizeRedraw(drawSlice);
}

/** A horizontal bar chart: one bar per slice. */
function hBarChart({ width, bars, metric, key }) {
  const MAX = 60;
  const shown = bars.slice(0, MAX);
  const W = Math.max(width || 500, 320);
  const maxLabel = Math.max(...shown.map((b) => b.label.length), key.length);
  const labelW = Math.min(Math.round(W * 0.38), Math.max(70, maxLabel * 7 + 16));
  const valueW = 96;
  const rowH = 24;
  const top = 30;
  const H = top + shown.length * rowH + 28;
  const pw = W - labelW - valueW;
  const vals = shown.map((b) => (Number.isFinite(b.value) ? b.value : 0));
  const minV = Math.min(0, ...vals), maxV = Math.max(0, ...vals);
  const span = maxV - minV || 1;
  const x = (v) => labelW + ((v - minV) / span) * pw;
  const parts = [];
  parts.push(html`<text x="${labelW - 8}" y="${top - 12}" text-anchor="end" class="c-caption">${key}</text>`);
  parts.push(html`<text x="${labelW}" y="${top - 12}" class="c-caption">${metric}</text>`);
  const step = niceStep(span, 4);
  for (let v = Math.ceil(minV / step) * step; v <= maxV + 1e-9; v += step) {
    const xx = x(v);
    parts.push(html`<line x1="${xx}" x2="${xx}" y1="${top - 4}" y2="${top + shown.length * rowH}" class="c-grid"></line>`);
    parts.push(html`<text x="${xx}" y="${top + shown.length * rowH + 16}" text-anchor="middle" class="c-tick">${fmtNum(v)}</text>`);
  }
  shown.forEach((b, i) => {
    const y = top + i * rowH;
    const v = Number.isFinite(b.value) ? b.value : 0;
    const x0 = x(0), x1 = x(v);
    const label = b.label.length > 48 ? `${b.label.slice(0, 47)}…` : b.label;
    parts.push(html`<text x="${labelW - 8}" y="${y + rowH / 2 + 4}" text-anchor="end" class="c-label">${label}<title>${b.label}</title></text>`);
    parts.push(html`<rect x="${Math.min(x0, x1)}" y="${y + 4}" width="${Math.max(1, Math.abs(x1 - x0))}" height="${rowH - 8}" rx="2" class="c-hbar"><title>${b.label}: ${fmtNum(b.value, 6)}</title></rect>`);
    parts.push(html`<text x="${Math.max(x0, x1) + 6}" y="${y + rowH / 2 + 4}" class="c-value">${Number.isFinite(b.value) ? fmtNum(b.value) : 'n/a'}</text>`);
  });
  parts.push(html`<line x1="${x(0)}" x2="${x(0)}" y1="${top - 4}" y2="${top + shown.length * rowH}" class="c-axis"></line>`);
  return html`<svg width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" class="hbarchart" role="img" aria-label="${metric} by ${key}">${parts}</svg>
    ${bars.length > MAX ? html`<p class="muted small">Showing the first ${MAX} of ${fmtNum(bars.length)} slices.</p>` : ''}`;
}

// ---------------------------------------------------------------------------

// Graphs and charts are drawn to their container's width: a page that draws
// some registers how to redraw them (from the data it has) when the width changes.
let redraw = null;
let redrawWidth = 0;
function onResizeRedraw(fn) {
  redraw = fn;
  redrawWidth = $('#app').clientWidth;
}
let resizeTimer = null;
window.addEventListener('resize', () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => {
    const w = $('#app').clientWidth;
    if (redraw && w !== redrawWidth) {
      redrawWidth = w;
      redraw();
    }
  }, 250);
});

start();
