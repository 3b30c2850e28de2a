// The share page for its owner: the owner link ends in #owner=<token>, which never
// leaves the browser (a fragment is not sent); with it, change, close or delete the share.
"use strict";

const owner = new URLSearchParams(window.location.hash.slice(1)).get("owner");
const api = `/shares/${window.location.pathname.split("/")[2]}`;

function field(label, input) {
  const wrap = document.createElement("label");
  wrap.append(label, " ", input);
  return wrap;
}

async function send(method, body) {
  const headers = { Authorization: `Bearer ${owner}` };
  if (body) headers["Content-Type"] = "application/json";
  const response = await fetch(api, { method, headers, body: body && JSON.stringify(body) });
  if (response.ok) return response.status === 204 ? {} : response.json();
  const problem = await response.json().catch(() => ({}));
  throw new Error(problem.message || `The server answered ${response.status}.`);
}

function manage(share) {
  const section = document.getElementById("owner");
  section.hidden = false;
  section.innerHTML = "<h2 id='owner-title'>Manage this share</h2>";
  const note = document.createElement("p");
  note.setAttribute("role", "status");
  const qr = document.createElement("img");
  qr.className = "qr";
  qr.src = "qr.svg";
  qr.alt = `QR code of ${share.url}`;

  const form = document.createElement("form");
  const days = Object.assign(document.createElement("input"), { type: "number", min: 1, name: "days", placeholder: "days" });
  const limit = Object.assign(document.createElement("input"), { type: "number", min: 1, name: "limit", placeholder: "no limit",
    value: share.max_downloads ?? "" });
  const password = Object.assign(document.createElement("input"), { type: "password", name: "password",
    placeholder: share.password ? "unchanged" : "none", autocomplete: "new-password" });
  const save = Object.assign(document.createElement("button"), { type: "submit", textContent: "Save" });
  form.append(field("Keep for", days), field("Downloads", limit), field("Password", password), save);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const change = { max_downloads: limit.value ? Number(limit.value) : null };
    if (days.value) change.max_days = Number(days.value);
    if (password.value) change.password = password.value;
    try { await send("PATCH", change); window.location.reload(); } catch (e) { note.textContent = e.message; }
  });

  const buttons = document.createElement("p");
  const close = Object.assign(document.createElement("button"), { type: "button", className: "quiet",
    textContent: share.closed ? "Closed to new files" : "Close to new files", disabled: share.closed });
  close.addEventListener("click", async () => {
    try { await send("PATCH", { closed: true }); window.location.reload(); } catch (e) { note.textContent = e.message; }
  });
  const remove = Object.assign(document.createElement("button"), { type: "button", className: "danger",
    textContent: "Delete the share and its files" });
  remove.addEventListener("click", async () => {
    if (!window.confirm("Delete this share and every file in it? This cannot be undone.")) return;
    try { await send("DELETE"); document.body.textContent = "Deleted: the share and its files are gone."; }
    catch (e) { note.textContent = e.message; }
  });
  buttons.append(close, " ", remove);
  section.append(qr, form, buttons, note);
}

// A locked page opened by the owner link: the owner token opens it as the password
// would (once; a refusal shows its message and stays), keeping the fragment.
const unlock = document.querySelector("form.unlock");
if (owner && unlock && !document.querySelector("p.bad")) {
  unlock.action = window.location.pathname + window.location.hash;
  unlock.append(Object.assign(document.createElement("input"), { type: "hidden", name: "owner", value: owner }));
  document.getElementById("password").required = false;
  unlock.submit();
} else if (owner) send("GET").then(manage).catch((e) => { document.getElementById("owner").hidden = false;
  document.getElementById("owner").textContent = e.message; });
