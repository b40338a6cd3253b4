// The live fabric view: draws what the controller's REST API says, once a second.
//
// GET view/layout gives the rows (hosts at the bottom, switch layers above, nodes in order)
// and the utilization scale (controllers/view.py owns both: this file only draws them);
// GET topology the directed switch links and their utilization; GET policy the active policy;
// GET paths the switch paths of the picked host pair. Every drawn link carries data-a, data-b
// (dpids, direction a -> b), data-util (the utilization it was drawn with) and data-colour,
// so a test can compare the drawing with the API. No build step, no library.
"use strict";

(() => {
  const REFRESH_MS = 1000;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const TOKEN_KEY = "aifabric.rest-token";
  const WIDTH = 1200, ROW_GAP = 130, MARGIN = 40, LABEL_W = 130;

  const state = {token: null, src: "", dst: "", hostsKey: "", refreshes: 0,
                 chain: Promise.resolve(), waitingForToken: false, timer: null};
  const $ = (id) => document.getElementById(id);

  class AuthError extends Error {}

  // A token given as #token=... : a URL fragment is never sent to a server; it is kept for
  // this tab only and taken out of the address bar.
  function takeToken() {
    const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
    if (m) {
      sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
      history.replaceState(null, "", location.pathname + location.search);
    }
    state.token = sessionStorage.getItem(TOKEN_KEY);
  }

  async function get(path) {
    const headers = state.token ? {Authorization: "Bearer " + state.token} : {};
    const r = await fetch(path, {headers, cache: "no-store"});
    if (r.status === 401) throw new AuthError("this controller requires its REST token");
    const body = await r.json();
    if (!r.ok) throw new Error(`${path}: ${r.status} ${body.error || ""}`);
    return body;
  }

  function el(name, attrs, parent) {
    const e = document.createElementNS(SVG_NS, name);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (parent) parent.appendChild(e);
    return e;
  }

  function titled(e, text) {
    el("title", {}, e).textContent = text;
    return e;
  }

  // The scale's colour for a utilization: the last bin whose lower bound it reaches.
  function colourFor(legend, util) {
    let colour = legend[0].colour;
    for (const bin of legend) if (util >= bin.lo) colour = bin.colour;
    return colour;
  }

  function fmtRate(bps) {
    return bps >= 1e9 ? (bps / 1e9).toFixed(2) + " Gbit/s" : (bps / 1e6).toFixed(2) + " Mbit/s";
  }

  function drawLegend(legend) {
    const ol = $("legend");
    if (ol.childElementCount === legend.length) return;
    ol.replaceChildren();
    for (const bin of legend.slice().reverse()) {
      const li = document.createElement("li");
      li.className = "legend-bin";
      li.dataset.lo = bin.lo;
      li.dataset.hi = bin.hi === null ? "" : bin.hi;
      li.dataset.colour = bin.colour;
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = bin.colour;
      const pct = (x) => Math.round(x * 100);
      li.append(swatch, bin.hi === null ? `${pct(bin.lo)} % and more`
                                        : `${pct(bin.lo)} - ${pct(bin.hi)} %`);
      ol.appendChild(li);
    }
  }

  function fillSelects(hostRow) {
    const key = hostRow.map((h) => h.ip).join(",");
    if (key === state.hostsKey) return;
    state.hostsKey = key;
    for (const id of ["src", "dst"]) {
      const select = $(id);
      select.replaceChildren(new Option("(pick a host)", ""));
      for (const h of hostRow) select.appendChild(new Option(`${h.name} (${h.ip})`, h.ip));
      select.value = state[id];
    }
  }

  // Positions of every node: rows bottom up, nodes spread evenly in their row.
  function place(rows) {
    const height = 2 * MARGIN + (rows.length - 1) * ROW_GAP;
    const pos = {switch: new Map(), host: new Map()};
    rows.forEach((row, i) => {
      const y = height - MARGIN - i * ROW_GAP;
      const span = WIDTH - LABEL_W - MARGIN;
      row.nodes.forEach((n, j) => {
        const x = LABEL_W + (j + 0.5) * span / row.nodes.length;
        pos[n.kind].set(n.kind === "host" ? n.ip : n.dpid, {x, y, node: n});
      });
    });
    return {pos, height};
  }

  function pathLinks(paths) {
    const on = new Set();
    for (const p of paths ? paths.paths : []) {
      for (let i = 0; i + 1 < p.length; i++) on.add(`${p[i]}-${p[i + 1]}`);
    }
    return on;
  }

  function pick(ip) {
    if (!state.src || state.dst) {
      state.src = ip;
      state.dst = "";
    } else {
      state.dst = ip;
    }
    $("src").value = state.src;
    $("dst").value = state.dst;
    refreshNow();
  }

  function draw(layout, topology, paths) {
    const svg = $("fabric");
    const {pos, height} = place(layout.rows);
    const onPath = pathLinks(paths);
    const pair = Boolean(paths);
    svg.setAttribute("viewBox", `0 0 ${WIDTH} ${height}`);
    svg.classList.toggle("has-pair", pair);
    svg.replaceChildren();
    const gLabels = el("g", {}, svg), gAccess = el("g", {}, svg), gLinks = el("g", {}, svg);
    const gNodes = el("g", {}, svg);
    layout.rows.forEach((row, i) => {
      el("text", {x: 8, y: height - MARGIN - i * ROW_GAP + 4, class: "row-label"},
         gLabels).textContent = row.label;
    });
    const name = (dpid) => (pos.switch.get(dpid) || {node: {name: `s${dpid}`}}).node.name;
    for (const [ip, h] of pos.host) {
      const sw = pos.switch.get(h.node.dpid);
      if (!sw) continue;
      const ends = pair && (ip === state.src || ip === state.dst) && onPath.size > 0;
      el("line", {x1: h.x, y1: h.y, x2: sw.x, y2: sw.y, "data-ip": ip,
                  "data-dpid": h.node.dpid, class: ends ? "access on-path" : "access"},
         gAccess);
    }
    for (const link of topology.links) {
      const a = pos.switch.get(link.src), b = pos.switch.get(link.dst);
      if (!a || !b) continue;   // a switch the layout did not have yet: drawn next refresh
      const colour = colourFor(layout.legend, link.utilization);
      const key = `${link.src}-${link.dst}`;
      const line = el("line", {
        x1: a.x, y1: a.y, x2: (a.x + b.x) / 2, y2: (a.y + b.y) / 2,
        class: onPath.has(key) ? "link on-path" : "link", stroke: colour,
        "data-a": link.src, "data-b": link.dst, "data-a-port": link.src_port,
        "data-b-port": link.dst_port, "data-util": String(link.utilization),
        "data-rate-bps": String(link.rate_bps), "data-capacity-bps": String(link.capacity_bps),
        "data-colour": colour, "data-on-path": onPath.has(key) ? "1" : "0"}, gLinks);
      titled(line, `${name(link.src)} -> ${name(link.dst)}: ` +
                   `${(100 * link.utilization).toFixed(1)} % of ${fmtRate(link.capacity_bps)}` +
                   ` (${fmtRate(link.rate_bps)}), ${link.pinned_flows} pinned flows`);
    }
    for (const [dpid, s] of pos.switch) {
      const g = el("g", {class: "switch", "data-dpid": dpid, "data-name": s.node.name}, gNodes);
      el("rect", {x: s.x - 22, y: s.y - 11, width: 44, height: 22, rx: 4}, g);
      el("text", {x: s.x, y: s.y + 4}, g).textContent = s.node.name;
      titled(g, `${s.node.name} (dpid ${dpid}${s.node.role ? ", " + s.node.role : ""})`);
    }
    for (const [ip, h] of pos.host) {
      const role = ip === state.src ? " src" : ip === state.dst ? " dst" : "";
      const g = el("g", {class: "host" + role, "data-ip": ip, "data-mac": h.node.mac,
                         "data-name": h.node.name}, gNodes);
      el("circle", {cx: h.x, cy: h.y, r: 9}, g);
      el("text", {x: h.x, y: h.y + 24}, g).textContent = h.node.name;
      titled(g, `${h.node.name} ${ip} ${h.node.mac} at ${name(h.node.dpid)} port ${h.node.port}`);
      g.addEventListener("click", () => pick(ip));
    }
  }

  async function refresh() {
    const [layout, topology, policy] = await Promise.all(
      [get("view/layout"), get("topology"), get("policy")]);
    let paths = null, pathError = "";
    if (state.src && state.dst && state.src !== state.dst) {
      try {
        paths = await get(`paths?src=${encodeURIComponent(state.src)}` +
                          `&dst=${encodeURIComponent(state.dst)}`);
      } catch (e) {
        if (e instanceof AuthError) throw e;
        pathError = e.message;
      }
    }
    drawLegend(layout.legend);
    fillSelects(layout.rows[0].nodes);
    draw(layout, topology, paths);
    $("policy").textContent = policy.policy;
    $("policy").dataset.policy = policy.policy;
    $("paths-info").textContent = pathError ||
      (paths ? `${paths.paths.length} paths from ${state.src} to ${state.dst}` : "");
    const svg = $("fabric");
    state.refreshes += 1;
    svg.dataset.refreshes = state.refreshes;
    svg.dataset.updated = Date.now();
    svg.classList.remove("stale");
    $("token-form").hidden = true;
    state.waitingForToken = false;
    const status = $("status");
    status.className = "";
    status.textContent = `${new Date().toLocaleTimeString()}: ${topology.switches.length} ` +
      `switches, ${topology.links.length} directed links, ${topology.hosts.length} hosts ` +
      `(layers by ${layout.layered_by})`;
  }

  function showError(e) {
    $("fabric").classList.add("stale");
    const status = $("status");
    status.className = "error";
    status.textContent = e.message;
    if (e instanceof AuthError) {
      $("token-form").hidden = false;
      state.waitingForToken = true;   // no polling until a token is given
    }
  }

  // One refresh at a time, in order; resolves once this one has drawn (or failed).
  function refreshNow() {
    state.chain = state.chain.then(refresh).catch(showError);
    return state.chain;
  }

  function loop() {
    clearTimeout(state.timer);
    refreshNow().then(() => {
      if (!state.waitingForToken) state.timer = setTimeout(loop, REFRESH_MS);
    });
  }

  function start() {
    takeToken();
    for (const id of ["src", "dst"]) {
      $(id).addEventListener("change", (ev) => {
        state[id] = ev.target.value;
        refreshNow();
      });
    }
    $("clear").addEventListener("click", () => {
      state.src = state.dst = "";
      $("src").value = $("dst").value = "";
      refreshNow();
    });
    $("token-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      state.token = $("token").value.trim();
      sessionStorage.setItem(TOKEN_KEY, state.token);
      state.waitingForToken = false;
      loop();
    });
    // For tests and scripts: refresh now and wait for the drawing.
    window.fabricView = {refresh: refreshNow};
    loop();
  }

  start();
})();
