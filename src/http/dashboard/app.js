// The spindle dashboard: plain JavaScript, no build step. Every /api call carries the token as a
// bearer header; the token lives in this tab's sessionStorage (or arrives once as #token=...).
// Everything from the server is written with textContent, never parsed as HTML.
'use strict';

const TOKEN_KEY = 'spindle.token';
const FINAL = ['succeeded', 'failed', 'timed_out', 'cancelled'];
const STATES = ['queued', 'running', ...FINAL];
const JOB_POLL_MS = 500;
const OVERVIEW_POLL_MS = 2000;
const TICK_MS = 1000;
const CHARTS_POLL_MS = 3000;
const PAGES = ['login', 'overview', 'jobs', 'job', 'limits', 'supervisors', 'charts', 'workflows', 'workflow'];
const WORKFLOW_FINAL = ['succeeded', 'failed', 'cancelled', 'compensation_failed'];

const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem(TOKEN_KEY);
let timer = null;
let stream = null;
/** The job page's id, for live progress from the event stream. */
let currentJob = null;
/** What the last cancel or retry on the job page did, kept to word its notice by the job's state now. */
let notice = null;
/** The job as the job page shows it now. */
let shownJob = null;
/** The supervisor's identity and uptime from its last snapshot, and when that came (Date.now()). */
let identity = null;

// ---- small helpers --------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null) continue;
    if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v);
  }
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(c == null ? '' : String(c)));
  return el;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function time(iso) {
  return iso ? new Date(iso).toLocaleString() : '-';
}

function pct(p) {
  return p == null ? '-' : `${Math.round(p * 10) / 10}%`;
}

function duration(ms) {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 3_600_000) return `${Math.floor(ms / 60_000)} min ${Math.floor((ms % 60_000) / 1000)} s`;
  return `${Math.floor(ms / 3_600_000)} h ${Math.floor((ms % 3_600_000) / 60_000)} min`;
}

/**
 * A duration that goes on growing between polls: `ms` as of now, advanced by the ticker (every
 * TICK_MS) from the page's own clock, so it never depends on the server's and the browser's agreeing.
 */
function ticking(ms) {
  return h('span', { dataset: { ticks: String(ms), from: String(Date.now()) } }, duration(ms));
}

function tick() {
  const now = Date.now();
  for (const el of document.querySelectorAll('[data-ticks]')) {
    el.textContent = duration(Number(el.dataset.ticks) + now - Number(el.dataset.from));
  }
  if (identity) {
    const s = identity.snapshot;
    $('who').textContent =
      `${s.supervisorId} · pid ${s.pid} · spindle ${s.versions.spindle} · up ${duration(s.uptimeMs + now - identity.at)}`;
  }
}

function stateBadge(state) {
  return h('span', { class: `state ${state}`, dataset: { state } }, state.replace('_', ' '));
}

/** The job's badge: a running job this supervisor holds but no thread has taken yet is not shown running. */
function jobBadge(job, inFlight) {
  if (job.state !== 'running' || !inFlight || inFlight.startedAt) return stateBadge(job.state);
  return h('span', { class: 'state waiting', dataset: { state: job.state, phase: 'waiting' } }, 'waiting for a thread');
}

/**
 * The attempt a job is on. A queued job has not begun its next attempt (the row counts the ones
 * begun), and its most attempts are unknown until its first claim reads them from its module.
 */
function attemptText(job, long) {
  const max = job.maxAttempts;
  if (job.state !== 'queued') return long ? `${job.attempt} of ${max ?? '-'}` : `${job.attempt}/${max ?? '-'}`;
  const next = job.attempt + 1;
  if (!long) return max == null ? String(next) : `${next}/${max}`;
  return `${next}${max == null ? '' : ` of ${max}`}, not started`;
}

function miniBar(p) {
  const bar = h('span', { class: 'mini' }, h('span'));
  bar.firstChild.style.width = `${Math.max(0, Math.min(100, p ?? 0))}%`;
  return h('span', {}, bar, pct(p));
}

/** Inline style attributes are refused by the page's CSP; the CSSOM is not. */
function indent(el, depth) {
  el.style.paddingLeft = `${0.6 + depth * 1.2}rem`;
  return el;
}

function showError(message) {
  const el = $('error');
  el.textContent = message || '';
  el.hidden = !message;
}

class Unauthorized extends Error {}

async function api(path, options = {}) {
  const headers = { authorization: `Bearer ${token}` };
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(path, {
    method: options.method ?? 'GET',
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
    cache: 'no-store',
  });
  const body = await res.json().catch(() => ({}));
  if (res.status === 401) throw new Unauthorized(body.error ?? 'unauthorized');
  if (!res.ok) throw new Error(body.error ?? `${res.status} ${res.statusText}`);
  return body;
}

// ---- routing --------------------------------------------------------------------

