// Satchel's page: resumable uploads over tus 1.0 with our own small client, into a share
// (one link for the files dropped); the shares and the finished uploads' links, kept in
// this browser; and folder archives. No libraries, no build step.
"use strict";

const TUS = { "Tus-Resumable": "1.0.0" };
// Bytes a PATCH: each new PATCH is where the page notices that it went offline (a request
// under way is not always cut), and it stays under proxies' body limits. A PATCH cut
// short loses nothing: the server keeps what arrived.
const CHUNK = 4 * 1024 * 1024;
const RETRY_MS = [1000, 2000, 4000, 8000, 15000]; // then every 15 s, or at once when online

const $ = (selector) => document.querySelector(selector);

function humanBytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

function humanSeconds(s) {
  if (!isFinite(s)) return "—";
  if (s < 60) return `${Math.ceil(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.ceil(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.ceil((s % 3600) / 60)} min`;
}

function base64(text) {
  const bytes = new TextEncoder().encode(text);
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}

// What a status means to a person; `retry`: worth trying again by itself.
function explain(status, serverMessage, maxSize) {
  switch (status) {
    case 0: return { text: "Connection lost — waiting to resume…", retry: true };
    case 401: return { text: "This server needs an upload token: enter it above, then retry.", retry: false };
    case 403: return { text: "The server does not allow this upload.", retry: false };
    case 404: return { text: "The server no longer knows this upload (it expired or was removed). Start it again.", retry: false };
    case 409: case 423: return { text: "Resynchronising with the server…", retry: true };
    case 413: return { text: `This file is larger than the server accepts${maxSize ? ` (at most ${humanBytes(maxSize)})` : ""}.`, retry: false };
    case 429: return { text: "Too many transfers from your address at once — retrying shortly.", retry: true };
    case 460: return { text: "A piece of the file arrived damaged — sending it again.", retry: true };
    case 507: return { text: "The server is out of disk space; nothing was kept.", retry: false };
    default:
      if (status >= 500) return { text: `The server had a problem (${status}) — retrying.`, retry: true };
      return { text: serverMessage || `The server refused the upload (${status}).`, retry: false };
  }
}

function request(method, url, { headers = {}, body = null, onProgress = null, track = null } = {}) {
  // XHR, not fetch: only XHR reports upload progress. Resolves with the XHR for any
  // HTTP status; status 0 means the network failed or the request was aborted.
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, url);
    for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
    if (onProgress) xhr.upload.onprogress = (e) => onProgress(e.loaded);
    xhr.onload = xhr.onerror = xhr.onabort = xhr.ontimeout = () => resolve(xhr);
    if (track) track(xhr);
    xhr.send(body);
  });
}

