// kubetask dashboard: a job's files (GET /v1/jobs/{id}/artifacts), their downloads and its
// images shown inline. Loaded before app.js, which calls these (`h`, `call`, `authHeaders`,
// `tokenStore`, `showBanner`, `clearBanner` and `ApiError` are app.js's).
//
// The API may want a bearer token, which neither <a href> nor <img src> can send. So with a
// token set, a download is a fetch of the file into a Blob handed to the browser through an
// object URL (the file passes through the page's memory); without one, the link is the file's
// own URL (the browser streams it to disk). Images are always fetched as Blobs and shown through
// object URLs, which the page revokes when it leaves the job (or when a file changes).
"use strict";

const IMAGE_TYPES = new Set(["image/png", "image/jpeg", "image/svg+xml"]);
const IMAGE_NAME = /\.(png|jpe?g|svg)$/i;
const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];
const KEEP_DOWNLOAD_URL_MS = 60000; // long enough for the browser to take the Blob
const MAX_INLINE_IMAGES = 12; // a job's first images are shown; the table lists them all
const MAX_INLINE_BYTES = 20 * 1024 * 1024; // larger ones are downloads, not page weight

// 1536 -> "1.5 KiB"; bytes below 1 KiB as they are.
function humanSize(bytes) {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  if (unit === 0) return `${bytes} B`;
  return `${value < 10 ? value.toFixed(1) : Math.round(value)} ${UNITS[unit]}`;
}

const basename = (path) => path.slice(path.lastIndexOf("/") + 1);

function artifactUrl(jobId, path) {
  return `/v1/jobs/${encodeURIComponent(jobId)}/artifacts/${path.split("/").map(encodeURIComponent).join("/")}`;
}

function isImage(entry) {
  const type = (entry.content_type || "").split(";")[0].trim().toLowerCase();
  return IMAGE_TYPES.has(type) || (!type.startsWith("text/") && IMAGE_NAME.test(entry.path));
}

// The files a job page shows inline: its first few images of a reasonable size.
function inlineImages(items) {
  return items.filter((entry) => isImage(entry) && entry.size <= MAX_INLINE_BYTES).slice(0, MAX_INLINE_IMAGES);
}

async function fetchBlob(url) {
  const response = await fetch(url, { headers: authHeaders(), cache: "no-store" });
  if (!response.ok) throw new ApiError(response.status, `${response.status} on ${basename(url)}`);
  return response.blob();
}

async function downloadWithToken(url, name) {
  try {
    const objectUrl = URL.createObjectURL(await fetchBlob(url));
    const link = h("a", { href: objectUrl, download: name, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(objectUrl), KEEP_DOWNLOAD_URL_MS);
    clearBanner("download");
  } catch (error) {
    showBanner(`Cannot download ${name}: ${error.message}`, "download");
  }
}

// A link that downloads one of a job's files, with the token when one is set.
function downloadLink(jobId, path, attrs, ...children) {
  const url = artifactUrl(jobId, path);
  const onclick = (event) => {
    if (!tokenStore.get()) return; // the plain link works: no header to send
    event.preventDefault();
    downloadWithToken(url, basename(path));
  };
  return h("a", { ...attrs, href: url, download: basename(path), onclick }, ...children);
}

// -- what the job page keeps: the listing and the images' object URLs ------------------------

const files = {
  jobId: null,
  items: null, // null until the first listing arrives
  error: null,
  images: new Map(), // path -> { etag, url }
  generation: 0,
};

// Forget the job left behind; every object URL it held is revoked.
function closeArtifacts() {
  files.generation += 1;
  for (const image of files.images.values()) URL.revokeObjectURL(image.url);
  files.images = new Map();
  files.jobId = null;
  files.items = null;
  files.error = null;
}

// (Re)list a job's files and fetch its new or changed images; `changed` runs after each.
async function loadArtifacts(jobId, changed) {
  const generation = files.generation;
  const current = () => generation === files.generation && files.jobId === jobId;
  files.jobId = jobId;
  try {
    const listing = await call("GET", `/v1/jobs/${encodeURIComponent(jobId)}/artifacts`);
    if (!current()) return;
    files.items = listing.items;
    files.error = null;
  } catch (error) {
    if (!current()) return;
    files.error = error.message;
  }
  changed();
  for (const entry of inlineImages(files.items || [])) {
    const known = files.images.get(entry.path);
    if (known && known.etag === entry.etag) continue;
    try {
      const url = URL.createObjectURL(await fetchBlob(artifactUrl(jobId, entry.path)));
      if (!current()) {
        URL.revokeObjectURL(url);
        return;
      }
      const before = files.images.get(entry.path); // another listing may have set one meanwhile
      if (before) URL.revokeObjectURL(before.url);
      files.images.set(entry.path, { etag: entry.etag, url });
      changed();
    } catch (_) { /* listed but gone: the table still lists it */ }
  }
}

// The relative path of one of this job's files named by a result value ("<id>/confusion.png").
function ownArtifact(jobId, value) {
  if (!files.items || files.jobId !== jobId || !value.startsWith(`${jobId}/`)) return null;
  const path = value.slice(jobId.length + 1);
  return files.items.some((entry) => entry.path === path) ? path : null;
}

const JOB_PREFIX = /^([0-9a-z]{16})\//; // controller/ids.py: 9 + 7 base36 characters

// A result's path as a link: to download it when it is this job's, to the job that made it
// when it is another job's; null when it is neither (an upload, a path not written yet).
function resultPathLink(jobId, value, attrs, text) {
  const own = ownArtifact(jobId, value);
  if (own !== null) return downloadLink(jobId, own, { ...attrs, title: "download", dataset: { ...attrs.dataset, link: "download" } }, text);
  const other = value.match(JOB_PREFIX);
  if (other && other[1] !== jobId) {
    return h("a", { ...attrs, href: `#/jobs/${other[1]}`, title: "the job that made it", dataset: { ...attrs.dataset, link: "job" } }, text);
  }
  return null;
}

// The job page's "Artifacts" panel body: the file table and the images under it.
function artifactsView(job, terminal) {
  if (files.jobId !== job.id || (files.items === null && files.error === null)) return h("span", { class: "stage" }, "Loading…");
  if (files.items === null) return h("span", { class: "error" }, `Cannot list files: ${files.error}`);
  if (!files.items.length) return h("span", { class: "stage", id: "no-artifacts" }, terminal ? "This job left no files." : "No files yet.");
  const rows = files.items.map((entry) =>
    h(
      "tr",
      { dataset: { path: entry.path } },
      h("td", {}, downloadLink(job.id, entry.path, { class: "mono", dataset: { artifact: entry.path } }, entry.path)),
      h("td", { class: "num", title: `${entry.size} bytes`, dataset: { size: entry.size } }, humanSize(entry.size)),
      h("td", { class: "stage" }, entry.content_type),
    ),
  );
  const images = files.items
    .filter((entry) => files.images.has(entry.path))
    .map((entry) =>
      h(
        "figure",
        { class: "artifact-image" },
        h("img", { src: files.images.get(entry.path).url, alt: entry.path, dataset: { artifact: entry.path } }),
        h("figcaption", { class: "stage" }, entry.path),
      ),
    );
  return [
    h("table", { class: "artifacts", id: "artifacts" }, h("thead", {}, h("tr", {}, h("th", {}, "file"), h("th", {}, "size"), h("th", {}, "type"))), h("tbody", {}, rows)),
    images.length ? h("div", { class: "images", id: "images" }, images) : null,
  ];
}
