// The bai web console: a single page over the manager's own API. Requests are authenticated
// by the HttpOnly session cookie from POST /console/login plus the X-BackendAI-Console header
// (see daemons/manager/src/api/console.rs); nothing secret is kept in the page's storage.
// Every text from the server goes into the DOM as text, never as markup.

const API_VERSION = "v7.20230615";
const ACTIVE = ["PENDING", "SCHEDULED", "PREPARING", "PULLING", "CREATING", "RUNNING", "RESTARTING", "TERMINATING", "ERROR"];
const $ = (sel, root = document) => root.querySelector(sel);

let me = null; // {access_key, role, email}
let refreshTimer = null;
let eventAbort = null;

// ---- DOM helpers -------------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const SVG = "http://www.w3.org/2000/svg";
function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

function toast(text) {
  const t = $("#toast");
  t.textContent = text;
  t.classList.add("show");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.remove("show"), 3000);
}

function bytes(n) {
  n = Number(n);
  if (!isFinite(n)) return "?";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i && n < 10 ? 1 : 0)} ${units[i]}`;
}

function age(iso) {
  if (!iso) return "";
  const secs = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (secs < 60) return `${Math.floor(secs)}s`;
  if (secs < 3600) return `${Math.floor(secs / 60)}m`;
  if (secs < 86400) return `${Math.floor(secs / 3600)}h ${Math.floor((secs % 3600) / 60)}m`;
  return `${Math.floor(secs / 86400)}d`;
}

function slotText(key, value) {
  return key === "mem" || key.endsWith(".mem") ? bytes(value) : String(+Number(value).toFixed(2));
}

function parseJson(text, fallback) {
  if (text === null || text === undefined || text === "") return fallback;
  if (typeof text !== "string") return text;
  try { return JSON.parse(text); } catch { return fallback; }
}

// ---- the API -----------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super(body && (body.msg || body.title) ? `${body.title || ""}${body.msg ? ": " + body.msg : ""}` : `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

function headers(extra = {}) {
  return { "X-BackendAI-Console": "1", "X-BackendAI-Version": API_VERSION, ...extra };
}

async function api(method, path, body) {
  const init = { method, credentials: "same-origin", headers: headers() };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  if (r.status === 204) return null;
  const data = await r.json().catch(() => null);
  if (!r.ok) {
    if (r.status === 401 && me && !path.startsWith("/console/")) signedOut("Your console session has ended; sign in again.");
    throw new ApiError(r.status, data);
  }
  return data;
}

async function gql(query, variables = {}) {
  const r = await api("POST", "/admin/gql", { query, variables });
  if (r.errors && r.errors.length) throw new Error(r.errors.map((e) => e.message).join("; "));
  return r.data;
}

// The storage side channel answers absolute URLs; the page calls them on its own origin.
function sameOrigin(url) {
  const u = new URL(url, location.href);
  return u.pathname + u.search;
}

// ---- sign-in -----------------------------------------------------------------------------

function signedOut(message) {
  me = null;
  stopLive();
  $("#nav").hidden = true;
  $("#logout").hidden = true;
  $("#who").textContent = "";
  $("#page").hidden = true;
  $("#login").hidden = false;
  $("#login-error").textContent = message || "";
  $("#toast").classList.remove("show");
  $("#page").replaceChildren();
}

async function signedIn(who) {
  me = who;
  $("#login").hidden = true;
  $("#logout").hidden = false;
  $("#who").textContent = `${who.email || who.access_key} · ${who.role}`;
  const nav = $("#nav");
  nav.replaceChildren(...pages().map((p) => h("a", { href: `#/${p.id}`, "data-page": p.id }, p.title)));
  nav.hidden = false;
  $("#page").hidden = false;
  startLive();
  route();
}

function pages() {
  const all = [
    { id: "sessions", title: "Sessions", render: sessionsPage },
    { id: "agents", title: "Agents", render: agentsPage, role: "superadmin" },
    { id: "groups", title: "Scaling groups", render: groupsPage, role: "superadmin" },
    { id: "folders", title: "Folders", render: foldersPage },
    { id: "admin", title: "Users & keypairs", render: adminPage, role: "admin" },
    { id: "graphql", title: "GraphQL", render: graphqlPage, role: "admin" },
  ];
  const rank = { user: 0, admin: 1, superadmin: 2 };
  return all.filter((p) => !p.role || (rank[me.role] ?? 0) >= rank[p.role]);
}