function route() {
  clearTimeout(timer);
  currentJob = null;
  currentWorkflow = null;
  notice = null;
  shownJob = null;
  showError('');
  for (const id of PAGES) $(id).hidden = true;
  if (!token) return showLogin();
  $('logout').hidden = false;
  connectEvents();
  if (!identity) api('/api/snapshot').then(remember, () => {});
  const hash = location.hash.replace(/^#/, '') || '/';
  const [path, query = ''] = hash.split('?');
  const parts = path.split('/').filter(Boolean);
  const section = parts[0] === 'workflow' ? 'workflows' : parts[0];
  for (const a of document.querySelectorAll('[data-nav]')) {
    a.classList.toggle('active', a.dataset.nav === (['jobs', 'limits', 'workflows', 'charts', 'supervisors'].includes(section) ? section : 'overview'));
  }
  if (parts[0] === 'limits') return showLimits();
  if (parts[0] === 'supervisors') return showSupervisors();
  if (parts[0] === 'charts') return showCharts(new URLSearchParams(query));
  if (parts[0] === 'workflows' && parts[1]) return showWorkflow(decodeURIComponent(parts[1]));
  if (parts[0] === 'workflows') return showWorkflows(new URLSearchParams(query));
  if (parts[0] === 'jobs' && parts[1]) return showJob(parts[1]);
  if (parts[0] === 'jobs') return showJobs(new URLSearchParams(query));
  return showOverview();
}

/** Runs `load` now and again every `ms` while the page stays the same; a 401 sends to the login. */
function every(ms, load) {
  const here = location.hash;
  const tick = async () => {
    try {
      const again = await load();
      showError('');
      if (again === false) return;
    } catch (error) {
      if (error instanceof Unauthorized) return forget(error.message);
      showError(String(error.message ?? error));
    }
    if (location.hash === here) timer = setTimeout(tick, ms);
  };
  tick();
}

function showLogin(message) {
  $('login').hidden = false;
  $('logout').hidden = true;
  $('login-error').textContent = message ?? '';
  $('token').focus();
}

function forget(message) {
  token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  stream?.abort();
  stream = null;
  clearTimeout(timer);
  for (const id of PAGES) $(id).hidden = true;
  showLogin(message);
}

// ---- overview -------------------------------------------------------------------

function showOverview() {
  $('overview').hidden = false;
  every(OVERVIEW_POLL_MS, async () => {
    const [{ queues }, snapshot] = await Promise.all([api('/api/queues'), api('/api/snapshot')]);
    renderQueues(queues);
    renderSnapshot(snapshot);
  });
}

function renderQueues(counts) {
  const byQueue = new Map();
  for (const c of counts) {
    if (!byQueue.has(c.queue)) byQueue.set(c.queue, {});
    byQueue.get(c.queue)[c.state] = c.count;
  }
  const table = $('queues');
  table.tHead.replaceChildren(h('tr', {}, h('th', {}, 'Queue'), ...STATES.map((s) => h('th', { class: 'num' }, s.replace('_', ' ')))));
  const rows = [...byQueue].map(([queue, by]) =>
    h(
      'tr',
      { dataset: { queue } },
      h('td', {}, queue),
      ...STATES.map((s) => {
        const link = h('a', { href: `#/jobs?queue=${encodeURIComponent(queue)}&state=${s}` }, String(by[s] ?? 0));
        return h('td', { class: 'num', dataset: { state: s } }, by[s] ? link : '0');
      }),
    ),
  );
  fill(table.tBodies[0], rows.length ? rows : [h('tr', {}, h('td', { colspan: 7, class: 'muted' }, 'No jobs yet.'))]);
}

/** Keeps the supervisor's identity and uptime, which the header shows on every page, ticking. */
function remember(snapshot) {
  identity = { snapshot, at: Date.now() };
  tick();
}

function renderSnapshot(s) {
  remember(s);
  const p = s.pool;
  const kv = [
    ['Threads', `${p.threads} of ${p.maxThreads}`],
    ['Busy / idle', `${p.busy} / ${p.idle}`],
    ['Waiting for a thread', p.queued],
    ['Utilisation (since start)', `${Math.round(p.utilisation * 1000) / 10}%`],
    ['Completed', p.completed],
    ['Run time p50 / p99', `${p.runTimeMs.p50} / ${p.runTimeMs.p99} ms`],
  ];
  $('pool').replaceChildren(...kv.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
  renderHeld(s.jobs);
  const rows = [];
  const walk = (a, depth) => {
    rows.push(
      h(
        'tr',
        { dataset: { actor: a.path } },
        indent(h('td', {}, a.name), depth),
        h('td', {}, h('span', { class: `state ${a.status === 'running' ? 'succeeded' : a.status === 'failed' ? 'failed' : ''}` }, a.status)),
        h('td', { class: 'num' }, a.mailbox),
        h('td', { class: 'num' }, a.processed),
        h('td', { class: 'num' }, a.restarts),
        h('td', { class: 'error' }, a.lastError ? `${a.lastError.message} (${time(a.lastError.at)})` : ''),
      ),
    );
    for (const c of a.children) walk(c, depth + 1);
  };
  walk(s.actors, 0);
  fill($('actors').tBodies[0], rows);
}

/** The jobs this supervisor holds: those a thread runs, and apart, those claimed that wait for one. */
function renderHeld(jobs) {
  const running = jobs.filter((j) => j.startedAt);
  const waiting = jobs.filter((j) => !j.startedAt);
  $('running-count').textContent = String(running.length);
  $('waiting-count').textContent = String(waiting.length);
  const link = (j) => h('td', {}, h('a', { href: `#/jobs/${j.id}` }, j.id));
  fill(
    $('inflight').tBodies[0],
    running.length
      ? running.map((j) =>
          h(
            'tr',
            { dataset: { job: j.id } },
            link(j),
            h('td', {}, j.type),
            h('td', { class: 'num' }, `${j.attempt}/${j.maxAttempts}`),
            h('td', { class: 'num', dataset: { thread: '' } }, j.thread ?? '-'),
            h('td', { class: 'num' }, ticking(j.elapsedMs)),
            h('td', {}, miniBar(j.progress), j.message ? ` ${j.message}` : ''),
          ),
        )
      : [h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'Nothing running on this supervisor.'))],
  );
  fill(
    $('waiting').tBodies[0],
    waiting.length
      ? waiting.map((j) =>
          h(
            'tr',
            { dataset: { job: j.id } },
            link(j),
            h('td', {}, j.type),
            h('td', { class: 'num' }, `${j.attempt}/${j.maxAttempts}`),
            h('td', { class: 'num' }, ticking(j.elapsedMs)),
          ),
        )
      : [h('tr', {}, h('td', { colspan: 4, class: 'muted' }, 'No job waits for a thread here.'))],
  );
}

