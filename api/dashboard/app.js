// kubetask dashboard: a live job table and a job page, over the public REST API only.
// No framework, no build step, no CDN. Every string from the API goes through textContent.
"use strict";

const STATES = ["queued", "pending", "running", "succeeded", "failed", "cancelled"];
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const PAGE_SIZE = 100;
const COLORS = ["#326ce5", "#e8710a", "#1a7f37", "#c62828", "#7b3fe4", "#0b8a8a"];

// -- small helpers ---------------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }
  return node;
}

function duration(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms) || ms < 0) return "";
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${s % 60}s`;
  const hrs = Math.floor(m / 60);
  if (hrs < 48) return `${hrs}h ${m % 60}m`;
  return `${Math.floor(hrs / 24)}d ${hrs % 24}h`;
}

const ms = (iso) => (iso ? Date.parse(iso) : null);
const age = (job) => duration(Date.now() - ms(job.created_at));
function runTime(job) {
  const start = ms(job.started_at);
  if (start === null) return "";
  return duration((ms(job.finished_at) ?? Date.now()) - start);
}

// The job's fraction (every stage by its weight, every worker): never back within an attempt;
// a failed or cancelled job stays where it stopped. From an older server, the stage's.
function fraction(job) {
  if (job.state === "succeeded") return 1;
  const p = job.progress;
  if (!p) return 0;
  if (typeof p.fraction === "number") return p.fraction;
  if (typeof p.progress === "number") return p.progress;
  return p.total ? Math.min(1, p.current / p.total) : 0;
}

// "eta 1m05s" while the job runs and its ETA is known.
function etaText(job) {
  const p = job.progress;
  if (!p || TERMINAL.has(job.state) || typeof p.eta_s !== "number") return "";
  return `eta ${duration(p.eta_s * 1000)}`;
}

// The current stage's own count, in whole units: "14 / 30".
function stageCount(p) {
  return p && p.total ? `${Math.floor(p.current + 1e-9)} / ${Math.round(p.total)}` : null;
}

// -- the API ---------------------------------------------------------------------------------

const tokenStore = {
  get: () => localStorage.getItem("kubetask.token") || "",
  set: (value) => (value ? localStorage.setItem("kubetask.token", value) : localStorage.removeItem("kubetask.token")),
};

class ApiError extends Error {
  constructor(status, detail, problem = {}) {
    super(detail);
    this.status = status; // 0: the request could not be made (an invalid token)
    this.problem = problem; // the answer's problem+json fields (a 409's `state`)
  }
}

// A header holds only ASCII: fetch refuses any other token before sending anything, so the
// page says so rather than failing every request without a word.
const TOKEN_TEXT = /^[\x20-\x7e]*$/;
const INVALID_TOKEN = "The API token is invalid: it can hold only ASCII letters, digits and punctuation. Set it again with the Token button.";

function authHeaders(extra = {}) {
  const token = tokenStore.get();
  if (!TOKEN_TEXT.test(token)) {
    showBanner(INVALID_TOKEN, "auth");
    throw new ApiError(0, INVALID_TOKEN);
  }
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

// `signal` aborts the request when the page that asked for it is left.
async function call(method, path, signal) {
  const response = await fetch(path, { method, signal, headers: authHeaders({ Accept: "application/json" }) });
  if (!response.ok) {
    let detail = response.statusText;
    let problem = {};
    try {
      problem = (await response.json()) || {};
      detail = problem.detail || problem.title || detail;
    } catch (_) { /* not JSON */ }
    if (response.status === 401) showBanner(NEEDS_TOKEN, "auth");
    throw new ApiError(response.status, `${response.status}: ${detail}`, problem);
  }
  clearBanner("auth");
  const type = response.headers.get("content-type") || "";
  return type.includes("json") ? response.json() : response.text();
}

// Server-Sent Events over fetch (EventSource cannot send the Authorization header).
async function* sse(path, signal, lastEventId) {
  const headers = authHeaders({ Accept: "text/event-stream" });
  if (lastEventId) headers["Last-Event-ID"] = String(lastEventId);
  const response = await fetch(path, { headers, signal, cache: "no-store" });
  if (!response.ok) throw new ApiError(response.status, `${response.status} on ${path}`);
  if (response.status === 204 || !response.body) return; // resumed at the end: nothing follows
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const message = { event: "message", data: "", id: null };
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") message.event = text;
        else if (field === "data") message.data += (message.data ? "\n" : "") + text;
        else if (field === "id") message.id = text;
      }
      if (message.data) yield message;
    }
  }
}

const sleep = (msec) => new Promise((resolve) => setTimeout(resolve, msec));

// The banner shows one problem and who raised it ("auth", "list", "stream", "action"); the
// next success of that source clears it, so a fixed problem never lingers.
const NEEDS_TOKEN = "This server needs an API token: use the Token button.";
let bannerSource = null;
function showBanner(text, source) {
  const banner = document.getElementById("banner");
  banner.textContent = text;
  banner.hidden = !text;
  banner.dataset.source = source || "";
  bannerSource = source;
}

function clearBanner(source) {
  if (bannerSource === source) showBanner("", null);
}

// -- the live table --------------------------------------------------------------------------

const table = {
  jobs: new Map(), // id -> job view, kept current by events
  filters: { state: "", kind: "", label: "", q: "" },
  nextCursor: null,
  kinds: [],
  loaded: false, // the first page has arrived
  loading: 0, // the generation of the listing in flight, 0 when none
  failed: false, // the last listing (or the stream) was refused: the banner says why
};

let listGeneration = 0;

function listQuery(cursor) {
  const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (table.filters.state) params.set("state", table.filters.state);
  if (table.filters.kind) params.set("kind", table.filters.kind);
  if (table.filters.label) params.append("label", table.filters.label);
  if (cursor) params.set("cursor", cursor);
  return `/v1/jobs?${params}`;
}

async function loadJobs() {
  const generation = ++listGeneration;
  table.loading = generation;
  scheduleRender();
  try {
    const { answer: page, seen } = await withEvents(() => call("GET", listQuery(null)));
    if (generation !== listGeneration) return; // a newer filter's listing supersedes this one
    table.jobs = new Map(page.items.map((job) => [job.id, settle(job, seen)]));
    table.nextCursor = page.next_cursor;
    // A job newer than the listing whose record came meanwhile went with the old map.
    for (const event of seen) if (event.type === "state" && !table.jobs.has(event.job_id)) fetchNew(event.job_id);
    table.loaded = true;
    table.failed = false;
    clearBanner("list");
  } catch (error) {
    if (generation !== listGeneration) return;
    table.failed = true;
    const token = error instanceof ApiError && error.status === 401; // its own banner says so
    if (!token) showBanner(`Cannot list jobs: ${error.message}`, "list");
  } finally {
    if (table.loading === generation) table.loading = 0;
    scheduleRender();
  }
}

async function loadMore() {
  if (!table.nextCursor) return;
  const { answer: page, seen } = await withEvents(() => call("GET", listQuery(table.nextCursor)));
  for (const job of page.items) if (!table.jobs.has(job.id)) table.jobs.set(job.id, settle(job, seen));
  table.nextCursor = page.next_cursor;
  scheduleRender();
}

function matches(job) {
  const f = table.filters;
  if (f.state && job.state !== f.state) return false;
  if (f.kind && job.kind !== f.kind) return false;
  if (f.label) {
    const [key, value] = f.label.split("="); // not key=value: the server refuses it, nothing matches
    if (value === undefined || (job.labels || {})[key] !== value) return false;
  }
  if (f.q) {
    const text = `${job.id} ${job.name || ""} ${job.kind}`.toLowerCase();
    if (!text.includes(f.q.toLowerCase())) return false;
  }
  return true;
}

// Apply one event to a job view; returns false when the event is older than what it shows.
function applyEvent(job, event) {
  if (job._seq && event.seq <= job._seq) return false;
  job._seq = event.seq;
  if (event.type === "progress") {
    job.progress = event;
    const workers = job.workers || [];
    const worker = workers.find((w) => w.index === event.index);
    if (worker && typeof event.worker_fraction === "number") {
      worker.fraction = event.worker_fraction;
      worker.stage = event.stage;
    }
  } else if (event.type === "state") {
    job.state = event.state;
    job.reason = event.reason ?? null;
    job.message = event.message ?? null;
    if (event.attempts !== undefined) job.attempts = event.attempts;
    if (event.state === "running" && !job.started_at) job.started_at = event.timestamp;
    if (TERMINAL.has(event.state)) job.finished_at = job.finished_at || event.timestamp;
  }
  return true;
}

// A record or a listing may be older than the live events that arrive while it is fetched:
// each fetch keeps those events and replays the newer ones onto its answer (settle), so that a
// row never ends at the state its record had when it was read.
const inFlight = new Set();
async function withEvents(request) {
  const seen = [];
  inFlight.add(seen);
  try {
    return { answer: await request(), seen };
  } finally {
    inFlight.delete(seen);
  }
}

// A fetched job with the events seen meanwhile applied: those up to its progress's seq are in
// the record already; the later ones are applied in order, as the stream sent them.
function settle(job, seen) {
  job._seq = Math.max(job._seq || 0, (job.progress && job.progress.seq) || 0);
  let ended = false;
  for (const event of seen) {
    if (event.job_id !== job.id || !applyEvent(job, event)) continue;
    if (event.type === "state" && TERMINAL.has(event.state)) ended = true;
  }
  if (ended) refreshJob(job.id); // its result and times, as after a live terminal event
  return job;
}

function onLiveEvent(event) {
  for (const seen of inFlight) seen.push(event);
  const job = table.jobs.get(event.job_id);
  if (job) {
    if (applyEvent(job, event)) scheduleRender();
    if (event.type === "state" && TERMINAL.has(event.state)) refreshJob(event.job_id);
    return;
  }
  if (event.type === "state") fetchNew(event.job_id); // a job this page has not seen: a new submission
}

const fetching = new Set();
async function fetchNew(id) {
  if (fetching.has(id)) return; // that fetch keeps this job's events too
  fetching.add(id);
  try {
    const { answer: fresh, seen } = await withEvents(() => call("GET", `/v1/jobs/${encodeURIComponent(id)}`));
    if (!table.jobs.has(fresh.id)) table.jobs.set(fresh.id, settle(fresh, seen)); // else a listing brought it
    scheduleRender();
  } catch (_) { /* gone, or another tenant's */ } finally {
    fetching.delete(id);
  }
}

async function refreshJob(id) {
  try {
    const fresh = await call("GET", `/v1/jobs/${encodeURIComponent(id)}`);
    const known = table.jobs.get(id);
    if (known) fresh._seq = known._seq;
    table.jobs.set(id, fresh);
    scheduleRender();
  } catch (_) { /* keep what the events said */ }
}

function setLive(state) {
  const badge = document.getElementById("live");
  badge.dataset.live = state;
  badge.textContent = state;
}

// One stream for the whole page, kept up for as long as the page is open.
async function followEverything() {
  let delay = 500;
  for (;;) {
    try {
      for await (const message of sse("/v1/events")) {
        delay = 500;
        clearBanner("stream");
        if (message.event === "ready" || message.event === "resync") {
          setLive("live");
          await loadJobs();
        } else if (message.event === "state" || message.event === "progress") {
          onLiveEvent(JSON.parse(message.data));
        }
      }
    } catch (error) {
      if (error instanceof ApiError && (error.status === 401 || error.status === 0)) {
        showBanner(error.status === 0 ? INVALID_TOKEN : NEEDS_TOKEN, "auth");
        table.failed = true;
        scheduleRender();
        await sleep(4000);
      } else {
        showBanner(`Lost the live stream (${error.message}); reconnecting…`, "stream");
      }
    }
    setLive("reconnecting");
    await sleep(delay);
    delay = Math.min(delay * 2, 10000);
  }
}

let renderQueued = false;
function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    if (route().page === "list") renderRows();
  });
}

// Changes a node's text only when it differs: an unchanged cell keeps its nodes.
function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

function setData(node, key, value) {
  if (node.dataset[key] !== value) node.dataset[key] = value;
}

function updateProgress(node, job) {
  const value = fraction(job);
  const pct = Math.floor(value * 100 + 1e-9); // 99.6% is not done
  setData(node, "state", job.state);
  setData(node, "value", value.toFixed(4));
  const fill = node.querySelector(".fill");
  if (fill.style.width !== `${pct}%`) fill.style.width = `${pct}%`; // CSSOM: the CSP allows no inline style
  setText(node.querySelector(".pct"), `${pct}%`);
}

function progressCell(job) {
  const node = h("div", { class: "progress" }, h("div", { class: "track" }, h("div", { class: "fill" })), h("span", { class: "pct" }));
  updateProgress(node, job);
  return node;
}

const stageText = (job) => [job.progress && job.progress.stage, etaText(job)].filter(Boolean).join(" · ");

function jobRow(job) {
  const row = h(
    "tr",
    { dataset: { jobId: job.id }, onclick: () => (location.hash = `#/jobs/${job.id}`) },
    h("td", {}, h("a", { href: `#/jobs/${job.id}`, class: "mono" }, job.id)),
    h("td"),
    h("td"),
    h("td", {}, h("span", { class: "state" })),
    h("td", {}, progressCell(job), h("div", { class: "stage" })),
    h("td", { class: "num", dataset: { created: job.created_at } }),
    h("td", { class: "num" }),
  );
  updateRow(row, job);
  return row;
}