$("#login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = ev.target;
  $("#login-error").textContent = "";
  try {
    const who = await api("POST", "/console/login", { access_key: f.access_key.value, secret_key: f.secret_key.value });
    f.secret_key.value = "";
    await signedIn(who);
  } catch (e) {
    $("#login-error").textContent = e.status === 401 ? "The access key and secret key do not match an active keypair." : e.message;
  }
});

$("#logout").addEventListener("click", async () => {
  try { await api("POST", "/console/logout"); } catch { /* the cookie is cleared either way */ }
  location.hash = "";
  signedOut("");
});

// ---- routing -----------------------------------------------------------------------------

window.addEventListener("hashchange", () => me && route());

async function route() {
  const list = pages();
  const id = (location.hash.match(/^#\/(\w+)/) || [])[1];
  const page = list.find((p) => p.id === id) || list[0];
  if (page.id !== id) window.history.replaceState(null, "", `#/${page.id}`);
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.page === page.id);
  const main = $("#page");
  main.dataset.page = page.id;
  main.dataset.ready = "0";
  clearInterval(refreshTimer);
  refreshTimer = null;
  main.replaceChildren(h("h2", {}, page.title));
  try {
    await page.render(main);
  } catch (e) {
    main.append(h("p", { class: "error" }, e.message));
  }
  if (main.dataset.page === page.id) main.dataset.ready = "1";
}

function every(ms, fn) {
  clearInterval(refreshTimer);
  refreshTimer = setInterval(() => fn().catch((e) => toast(e.message)), ms);
}

// ---- live session events (GET /events/session as a fetch stream: it needs our header) ----

let onSessionEvent = null;

function stopLive() {
  if (eventAbort) eventAbort.abort();
  eventAbort = null;
}

async function startLive() {
  stopLive();
  const abort = new AbortController();
  eventAbort = abort;
  while (!abort.signal.aborted) {
    try {
      const r = await fetch("/events/session?sessionName=*", { credentials: "same-origin", headers: headers(), signal: abort.signal });
      if (r.status === 401) { signedOut("Your console session has ended; sign in again."); return; }
      if (!r.ok || !r.body) throw new Error(`events: HTTP ${r.status}`);
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const frame = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          const name = (frame.match(/^event: *(.*)$/m) || [])[1];
          const data = (frame.match(/^data: *(.*)$/m) || [])[1];
          if (name && onSessionEvent) onSessionEvent(name, parseJson(data, {}));
        }
      }
    } catch (e) {
      if (abort.signal.aborted) return;
    }
    await new Promise((ok) => setTimeout(ok, 2000));
  }
}

// ---- sessions ----------------------------------------------------------------------------

const SESSION_FIELDS = `id name status status_info status_data created_at terminated_at occupying_slots image type scaling_group access_key`;