// ---- jobs -----------------------------------------------------------------------

function showJobs(query) {
  $('jobs').hidden = false;
  // Rows of the last filter are not shown as this one's while it loads.
  fill($('job-list').tBodies[0], []);
  const form = $('filters');
  for (const name of ['state', 'type', 'queue', 'limit']) {
    if (query.has(name)) form.elements[name].value = query.get(name);
    else if (name !== 'limit') form.elements[name].value = '';
  }
  const params = new URLSearchParams();
  for (const name of ['state', 'type', 'queue', 'limit']) {
    const v = form.elements[name].value.trim();
    if (v) params.set(name, v);
  }
  every(OVERVIEW_POLL_MS, async () => {
    const { jobs } = await api(`/api/jobs?${params}`);
    $('jobs-empty').hidden = jobs.length > 0;
    fill(
      $('job-list').tBodies[0],
      jobs.map((j) =>
        h(
          'tr',
          { dataset: { job: j.id } },
          h('td', {}, h('a', { href: `#/jobs/${j.id}` }, j.id)),
          h('td', {}, j.type),
          h('td', {}, j.queue),
          h('td', {}, stateBadge(j.state), waitingNote(j)),
          h('td', {}, j.progress == null ? '' : miniBar(j.progress)),
          h('td', { class: 'num' }, attemptText(j, false)),
          h('td', {}, time(j.createdAt)),
        ),
      ),
    );
  });
}

/** Why flow control holds a queued job back (`waiting for a slot: type resize at 3/3`), or nothing. */
function waitingNote(job) {
  return job.waitingFor ? h('span', { class: 'waiting-for', dataset: { waiting: '' } }, job.waitingFor) : '';
}

// ---- flow control ---------------------------------------------------------------

function showLimits() {
  $('limits').hidden = false;
  $('limit-result').textContent = '';
  every(OVERVIEW_POLL_MS, loadLimits);
}

async function loadLimits() {
  const { limits } = await api('/api/limits');
  if (!$('limits').hidden) renderLimits(limits);
}

/** `at most 3 running; 20 per 1 s`, as `spindle limits` words them. */
function limitsText(l) {
  const rate = (r) => `${r.limit} per ${r.intervalMs % 60_000 === 0 ? `${r.intervalMs / 60_000} min` : r.intervalMs % 1000 === 0 ? `${r.intervalMs / 1000} s` : `${r.intervalMs} ms`}`;
  const parts = [];
  if (l.globalConcurrency != null) parts.push(`at most ${l.globalConcurrency} running`);
  if (l.keyConcurrency != null) parts.push(`${l.keyConcurrency} per key`);
  if (l.rateLimit) parts.push(rate(l.rateLimit));
  if (l.keyRateLimit) parts.push(`${rate(l.keyRateLimit)} per key`);
  if (l.fair) parts.push('fair by key');
  return parts.join('; ') || '-';
}

function renderLimits(rows) {
  fill(
    $('limit-list').tBodies[0],
    rows.length
      ? rows.map((r) => {
          const scope = `${r.kind}:${r.name}`;
          const setBy = Object.keys(r.operator).length ? (Object.keys(r.module).length ? 'operator over module' : 'operator') : 'module';
          const button = h('button', { type: 'button', class: `small${r.paused ? '' : ' danger'}`, dataset: { action: r.paused ? 'resume' : 'pause' } }, r.paused ? 'Resume' : 'Pause');
          button.addEventListener('click', () => pauseScope(r.kind, r.name, !r.paused));
          const jobs = `#/jobs?${r.kind}=${encodeURIComponent(r.name)}&state=queued`;
          return h(
            'tr',
            { dataset: { scope } },
            h('td', {}, scope),
            h('td', {}, limitsText(r.limits)),
            h('td', { class: 'muted' }, setBy),
            h('td', { class: 'num', dataset: { running: '' } }, r.limits.globalConcurrency == null ? r.running : `${r.running}/${r.limits.globalConcurrency}`),
            h('td', { class: 'num', dataset: { waiting: '' } }, r.waiting ? h('a', { href: jobs }, String(r.waiting)) : '0'),
            h('td', { class: 'num' }, r.recentStarts == null ? '-' : `${r.recentStarts}/${r.limits.rateLimit?.limit ?? '-'}`),
            h('td', {}, h('span', { class: `state ${r.paused ? 'cancelled' : 'running'}`, dataset: { paused: String(r.paused) } }, r.paused ? 'paused' : 'claiming')),
            h('td', {}, button),
          );
        })
      : [h('tr', {}, h('td', { colspan: 8, class: 'muted' }, 'No type or queue has limits or a pause.'))],
  );
}

/** Pauses or resumes a type or queue for every supervisor, then shows the scopes as they are now. */
async function pauseScope(kind, name, paused) {
  const scope = `${kind} ${name}`;
  try {
    const body = await api(`/api/limits/${kind}/${encodeURIComponent(name)}/${paused ? 'pause' : 'resume'}`, { method: 'POST', body: {} });
    $('limit-result').textContent = body.changed ? `${scope} ${paused ? 'paused' : 'resumed'}` : `${scope} was ${paused ? 'paused' : 'not paused'} already`;
    await loadLimits();
  } catch (error) {
    if (error instanceof Unauthorized) return forget(error.message);
    $('limit-result').textContent = String(error.message ?? error);
  }
}