// A row's cells to what the job says now, in place: an event changes a few texts, never the
// elements, so that a click (press, then release) lands on the row it began on.
function updateRow(row, job) {
  const cells = row.cells;
  setData(row, "state", job.state);
  setText(cells[1], job.name || "");
  setText(cells[2], job.kind);
  const state = cells[3].firstElementChild;
  setData(state, "state", job.state);
  setText(state, job.state);
  updateProgress(cells[4].firstElementChild, job);
  setText(cells[4].lastElementChild, stageText(job));
  setText(cells[5], age(job));
  setText(cells[6], runTime(job));
}

// Each shown row's element by job id (for the tbody they are in).
let shownRows = { body: null, rows: new Map() };

function renderRows() {
  const body = document.querySelector("table.jobs tbody");
  if (!body) return;
  if (shownRows.body !== body) shownRows = { body, rows: new Map() }; // a new table: new rows
  const rows = [...table.jobs.values()]
    .filter(matches)
    .sort((a, b) => (a.created_at < b.created_at ? 1 : a.created_at > b.created_at ? -1 : 0));
  const wanted = new Set(rows.map((job) => job.id));
  for (const [id, row] of shownRows.rows) {
    if (!wanted.has(id)) {
      row.remove();
      shownRows.rows.delete(id);
    }
  }
  let next = body.firstElementChild;
  for (const job of rows) {
    let row = shownRows.rows.get(job.id);
    if (row) updateRow(row, job);
    else shownRows.rows.set(job.id, (row = jobRow(job)));
    if (row === next) next = next.nextElementSibling;
    else body.insertBefore(row, next); // moved only where the order changed
  }
  const loading = table.loading > 0 || (!table.loaded && !table.failed);
  const status = listStatus({ shown: rows.length, loading, failed: table.failed, filtered: filtering(), partial: Boolean(table.filters.q && table.nextCursor) });
  const box = document.getElementById("list-status");
  box.dataset.status = status || "";
  box.hidden = !status;
  box.replaceChildren(...(status ? statusMessage(status) : []));
  const count = `${rows.length} job${rows.length === 1 ? "" : "s"}`;
  document.querySelector(".filters .count").textContent = table.loaded ? count : "";
  document.querySelector(".more").hidden = !table.nextCursor;
}