async function sessionsPage(main) {
  const form = h("form", { id: "create-session", class: "inline" },
    h("label", {}, "Name", h("input", { name: "name", placeholder: "optional", spellcheck: "false" })),
    h("label", {}, "Image", h("input", { name: "image", required: true, value: "bai/python:3.11", size: 22 })),
    h("label", {}, "CPU", h("input", { name: "cpu", value: "1", size: 4 })),
    h("label", {}, "Memory", h("input", { name: "mem", value: "512m", size: 6 })),
    h("button", { type: "submit" }, "Create session"),
    h("span", { id: "create-error", class: "error" }));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("#create-error").textContent = "";
    const body = {
      image: form.image.value.trim(),
      type: "interactive",
      enqueueOnly: true,
      config: { resources: { cpu: form.cpu.value.trim(), mem: form.mem.value.trim() } },
    };
    if (form.name.value.trim()) body.name = form.name.value.trim();
    try {
      const r = await api("POST", "/session", body);
      toast(`Session ${r.sessionId || body.name || ""} queued`);
      form.name.value = "";
      await load();
    } catch (e) {
      $("#create-error").textContent = e.message;
    }
  });
  const table = h("table", { id: "sessions" },
    h("thead", {}, h("tr", {}, ["Name", "Status", "Why / details", "Age", "Resources", "Image", ""].map((t) => h("th", {}, t)))),
    h("tbody"));
  const logs = h("section", { id: "logs", hidden: true }, h("strong", { class: "title" }), h("pre"));
  main.append(form, table, logs);

  async function load() {
    const d = await gql(`query($limit:Int!, $offset:Int!) { compute_session_list(limit:$limit, offset:$offset) { items { ${SESSION_FIELDS} } total_count } }`,
      { limit: 100, offset: 0 });
    const items = (d.compute_session_list && d.compute_session_list.items) || [];
    items.sort((a, b) => (ACTIVE.includes(b.status) - ACTIVE.includes(a.status)) || Date.parse(b.created_at) - Date.parse(a.created_at));
    table.tBodies[0].replaceChildren(...(items.length ? items.map(sessionRow) : [h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No sessions yet."))]));
  }

  function sessionRow(x) {
    const slots = parseJson(x.occupying_slots, {});
    const data = parseJson(x.status_data, {}) || {};
    const why = [x.status_info, data.scheduler && data.scheduler.msg, data.error && (data.error.repr || data.error.msg)]
      .filter(Boolean).join(" — ");
    const ended = x.status === "TERMINATED" || x.status === "CANCELLED";
    return h("tr", { "data-session": x.name, "data-id": x.id },
      h("td", {}, x.name, h("div", { class: "muted" }, x.type)),
      h("td", {}, h("span", { class: `status s-${x.status}` }, x.status)),
      h("td", { class: "status-info" }, why),
      h("td", { class: "age num", title: x.created_at }, age(x.created_at)),
      h("td", { class: "resources num" }, Object.entries(slots).map(([k, v]) => `${k} ${slotText(k, v)}`).join(", ")),
      h("td", {}, x.image),
      h("td", { class: "row-actions" },
        h("button", { class: "logs", type: "button", onclick: () => showLogs(x) }, "Logs"),
        ended ? null : h("button", { class: "terminate danger", type: "button", onclick: () => terminate(x) }, "Terminate")));
  }

  async function showLogs(x) {
    logs.hidden = false;
    $(".title", logs).textContent = `Logs of ${x.name}`;
    const pre = $("pre", logs);
    pre.textContent = "Loading…";
    try {
      const r = await api("GET", `/session/${encodeURIComponent(x.id)}/logs`);
      pre.textContent = (r.result && r.result.logs) || "(no output)";
    } catch (e) {
      pre.textContent = e.message;
    }
  }

  async function terminate(x) {
    if (!window.confirm(`Terminate ${x.name}?`)) return;
    try {
      await api("DELETE", `/session/${encodeURIComponent(x.id)}`);
      toast(`Terminating ${x.name}`);
    } catch (e) {
      toast(e.message);
    }
    await load();
  }

  await load();
  let pending = null;
  onSessionEvent = () => {
    if (pending || main.dataset.page !== "sessions") return;
    pending = setTimeout(() => { pending = null; load().catch((e) => toast(e.message)); }, 300);
  };
  every(5000, load); // ages, and the scheduler's latest explanation for pending sessions
}

// ---- agents ------------------------------------------------------------------------------

const AGENT_FIELDS = `id status status_changed scaling_group schedulable available_slots occupied_slots addr architecture version first_contact last_heartbeat`;

async function fetchAgents(scalingGroup) {
  const d = await gql(`query($sg:String) { agent_list(limit:1000, offset:0, status:"ALIVE,LOST,TERMINATED", scaling_group:$sg) { items { ${AGENT_FIELDS} } } }`,
    { sg: scalingGroup || null });
  return d.agent_list.items;
}

function bars(available, occupied) {
  return h("div", { class: "bars" }, Object.keys(available).map((k) => {
    const cap = Number(available[k]) || 0;
    const used = Number(occupied[k] || 0);
    const pct = cap > 0 ? Math.min(100, (used / cap) * 100) : 0;
    const fill = h("span");
    fill.style.width = `${pct}%`; // through the CSSOM: the policy forbids style attributes
    return h("div", { class: `bar${pct >= 100 ? " full" : pct >= 75 ? " high" : ""}`, "data-slot": k, title: `${k}: ${pct.toFixed(0)}%` },
      fill, h("em", {}, `${k} ${slotText(k, used)} / ${slotText(k, cap)}`));
  }));
}

async function agentsPage(main) {
  const table = h("table", { id: "agents" },
    h("thead", {}, h("tr", {}, ["Agent", "Status", "Last heartbeat", "Occupancy", "Scaling group", "Address"].map((t) => h("th", {}, t)))),
    h("tbody"));
  main.append(table);
  async function load() {
    const agents = await fetchAgents();
    table.tBodies[0].replaceChildren(...(agents.length ? agents.map((a) => h("tr", { "data-agent": a.id },
      h("td", {}, a.id, h("div", { class: "muted" }, `${a.architecture} · ${a.version}`)),
      h("td", {}, h("span", { class: `status s-${a.status}` }, a.status), a.schedulable ? null : h("div", { class: "muted" }, "not schedulable")),
      h("td", { class: "heartbeat", title: a.last_heartbeat || "" }, a.last_heartbeat ? `${age(a.last_heartbeat)} ago` : `not since the manager started (first contact ${age(a.first_contact)} ago)`),
      h("td", {}, bars(parseJson(a.available_slots, {}), parseJson(a.occupied_slots, {}))),
      h("td", {}, a.scaling_group),
      h("td", {}, a.addr))) : [h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No agents have registered."))]));
  }
  await load();
  every(5000, load);
}

// ---- scaling groups ----------------------------------------------------------------------

function utilisation(agents) {
  const sum = { cpu: [0, 0], mem: [0, 0] };
  for (const a of agents.filter((a) => a.status === "ALIVE")) {
    const av = parseJson(a.available_slots, {});
    const oc = parseJson(a.occupied_slots, {});
    for (const k of ["cpu", "mem"]) { sum[k][0] += Number(oc[k] || 0); sum[k][1] += Number(av[k] || 0); }
  }
  const pct = ([used, cap]) => (cap > 0 ? (100 * used) / cap : 0);
  return { cpu: pct(sum.cpu), mem: pct(sum.mem), sum };
}

function plot(points) {
  const W = 720, H = 180, L = 34, B = 18;
  const svg = s("svg", { class: "plot", viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none" });
  for (const y of [0, 50, 100]) {
    const py = H - B - ((H - B - 8) * y) / 100;
    svg.append(s("line", { x1: L, x2: W, y1: py, y2: py, stroke: "#e3e7ea" }), s("text", { x: 4, y: py + 3 }, `${y}%`));
  }
  if (points.length) {
    const t0 = points[0].t, t1 = Math.max(points[points.length - 1].t, t0 + 1);
    const x = (t) => L + ((W - L - 4) * (t - t0)) / (t1 - t0);
    const y = (v) => H - B - ((H - B - 8) * Math.min(100, v)) / 100;
    const last = points[points.length - 1];
    for (const k of ["cpu", "mem"]) {
      svg.append(s("polyline", { class: k, points: points.map((p) => `${x(p.t).toFixed(1)},${y(p[k]).toFixed(1)}`).join(" ") }));
      svg.append(s("circle", { class: k, cx: x(last.t).toFixed(1), cy: y(last[k]).toFixed(1), r: 3 }));
    }
    svg.append(s("text", { x: L, y: H - 4 }, new Date(t0).toLocaleTimeString()), s("text", { x: W - 60, y: H - 4 }, new Date(t1).toLocaleTimeString()));
  }
  return svg;
}

function percent(used, capacity, slot) {
  const cap = Number((capacity || {})[slot] || 0);
  return cap > 0 ? (100 * Number((used || {})[slot] || 0)) / cap : 0;
}

async function groupsPage(main) {
  const box = h("div");
  main.append(h("p", { class: "muted" },
    "Utilisation of the ALIVE agents of each group: the manager's samples of the last hour (one every 10 s), then now."), box);
  async function load() {
    const [groups, agents, pending] = await Promise.all([
      gql(`{ scaling_groups { name is_active scheduler utilisation_history } }`),
      fetchAgents(),
      gql(`{ compute_session_list(limit:1000, offset:0, status:"PENDING") { items { scaling_group } } }`),
    ]);
    const sections = groups.scaling_groups.map((g) => {
      const mine = agents.filter((a) => a.scaling_group === g.name);
      const u = utilisation(mine);
      const series = parseJson(g.utilisation_history, []).map((x) => ({
        t: Date.parse(x.at), cpu: percent(x.used, x.capacity, "cpu"), mem: percent(x.used, x.capacity, "mem"),
      }));
      series.push({ t: Date.now(), cpu: u.cpu, mem: u.mem });
      const waiting = pending.compute_session_list.items.filter((x) => x.scaling_group === g.name).length;
      const alive = mine.filter((a) => a.status === "ALIVE").length;
      return h("section", { class: "group", "data-group": g.name },
        h("h3", {}, g.name, " ", h("span", { class: "muted" }, `${g.is_active ? "active" : "inactive"} · scheduler ${g.scheduler}`)),
        h("p", {}, `${alive} alive agent(s) of ${mine.length} · ${waiting} pending session(s) · CPU ${u.cpu.toFixed(0)}% · memory ${u.mem.toFixed(0)}%`),
        h("div", { class: "legend" }, h("span", { class: "cpu" }, "— CPU"), h("span", { class: "mem" }, "— memory")),
        plot(series));
    });
    box.replaceChildren(...(sections.length ? sections : [h("p", { class: "muted" }, "No scaling groups.")]));
  }
  await load();
  every(5000, load);
}

// ---- virtual folders ---------------------------------------------------------------------

async function foldersPage(main) {
  const form = h("form", { id: "create-folder", class: "inline" },
    h("label", {}, "New folder", h("input", { name: "name", required: true, spellcheck: "false" })),
    h("button", { type: "submit" }, "Create"),
    h("span", { id: "folder-error", class: "error" }));
  const table = h("table", { id: "folders" },
    h("thead", {}, h("tr", {}, ["Name", "Host", "Permission", "Ownership", ""].map((t) => h("th", {}, t)))), h("tbody"));
  const detail = h("section", { id: "folder-detail" });
  main.append(form, table, detail);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("#folder-error").textContent = "";
    try {
      await api("POST", "/folders", { name: form.name.value.trim() });
      form.name.value = "";
      await load();
    } catch (e) {
      $("#folder-error").textContent = e.message;
    }
  });
  async function load() {
    const list = (await api("GET", "/folders")) || [];
    table.tBodies[0].replaceChildren(...(list.length ? list.map((f) => h("tr", { "data-folder": f.name },
      h("td", {}, f.name), h("td", {}, f.host), h("td", {}, f.permission), h("td", {}, f.type || f.ownership_type || ""),
      h("td", {}, h("button", { class: "open", type: "button", onclick: () => openFolder(detail, f.name) }, "Open")))) :
      [h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No folders yet."))]));
  }
  await load();
}

async function openFolder(detail, name) {
  const input = h("input", { type: "file", id: "upload-file" });
  const upProgress = h("progress", { id: "upload-progress", max: 1, value: 0, hidden: true });
  const downProgress = h("progress", { id: "download-progress", max: 1, value: 0, hidden: true });
  const status = h("span", { id: "download-status", class: "muted" });
  const files = h("table", { id: "folder-files" },
    h("thead", {}, h("tr", {}, ["File", "Size", "Modified", ""].map((t) => h("th", {}, t)))), h("tbody"));
  detail.replaceChildren(h("h3", {}, `Folder ${name}`),
    h("p", {}, "Upload: ", input, " ", upProgress, " ", h("span", { id: "upload-status", class: "muted" })),
    h("p", {}, "Download: ", downProgress, " ", status), files);

  async function list() {
    const r = await api("GET", `/folders/${encodeURIComponent(name)}/files?path=.`);
    const items = r.items || [];
    files.tBodies[0].replaceChildren(...(items.length ? items.map((f) => h("tr", { "data-file": f.name },
      h("td", {}, f.type === "DIRECTORY" ? `${f.name}/` : f.name), h("td", { class: "num" }, bytes(f.size)),
      h("td", {}, f.modified || f.mtime || ""),
      h("td", {}, f.type === "DIRECTORY" ? null : h("button", { class: "download", type: "button", onclick: () => download(f) }, "Download")))) :
      [h("tr", {}, h("td", { colspan: 4, class: "muted" }, "Empty."))]));
  }

  input.addEventListener("change", async () => {
    const file = input.files[0];
    if (!file) return;
    const label = $("#upload-status");
    try {
      const grant = await api("POST", `/folders/${encodeURIComponent(name)}/request-upload`, { path: file.name, size: file.size });
      upProgress.hidden = false;
      upProgress.max = Math.max(1, file.size);
      upProgress.value = 0;
      await new Promise((ok, fail) => {
        const xhr = new XMLHttpRequest();
        xhr.open("PATCH", sameOrigin(`${grant.url}?token=${encodeURIComponent(grant.token)}`));
        xhr.setRequestHeader("Upload-Offset", "0");
        xhr.setRequestHeader("Tus-Resumable", "1.0.0");
        xhr.setRequestHeader("Content-Type", "application/offset+octet-stream");
        xhr.upload.onprogress = (e) => { upProgress.value = e.loaded; label.textContent = `${bytes(e.loaded)} of ${bytes(file.size)}`; };
        xhr.onload = () => (xhr.status < 300 ? ok() : fail(new Error(`upload: HTTP ${xhr.status} ${xhr.responseText}`)));
        xhr.onerror = () => fail(new Error("upload: the connection failed"));
        xhr.send(file);
      });
      upProgress.value = upProgress.max;
      label.textContent = `uploaded ${file.name} (${bytes(file.size)})`;
      input.value = "";
      await list();
    } catch (e) {
      label.textContent = e.message;
    }
  });

  async function download(f) {
    try {
      const grant = await api("POST", `/folders/${encodeURIComponent(name)}/request-download`, { path: f.name });
      const r = await fetch(sameOrigin(`${grant.url}?token=${encodeURIComponent(grant.token)}`), { credentials: "omit" });
      if (!r.ok || !r.body) throw new Error(`download: HTTP ${r.status}`);
      const total = Number(r.headers.get("Content-Length")) || f.size || 0;
      downProgress.hidden = false;
      downProgress.max = Math.max(1, total);
      downProgress.value = 0;
      const reader = r.body.getReader();
      const chunks = [];
      let got = 0;
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        chunks.push(value);
        got += value.length;
        downProgress.value = got;
        status.textContent = `${bytes(got)} of ${bytes(total)}`;
      }
      downProgress.value = downProgress.max;
      const a = h("a", { href: URL.createObjectURL(new Blob(chunks)), download: f.name });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 10000);
      status.textContent = `done: ${f.name} (${bytes(got)})`;
    } catch (e) {
      status.textContent = e.message;
    }
  }

  await list();
}

// ---- administration ----------------------------------------------------------------------

async function adminPage(main) {
  const d = await gql(`{
    keypair_list(limit:500, offset:0) { items { access_key user_id is_active is_admin resource_policy created_at last_used rate_limit } }
    user_list(limit:500, offset:0) { items { email username role status domain_name resource_policy created_at } }
  }`);
  main.append(
    h("h3", {}, "Keypairs"),
    h("table", { id: "keypairs" },
      h("thead", {}, h("tr", {}, ["Access key", "User", "Active", "Admin", "Policy", "Rate limit", "Last used"].map((t) => h("th", {}, t)))),
      h("tbody", {}, d.keypair_list.items.map((k) => h("tr", { "data-access-key": k.access_key },
        h("td", {}, k.access_key), h("td", {}, k.user_id), h("td", {}, k.is_active ? "yes" : "no"), h("td", {}, k.is_admin ? "yes" : "no"),
        h("td", {}, k.resource_policy), h("td", { class: "num" }, k.rate_limit), h("td", {}, k.last_used ? `${age(k.last_used)} ago` : "never"))))),
    h("h3", {}, "Users"),
    h("table", { id: "users" },
      h("thead", {}, h("tr", {}, ["Email", "Name", "Role", "Status", "Domain", "Policy"].map((t) => h("th", {}, t)))),
      h("tbody", {}, d.user_list.items.map((u) => h("tr", { "data-email": u.email },
        h("td", {}, u.email), h("td", {}, u.username || ""), h("td", {}, u.role), h("td", {}, u.status), h("td", {}, u.domain_name), h("td", {}, u.resource_policy))))));
}

// ---- GraphQL explorer (/graphql-ui) -----------------------------------------------------

const INTROSPECTION = `{ __schema {
  queryType { name } mutationType { name }
  types { name kind fields { name description args { name type { ...T } } type { ...T } } }
} }
fragment T on __Type { kind name ofType { kind name ofType { kind name ofType { kind name } } } }`;

function typeName(t) {
  if (!t) return "";
  if (t.kind === "NON_NULL") return `${typeName(t.ofType)}!`;
  if (t.kind === "LIST") return `[${typeName(t.ofType)}]`;
  return t.name;
}

async function graphqlPage(main) {
  const query = h("textarea", { id: "gql-query", rows: 14, spellcheck: "false" },
    "{\n  agent_list(limit: 10, offset: 0) {\n    total_count\n    items { id status scaling_group available_slots occupied_slots }\n  }\n}");
  const variables = h("textarea", { id: "gql-variables", rows: 4, spellcheck: "false", placeholder: "{}" });
  const result = h("pre", { id: "gql-result", class: "code" });
  const run = h("button", { type: "button", id: "gql-run" }, "Run (Ctrl+Enter)");
  const schema = h("div", { id: "gql-schema", class: "schema" }, h("p", { class: "muted" }, "Loading the schema…"));
  async function execute() {
    let vars = {};
    if (variables.value.trim()) {
      try { vars = JSON.parse(variables.value); } catch (e) { result.textContent = `Variables are not JSON: ${e.message}`; return; }
    }
    result.textContent = "…";
    try {
      const r = await api("POST", "/admin/gql", { query: query.value, variables: vars });
      result.textContent = JSON.stringify(r, null, 2);
      result.classList.toggle("error", !!(r.errors && r.errors.length));
    } catch (e) {
      result.textContent = e.message;
      result.classList.add("error");
    }
  }
  run.addEventListener("click", execute);
  for (const area of [query, variables]) {
    area.addEventListener("keydown", (ev) => { if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); execute(); } });
  }
  main.append(h("div", { class: "gql" },
    h("div", { class: "gql-editor" }, h("label", {}, "Query", query), h("label", {}, "Variables (JSON)", variables), run, result),
    schema));
  const data = (await api("POST", "/admin/gql", { query: INTROSPECTION })).data;
  const types = new Map(data.__schema.types.map((t) => [t.name, t]));
  const roots = [["Queries", data.__schema.queryType], ["Mutations", data.__schema.mutationType]].filter(([, t]) => t);
  schema.replaceChildren(...roots.flatMap(([title, root]) => [
    h("h3", {}, title),
    h("ul", {}, (types.get(root.name).fields || []).map((f) => {
      const args = f.args.length ? `(${f.args.map((a) => `${a.name}: ${typeName(a.type)}`).join(", ")})` : "";
      const item = h("li", { "data-field": f.name, title: f.description || "" }, h("code", {}, `${f.name}${args}: ${typeName(f.type)}`));
      item.addEventListener("click", () => {
        const keyword = title === "Mutations" ? "mutation " : "";
        query.value = `${keyword}{\n  ${f.name}${f.args.length ? `(${f.args.map((a) => `${a.name}: `).join(", ")})` : ""} {\n    \n  }\n}`;
        query.focus();
      });
      return item;
    })),
  ]));
}

// ---- start -------------------------------------------------------------------------------

(async () => {
  try {
    await signedIn(await api("GET", "/bai/whoami"));
  } catch {
    signedOut("");
  }
})();
