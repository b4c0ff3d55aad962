// lienthong ops dashboard: plain JS, no build step. Talks to /api with a bearer token kept
// in sessionStorage (this tab's session only). Every value from the API is inserted as text.
"use strict";

const TOKEN_KEY = "lienthong.ops.token";
const HEALTH_RANK = { no_consumer: 0, stale: 1, backlog: 2, ok: 3 };
const HEALTH_LABELS = {
  ok: "Bình thường / OK", no_consumer: "Không có kết nối nhận / No consumer",
  stale: "Ngừng nhận / Stale", backlog: "Tồn đọng / Backlog",
};
const STATE_LABELS = {
  submitted: "Trục đã nhận / Submitted", queued: "Trong hàng đợi / Queued",
  undeliverable: "Không chuyển được / Undeliverable", arrived: "Đã đến / Arrived",
  accepted: "Đã tiếp nhận / Accepted", refused: "Từ chối / Refused",
  assigned: "Đã phân công / Assigned", processing: "Đang xử lý / Processing",
  done: "Hoàn thành / Done", recalled: "Đã thu hồi / Recalled",
  revoked: "Đã hủy / Revoked", replaced: "Đã thay thế / Replaced",
};
const LIST_FILTERS = {  // what "re-deliver" sends again for each list
  failed: { states: ["undeliverable"] },
  not_arrived: { states: ["queued"], not_arrived: true },
  overdue: null,  // the recipient has these: re-sending would not help
};

const state = {
  gateways: [], sortKey: "health", sortAsc: true, list: "failed", pendingConfirm: null,
};

function $(sel) { return document.querySelector(sel); }

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return d.toLocaleString("vi-VN", { hour12: false });
}

function fmtAge(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.round(seconds);
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min";
  if (s < 86400) return (s / 3600).toFixed(1) + " h";
  return (s / 86400).toFixed(1) + " d";
}

function fmtRate(r) { return r ? r.toFixed(2) : "0"; }

class ApiError extends Error {
  constructor(status, body) {
    super((body && (body.message_vi + " / " + body.message_en)) || ("HTTP " + status));
    this.status = status;
    this.body = body;
  }
}

async function api(path, options) {
  const token = sessionStorage.getItem(TOKEN_KEY) || "";
  const opts = Object.assign({ headers: {} }, options || {});
  opts.headers = Object.assign({ Authorization: "Bearer " + token }, opts.headers);
  if (opts.json !== undefined) {
    opts.method = opts.method || "POST";
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(opts.json);
    delete opts.json;
  }
  const resp = await fetch(path, opts);
  let body = null;
  try { body = await resp.json(); } catch (e) { body = null; }
  if (resp.status === 401) {
    showLogin("Mã truy cập không hợp lệ / The token was refused");
    throw new ApiError(401, body);
  }
  if (!resp.ok && resp.status !== 202) throw new ApiError(resp.status, body);
  return body;
}

// ---------- session ----------
function showLogin(message) {
  $("#app").hidden = true;
  $("#login").hidden = false;
  $("#token-forget").hidden = true;
  $("#login-error").textContent = message || "";
  $("#token-input").focus();
}

function showApp() {
  $("#login").hidden = true;
  $("#app").hidden = false;
  $("#token-forget").hidden = false;
}

async function start() {
  if (!sessionStorage.getItem(TOKEN_KEY)) { showLogin(""); return; }
  try {
    await loadGateways();
  } catch (e) {
    if (e.status === 401) return;
    throw e;
  }
  showApp();
  loadThroughput().catch(report);
  loadList().catch(report);
  loadParking().catch(report);
  loadAudit().catch(report);
  loadAnchor().catch(report);
}

function report(err) {
  if (err && err.status === 401) return;
  console.error(err);
  const box = $("#gateway-updated");
  if (box) box.textContent = "Lỗi / Error: " + err.message;
}

// ---------- gateways ----------
async function loadGateways() {
  const data = await api("/api/gateways");
  state.gateways = data.gateways;
  const chips = Object.entries(data.summary).map(([k, n]) =>
    el("span", { class: "chip " + k, dataset: { health: k } }, (HEALTH_LABELS[k] || k) + ": " + n));
  $("#gateway-summary").replaceChildren(...chips);
  $("#gateway-updated").textContent =
    "Cập nhật / Updated " + fmtTime(data.generated_at) + " (" + data.elapsed_ms + " ms)";
  renderGateways();
}