// ---- supervisors ----------------------------------------------------------------

function showSupervisors() {
  $('supervisors').hidden = false;
  every(OVERVIEW_POLL_MS, async () => {
    const { supervisors } = await api('/api/supervisors');
    if (!$('supervisors').hidden) renderSupervisors(supervisors);
  });
}

/** Every registered supervisor; the live ones first, the leader on top, as the database sees them. */
function renderSupervisors(rows) {
  const sorted = [...rows].sort((a, b) => Number(b.leader) - Number(a.leader) || Number(b.live) - Number(a.live));
  fill(
    $('supervisor-list').tBodies[0],
    sorted.length
      ? sorted.map((s) => {
          const role = s.leader ? h('span', { class: 'pill leader' }, 'leader') : s.live ? h('span', { class: 'pill' }, 'member') : h('span', { class: 'pill dead' }, 'dead');
          return h(
            'tr',
            { dataset: { supervisor: s.id, leader: String(s.leader), live: String(s.live) } },
            h('td', {}, s.id),
            h('td', {}, role),
            h('td', {}, s.host),
            h('td', { class: 'num' }, s.pid),
            h('td', {}, s.version),
            h('td', {}, s.queues.length ? s.queues.join(', ') : 'every queue'),
            h('td', { class: 'wrap' }, s.types.join(', ')),
            h('td', { class: 'num' }, s.concurrency),
            h('td', { class: 'num', dataset: { running: '' } }, s.running),
            h('td', { class: 'num' }, ticking(s.upMs)),
            h('td', { class: 'num' }, h('span', {}, ticking(s.lastSeenMs), ' ago')),
          );
        })
      : [h('tr', {}, h('td', { colspan: 11, class: 'muted' }, 'No supervisor is registered.'))],
  );
}

// ---- charts ---------------------------------------------------------------------

const PALETTE = ['#1a7f37', '#c62828', '#b26a00', '#2458d6', '#8250df', '#667085', '#0a7e8c', '#bf3989'];
const OUTCOME_COLORS = { succeeded: '#1a7f37', failed: '#c62828', timed_out: '#b26a00', cancelled: '#8250df', crashed: '#bf3989', lost: '#667085', interrupted: '#0a7e8c' };
const STATE_COLORS = { queued: '#b26a00', running: '#2458d6', succeeded: '#1a7f37', failed: '#c62828', timed_out: '#bf3989', cancelled: '#8250df' };

function showCharts(query) {
  $('charts').hidden = false;
  const span = query.get('window') === '1h' ? '1h' : '15m';
  $('chart-window').elements.window.value = span;
  every(CHARTS_POLL_MS, async () => {
    const view = await api(`/api/charts?window=${span}`);
    if (!$('charts').hidden) renderCharts(view);
  });
}

function renderCharts({ bucketMs, now, points }) {
  // The last bucket is still filling: its rate is over the time it has been open (a second at least,
  // so its first job is not a spike).
  const seconds = (p) => Math.max(1000, Math.min(bucketMs, now - p.at)) / 1000;
  const outcomes = keysOf(points.map((p) => p.finished));
  $('chart-finished').dataset.total = String(points.reduce((n, p) => n + Object.values(p.finished).reduce((a, b) => a + b, 0), 0));
  lineChart($('chart-finished'), points, outcomes.map((o, i) => ({
    name: o.replace('_', ' '),
    color: OUTCOME_COLORS[o] ?? PALETTE[i % PALETTE.length],
    y: (p) => (p.finished[o] ?? 0) / seconds(p),
  })), { unit: '/s' });
  const sampled = points.filter((p) => p.depth);
  const states = keysOf(sampled.map((p) => p.depth));
  lineChart($('chart-depth'), sampled, states.map((s, i) => ({
    name: s.replace('_', ' '),
    color: STATE_COLORS[s] ?? PALETTE[i % PALETTE.length],
    y: (p) => p.depth[s] ?? 0,
  })), { from: points[0]?.at, to: points.at(-1)?.at });
  // The types with the most runs in the window, at most four, so the lines stay readable.
  const runs = new Map();
  for (const p of points) for (const [t, r] of Object.entries(p.runTimeMs)) runs.set(t, (runs.get(t) ?? 0) + r.count);
  const types = [...runs].sort((a, b) => b[1] - a[1]).slice(0, 4).map(([t]) => t);
  lineChart($('chart-runtime'), points, types.flatMap((t, i) => [
    { name: `${t} p50`, color: PALETTE[i + 3], y: (p) => p.runTimeMs[t]?.p50 ?? null },
    { name: `${t} p99`, color: PALETTE[i + 3], dashed: true, y: (p) => p.runTimeMs[t]?.p99 ?? null },
  ]), { unit: ' ms' });
}

function keysOf(records) {
  const keys = new Set();
  for (const r of records) for (const k of Object.keys(r)) keys.add(k);
  return [...keys].sort();
}

const SVG_NS = 'http://www.w3.org/2000/svg';
function svgEl(tag, attrs = {}, text) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

/**
 * Draws `series` over `points` (one x per bucket, by time) as polylines in `svg`, with the largest
 * value on the y axis, the window's ends on the x axis and a legend under it. A series' y of null is
 * a gap (no run of that type in that bucket).
 */
