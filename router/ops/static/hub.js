// lienthong ops dashboard, part two: the hub overview (top band, red banner) and the national
// statistics page. Uses app.js's helpers ($, el, svg, api, fmtAge, TOKEN_KEY); every value
// from the API is inserted as text.
"use strict";

const OVERVIEW_EVERY_MS = 5000;  // the banner appears within this after routers stop

function pct(v) { return v === null || v === undefined ? "—" : (v * 100).toFixed(1) + " %"; }
function secs(v) {
  if (v === null || v === undefined) return "—";
  if (v < 1) return Math.round(v * 1000) + " ms";
  return fmtAge(v);
}

// ---------- hub overview ----------
function figure(vi, en, value, bad) {
  return el("div", { class: bad ? "bad" : null },
    el("dt", {}, vi + " ", el("span", { class: "en", lang: "en" }, "/ " + en)),
    el("dd", {}, value));
}

function renderOverview(o) {
  const oldest = o.router_in_oldest_seconds === null ? "—"
    : fmtAge(o.router_in_oldest_seconds) + (o.router_in_oldest_source === "since_nonempty" ? " ≤" : "");
  $("#overview-figures").replaceChildren(
    figure("Router đang nhận", "Routers consuming", o.routers, o.routers === 0),
    figure("Chờ định tuyến", "lt.router.in depth", o.router_in_depth, o.router_in_growing),
    figure("Gói chờ lâu nhất", "Oldest waiting", oldest, false),
    figure("Không định tuyến được", "Unroutable", o.unroutable, o.unroutable > 0),
    figure("Khu cách ly", "Parked", o.parked, false),
    figure("Trễ nhận → hộp thư p50 · p99", "Received → inbox p50 · p99",
           secs(o.latency_p50_seconds) + " · " + secs(o.latency_p99_seconds), false),
    figure("Văn bản hôm nay", "Documents today", o.documents_today, false),
    figure("Đã chuyển hôm nay", "Delivered today", pct(o.delivered_share_today), false),
  );
  $("#overview-alerts").replaceChildren(...o.alerts.map((a) => el("li", { class: a.severity },
    (a.severity === "critical" ? "● " : "○ ") + a.message_vi + " ",
    el("span", { class: "en", lang: "en" }, "/ " + a.message_en))));
  const banner = $("#hub-banner");
  const critical = o.alerts.filter((a) => a.severity === "critical");
  banner.hidden = !o.banner;
  banner.replaceChildren(...critical.map((a) => el("div", { class: "banner-line",
    "data-alert": a.name }, a.message_vi + " ", el("span", { class: "en", lang: "en" },
    "/ " + a.message_en))));
  $("#overview-updated").textContent = "Cập nhật / Updated " + fmtTime(o.checked_at);
}

async function loadOverview() {
  try {
    renderOverview(await api("/api/overview"));
  } catch (e) {
    if (e.status === 401) return;
    // the ops service cannot see the hub: say so in the banner, never keep a stale "all fine"
    const banner = $("#hub-banner");
    banner.hidden = false;
    banner.replaceChildren(el("div", { class: "banner-line", "data-alert": "unavailable" },
      "Không lấy được tình trạng trục: " + e.message));
  }
}

// ---------- national statistics ----------
const statsState = { loaded: false };

function statsQuery(format) {
  const p = new URLSearchParams();
  if ($("#stats-from").value) p.set("from", $("#stats-from").value);
  if ($("#stats-to").value) p.set("to", $("#stats-to").value);
  p.set("level", $("#stats-level").value);
  const within = $("#stats-within").value.trim();
  if (within) p.set("within", within);
  if (format) p.set("format", format);
  return "/api/statistics?" + p.toString();
}