function auth() {
  const token = $("#token").value.trim();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

function serverMessage(xhr) {
  try { return JSON.parse(xhr.responseText).message; } catch { return ""; }
}

class Upload {
  constructor(file, view) {
    this.file = file;
    this.view = view;
    this.key = `satchel-upload:${file.name}:${file.size}:${file.lastModified}`;
    this.url = localStorage.getItem(this.key); // resume across page reloads
    this.offset = 0;
    this.synced = false; // whether this.offset is what the server has
    this.paused = false;
    this.running = false;
    this.failures = 0;
    this.samples = []; // [time, bytes] over the last seconds, for speed and ETA
    this.track = (xhr) => { this.xhr = xhr; };
  }

  headers(extra = {}) {
    return { ...TUS, ...auth(), ...extra };
  }

  async run() {
    if (this.running) return;
    this.running = true;
    this.paused = false;
    try {
      while (!this.paused) {
        const finished = await this.step();
        if (finished) return;
      }
      this.view.state("Paused.");
    } finally {
      this.running = false;
    }
  }

  // One round trip; true when the upload is over (done, or failed for good).
  async step() {
    if (!this.url) {
      let share;
      try { share = await currentShare(); } catch (e) { this.view.failed(e.message); return true; }
      this.share = share;
      const metadata = [
        `filename ${base64(this.file.name)}`,
        `filetype ${base64(this.file.type || "application/octet-stream")}`,
        `share ${base64(share.id)}`,
        `share_token ${base64(share.owner_token)}`,
      ];
      const xhr = await request("POST", "/tus/", {
        headers: this.headers({
          "Upload-Length": String(this.file.size),
          "Upload-Metadata": metadata.join(","),
        }),
      });
      if (xhr.status !== 201) return this.trouble(xhr);
      this.url = xhr.getResponseHeader("Location");
      this.synced = true;
      localStorage.setItem(this.key, this.url);
      if (xhr.getResponseHeader("Satchel-Download")) return this.done(xhr); // an empty file
    } else if (!this.synced) {
      const xhr = await request("HEAD", this.url, { headers: this.headers(), track: this.track });
      if (xhr.status !== 200) return this.trouble(xhr);
      this.offset = Number(xhr.getResponseHeader("Upload-Offset"));
      this.synced = true;
      if (xhr.getResponseHeader("Satchel-Download")) return this.done(xhr);
    }
    const end = Math.min(this.offset + CHUNK, this.file.size);
    this.view.state(this.failures ? "Resumed." : "Uploading…");
    const xhr = await request("PATCH", this.url, {
      headers: this.headers({
        "Upload-Offset": String(this.offset),
        "Content-Type": "application/offset+octet-stream",
      }),
      body: this.file.slice(this.offset, end),
      onProgress: (loaded) => this.progress(this.offset + loaded),
      track: this.track,
    });
    if (this.paused) return false;
    if (xhr.status !== 204) return this.trouble(xhr);
    this.failures = 0;
    this.offset = Number(xhr.getResponseHeader("Upload-Offset"));
    this.progress(this.offset);
    if (xhr.getResponseHeader("Satchel-Download")) return this.done(xhr);
    return false;
  }

  async trouble(xhr) {
    this.synced = false;
    if (this.paused) return false;
    const meaning = explain(xhr.status, serverMessage(xhr), maxSize);
    if (!meaning.retry) {
      if (xhr.status === 404) { localStorage.removeItem(this.key); this.url = null; }
      this.view.failed(meaning.text);
      return true;
    }
    const wait = RETRY_MS[Math.min(this.failures, RETRY_MS.length - 1)];
    this.failures += 1;
    this.view.state(meaning.text);
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, wait);
      window.addEventListener("online", () => { clearTimeout(timer); resolve(); }, { once: true });
      this.wakeUp = () => { clearTimeout(timer); resolve(); };
    });
    return false;
  }

  done(xhr) {
    localStorage.removeItem(this.key);
    this.progress(this.file.size);
    const links = {
      name: this.file.name,
      size: this.file.size,
      download: xhr.getResponseHeader("Satchel-Download"),
      check: xhr.getResponseHeader("Satchel-Check"),
      delete: xhr.getResponseHeader("Satchel-Delete"),
      owner: this.share ? this.share.owner_token : null,
    };
    this.view.finished(links);
    remember(links);
    return true;
  }

  progress(bytes) {
    const now = performance.now() / 1000;
    this.samples.push([now, bytes]);
    while (this.samples.length > 2 && now - this.samples[0][0] > 5) this.samples.shift();
    const [t0, b0] = this.samples[0];
    const speed = now > t0 ? (bytes - b0) / (now - t0) : 0;
    const eta = speed > 0 ? (this.file.size - bytes) / speed : Infinity;
    this.view.progress(bytes, this.file.size, speed, eta);
  }

  pause() {
    this.paused = true;
    this.synced = false; // the server keeps what arrived of an interrupted PATCH
    if (this.xhr) this.xhr.abort();
    if (this.wakeUp) this.wakeUp();
  }
}

// -- the view -----------------------------------------------------------------------

let maxSize = 0;

function uploadRow(file) {
  const row = $("#upload-template").content.firstElementChild.cloneNode(true);
  row.querySelector(".name").textContent = file.name;
  row.querySelector(".size").textContent = humanBytes(file.size);
  $("#uploads").append(row);
  const bar = row.querySelector("progress");
  const status = row.querySelector(".status");
  const toggle = row.querySelector(".toggle");
  const view = {
    state: (text) => { status.textContent = text; },
    progress: (bytes, total, speed, eta) => {
      bar.max = total || 1;
      bar.value = total ? bytes : 1;
      row.querySelector(".numbers").textContent =
        `${humanBytes(bytes)} of ${humanBytes(total)} · ${humanBytes(speed)}/s · ${humanSeconds(eta)} left`;
    },
    failed: (text) => { row.classList.add("failed"); status.textContent = text; toggle.textContent = "Retry"; },
    finished: (links) => { row.remove(); finishedRow(links); },
  };
  const upload = new Upload(file, view);
  toggle.addEventListener("click", () => {
    if (upload.running && !upload.paused) { upload.pause(); toggle.textContent = "Resume"; }
    else { row.classList.remove("failed"); toggle.textContent = "Pause"; upload.run(); }
  });
  return upload;
}