function lineChart(svg, points, series, { unit = '', from, to } = {}) {
  const width = Math.max(320, svg.clientWidth || 800);
  const height = 180;
  const pad = { left: 64, right: 8, top: 8, bottom: 20 };
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  const x0 = from ?? points[0]?.at ?? 0;
  const x1 = Math.max(x0 + 1, to ?? points.at(-1)?.at ?? 1);
  let max = 0;
  for (const se of series) for (const p of points) max = Math.max(max, se.y(p) ?? 0);
  const top = niceCeiling(max);
  const px = (at) => pad.left + ((at - x0) / (x1 - x0)) * (width - pad.left - pad.right);
  const py = (v) => height - pad.bottom - (v / top) * (height - pad.top - pad.bottom);
  const parts = [
    svgEl('line', { class: 'axis', x1: pad.left, y1: py(0), x2: width - pad.right, y2: py(0) }),
    svgEl('line', { class: 'axis', x1: pad.left, y1: pad.top, x2: pad.left, y2: py(0) }),
    svgEl('text', { x: pad.left - 4, y: pad.top + 8, 'text-anchor': 'end' }, `${round(top)}${unit}`),
    svgEl('text', { x: pad.left - 4, y: py(0), 'text-anchor': 'end' }, '0'),
    svgEl('text', { x: pad.left, y: height - 4 }, new Date(x0).toLocaleTimeString()),
    svgEl('text', { x: width - pad.right, y: height - 4, 'text-anchor': 'end' }, new Date(x1).toLocaleTimeString()),
  ];
  let drawn = 0;
  for (const se of series) {
    let d = '';
    let run = 0;
    for (const p of points) {
      const v = se.y(p);
      if (v == null) {
        // A point with no neighbour is drawn as a dot (a round cap on a tiny stroke).
        if (run === 1) d += 'h0.1 ';
        run = 0;
        continue;
      }
      d += `${run ? 'L' : 'M'}${px(p.at).toFixed(1)},${py(v).toFixed(1)} `;
      run++;
      drawn++;
    }
    if (run === 1) d += 'h0.1 ';
    if (d) parts.push(svgEl('path', { class: `series${se.dashed ? ' dashed' : ''}`, d: d.trim(), stroke: se.color, 'data-series': se.name }));
  }
  if (series.length === 0) parts.push(svgEl('text', { x: width / 2, y: height / 2, 'text-anchor': 'middle' }, 'nothing yet in this window'));
  svg.replaceChildren(...parts);
  svg.dataset.points = String(drawn);
  let legend = svg.nextElementSibling;
  if (!legend || !legend.classList.contains('legend')) {
    legend = h('div', { class: 'legend' });
    svg.after(legend);
  }
  legend.replaceChildren(
    ...series.map((se) => {
      const swatch = h('i');
      swatch.style.background = se.color;
      return h('span', {}, swatch, se.name);
    }),
  );
}

/** 1, 2 or 5 times a power of ten, at least `v` (and above 0). */
function niceCeiling(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 5, 10].map((m) => m * p).find((n) => n >= v) ?? 10 * p;
}

function round(v) {
  return v >= 10 ? String(Math.round(v)) : String(Math.round(v * 100) / 100);
}

// ---- workflows ------------------------------------------------------------------

/** The run page's id, so a reply that comes after the page moved on is not shown. */
let currentWorkflow = null;

function showWorkflows(query) {
  $('workflows').hidden = false;
  fill($('wf-list').tBodies[0], []);
  const form = $('wf-filters');
  for (const name of ['state', 'name', 'limit']) {
    if (query.has(name)) form.elements[name].value = query.get(name);
    else if (name !== 'limit') form.elements[name].value = '';
  }
  const params = new URLSearchParams();
  for (const name of ['state', 'name', 'limit']) {
    const v = form.elements[name].value.trim();
    if (v) params.set(name, v);
  }
  const first = new URLSearchParams(params);
  if (query.get('after')) params.set('after', query.get('after'));
  every(OVERVIEW_POLL_MS, async () => {
    const { workflows } = await api(`/api/workflows?${params}`);
    if ($('workflows').hidden) return;
    $('wf-empty').hidden = workflows.length > 0;
    fill(
      $('wf-list').tBodies[0],
      workflows.map((r) =>
        h(
          'tr',
          { dataset: { run: r.id } },
          h('td', {}, h('a', { href: `#/workflows/${encodeURIComponent(r.id)}` }, r.id)),
          h('td', {}, r.name),
          h('td', {}, stateBadge(r.state)),
          h('td', { class: 'num' }, r.stepCount),
          h('td', {}, time(r.createdAt)),
          h('td', {}, time(r.finishedAt)),
        ),
      ),
    );
    // Keyset pages: the next one starts after this page's last run; a short page is the last.
    const limit = Number(params.get('limit') ?? 50);
    const next = new URLSearchParams(first);
    if (workflows.length) next.set('after', workflows.at(-1).id);
    $('wf-next').href = `#/workflows?${next}`;
    $('wf-next').hidden = workflows.length < limit;
    $('wf-first').href = `#/workflows?${first}`;
    $('wf-first').hidden = !params.has('after');
  });
}

function showWorkflow(id) {
  $('workflow').hidden = false;
  // Another run's steps, jobs and events are not shown as this one's while it loads.
  for (const table of ['wf-compensation', 'wf-jobs', 'wf-events']) fill($(table).tBodies[0], []);
  $('wf-timeline').replaceChildren();
  $('wf-blocked').hidden = true;
  $('wf-state').replaceWith(Object.assign(h('span', { class: 'state' }), { id: 'wf-state' }));
  $('wf-id').textContent = id;
  $('wf-result').textContent = '';
  currentWorkflow = id;
  every(OVERVIEW_POLL_MS, () => loadWorkflow(id));
}

async function loadWorkflow(id) {
  const view = await api(`/api/workflows/${encodeURIComponent(id)}`);
  if (currentWorkflow === id && !$('workflow').hidden) renderWorkflow(view);
}

