// The admin security overview. Served by Rampart under a strict CSP: no
// inline code, no third-party origin. Data comes from the admin API with
// the session cookie; unsafe requests carry the CSRF token kept in
// sessionStorage since signing in here, or the rampart_csrf cookie that
// /login and OAuth sign-ins leave. Text from the API is only ever set with
// textContent, never parsed as HTML.
"use strict";

const CSRF_KEY = "rampart-csrf";
const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";

function cookieCsrf() {
  const pair = document.cookie.split("; ").find((entry) => entry.startsWith("rampart_csrf="));
  return pair ? decodeURIComponent(pair.slice("rampart_csrf=".length)) : "";
}

async function api(path, options = {}) {
  const headers = Object.assign({ Accept: "application/json" }, options.headers || {});
  const csrf = sessionStorage.getItem(CSRF_KEY) || cookieCsrf();
  if (options.method && options.method !== "GET" && csrf) headers["X-CSRF-Token"] = csrf;
  const response = await fetch(path, Object.assign({}, options, { headers, credentials: "same-origin" }));
  let body = null;
  if (response.status !== 204) {
    try { body = await response.json(); } catch (_) { body = null; }
  }
  return { status: response.status, body };
}

function show(id, visible) { $(id).hidden = !visible; }

function svgElement(name, attributes) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  return element;
}

function drawBars(container, values) {
  const width = 600, height = 180, max = Math.max(1, ...values);
  const svg = svgElement("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "requests per minute" });
  svg.appendChild(svgElement("line", { x1: 0, y1: height - 1, x2: width, y2: height - 1, class: "axis" }));
  const step = width / values.length;
  values.forEach((value, index) => {
    const barHeight = (value / max) * (height - 10);
    svg.appendChild(svgElement("rect", {
      x: index * step + 1, y: height - 1 - barHeight, width: Math.max(step - 2, 1), height: barHeight, class: "bar",
    }));
  });
  container.replaceChildren(svg);
}

function drawLines(container, series) {
  const width = 600, height = 180;
  const max = Math.max(1, ...series.flatMap((s) => s.values));
  const svg = svgElement("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "denials per minute" });
  svg.appendChild(svgElement("line", { x1: 0, y1: height - 1, x2: width, y2: height - 1, class: "axis" }));
  for (const { name, values } of series) {
    const step = width / Math.max(values.length - 1, 1);
    const points = values.map((v, i) => `${(i * step).toFixed(1)},${(height - 1 - (v / max) * (height - 10)).toFixed(1)}`);
    svg.appendChild(svgElement("polyline", { points: points.join(" "), class: name }));
  }
  container.replaceChildren(svg);
}

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : String(text);
  return td;
}

function when(time) { return time ? new Date(time).toLocaleString() : "until lifted"; }

async function loadBlocks() {
  const { status, body } = await api("/api/admin/blocks?limit=100");
  if (status !== 200) throw new Error(`blocks: ${status}`);
  const rows = body.items.map((block) => {
    const tr = document.createElement("tr");
    tr.dataset.ip = block.ip;
    tr.append(cell(block.ip), cell(block.reason), cell(when(block.created_at)), cell(when(block.expires_at)));
    const action = document.createElement("td");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "secondary";
    button.textContent = "Unblock";
    button.addEventListener("click", async () => {
      button.disabled = true;
      const result = await api(`/api/admin/blocks/${encodeURIComponent(block.id)}`, { method: "DELETE" });
      $("status").textContent = result.status === 204 ? `Unblocked ${block.ip}.` : `Could not unblock ${block.ip} (${result.status}).`;
      await loadBlocks();
    });
    action.appendChild(button);
    tr.appendChild(action);
    return tr;
  });
  $("blocks").querySelector("tbody").replaceChildren(...rows);
  show("no-blocks", rows.length === 0);
}

async function loadEvents() {
  const { status, body } = await api("/api/admin/audit?limit=20");
  if (status !== 200) throw new Error(`audit: ${status}`);
  const rows = body.items.map((event) => {
    const tr = document.createElement("tr");
    tr.append(cell(when(event.time)), cell(event.event), cell(event.outcome), cell(event.client_ip), cell(event.route), cell(event.user_id));
    return tr;
  });
  $("events").querySelector("tbody").replaceChildren(...rows);
}

async function loadStats() {
  const { status, body } = await api("/api/admin/stats");
  if (status !== 200) return status;
  const minutes = body.minutes;
  drawBars($("traffic-chart"), minutes.map((m) => m.requests));
  drawLines($("denials-chart"), [
    { name: "s401", values: minutes.map((m) => m.unauthorized) },
    { name: "s403", values: minutes.map((m) => m.forbidden) },
    { name: "s429", values: minutes.map((m) => m.rate_limited) },
  ]);
  return 200;
}

async function openDashboard() {
  const status = await loadStats();
  if (status === 401) { show("sign-in-panel", true); show("dashboard", false); show("sign-out", false); return; }
  if (status === 403) { $("status").textContent = "This page is for admins."; show("sign-in-panel", true); return; }
  if (status !== 200) { $("status").textContent = `The server answered ${status}.`; return; }
  show("sign-in-panel", false);
  show("dashboard", true);
  show("sign-out", true);
  await Promise.all([loadBlocks(), loadEvents()]);
  $("status").textContent = `Updated ${new Date().toLocaleTimeString()}.`;
}

$("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("sign-in-error").textContent = "";
  const { status, body } = await api("/auth/session", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ email: $("email").value, password: $("password").value }),
  });
  if (status !== 200) {
    $("sign-in-error").textContent = (body && body.detail) || `Sign-in failed (${status}).`;
    return;
  }
  sessionStorage.setItem(CSRF_KEY, body.csrf_token);
  $("password").value = "";
  await openDashboard();
});

$("sign-out").addEventListener("click", async () => {
  await api("/auth/session", { method: "DELETE" });
  sessionStorage.removeItem(CSRF_KEY);
  show("dashboard", false);
  show("sign-out", false);
  show("sign-in-panel", true);
});

openDashboard().catch((error) => { $("status").textContent = String(error); });
setInterval(() => { if (!$("dashboard").hidden) openDashboard().catch(() => {}); }, 30000);