const filtering = () => Object.values(table.filters).some(Boolean);

// What the list says in place of rows: null when it shows some.
// `partial`: a search, which looks only through the rows loaded, with more rows to load.
function listStatus({ shown, loading, failed, filtered, partial = false }) {
  if (shown > 0) return null;
  if (loading) return "loading";
  if (failed) return "failed";
  if (partial) return "no-match-loaded";
  return filtered ? "no-match" : "empty";
}

function statusMessage(status) {
  if (status === "loading") return ["Loading…"];
  if (status === "empty") return ["No jobs yet. Submit one: kubetask submit datagen --wait"];
  if (status === "failed") return ["Jobs cannot be listed: see the message above."];
  const clear = h("button", { type: "button", id: "clear-filters", onclick: clearFilters }, "Clear filters");
  if (status === "no-match-loaded") {
    const more = h("button", { type: "button", id: "search-more", onclick: loadMoreOrSay }, "Load more");
    return ["No loaded job matches this search: it looks only through the jobs loaded so far. ", more, clear];
  }
  return ["No jobs match this filter. ", clear];
}

const loadMoreOrSay = () => loadMore().catch((error) => showBanner(`Cannot list jobs: ${error.message}`, "list"));

function clearFilters() {
  table.filters = { state: "", kind: "", label: "", q: "" };
  rememberFilters();
  renderList();
  loadJobs();
}