function renderWorkflow({ run, events, jobs }) {
  $('wf-state').replaceWith(Object.assign(stateBadge(run.state), { id: 'wf-state' }));
  $('wf-blocked').textContent = run.blockedReason ? `Blocked: ${run.blockedReason}` : '';
  $('wf-blocked').hidden = !run.blockedReason;
  const final = WORKFLOW_FINAL.includes(run.state);
  $('wf-cancel').disabled = final;
  for (const el of $('wf-event').elements) el.disabled = final;
  const waiting = run.waitingFor ? ('job' in run.waitingFor ? `job ${run.waitingFor.job}` : `event "${run.waitingFor.event}"`) : '-';
  const fields = [
    ['Workflow', run.name],
    ['Version', run.version ?? '-'],
    ['Waiting for', waiting],
    ['Wakes at', time(run.wakeAt)],
    ['Resumes', run.resumes],
    ['Created', time(run.createdAt)],
    ['Finished', time(run.finishedAt)],
  ];
  if (run.cancelRequestedAt) fields.push(['Cancel requested', `${time(run.cancelRequestedAt)}${run.cancelReason ? `: ${run.cancelReason}` : ''}`]);
  $('wf-fields').replaceChildren(...fields.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
  $('wf-input').textContent = JSON.stringify(run.input, null, 2);
  $('wf-output').textContent = run.error ? `${run.error.name ?? 'Error'}: ${run.error.message ?? ''}` : run.output === null ? '-' : JSON.stringify(run.output, null, 2);
  renderTimeline(run);
  renderCompensation(run);
  fill(
    $('wf-jobs').tBodies[0],
    jobs.length
      ? jobs.map((j) =>
          h('tr', { dataset: { job: j.id } }, h('td', { class: 'num' }, j.seq), h('td', {}, h('a', { href: `#/jobs/${j.id}` }, j.id)), h('td', {}, j.type), h('td', {}, stateBadge(j.state)), h('td', { class: 'num' }, j.attempt)),
        )
      : [h('tr', {}, h('td', { colspan: 5, class: 'muted' }, 'No step enqueued a job.'))],
  );
  fill(
    $('wf-events').tBodies[0],
    events.length
      ? events.map((e) =>
          h(
            'tr',
            { dataset: { event: e.name } },
            h('td', {}, e.name),
            h('td', {}, time(e.createdAt)),
            h('td', {}, e.consumedAt ? `${time(e.consumedAt)} (step ${e.consumedBySeq})` : 'in the inbox'),
            h('td', { class: 'wrap' }, h('code', {}, clip(JSON.stringify(e.payload), 200))),
          ),
        )
      : [h('tr', {}, h('td', { colspan: 4, class: 'muted' }, 'No event was sent to this run.'))],
  );
}

function clip(text, max) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/**
 * The steps as bars on one time axis, from the run's start to its end (or now): where each began
 * and how long it took. A step still waiting is drawn to now; one a finished run left waiting (the
 * wait a cancel ended) to the run's end.
 */
function renderTimeline(run) {
  const now = Date.now();
  const t0 = new Date(run.createdAt).getTime();
  const runEnd = run.finishedAt ? new Date(run.finishedAt).getTime() : null;
  const ends = run.steps.map((st) => (st.finishedAt ? new Date(st.finishedAt).getTime() : runEnd ?? now));
  const t1 = Math.max(t0 + 1, runEnd ?? now, ...ends);
  const head = ['Step', 'Kind', 'State', 'Took', ''].map((t) => h('span', { class: 'head' }, t));
  const rows = run.steps.flatMap((st, i) => {
    const start = new Date(st.startedAt).getTime();
    const bar = h('span', { class: st.state, title: `${st.name}: ${time(st.startedAt)} to ${st.finishedAt ? time(st.finishedAt) : 'now'}` });
    bar.style.left = `${((start - t0) / (t1 - t0)) * 100}%`;
    bar.style.width = `${((ends[i] - start) / (t1 - t0)) * 100}%`;
    return [
      h('span', { dataset: { step: st.name, seq: String(st.seq) } }, `${st.seq}. ${st.name}`),
      h('span', { class: 'muted' }, st.kind),
      h('span', {}, stateBadge(st.state)),
      h('span', { class: 'num' }, st.finishedAt ? duration(ends[i] - start) : runEnd ? `${duration(Math.max(0, ends[i] - start))}, never ended` : ticking(now - start)),
      h('span', { class: 'track' }, bar),
    ];
  });
  $('wf-timeline').replaceChildren(...head, ...(rows.length ? rows : [h('span', { class: 'muted' }, 'No step recorded yet.')]));
}

/** The plan a cancel wrote (newest first) and what each compensation did; before a cancel, what would run. */
function renderCompensation(run) {
  const bySeq = new Map(run.steps.map((st) => [st.seq, st]));
  const plan = run.compensationPlan ?? run.steps.filter((st) => st.compensation).map((st) => st.seq).reverse();
  fill(
    $('wf-compensation').tBodies[0],
    plan.length
      ? plan.map((seq) => {
          const st = bySeq.get(seq);
          const c = st?.compensation;
          const state = c?.state ?? (run.compensationPlan ? 'pending' : 'not run');
          const error = c?.error ? `${c.error.name ?? 'Error'}: ${c.error.message ?? ''}` : '';
          return h('tr', { dataset: { seq: String(seq) } }, h('td', { class: 'num' }, seq), h('td', {}, st?.name ?? '-'), h('td', {}, stateBadge(state)), h('td', { class: 'num' }, c?.attempts ?? 0), h('td', { class: 'error' }, error));
        })
      : [h('tr', {}, h('td', { colspan: 5, class: 'muted' }, 'No step of this run has a compensation.'))],
  );
}

async function cancelWorkflow() {
  const id = currentWorkflow;
  if (!id) return;
  try {
    const body = await api(`/api/workflows/${encodeURIComponent(id)}/cancel`, { method: 'POST', body: {} });
    if (currentWorkflow !== id) return;
    $('wf-result').textContent = body.message;
    await loadWorkflow(id);
  } catch (error) {
    if (error instanceof Unauthorized) return forget(error.message);
    $('wf-result').textContent = String(error.message ?? error);
  }
}

async function sendWorkflowEvent(form) {
  const id = currentWorkflow;
  if (!id) return;
  const name = form.elements.name.value.trim();
  const text = form.elements.payload.value.trim();
  let payload;
  try {
    payload = text ? JSON.parse(text) : undefined;
  } catch (error) {
    $('wf-result').textContent = `the payload is not JSON: ${error.message}`;
    return;
  }
  try {
    await api(`/api/workflows/${encodeURIComponent(id)}/events`, { method: 'POST', body: payload === undefined ? { name } : { name, payload } });
    if (currentWorkflow !== id) return;
    $('wf-result').textContent = `event "${name}" sent`;
    form.reset();
    await loadWorkflow(id);
  } catch (error) {
    if (error instanceof Unauthorized) return forget(error.message);
    $('wf-result').textContent = String(error.message ?? error);
  }
}

// ---- one job --------------------------------------------------------------------

function showJob(id) {
  $('job').hidden = false;
  $('job-id').textContent = id;
  $('action-result').textContent = '';
  currentJob = id;
  every(JOB_POLL_MS, () => loadJob(id));
}

async function loadJob(id) {
  const view = await api(`/api/jobs/${encodeURIComponent(id)}`);
  // A reply that comes after the page moved on is not shown.
  if (currentJob === id) renderJob(view);
}

function setProgress(percent, message) {
  const p = percent == null ? 0 : Math.max(0, Math.min(100, percent));
  $('job-bar').style.width = `${p}%`;
  $('job-progress').textContent = pct(percent);
  $('job-progress').dataset.value = percent == null ? '' : String(percent);
  $('job-message').textContent = message ?? '';
}

/**
 * Renders `{ job, attempts, inFlight }` from GET /api/jobs/:id. The job there describes its current
 * attempt only (what an earlier one left is in `attempts`); `inFlight` is this supervisor's record
 * of it while it holds it, the one place that knows whether a thread has taken it.
 */
function renderJob({ job, attempts, inFlight }) {
  shownJob = job;
  $('job-state').replaceWith(Object.assign(jobBadge(job, inFlight), { id: 'job-state' }));
  setProgress(job.progress, job.progressMessage);
  $('job-waiting').textContent = job.waitingFor ? `Held back by flow control: ${job.waitingFor}` : '';
  $('job-waiting').hidden = !job.waitingFor;
  $('cancel').disabled = FINAL.includes(job.state);
  $('retry').disabled = !['failed', 'timed_out', 'cancelled'].includes(job.state);
  const fields = [
    ['Type', job.type],
    ['Queue', job.queue],
    ['Priority', job.priority],
    ['Attempt', attemptText(job, true)],
    ['Supervisor', job.supervisorId ?? '-'],
    ...threadFields(job, inFlight),
    ['Created', time(job.createdAt)],
    ['Run at', time(job.runAt)],
    ['Finished', time(job.finishedAt)],
    ['Timeout', job.timeoutMs == null ? '-' : duration(job.timeoutMs)],
    ['Key', job.key ?? '-'],
  ];
  if (job.cancelReason) fields.push(['Cancel reason', job.cancelReason]);
  if (job.compensation) fields.push(['Compensation', JSON.stringify(job.compensation)]);
  $('job-fields').replaceChildren(...fields.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
  $('job-input').textContent = JSON.stringify(job.input, null, 2);
  $('job-output').textContent = outputText(job, attempts);
  $('action-result').textContent = noticeText(job);
  fill(
    $('attempts').tBodies[0],
    attempts.length
      ? attempts.map((a) =>
          h(
            'tr',
            {},
            h('td', { class: 'num' }, a.attempt),
            h('td', {}, stateBadge(a.outcome)),
            h('td', {}, a.supervisorId ?? '-'),
            h('td', {}, time(a.startedAt)),
            h('td', {}, time(a.finishedAt)),
            h('td', { class: 'error' }, a.error ? `${a.error.name}: ${a.error.message}` : ''),
          ),
        )
      : [h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'No attempt has ended yet.'))],
  );
  // Keep open <details> open across refreshes.
  const open = new Set([...$('attempt-logs').querySelectorAll('details[open]')].map((d) => d.dataset.attempt));
  $('attempt-logs').replaceChildren(
    ...attempts
      .filter((a) => a.logs)
      .map((a) => {
        const d = h('details', { dataset: { attempt: String(a.attempt) } }, h('summary', {}, `Logs of attempt ${a.attempt}`), h('pre', {}, a.logs));
        d.open = open.has(String(a.attempt));
        return d;
      }),
  );
}

