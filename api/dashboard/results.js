// kubetask dashboard: a job's result and its final figures as small readable tables, not raw
// JSON. Loaded before app.js, which calls resultView and finalFigures (`h` is app.js's).
// Paths are shown as paths in the artifact store, as links where the caller's `link` makes one
// (artifacts.js: a download for the job's own files, the job page for another job's).
"use strict";

const PATH_KEY = /(^|_)(file|path|dir|plot|model|checkpoint)$/;
const PATH_VALUE = /^[\w.-]+(\/[\w.-]+)+$/;
const SHORT_LIST = 12;
// Names of figures worth showing as a finished job's metrics (not counts or settings).
const METRIC_KEY = /(^|_)(acc|accuracy|loss|f1|precision|recall|auc|score|mse|mae|rmse|r2|best_value)($|_)/;

function figure(value) {
  if (Number.isInteger(value)) return String(value);
  if (value !== 0 && Math.abs(value) < 0.001) return value.toExponential(2);
  return String(Number(value.toFixed(4)));
}

function isPath(key, value) {
  return !/\s/.test(value) && (PATH_VALUE.test(value) || (PATH_KEY.test(key) && value.includes(".")));
}

function scalarText(value) {
  if (value === null) return "—";
  if (typeof value === "boolean") return value ? "yes" : "no";
  return typeof value === "number" ? figure(value) : String(value);
}

function valueView(key, value, link) {
  if (typeof value === "number") {
    return h("span", { class: "num", title: String(value), dataset: { kind: "number" } }, figure(value));
  }
  if (typeof value === "string") {
    if (isPath(key, value)) {
      const linked = link && link(value, { class: "path", dataset: { kind: "path" } }, value);
      return linked || h("code", { class: "path", title: "a path in the artifact store", dataset: { kind: "path" } }, value);
    }
    return h("span", { dataset: { kind: "text" } }, value);
  }
  if (value === null || typeof value === "boolean") return h("span", { class: "stage", dataset: { kind: "text" } }, scalarText(value));
  const scalars = Array.isArray(value) && value.every((v) => v === null || typeof v !== "object");
  if (scalars && value.length <= SHORT_LIST) return h("span", { dataset: { kind: "list" } }, value.map(scalarText).join(", "));
  const size = Array.isArray(value) ? `${value.length} items` : `${Object.keys(value).length} fields`;
  const inner = Array.isArray(value) ? h("pre", { class: "mono" }, value.map((v) => JSON.stringify(v)).join("\n")) : resultView(value, {}, link);
  return h("details", { dataset: { kind: "nested" } }, h("summary", {}, size), inner);
}

// A JSON object as a key/value table: numbers and strings inline, nested values collapsed;
// `link(value, attrs, text)` turns a path into a link, or returns null to leave it as text.
function resultView(result, attrs = {}, link = null) {
  if (result === null || typeof result !== "object" || Array.isArray(result)) return valueView("", result, link);
  return h(
    "table",
    { class: "kv", ...attrs },
    h("tbody", {}, Object.entries(result).map(([key, value]) => h("tr", { dataset: { key } }, h("th", {}, key), h("td", {}, valueView(key, value, link))))),
  );
}

// The figures a job shows when it charted none: its latest progress metrics and, once it
// succeeded, the score-like numbers at the top of its result (an evaluate's accuracy, F1...).
function finalFigures(job) {
  const figures = {};
  const latest = (job.progress && job.progress.metrics) || {};
  for (const [key, value] of Object.entries(latest)) if (typeof value === "number") figures[key] = value;
  if (job.state === "succeeded" && job.result && typeof job.result === "object") {
    for (const [key, value] of Object.entries(job.result)) {
      if (typeof value === "number" && METRIC_KEY.test(key)) figures[key] = value;
    }
  }
  return figures;
}