// The list's filters live in its URL (#/?state=failed&kind=train), so that a reload, a shared
// link and the job page's way back all show the list as it was left; the tab remembers the last.
const FILTER_NAMES = ["state", "kind", "label", "q"];
const LIST_KEY = "kubetask.list";

function filtersFromHash() {
  const query = new URLSearchParams(location.hash.replace(/^#\/?\??/, ""));
  return Object.fromEntries(FILTER_NAMES.map((name) => [name, query.get(name) || ""]));
}

function filterQuery(filters) {
  const query = new URLSearchParams();
  for (const name of FILTER_NAMES) if (filters[name]) query.set(name, filters[name]);
  return query.toString();
}

function rememberFilters() {
  const query = filterQuery(table.filters);
  sessionStorage.setItem(LIST_KEY, query);
  history.replaceState(null, "", `#/${query ? `?${query}` : ""}`);
}

// Where "← jobs" leads: the list with the filters it last had in this tab.
function listHref() {
  const query = sessionStorage.getItem(LIST_KEY);
  return `#/${query ? `?${query}` : ""}`;
}

const backLink = () => h("a", { href: listHref(), id: "back", class: "back" }, "← jobs");

function select(name, options, value) {
  return h(
    "select",
    { name, "aria-label": name, onchange: (e) => setFilter(name, e.target.value) },
    h("option", { value: "" }, `any ${name}`),
    options.map((option) => h("option", { value: option, selected: option === value }, option)),
  );
}

function setFilter(name, value) {
  table.filters[name] = value;
  rememberFilters();
  if (name === "q") scheduleRender(); // text search is local
  else loadJobs();
}

function renderList() {
  const f = table.filters;
  const view = document.getElementById("view");
  view.replaceChildren(
    h(
      "div",
      { class: "filters" },
      select("state", STATES, f.state),
      select("kind", table.kinds, f.kind),
      h("input", { name: "label", placeholder: "label key=value", value: f.label, onchange: (e) => setFilter("label", e.target.value.trim()) }),
      h("input", { name: "q", type: "search", placeholder: "search id, name, kind", value: f.q, oninput: (e) => setFilter("q", e.target.value.trim()) }),
      h("span", { class: "count" }),
    ),
    h(
      "div",
      { class: "panel" },
      h(
        "table",
        { class: "jobs" },
        h("thead", {}, h("tr", {}, ["id", "name", "kind", "state", "progress", "age", "duration"].map((c) => h("th", {}, c)))),
        h("tbody"),
      ),
      h("div", { class: "empty", id: "list-status" }),
      h("div", { class: "more", hidden: true }, h("button", { type: "button", onclick: loadMoreOrSay }, "Load more")),
    ),
  );
  renderRows();
}

// -- the job page ----------------------------------------------------------------------------

// The open job page. `abort` belongs to this page alone: every request, stream and timer of
// the page checks or uses its signal, so an answer that comes after the user left is dropped.
const page = { id: null, job: null, events: [], logs: "", abort: null, logsTimer: null, cancelling: false };
const artifactsChanged = () => scheduleJobRender();

// Metric series from a job's progress events: per-epoch metrics, and per-trial values.
function metricSeries(events) {
  const byEpoch = new Map(); // metric -> Map(epoch -> value)
  const byTrial = new Map();
  for (const event of events) {
    const m = event.metrics || {};
    if (typeof m.trial === "number") {
      for (const key of ["value", "best_value"]) {
        if (typeof m[key] !== "number") continue;
        if (!byTrial.has(key)) byTrial.set(key, new Map());
        byTrial.get(key).set(m.trial, m[key]);
      }
    } else if (typeof m.epoch === "number") {
      for (const [key, value] of Object.entries(m)) {
        if (key === "epoch" || key === "samples_per_s" || typeof value !== "number") continue;
        const name = event.index === null || event.index === undefined ? key : `${key} #${event.index}`;
        if (!byEpoch.has(name)) byEpoch.set(name, new Map());
        byEpoch.get(name).set(m.epoch, value); // a retried epoch replaces the earlier one
      }
    }
  }
  const series = (map, names) => names.map((name) => ({ name, points: [...map.get(name)].sort((a, b) => a[0] - b[0]) }));
  const names = [...byEpoch.keys()];
  const charts = [];
  const loss = names.filter((n) => n.includes("loss"));
  const accuracy = names.filter((n) => n.includes("acc"));
  const other = names.filter((n) => !loss.includes(n) && !accuracy.includes(n));
  if (loss.length) charts.push({ id: "loss", title: "Loss per epoch", x: "epoch", series: series(byEpoch, loss) });
  if (accuracy.length) charts.push({ id: "accuracy", title: "Accuracy per epoch", x: "epoch", series: series(byEpoch, accuracy) });
  if (other.length) charts.push({ id: "other", title: "Other metrics per epoch", x: "epoch", series: series(byEpoch, other) });
  if (byTrial.size) charts.push({ id: "trials", title: "Objective per trial (best so far)", x: "trial", series: series(byTrial, [...byTrial.keys()]) });
  return charts;
}

function niceTicks(lo, hi, count) {
  if (lo === hi) return [lo];
  const step = (hi - lo) / (count - 1);
  return Array.from({ length: count }, (_, i) => lo + i * step);
}

function label(value) {
  const a = Math.abs(value);
  if (a !== 0 && (a < 0.01 || a >= 10000)) return value.toExponential(1);
  return Number.isInteger(value) ? String(value) : value.toFixed(a < 1 ? 3 : 2);
}

function lineChart(chart) {
  const W = 460, H = 230, L = 52, R = 12, T = 26, B = 44;
  const all = chart.series.flatMap((s) => s.points);
  const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (x0 === x1) [x0, x1] = [x0 - 1, x1 + 1];
  if (y0 === y1) [y0, y1] = [y0 - 0.5, y1 + 0.5];
  const px = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const py = (y) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  const parts = [svg("text", { x: L, y: 16, class: "title" }, chart.title)];
  for (const y of niceTicks(y0, y1, 5)) {
    parts.push(svg("line", { x1: L, x2: W - R, y1: py(y), y2: py(y), class: "grid" }));
    parts.push(svg("text", { x: L - 6, y: py(y) + 4, "text-anchor": "end" }, label(y)));
  }
  const xTicks = [...new Set(xs)].length <= 10 ? [...new Set(xs)].sort((a, b) => a - b) : niceTicks(x0, x1, 6).map(Math.round);
  for (const x of xTicks) parts.push(svg("text", { x: px(x), y: H - B + 16, "text-anchor": "middle" }, label(x)));
  parts.push(svg("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis" }));
  parts.push(svg("line", { x1: L, x2: L, y1: T, y2: H - B, class: "axis" }));
  parts.push(svg("text", { x: W - R, y: H - 6, "text-anchor": "end" }, `${chart.x} →`));
  chart.series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const points = s.points.map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(" ");
    parts.push(svg("polyline", { points, stroke: color, "data-series": s.name, "data-points": s.points.length }));
    for (const [x, y] of s.points) parts.push(svg("circle", { cx: px(x), cy: py(y), r: 2.5, fill: color }));
  });
  const legend = chart.series.map((s, i) => svg("tspan", { fill: COLORS[i % COLORS.length], dx: i ? 12 : 0 }, `— ${s.name}`));
  parts.push(svg("text", { x: L, y: H - 6 }, legend));
  return svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, "data-chart": chart.id, role: "img", "aria-label": chart.title }, parts);
}