/**
 * When it started, and on which thread: from this supervisor's record while it holds the job (the
 * row's start is its claim, which a job waiting for a thread has had too), else from the row.
 */
function threadFields(job, inFlight) {
  if (!inFlight) return [['Started', time(job.startedAt)]];
  if (!inFlight.startedAt) return [['Started', h('span', {}, 'not yet: waiting for a thread for ', ticking(inFlight.elapsedMs))]];
  return [
    ['Thread', inFlight.thread ?? '-'],
    ['Started', h('span', {}, `${time(inFlight.startedAt)}, running for `, ticking(inFlight.elapsedMs))],
  ];
}

/** The current attempt's result; while a job is queued or running, how the attempt before it ended, labelled so. */
function outputText(job, attempts) {
  if (job.error) return `${job.error.name}: ${job.error.message}${job.error.stack ? `\n\n${job.error.stack}` : ''}`;
  if (job.output !== null) return JSON.stringify(job.output, null, 2);
  const previous = attempts.at(-1);
  if (FINAL.includes(job.state) || !previous) return '-';
  const how = previous.error ? `: ${previous.error.name}: ${previous.error.message}` : '';
  return `- (no result yet)\n\nThe previous attempt, ${previous.attempt}, ended ${previous.outcome.replace('_', ' ')}${how}`;
}