// -- finished uploads, kept in this browser until they expire or are forgotten ---------

const FINISHED = "satchel-finished";

function kept() {
  try { return JSON.parse(localStorage.getItem(FINISHED)) || []; } catch { return []; }
}

function keep(list) { localStorage.setItem(FINISHED, JSON.stringify(list)); }

async function remember(links) {
  keep([...kept().filter((l) => l.download !== links.download), links]);
  // a share's file is checked through its share: its owner token opens one with a password
  const headers = links.owner ? { Authorization: `Bearer ${links.owner}` } : {};
  const check = await fetch(links.check, { headers }).then((r) => (r.ok ? r.json() : null)).catch(() => null);
  if (check) {
    keep(kept().map((l) => (l.download === links.download ? { ...l, expires: check.expires_at } : l)));
    showExpiry(links.download, check.expires_at);
  }
}

function forget(download) { keep(kept().filter((l) => l.download !== download)); }

function showExpiry(download, expires) {
  const row = [...document.querySelectorAll("#done .row")].find((r) => r.dataset.download === download);
  if (row && expires) row.querySelector(".expires").textContent = `Kept until ${new Date(expires).toLocaleString()}.`;
}

async function deleteFile(links) {
  // The delete token goes in a header: a URL with it would land in access logs.
  const url = new URL(links.delete, window.location.href);
  const token = url.searchParams.get("token") || "";
  url.search = "";
  return request("DELETE", url.href, { headers: { ...auth(), "X-Delete-Token": token } });
}

function finishedRow(links) {
  const row = $("#done-template").content.firstElementChild.cloneNode(true);
  const anchor = row.querySelector("a.download");
  anchor.href = links.download;
  anchor.textContent = links.name;
  row.querySelector(".size").textContent = humanBytes(links.size);
  for (const [kind, url] of [["download", links.download], ["check", links.check]]) {
    row.querySelector(`input.${kind}`).value = url;
    row.querySelector(`button.copy-${kind}`).addEventListener("click", async (e) => {
      await navigator.clipboard.writeText(url).catch(() => row.querySelector(`input.${kind}`).select());
      e.target.textContent = "Copied";
      setTimeout(() => { e.target.textContent = "Copy"; }, 1500);
    });
  }
  row.dataset.download = links.download;
  row.querySelector("button.delete").addEventListener("click", async (e) => {
    const xhr = await deleteFile(links);
    if (xhr.status === 204 || xhr.status === 404) {
      row.classList.add("deleted");
      e.target.disabled = true;
      row.querySelector(".note").textContent = "Deleted: the links no longer work.";
      forget(links.download);
    } else {
      row.querySelector(".note").textContent = explain(xhr.status, serverMessage(xhr)).text;
    }
  });
  row.querySelector("button.forget").addEventListener("click", () => {
    forget(links.download);
    row.remove();
    $("#done-section").hidden = !$("#done .row");
  });
  $("#done").prepend(row);
  $("#done-section").hidden = false;
  showExpiry(links.download, links.expires);
}

function showKept() {
  const now = Date.now();
  const alive = kept().filter((l) => !l.expires || Date.parse(l.expires) > now);
  keep(alive);
  for (const links of alive) finishedRow(links);
}

// -- shares: every file dropped goes into the current share, made on the first drop -----

const SHARES = "satchel-shares";
let making = null; // the POST /shares/ under way, so that files dropped together share it

function shares() {
  try { return JSON.parse(localStorage.getItem(SHARES)) || []; } catch { return []; }
}

function keepShares(list) { localStorage.setItem(SHARES, JSON.stringify(list)); }

async function currentShare() {
  const current = shares().find((s) => s.current);
  if (current) return current;
  if (!making) making = makeShare().finally(() => { making = null; });
  return making;
}