function facts(rows) {
  return h("dl", { class: "facts" }, rows.filter(([, v]) => v !== null && v !== undefined && v !== "").flatMap(([k, v]) => [h("dt", {}, k), h("dd", { dataset: { fact: k } }, v)]));
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : null;
}

// What the job says now: while it runs, its latest report ("step 4"); otherwise its own
// message (why it waits, how it ended), which an older report must not hide.
function jobMessage(job) {
  const p = job.progress || {};
  return job.state === "running" ? p.message || job.message : job.message || p.message;
}

function renderJob() {
  const job = page.job;
  const view = document.getElementById("view");
  if (!job) {
    view.replaceChildren(h("div", { class: "panel job-head" }, backLink()), h("div", { class: "panel empty" }, "Loading…"));
    return;
  }
  const p = job.progress || {};
  const terminal = TERMINAL.has(job.state);
  const cancel = h(
    "button",
    { type: "button", class: "danger", id: "cancel", disabled: terminal || job.cancel_requested || page.cancelling, onclick: (event) => cancelJob(job.id, event.currentTarget) },
    job.cancel_requested && !terminal ? "Cancelling…" : "Cancel",
  );
  const head = h(
    "div",
    { class: "panel job-head" },
    backLink(),
    h("h1", {}, job.name || job.kind, " ", h("span", { class: "mono stage" }, job.id)),
    h("span", { class: "state", id: "job-state", dataset: { state: job.state } }, job.state),
    h("span", { class: "spacer" }),
    progressCell(job),
    cancel,
  );
  const details = h(
    "div",
    { class: "panel" },
    h("h2", {}, "Status"),
    h(
      "div",
      { class: "body" },
      facts([
        ["kind", job.kind],
        ["stage", p.stage],
        ["message", jobMessage(job)],
        ["last report", job.state !== "running" && p.message !== jobMessage(job) ? p.message : null],
        ["reason", job.reason],
        ["progress", stageCount(p)],
        ["eta", etaText(job).replace(/^eta /, "")],
        ["attempt", p.attempt > 1 ? p.attempt : null],
        ["workers", (job.workers || []).map((w) => `[${w.index}] ${Math.floor(w.fraction * 100 + 1e-9)}% ${w.stage || ""}`.trim()).join(", ")],
        ["attempts", job.attempts],
        ["created", when(job.created_at)],
        ["started", when(job.started_at)],
        ["finished", when(job.finished_at)],
        ["duration", runTime(job)],
        ["backend", job.backend ? `${job.backend.backend}: ${job.backend.namespace ? `${job.backend.namespace}/` : ""}${job.backend.name}` : null],
        ["labels", Object.entries(job.labels || {}).map(([k, v]) => `${k}=${v}`).join(", ")],
      ]),
      job.error
        ? h(
            "div",
            { class: "error" },
            h("p", {}, h("strong", {}, job.error.type || "error"), ": ", job.error.message || ""),
            job.error.suggestion ? h("div", { class: "suggestion" }, job.error.suggestion) : null,
          )
        : null,
    ),
  );
  const result = h(
    "div",
    { class: "panel" },
    h("h2", {}, "Result"),
    h("div", { class: "body result", id: "result" }, job.result ? resultView(job.result, {}, (value, attrs, text) => resultPathLink(job.id, value, attrs, text)) : h("span", { class: "stage" }, terminal ? "—" : "not finished")),
  );
  const charts = metricSeries(page.events);
  const chartPanel = h(
    "div",
    { class: "panel" },
    h("h2", {}, "Metrics"),
    h("div", { class: "body", id: "charts" }, charts.length ? charts.map(lineChart) : metricsWithoutCharts(job)),
  );
  const logs = h("div", { class: "panel" }, h("h2", {}, "Log tail"), h("div", { class: "body" }, h("pre", { class: "logs", id: "logs" }, page.logs || "(no output yet)")));
  const artifacts = h("div", { class: "panel" }, h("h2", {}, "Artifacts"), h("div", { class: "body", id: "artifacts-panel" }, artifactsView(job, terminal)));
  view.replaceChildren(head, h("div", { class: "grid" }, details, chartPanel), h("div", { class: "grid" }, result, logs), h("div", { class: "grid" }, artifacts));
  const pre = document.getElementById("logs");
  pre.scrollTop = pre.scrollHeight;
}