/** The notice of the last cancel or retry, worded by the job's state now, so it never contradicts the badge. */
function noticeText(job) {
  // Once the job is on another attempt (retried, or begun the one it was queued for), the notice is history.
  if (!notice || job.attempt !== notice.attempt) return '';
  const state = job.state.replace('_', ' ');
  if (notice.kind === 'retry') return job.state === 'queued' ? `job ${job.id} queued again for attempt ${job.attempt + 1}` : '';
  if (job.state === 'cancelled') return `job ${job.id} cancelled`;
  if (job.state === 'running') {
    return `${notice.changed ? 'cancel requested' : 'a cancel was already requested'}: supervisor ${job.supervisorId ?? '?'} was asked to stop it`;
  }
  if (job.state === 'queued') return '';
  return notice.changed ? `job ${job.id} ${state} before the cancel took effect` : `job ${job.id} already ${state}; nothing to cancel`;
}

async function act(kind) {
  const id = currentJob;
  if (!id) return;
  try {
    const body = await api(`/api/jobs/${encodeURIComponent(id)}/${kind}`, { method: 'POST', body: {} });
    if (currentJob !== id) return;
    notice = { kind, attempt: kind === 'retry' ? body.job.attempt : shownJob?.attempt, changed: body.changed === true };
    // The job as it is now, at once: the notice and the badge are worded from the same reply.
    await loadJob(id);
  } catch (error) {
    if (error instanceof Unauthorized) return forget(error.message);
    $('action-result').textContent = String(error.message ?? error);
  }
}

// ---- live events (Server-Sent Events read with fetch, so the token goes in a header) -----

function connectEvents() {
  if (stream) return;
  const controller = new AbortController();
  stream = controller;
  const live = $('live');
  (async () => {
    for (let delay = 500; !controller.signal.aborted; delay = Math.min(delay * 2, 10_000)) {
      try {
        const res = await fetch('/api/events', { headers: { authorization: `Bearer ${token}` }, signal: controller.signal });
        if (res.status === 401) return forget('the token was refused');
        if (!res.ok || !res.body) throw new Error(`events: ${res.status}`);
        live.textContent = 'live';
        live.classList.add('on');
        delay = 500;
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let end;
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            onEvent(buffer.slice(0, end));
            buffer = buffer.slice(end + 2);
          }
        }
      } catch {
        if (controller.signal.aborted) return;
      }
      live.textContent = 'offline';
      live.classList.remove('on');
      await new Promise((r) => setTimeout(r, delay));
    }
  })();
}

function onEvent(block) {
  let event = 'message';
  let data = '';
  for (const line of block.split('\n')) {
    if (line.startsWith('event: ')) event = line.slice(7);
    else if (line.startsWith('data: ')) data += line.slice(6);
  }
  if (!data) return;
  let payload;
  try {
    payload = JSON.parse(data);
  } catch {
    return;
  }
  // Progress of a job running on this supervisor shows at once; the 500 ms poll covers the rest.
  if (event === 'job:progress' && payload.id === currentJob) setProgress(payload.percent, payload.message);
}

// ---- start ----------------------------------------------------------------------

function init() {
  const fromUrl = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (fromUrl) {
    token = decodeURIComponent(fromUrl[1]);
    sessionStorage.setItem(TOKEN_KEY, token);
    history.replaceState(null, '', location.pathname + '#/');
  }
  $('login-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    token = $('token').value.trim();
    try {
      await api('/api/snapshot');
      sessionStorage.setItem(TOKEN_KEY, token);
      $('token').value = '';
      route();
    } catch (error) {
      token = null;
      showLogin(error instanceof Unauthorized ? 'That token was refused.' : String(error.message ?? error));
    }
  });
  $('logout').addEventListener('click', () => forget());
  $('filters').addEventListener('submit', (e) => {
    e.preventDefault();
    const params = new URLSearchParams();
    for (const [k, v] of new FormData(e.target)) if (String(v).trim()) params.set(k, String(v).trim());
    location.hash = `#/jobs?${params}`;
  });
  $('pause-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const form = e.target;
    const name = form.elements.name.value.trim();
    if (name) pauseScope(form.elements.kind.value, name, true);
  });
  $('cancel').addEventListener('click', () => act('cancel'));
  $('retry').addEventListener('click', () => act('retry'));
  window.addEventListener('hashchange', route);
  setInterval(tick, TICK_MS);
  $('wf-filters').addEventListener('submit', (e) => {
    e.preventDefault();
    const params = new URLSearchParams();
    for (const [k, v] of new FormData(e.target)) if (String(v).trim()) params.set(k, String(v).trim());
    location.hash = `#/workflows?${params}`;
  });
  $('wf-cancel').addEventListener('click', cancelWorkflow);
  $('wf-event').addEventListener('submit', (e) => {
    e.preventDefault();
    sendWorkflowEvent(e.target);
  });
  $('chart-window').addEventListener('change', (e) => {
    location.hash = `#/charts?window=${encodeURIComponent(e.target.value)}`;
  });
  route();
}

init();
