// Strata testnet dashboard: polls /api/state once a second and draws it.
// No external resources, so the page works offline.
"use strict";

const SVGNS = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

function el(name, attrs, text) {
  const e = document.createElementNS(SVGNS, name);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function fmtSeconds(s) {
  if (!s) return "–";
  return s < 1 ? (s * 1000).toFixed(0) + " ms" : s.toFixed(2) + " s";
}

function drawGraph(state) {
  const svg = $("graph");
  const w = svg.clientWidth || 800, h = svg.clientHeight || 320;
  svg.replaceChildren();
  const layers = state.layers || [];
  const pos = new Map();
  layers.forEach((layer, i) => {
    const x = (w * (i + 1)) / (layers.length + 1);
    svg.appendChild(el("text", { x, y: 16, class: "layer-label" }, "stratum " + (i + 1)));
    layer.forEach((n, j) => {
      pos.set(n.id, { x, y: 40 + ((h - 60) * (j + 0.5)) / layer.length });
    });
  });
  for (const e of state.edges || []) {
    const a = pos.get(e.from), b = pos.get(e.to);
    if (a && b) svg.appendChild(el("line", { x1: a.x, y1: a.y, x2: b.x, y2: b.y, class: "edge" }));
  }
  layers.forEach((layer, i) => {
    for (const n of layer) {
      const p = pos.get(n.id);
      const g = el("g", { class: "relay" + (n.up ? "" : " down"), "data-layer": i, "data-id": n.id });
      g.appendChild(el("circle", { cx: p.x, cy: p.y, r: 18 }));
      g.appendChild(el("text", { x: p.x, y: p.y + 4 }, n.name));
      g.appendChild(el("text", { x: p.x, y: p.y + 32, class: "axis" }, n.rate_in.toFixed(1) + "/s"));
      const title = el("title", {}, n.name + " " + n.id + "\nin " + n.packets_in + ", out " + n.packets_out + ", replay drops " + n.replay_drops);
      g.appendChild(title);
      svg.appendChild(g);
    }
  });
}

function drawHistogram(hist) {
  const svg = $("hist");
  const w = svg.clientWidth || 400, h = svg.clientHeight || 140;
  svg.replaceChildren();
  const counts = (hist && hist.counts) || [];
  const bounds = (hist && hist.bounds_s) || [];
  if (!counts.length) return;
  const max = Math.max(1, ...counts);
  const bw = w / counts.length;
  counts.forEach((c, i) => {
    const bh = ((h - 20) * c) / max;
    svg.appendChild(el("rect", { x: i * bw + 1, y: h - 20 - bh, width: bw - 2, height: bh, class: "bar" }, undefined));
    const label = i < bounds.length ? "≤" + fmtSeconds(bounds[i]) : ">" + fmtSeconds(bounds[bounds.length - 1]);
    if (i % 2 === 0) svg.appendChild(el("text", { x: i * bw + bw / 2, y: h - 6, class: "axis", "text-anchor": "middle" }, label));
  });
}

function fillSelects(clients) {
  for (const [id, def] of [["from", 0], ["to", 1]]) {
    const sel = $(id);
    if (sel.options.length === clients.length) continue;
    sel.replaceChildren();
    clients.forEach((c, i) => sel.appendChild(new Option(c.name, i, false, i === def)));
  }
}

function drawInboxes(clients) {
  const box = $("inboxes");
  box.replaceChildren();
  clients.forEach((c, i) => {
    const div = document.createElement("div");
    div.className = "inbox";
    div.id = "inbox-" + i;
    const h = document.createElement("h3");
    h.textContent = c.name + " — home " + c.home;
    div.appendChild(h);
    const ul = document.createElement("ul");
    for (const m of (c.inbox || []).slice(-20).reverse()) {
      const li = document.createElement("li");
      li.className = "message";
      li.textContent = m.from + ": " + m.text;
      const st = document.createElement("span");
      st.className = "status";
      st.textContent = m.latency_s ? fmtSeconds(m.latency_s) : "";
      li.appendChild(st);
      ul.appendChild(li);
    }
    for (const m of (c.sent || []).filter((m) => m.status !== "delivered").slice(-5)) {
      const li = document.createElement("li");
      li.className = "outgoing";
      li.textContent = "→ " + m.to + ": " + m.text;
      const st = document.createElement("span");
      st.className = "status " + m.status;
      st.textContent = m.status;
      li.appendChild(st);
      ul.appendChild(li);
    }
    div.appendChild(ul);
    box.appendChild(div);
  });
}

function drawNodes(state) {
  const tbody = $("nodes").querySelector("tbody");
  tbody.replaceChildren();
  const rows = [];
  (state.layers || []).forEach((layer, i) => layer.forEach((n) => rows.push([n, "relay, stratum " + (i + 1)])));
  (state.mailboxes || []).forEach((n) => rows.push([n, "mailbox"]));
  for (const [n, role] of rows) {
    const tr = document.createElement("tr");
    for (const v of [n.name, role, n.packets_in, n.packets_out, n.rate_in.toFixed(1), n.replay_drops]) {
      const td = document.createElement("td");
      td.textContent = v;
      tr.appendChild(td);
    }
    const td = document.createElement("td");
    if (n.metrics) {
      const a = document.createElement("a");
      a.href = n.metrics;
      a.textContent = "/metrics";
      td.appendChild(a);
    }
    tr.appendChild(td);
    tbody.appendChild(tr);
  }
}

async function refresh() {
  try {
    const res = await fetch("api/state", { cache: "no-store" });
    if (!res.ok) throw new Error(res.status + " " + res.statusText);
    const state = await res.json();
    $("chain").textContent = state.chain_id + " · height " + state.height + " · up " + state.uptime_s.toFixed(0) + " s";
    $("epoch").textContent = "(epoch " + state.epoch + ")";
    const m = state.messages || {};
    $("m-sent").textContent = m.sent;
    $("m-delivered").textContent = m.delivered;
    $("m-lost").textContent = m.lost;
    $("m-p50").textContent = fmtSeconds(m.p50_s);
    $("m-p99").textContent = fmtSeconds(m.p99_s);
    drawGraph(state);
    drawHistogram(state.latency);
    fillSelects(state.clients || []);
    drawInboxes(state.clients || []);
    drawNodes(state);
  } catch (e) {
    $("chain").textContent = "testnet unreachable: " + e.message;
  }
}

$("send").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const body = { from: Number($("from").value), to: Number($("to").value), text: $("text").value };
  $("send-status").textContent = "sending…";
  try {
    const res = await fetch("api/send", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    const text = await res.text();
    if (!res.ok) throw new Error(text.trim());
    $("send-status").textContent = "queued " + JSON.parse(text).id;
    $("text").value = "";
  } catch (e) {
    $("send-status").textContent = "not sent: " + e.message;
  }
  refresh();
});

refresh();
setInterval(refresh, 1000);