// A job with no per-epoch or per-trial series: the figures it ended with, or why there are none.
function metricsWithoutCharts(job) {
  const figures = finalFigures(job);
  if (Object.keys(figures).length) return resultView(figures, { id: "figures" });
  const text = TERMINAL.has(job.state) ? "This job reported no metrics." : "No metrics reported yet.";
  return h("span", { class: "stage", id: "no-metrics" }, text);
}

let jobRenderQueued = false;
function scheduleJobRender() {
  if (jobRenderQueued) return;
  jobRenderQueued = true;
  setTimeout(() => {
    jobRenderQueued = false;
    if (route().page === "job") renderJob();
  }, 150);
}

// One cancel at a time: the button is disabled at once (a double click sends one request), and
// a 409 saying the job already ended is no error: the page shows the job as it is now.
async function cancelJob(id, button) {
  if (page.id !== id || page.cancelling) return;
  const { signal } = page.abort;
  page.cancelling = true;
  if (button) button.disabled = true;
  try {
    const job = await call("DELETE", `/v1/jobs/${encodeURIComponent(id)}`, signal);
    if (signal.aborted) return;
    job._seq = page.job && page.job._seq;
    page.job = job;
    clearBanner("action");
  } catch (error) {
    if (signal.aborted) return;
    const ended = error instanceof ApiError && error.status === 409 && TERMINAL.has(error.problem.state);
    if (!ended) showBanner(`Cannot cancel: ${error.message}`, "action");
    else {
      clearBanner("action");
      try {
        const job = await call("GET", `/v1/jobs/${encodeURIComponent(id)}`, signal);
        if (signal.aborted) return;
        job._seq = Math.max((page.job && page.job._seq) || 0, (job.progress && job.progress.seq) || 0);
        page.job = job;
      } catch (_) { /* the page's stream still says how it ended */ }
    }
  } finally {
    if (!signal.aborted) {
      page.cancelling = false;
      scheduleJobRender();
    }
  }
}