function compare(a, b, key) {
  let x = a[key], y = b[key];
  if (key === "health") { x = HEALTH_RANK[x]; y = HEALTH_RANK[y]; }
  if (x === null || x === undefined) x = -Infinity;
  if (y === null || y === undefined) y = -Infinity;
  if (typeof x === "string" && typeof y === "string") return x.localeCompare(y);
  return x < y ? -1 : x > y ? 1 : 0;
}

function renderGateways() {
  const q = $("#gateway-filter").value.trim().toLowerCase();
  const rows = state.gateways
    .filter((g) => !q || g.gateway_id.toLowerCase().includes(q) ||
                   (g.name || "").toLowerCase().includes(q))
    .sort((a, b) => {
      const c = compare(a, b, state.sortKey);
      return (state.sortAsc ? c : -c) || a.gateway_id.localeCompare(b.gateway_id);
    });
  const body = rows.map((g) => el("tr", {
      class: "health-" + g.health + (g.health === "ok" || g.health === "backlog" ? "" : " unhealthy"),
      dataset: { gateway: g.gateway_id, health: g.health },
    },
    el("td", {}, g.gateway_id),
    el("td", {}, g.name, g.status === "suspended" ? el("span", { class: "flag" }, "tạm dừng / suspended") : null),
    el("td", {}, el("span", { class: "health", title: g.health }, g.health_vi + " / " + g.health_en),
      g.inbox_present ? null : el("span", { class: "flag" }, "mất hàng đợi / inbox missing")),
    el("td", { class: "num" }, g.depth),
    el("td", { class: "num" }, g.unacknowledged),
    el("td", { class: "num" }, g.consumers),
    el("td", { class: "num" }, fmtRate(g.publish_rate)),
    el("td", { class: "num" }, fmtRate(g.deliver_rate)),
    el("td", { class: "num" }, fmtAge(g.oldest_waiting_seconds)),
    el("td", {}, fmtTime(g.last_seen)),
  ));
  $("#gateways-table tbody").replaceChildren(...body);
  for (const th of document.querySelectorAll("#gateways-table th")) {
    th.classList.toggle("sorted-asc", th.dataset.key === state.sortKey && state.sortAsc);
    th.classList.toggle("sorted-desc", th.dataset.key === state.sortKey && !state.sortAsc);
    th.setAttribute("aria-sort", th.dataset.key !== state.sortKey ? "none"
      : state.sortAsc ? "ascending" : "descending");
  }
}

// ---------- throughput chart ----------
async function loadThroughput() {
  const data = await api("/api/throughput?minutes=60");
  drawChart(data.series);
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function drawChart(series) {
  const W = 900, H = 220, L = 40, R = 10, T = 10, B = 24;
  const max = Math.max(1, ...series.map((p) => Math.max(p.edoc, p.status, p.rejected)));
  const n = Math.max(series.length, 2);
  const x = (i) => L + (i * (W - L - R)) / (n - 1);
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none",
                            "data-points": series.length });
  root.append(svg("line", { class: "axis", x1: L, y1: y(0), x2: W - R, y2: y(0) }));
  root.append(svg("line", { class: "axis", x1: L, y1: T, x2: L, y2: y(0) }));
  root.append(svg("text", { x: 2, y: T + 10 }, max));
  root.append(svg("text", { x: 2, y: y(0) }, 0));
  series.forEach((p, i) => {
    if (i % 10 === 0 || i === series.length - 1) {
      const t = new Date(p.minute);
      const label = t.toLocaleTimeString("vi-VN", { hour: "2-digit", minute: "2-digit", hour12: false });
      const anchor = i === 0 ? "start" : i === series.length - 1 ? "end" : "middle";
      root.append(svg("text", { x: x(i), y: H - 6, "text-anchor": anchor }, label));
    }
  });
  for (const [key, color] of [["edoc", "var(--edoc)"], ["status", "var(--status)"],
                              ["rejected", "var(--rejected)"]]) {
    const pts = series.map((p, i) => `${x(i).toFixed(1)},${y(p[key]).toFixed(1)}`).join(" ");
    root.append(svg("polyline", { points: pts, fill: "none", stroke: color, "stroke-width": 2,
                                  class: "series-" + key }));
  }
  const totals = series.reduce((a, p) => [a[0] + p.edoc, a[1] + p.status, a[2] + p.rejected], [0, 0, 0]);
  root.append(svg("title", {}, `Văn bản / documents ${totals[0]}, trạng thái / statuses ${totals[1]}, từ chối / rejected ${totals[2]}`));
  $("#chart").replaceChildren(root);
}