function drawRanking(units) {
  const shown = units.filter((u) => u.sent > 0).slice(0, 30);
  const row = 18, L = 170, W = 900, R = 60, H = Math.max(row * shown.length + 8, 30);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, "data-bars": shown.length });
  shown.forEach((u, i) => {
    const y = 4 + i * row, full = W - L - R;
    const e = u.electronic_share || 0;
    root.append(svg("text", { x: L - 6, y: y + 12, "text-anchor": "end" },
      `${u.rank}. ${u.name}`.slice(0, 28)));
    root.append(svg("rect", { class: "paper", x: L, y, width: full, height: row - 4 }));
    root.append(svg("rect", { class: "bar", x: L, y, width: (full * e).toFixed(1),
                              height: row - 4 }));
    root.append(svg("text", { x: W - R + 4, y: y + 12 }, (e * 100).toFixed(1) + " %"));
  });
  root.append(svg("title", {}, "Tỷ lệ gửi điện tử hoàn toàn / fully electronic share"));
  $("#stats-chart").replaceChildren(root);
}

function renderStatistics(data) {
  $("#stats-from").value = $("#stats-from").value || data.from.slice(0, 10);
  $("#stats-count").textContent = `${data.units.length} đơn vị / units, `
    + `${data.from.slice(0, 10)} → ${data.to.slice(0, 10)}`;
  drawRanking(data.units);
  $("#stats-table tbody").replaceChildren(...data.units.map((u) => el("tr", {},
    el("td", { class: "num" }, u.rank),
    el("td", {}, el("a", { href: "#", class: "drill", dataset: { unit: u.unit } }, u.name),
      " ", el("span", { class: "muted" }, u.unit)),
    el("td", { class: "num" }, u.sent), el("td", { class: "num" }, u.sent_paper),
    el("td", { class: "num" }, pct(u.electronic_share)),
    el("td", { class: "num" }, u.received), el("td", { class: "num" }, pct(u.done_share)),
    el("td", { class: "num" }, secs(u.to_01_median_s)),
    el("td", { class: "num" }, secs(u.to_06_median_s) + " · " + secs(u.to_06_p90_s)),
    el("td", { class: "num" }, u.late), el("td", { class: "num" }, u.refused),
    el("td", { class: "num" }, u.revoked))));
}

async function loadStatistics() {
  $("#stats-error").textContent = "";
  try {
    renderStatistics(await api(statsQuery(null)));
    statsState.loaded = true;
  } catch (e) {
    if (e.status !== 401) $("#stats-error").textContent = e.message;
  }
}

async function downloadStatistics(format) {
  const token = sessionStorage.getItem(TOKEN_KEY) || "";
  const resp = await fetch(statsQuery(format), { headers: { Authorization: "Bearer " + token } });
  if (!resp.ok) {
    let body = null;
    try { body = await resp.json(); } catch (e) { body = null; }
    $("#stats-error").textContent = body ? body.message_vi + " / " + body.message_en : "HTTP " + resp.status;
    return;
  }
  const url = URL.createObjectURL(await resp.blob());
  const a = el("a", { href: url, download: "thong-ke." + format });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// ---------- wiring ----------
function hubVisible() { return !$("#app").hidden && !document.hidden; }

function hubWire() {
  $("#stats-form").addEventListener("submit", (ev) => { ev.preventDefault(); loadStatistics(); });
  $("#stats-csv").addEventListener("click", () => downloadStatistics("csv"));
  $("#stats-xlsx").addEventListener("click", () => downloadStatistics("xlsx"));
  $("#stats-table").addEventListener("click", (ev) => {
    const link = ev.target.closest("a.drill");
    if (!link) return;
    ev.preventDefault();
    $("#stats-within").value = link.dataset.unit;
    loadStatistics();
  });
  // start when the app shows (app.js reveals it after the token is accepted)
  new MutationObserver(() => {
    if (!$("#app").hidden) {
      loadOverview();
      if (!statsState.loaded) loadStatistics();
    }
  }).observe($("#app"), { attributes: true, attributeFilter: ["hidden"] });
  if (!$("#app").hidden) { loadOverview(); loadStatistics(); }
  setInterval(() => { if (hubVisible()) loadOverview(); }, OVERVIEW_EVERY_MS);
}

hubWire();