async function refreshLogs(id, signal) {
  let text;
  try {
    text = await call("GET", `/v1/jobs/${encodeURIComponent(id)}/logs?tail=200`, signal);
  } catch (error) {
    if (signal.aborted || page.logs) return; // keep the tail shown when the server is away
    text = `(no logs: ${error.message})`;
  }
  if (signal.aborted) return;
  page.logs = text;
  const pre = document.getElementById("logs");
  if (pre) {
    pre.textContent = page.logs || "(no output yet)";
    pre.scrollTop = pre.scrollHeight;
  }
}

function showJobError(text) {
  document.getElementById("view").replaceChildren(h("div", { class: "panel job-head" }, backLink()), h("div", { class: "panel empty error", id: "job-error" }, text));
}

async function openJob(id) {
  closeJob();
  const abort = new AbortController();
  const { signal } = abort; // aborted once the user leaves: every await below checks it
  Object.assign(page, { id, job: null, events: [], logs: "", abort, cancelling: false });
  renderJob();
  const read = () => call("GET", `/v1/jobs/${encodeURIComponent(id)}`, signal);
  try {
    const job = await read();
    if (signal.aborted) return; // another page is open now: this answer is not for it
    job._seq = (job.progress && job.progress.seq) || 0; // the stream's history up to it is in it
    page.job = job;
  } catch (error) {
    if (!signal.aborted) showJobError(error.message);
    return;
  }
  scheduleJobRender();
  refreshLogs(id, signal);
  loadArtifacts(id, artifactsChanged);
  page.logsTimer = setInterval(() => {
    if (page.job && !TERMINAL.has(page.job.state)) {
      refreshLogs(id, signal);
      loadArtifacts(id, artifactsChanged);
    }
  }, 2000);
  let last = 0;
  while (!signal.aborted) {
    try {
      for await (const message of sse(`/v1/jobs/${encodeURIComponent(id)}/events`, signal, last)) {
        if (signal.aborted) return;
        if (message.id) last = Number(message.id);
        if (message.event !== "progress" && message.event !== "state") continue;
        const event = JSON.parse(message.data);
        if (event.type === "progress") page.events.push(event);
        applyEvent(page.job, event);
        if (event.type === "state" && TERMINAL.has(event.state)) {
          const seq = page.job._seq;
          const job = await read(); // its result, error
          if (signal.aborted) return;
          job._seq = seq;
          page.job = job;
          refreshLogs(id, signal);
          loadArtifacts(id, artifactsChanged); // what it wrote last
        }
        scheduleJobRender();
      }
      if (page.job && TERMINAL.has(page.job.state)) return; // the stream ends after the end
    } catch (error) {
      if (signal.aborted) return;
    }
    await sleep(1000);
  }
}