async function makeShare() {
  const wanted = {};
  const days = Number($("#share-days").value);
  const limit = Number($("#share-limit").value);
  if (days) wanted.max_days = days;
  if (limit) wanted.max_downloads = limit;
  if ($("#share-password").value) wanted.password = $("#share-password").value;
  const xhr = await request("POST", "/shares/", {
    headers: { ...auth(), "Content-Type": "application/json" },
    body: JSON.stringify(wanted),
  });
  if (xhr.status !== 201) throw new Error(explain(xhr.status, serverMessage(xhr)).text);
  const made = JSON.parse(xhr.responseText);
  const share = { id: made.id, url: made.url, owner_token: made.owner_token, owner_url: made.owner_url,
                  expires: made.expires_at, current: true };
  keepShares([...shares().map((s) => ({ ...s, current: false })), share]);
  $("#share-password").value = ""; // kept only as the server's hash
  showShares();
  return share;
}

function showShares() {
  const now = Date.now();
  const alive = shares().filter((s) => !s.expires || Date.parse(s.expires) > now);
  keepShares(alive);
  $("#shares").replaceChildren(...alive.reverse().map(shareRow));
  $("#shares-section").hidden = alive.length === 0;
}

function shareRow(share) {
  const row = $("#share-template").content.firstElementChild.cloneNode(true);
  row.classList.toggle("current", Boolean(share.current));
  row.dataset.share = share.id;
  const open = row.querySelector("a.open");
  open.href = share.url;
  open.textContent = share.current ? "Current share (new files join it)" : "Share";
  row.querySelector("img.qr").src = `/s/${encodeURIComponent(share.id)}/qr.svg`;
  row.querySelector("a.manage").href = share.owner_url;
  for (const [kind, url] of [["url", share.url], ["owner", share.owner_url]]) {
    row.querySelector(`input.${kind}`).value = url;
    row.querySelector(`button.copy-${kind}`).addEventListener("click", async (e) => {
      await navigator.clipboard.writeText(url).catch(() => row.querySelector(`input.${kind}`).select());
      e.target.textContent = "Copied";
      setTimeout(() => { e.target.textContent = "Copy"; }, 1500);
    });
  }
  const fresh = row.querySelector("button.new-share");
  fresh.hidden = !share.current;
  fresh.addEventListener("click", () => {
    keepShares(shares().map((s) => ({ ...s, current: false })));
    showShares();
  });
  row.querySelector("button.forget").addEventListener("click", () => {
    keepShares(shares().filter((s) => s.id !== share.id));
    showShares();
  });
  return row;
}

function add(files) {
  for (const file of files) {
    const upload = uploadRow(file);
    if (maxSize && file.size > maxSize) {
      upload.view.failed(explain(413, "", maxSize).text);
      continue;
    }
    upload.run();
  }
}

function setUp() {
  const picker = $("#files");
  const zone = $("#drop-zone");
  picker.addEventListener("change", () => { add(picker.files); picker.value = ""; });
  zone.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); picker.click(); }
  });
  zone.addEventListener("click", () => picker.click());
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (e) => { e.preventDefault(); zone.classList.add("over"); });
  }
  for (const name of ["dragleave", "drop"]) {
    zone.addEventListener(name, () => zone.classList.remove("over"));
  }
  zone.addEventListener("drop", (e) => { e.preventDefault(); add(e.dataTransfer.files); });

  // The upload token stays in this browser only when the person asks for it.
  const token = $("#token");
  const rememberToken = $("#remember-token");
  token.value = localStorage.getItem("satchel-token") || "";
  rememberToken.checked = Boolean(token.value);
  const saveToken = () => {
    if (rememberToken.checked && token.value.trim()) localStorage.setItem("satchel-token", token.value.trim());
    else localStorage.removeItem("satchel-token");
  };
  token.addEventListener("change", saveToken);
  rememberToken.addEventListener("change", saveToken);
  showKept();
  showShares();

  // The demo folder exists only where `satchel admin demo` made it.
  fetch("/archive/7kna/", { method: "HEAD" }).then((r) => { $("#demo").hidden = !r.ok; }).catch(() => {});

  window.addEventListener("offline", () => { $("#network").textContent = "You are offline; uploads resume when the connection is back."; });
  window.addEventListener("online", () => { $("#network").textContent = ""; });

  $("#open-archive").addEventListener("submit", (event) => {
    event.preventDefault();
    window.location.href = `/archive/${encodeURIComponent($("#hash").value.trim())}/`;
  });

  fetch("/tus/", { method: "OPTIONS" }).then((r) => {
    maxSize = Number(r.headers.get("Tus-Max-Size")) || 0;
    if (maxSize) $("#max-size").textContent = `Up to ${humanBytes(maxSize)} a file.`;
  }).catch(() => {});
}

setUp();