// ---------- document tracking ----------
async function searchDocument(ident) {
  $("#doc-search-error").textContent = "";
  $("#timeline").replaceChildren();
  if (!ident) return;
  let data;
  try {
    data = await api("/api/documents/" + encodeURIComponent(ident));
  } catch (e) {
    if (e.status === 404) { $("#doc-search-error").textContent = e.message; return; }
    throw e;
  }
  $("#timeline").replaceChildren(...data.documents.map(renderDocument));
}

function renderDocument(d) {
  const facts = [
    ["Mã trên trục / Hub id", d.hub_id],
    ["DocumentId", d.document_id],
    ["Loại / Kind", d.kind + (d.status_code ? " " + d.status_code : "")],
    ["Số, ký hiệu / Code", d.code],
    ["Trích yếu / Subject", d.subject],
    ["Cơ quan gửi / Sender", d.sender_code + (d.sender_name ? " — " + d.sender_name : "")],
    ["Hệ thống gửi / Sender gateway", d.sender_gateway_id],
    ["Nhận lúc / Received", fmtTime(d.received_at)],
    ["Loại nghiệp vụ / Business type", d.business_type],
    ["Hạn xử lý / Due date", d.due_date],
  ];
  const dl = el("dl", {}, ...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v ?? "—")]));
  const recipients = d.deliveries.map((r) => el("div", {
      class: "recipient", dataset: { agency: r.agency_code, state: r.state } },
    el("div", {},
      el("strong", {}, r.agency_code), " — ", r.agency_name, " · ",
      el("span", { class: "muted" }, "hệ thống / gateway " + r.gateway_id), " · ",
      el("span", { class: "state" }, STATE_LABELS[r.state] || r.state),
      r.last_status_code ? " (" + r.last_status_code + ")" : "",
      r.not_arrived ? el("span", { class: "flag" }, "chưa đến / not arrived") : null,
      r.overdue ? el("span", { class: "flag" }, "quá hạn / overdue") : null,
      r.last_error ? el("div", { class: "error" }, r.last_error) : null),
    el("ul", { class: "events" }, ...r.events.map((e) => el("li", { class: "event" },
      fmtTime(e.time), " — ", el("span", { class: "state" }, STATE_LABELS[e.state] || e.state),
      e.status_code ? " · mã / code " + e.status_code : "",
      e.issuer ? " · " + e.issuer : "",
      e.description ? " · " + e.description : "",
      ...e.flags.map((f) => el("span", { class: "flag" }, f))))),
  ));
  return el("article", { class: "doc", dataset: { hubId: d.hub_id } },
    dl, el("h3", {}, "Nơi nhận / Recipients (" + d.deliveries.length + ")"), ...recipients);
}

// ---------- delivery lists and re-delivery ----------
function listQuery() {
  const p = new URLSearchParams({ state: state.list, limit: "200" });
  const rec = $("#list-recipient").value.trim();
  const gw = $("#list-gateway").value.trim();
  if (rec) p.set("recipient", rec);
  if (gw) p.set("gateway", gw);
  return p;
}

async function loadList() {
  const data = await api("/api/deliveries?" + listQuery().toString());
  $("#list-count").textContent = data.count + " lượt chuyển / deliveries" +
    (data.count >= data.limit ? " (tối đa / at most " + data.limit + ")" : "");
  const rows = data.deliveries.map((d) => el("tr", { dataset: { delivery: d.delivery_id } },
    el("td", {}, fmtTime(d.created_at)),
    el("td", {}, el("a", { href: "#", class: "doc-link", dataset: { hub: d.hub_id } },
                    d.code || d.document_id || d.hub_id), el("div", { class: "muted" }, d.subject || "")),
    el("td", {}, d.sender_code),
    el("td", {}, d.recipient_code, el("div", { class: "muted" }, d.recipient_name || "")),
    el("td", {}, d.gateway_id),
    el("td", {}, STATE_LABELS[d.state] || d.state),
    el("td", { class: "error" }, d.last_error || ""),
  ));
  $("#deliveries-table tbody").replaceChildren(...rows);
  $("#redeliver-preview").disabled = LIST_FILTERS[state.list] === null;
}