function closeJob() {
  clearBanner("action"); // it was about the job left behind
  if (page.abort) page.abort.abort();
  if (page.logsTimer) clearInterval(page.logsTimer);
  Object.assign(page, { id: null, job: null, events: [], logs: "", abort: null, logsTimer: null, cancelling: false });
  closeArtifacts(); // revokes the images' object URLs
}

// A job id as the API makes them (controller/ids.py is_job_id): 16 characters, 0-9 and a-z.
const JOB_ID = /^[0-9a-z]{16}$/;

// An address that names no job ("#/jobs/.", "#/jobs/<id>%2Fartifacts", a bad %-escape): a page
// that says so and asks the API nothing (the browser would read "/v1/jobs/." as the listing).
function renderNoSuchJob(text) {
  showJobError(`No such job: "${text}" is not a job id (16 lowercase letters and digits).`);
}

// -- routing and start-up --------------------------------------------------------------------

function route() {
  const match = location.hash.match(/^#\/jobs\/([^?#]*)/);
  if (!match) return { page: "list" };
  let id;
  try {
    id = decodeURIComponent(match[1]);
  } catch (_) {
    return { page: "missing", text: match[1] }; // not a valid %-escape
  }
  return JOB_ID.test(id) ? { page: "job", id } : { page: "missing", text: id };
}

function navigate() {
  const where = route();
  if (where.page === "job") {
    if (page.id !== where.id) openJob(where.id);
  } else if (where.page === "missing") {
    closeJob();
    renderNoSuchJob(where.text);
  } else {
    closeJob();
    const wanted = filtersFromHash();
    const changed = filterQuery(wanted) !== filterQuery(table.filters);
    table.filters = wanted;
    rememberFilters();
    renderList();
    if (changed && listGeneration > 0) loadJobs(); // else the stream's first listing uses them
  }
}

function tick() {
  // Ages and running durations move with the clock.
  if (route().page === "list") {
    for (const row of document.querySelectorAll("table.jobs tbody tr")) {
      const job = table.jobs.get(row.dataset.jobId);
      if (!job) continue;
      setText(row.cells[5], age(job));
      setText(row.cells[6], runTime(job));
    }
  } else if (page.job && !TERMINAL.has(page.job.state)) {
    const fact = document.querySelector('[data-fact="duration"]');
    if (fact) fact.textContent = runTime(page.job);
  }
}

async function start() {
  document.getElementById("token").addEventListener("click", () => {
    const value = prompt("API token (leave empty to clear):", tokenStore.get());
    if (value === null) return;
    if (!TOKEN_TEXT.test(value.trim())) {
      showBanner(INVALID_TOKEN, "auth"); // kept out: no request could carry it
      return;
    }
    tokenStore.set(value.trim());
    showBanner("", null);
    location.reload();
  });
  window.addEventListener("hashchange", navigate);
  try {
    table.kinds = (await call("GET", "/v1/kinds")).map((k) => k.kind);
  } catch (_) { /* the filter just lists no kinds */ }
  navigate();
  setInterval(tick, 1000);
  followEverything();
}

document.addEventListener("DOMContentLoaded", start);