function redeliveryFilter() {
  const base = LIST_FILTERS[state.list];
  const flt = Object.assign({}, base);
  const rec = $("#list-recipient").value.trim();
  const gw = $("#list-gateway").value.trim();
  if (rec) flt.recipient = rec;
  if (gw) flt.gateway = gw;
  return flt;
}

async function previewRedelivery() {
  const flt = redeliveryFilter();
  $("#redeliver-result").textContent = "";
  const data = await api("/api/redeliveries", { json: { filter: flt } });
  state.pendingConfirm = { filter: flt, confirm: data.confirm };
  $("#redeliver-summary").textContent =
    "Xem trước (chưa gửi) / Dry run (nothing sent): " + data.preview.total +
    " lượt chuyển sẽ được gửi lại / deliveries would be re-sent";
  $("#redeliver-panel").dataset.total = data.preview.total;
  const rows = data.preview.per_recipient.map((r) => el("tr", {},
    el("td", {}, r.agency, el("div", { class: "muted" }, r.name || "")),
    el("td", {}, r.gateway), el("td", { class: "num" }, r.count)));
  $("#redeliver-table tbody").replaceChildren(...rows);
  $("#redeliver-confirm").disabled = data.preview.total === 0;
  $("#redeliver-panel").hidden = false;
}

async function confirmRedelivery() {
  const pending = state.pendingConfirm;
  if (!pending) return;
  $("#redeliver-confirm").disabled = true;
  try {
    const data = await api("/api/redeliveries",
                           { json: { filter: pending.filter, confirm: pending.confirm } });
    const job = data.job;
    $("#redeliver-result").textContent = job
      ? "Công việc / Job " + job.id + ": " + job.state + ", " + job.done + " đã gửi / sent (" +
        job.queued + " vào hàng đợi / queued, " + job.undeliverable + " không chuyển được / undeliverable)"
      : "Đang chạy nền / Running in the background";
    state.pendingConfirm = null;
    loadList().catch(report);
  } catch (e) {
    $("#redeliver-result").textContent = e.message;
    $("#redeliver-confirm").disabled = false;
  }
}

// ---------- parking ----------
async function loadParking() {
  const data = await api("/api/parking?limit=100");
  $("#parking-count").textContent = data.count + " tin trong khu cách ly / parked messages" +
    (data.broker_waiting ? " · " + data.broker_waiting + " chờ ghi sổ / waiting in lt.parking" : "");
  $("#parking-table tbody").replaceChildren(...data.parked.map((p) => el("tr", {},
    el("td", {}, fmtTime(p.parked_at)), el("td", {}, p.reason), el("td", {}, p.gateway_id || "—"),
    el("td", {}, p.source_queue || "—"), el("td", {}, p.error || ""))));
}

// ---------- audit log ----------
const AUDIT_DETAILS_MAX = 140;  // characters of the details shown in the table; all in the title

function auditQuery() {
  const p = new URLSearchParams({ limit: "200" });
  let action = $("#audit-action").value.trim();
  const actor = $("#audit-actor").value.trim();
  // the field is a prefix: the API takes "gateway." or "gateway*" as one, "gateway" exactly
  if (action && !action.endsWith(".") && !action.endsWith("*")) action += "*";
  if (action) p.set("action", action);
  if (actor) p.set("actor", actor);
  return p;
}

function shorten(text, max) {
  return text.length <= max ? text : text.slice(0, max - 1) + "…";
}

function en(text) { return el("span", { class: "en", lang: "en" }, text); }

async function loadAudit() {
  $("#audit-error").textContent = "";
  let data;
  try {
    data = await api("/api/audit?" + auditQuery().toString());
  } catch (e) {
    if (e.status !== 401) $("#audit-error").textContent = "Lỗi / Error: " + e.message;
    $("#audit-table tbody").replaceChildren();
    $("#audit-count").replaceChildren();
    return;
  }
  const n = data.entries.length;
  $("#audit-count").replaceChildren(n + " mục ", en("/ entries"),
    ...(n >= 200 ? [" (200 mục mới nhất ", en("/ the newest 200"), ")"] : []));
  $("#audit-table tbody").replaceChildren(...data.entries.map((r) => {
    const details = JSON.stringify(r.details);
    return el("tr", { dataset: { id: r.id, action: r.action } },
      el("td", { class: "time" }, fmtTime(r.at)), el("td", {}, r.actor), el("td", {}, r.action),
      el("td", {}, r.subject),
      el("td", { class: "details", title: details }, shorten(details, AUDIT_DETAILS_MAX)));
  }));
}

async function loadAnchor() {
  const box = $("#audit-anchor");
  let data;
  try {
    data = await api("/api/audit/anchors");
  } catch (e) {
    if (e.status !== 401) $("#audit-error").textContent = "Lỗi / Error: " + e.message;
    return;
  }
  const last = data.anchors[0];
  if (!last) {
    box.replaceChildren("Chưa có mốc neo nào được công bố ", en("/ No anchor published yet"));
    box.dataset.number = "";
    return;
  }
  const a = last.anchor;
  box.dataset.number = a.number;
  box.replaceChildren(
    "Mốc neo mới nhất ", en("/ Latest anchor"), ": số ", en("/ no. "), String(a.number),
    " · mục đầu chuỗi ", en("/ head id "), String(a.seq),
    " · lúc ", en("/ at "), fmtTime(a.at),
    " · gửi tới ", String(last.gateways), " hệ thống ", en("/ gateways"));
  box.title = "hash " + a.hash;
}

// ---------- wiring ----------
function wire() {
  $("#token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const token = $("#token-input").value.trim();
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    $("#token-input").value = "";
    start().catch(report);
  });
  $("#token-forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin("");
  });
  for (const th of document.querySelectorAll("#gateways-table th")) {
    const sort = () => {
      const key = th.dataset.key;
      if (state.sortKey === key) state.sortAsc = !state.sortAsc;
      else { state.sortKey = key; state.sortAsc = true; }
      renderGateways();
    };
    // sortable by keyboard too: Tab to a header, Enter or Space sorts
    th.tabIndex = 0;
    th.setAttribute("scope", "col");
    th.addEventListener("click", sort);
    th.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); sort(); }
    });
  }
  $("#gateway-filter").addEventListener("input", renderGateways);
  $("#doc-search-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    searchDocument($("#doc-search-input").value.trim()).catch(report);
  });
  $("#deliveries-table").addEventListener("click", (ev) => {
    const link = ev.target.closest("a.doc-link");
    if (!link) return;
    ev.preventDefault();
    $("#doc-search-input").value = link.dataset.hub;
    searchDocument(link.dataset.hub).catch(report);
    $("#documents").scrollIntoView();
  });
  const tabs = [...document.querySelectorAll("#list-tabs button")];
  tabs.forEach((b, i) => {
    // a tablist: arrow keys, Home and End move between the tabs (WAI-ARIA tabs pattern)
    b.addEventListener("keydown", (ev) => {
      const to = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[ev.key];
      if (to === undefined) return;
      ev.preventDefault();
      const t = tabs[(to + tabs.length) % tabs.length];
      t.focus();
      t.click();
    });
  });
  for (const b of tabs) {
    b.addEventListener("click", () => {
      state.list = b.dataset.list;
      for (const o of tabs) {
        o.classList.toggle("active", o === b);
        o.setAttribute("aria-selected", String(o === b));
        o.tabIndex = o === b ? 0 : -1;
      }
      $("#redeliver-panel").hidden = true;
      loadList().catch(report);
    });
  }
  $("#list-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    $("#redeliver-panel").hidden = true;
    loadList().catch(report);
  });
  $("#redeliver-preview").addEventListener("click", () => previewRedelivery().catch((e) => {
    $("#redeliver-panel").hidden = false;
    $("#redeliver-summary").textContent = e.message;
  }));
  $("#redeliver-confirm").addEventListener("click", () => confirmRedelivery());
  $("#redeliver-cancel").addEventListener("click", () => {
    state.pendingConfirm = null;
    $("#redeliver-panel").hidden = true;
  });
  $("#audit-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    loadAudit().catch(report);
    loadAnchor().catch(report);
  });
  setInterval(() => {
    if (!$("#app").hidden && !document.hidden) loadGateways().catch(report);
  }, 10000);
  setInterval(() => {
    if (!$("#app").hidden && !document.hidden) loadThroughput().catch(report);
  }, 60000);
}

wire();
start().catch(report);
