// taskmill dashboard: small pages fed by server-sent events (status, workers) or polling (task). No build step.
"use strict";
const ERR = "#d62728", TRANSFER = "#e377c2";
function groupColor(name) {  // FNV-1a -> a hue away from error red; same as taskmill/dashboard/colors.py
  let h = 0x811c9dc5;
  for (const b of new TextEncoder().encode(name)) { h ^= b; h = Math.imul(h, 0x01000193) >>> 0; }
  return `hsl(${30 + h % 290}, ${55 + (h >>> 9) % 3 * 10}%, ${42 + (h >>> 13) % 3 * 8}%)`;
}
function fmtBytes(n) {
  if (n == null) return "-";
  const u = ["B","kB","MB","GB","TB"]; let i = 0;
  while (Math.abs(n) >= 1000 && i < u.length - 1) { n /= 1000; i++; }
  return (i ? n.toFixed(1) : n.toFixed(0)) + " " + u[i];
}
function fmtSec(s) {
  if (s == null) return "-";
  if (s < 1e-3) return (s * 1e6).toFixed(0) + " us";
  if (s < 1) return (s * 1e3).toFixed(1) + " ms";
  return s.toFixed(2) + " s";
}
function esc(s) { return String(s).replace(/[&<>"']/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"}[c])); }
function taskLink(key) { return `<a href="/task/${encodeURIComponent(key)}">${esc(key)}</a>`; }
async function getJSON(url) { const r = await fetch(url, {cache: "no-store"}); if (!r.ok) throw new Error(r.status); return r.json(); }

// keyboard: s = status, w = workers, t = task lookup, / = focus search
document.addEventListener("keydown", ev => {
  if (ev.target.matches("input, textarea") || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  if (ev.key === "s") location.href = "/status";
  else if (ev.key === "w") location.href = "/workers";
  else if (ev.key === "t") location.href = "/task";
  else if (ev.key === "/") { const i = document.querySelector("input[type=search]"); if (i) { ev.preventDefault(); i.focus(); } }
});

function setFigures(sum) {
  const el = document.getElementById("figures");
  if (!el || !sum) return;
  const t = sum.tasks || {};
  el.innerHTML = `<span>workers <b id="n-workers">${sum.workers}</b></span><span>threads <b>${sum.threads}</b></span>` +
    `<span>finished <b id="n-finished">${sum.finished_total}</b></span><span>erred <b id="n-erred">${sum.erred_total}</b></span>` +
    `<span>processing <b>${t.processing || 0}</b></span><span>memory <b>${fmtBytes(sum.memory)}</b></span>`;
  const stranded = sum.waiting_for_workers;
  if (stranded) el.insertAdjacentHTML("beforeend", `<span id="no-workers" class="err" role="alert">` +
    `no worker connected: ${stranded.tasks} tasks have waited ${Math.round(stranded.seconds)} s</span>`);
}

function showLost(why) {
  if (!document.getElementById("conn")) document.querySelector("main").insertAdjacentHTML("afterbegin",
    `<p id="conn" class="err" role="alert">Lost contact with the scheduler (${esc(why)}); retrying.</p>`);
}
function updated() { document.body.dataset.updated = String(Date.now()); document.getElementById("conn")?.remove(); }

function poll(fn, ms) {
  const tick = async () => {
    try { await fn(); updated(); } catch (e) { showLost(e.message); }
    setTimeout(tick, document.hidden ? ms * 5 : ms);
  };
  tick();
}

// push: the scheduler sends an update when something changed (at most a few a second).
// EventSource reconnects by itself (resuming from the last event id); a hidden tab unsubscribes
// and resumes from cursor() when shown again, so it costs the scheduler nothing meanwhile.
function subscribe(url, fn, cursor = () => "") {
  let source = null;
  const open = () => {
    source = new EventSource(`${url}?cursor=${encodeURIComponent(cursor())}`);
    source.onmessage = ev => { try { fn(JSON.parse(ev.data)); updated(); } catch (e) { showLost(e.message); } };
    source.onerror = () => {
      showLost("connection closed");
      if (source.readyState === EventSource.CLOSED) { source = null; setTimeout(() => { if (!source && !document.hidden) open(); }, 3000); }
    };
  };
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) { source?.close(); source = null; } else if (!source) open();
  });
  if (!document.hidden) open();
}

// base64 of little-endian numbers (the task stream's columns) -> DataView
function column(b64) {
  const s = atob(b64), u = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) u[i] = s.charCodeAt(i);
  return new DataView(u.buffer);
}

// ---------------------------------------------------------------- status
const Stream = {
  tasks: [], transfers: [], next: 0, nextTransfer: 0, nthreads: {}, keep: 5000, groups: new Map(),
  add(d) {
    this.next = d.next; this.nextTransfer = d.next_transfer; this.nthreads = d.nthreads;
    // wire: keys, then columns (see taskmill/dashboard/views.py task_stream)
    const W = d.workers, w = column(d.worker), a = column(d.start), b = column(d.stop), tr = column(d.transfer), ok = column(d.ok);
    d.keys.forEach((k, j) => {
      const i = k.lastIndexOf("-");
      this.tasks.push([k, i > 0 ? k.slice(0, i) : k, W[w.getUint32(4 * j, true)], a.getFloat64(8 * j, true),
                       b.getFloat64(8 * j, true), tr.getFloat64(8 * j, true), ok.getUint8(j) ? "OK" : "error"]);
    });
    for (const [wi, p, s, e, n, nk] of d.transfers) this.transfers.push([W[wi], p, s, e, n, nk]);
    if (this.tasks.length > this.keep) this.tasks.splice(0, this.tasks.length - this.keep);
    if (this.transfers.length > this.keep) this.transfers.splice(0, this.transfers.length - this.keep);
  },
  lanes() {  // greedy interval packing per worker, by start time
    const sorted = this.tasks.slice().sort((a, b) => a[3] - b[3]);
    const free = new Map(), rows = new Map();
    for (const w of Object.keys(this.nthreads).sort()) { free.set(w, []); }
    const placed = [];
    for (const t of sorted) {
      const w = t[2];
      if (!free.has(w)) free.set(w, []);
      const lanes = free.get(w);
      let lane = lanes.findIndex(stop => stop <= t[3] + 1e-6);
      if (lane < 0) {
        if (lanes.length < Math.max(1, this.nthreads[w] || 1)) { lane = lanes.length; lanes.push(0); }
        else { lane = lanes.indexOf(Math.min(...lanes)); }
      }
      lanes[lane] = t[4];
      placed.push([t, lane]);
    }
    let row = 0;
    for (const [w, lanes] of [...free.entries()].sort()) {
      const n = Math.max(lanes.length, this.nthreads[w] || 1);
      for (let i = 0; i < n; i++) rows.set(w + "#" + i, row++);
    }
    return {placed, rows};
  },
  draw() {
    const canvas = document.getElementById("stream");
    const {placed, rows} = this.lanes();
    const LANE = 16, LEFT = 170, dpr = window.devicePixelRatio || 1;
    const width = canvas.clientWidth, height = Math.max(3, rows.size) * LANE + 22;
    canvas.style.height = height + "px"; canvas.width = width * dpr; canvas.height = height * dpr;
    const g = canvas.getContext("2d"); g.scale(dpr, dpr); g.clearRect(0, 0, width, height);
    let t0 = Infinity, t1 = -Infinity;
    for (const [t] of placed) { t0 = Math.min(t0, t[3]); t1 = Math.max(t1, t[4]); }
    if (!placed.length) { g.fillStyle = "#5b6475"; g.fillText("No tasks have run yet.", 10, 20); }
    const span = Math.max(t1 - t0, 1e-3), sx = (width - LEFT - 8) / span;
    g.font = "11px system-ui, sans-serif";
    for (const [name, r] of rows) { g.fillStyle = r % 2 ? "#fafbfc" : "#fff"; g.fillRect(0, r * LANE, width, LANE);
      g.fillStyle = "#5b6475"; g.fillText(name.replace("tcp://", ""), 4, r * LANE + 12); }
    this.hit = [];
    let erred = 0;
    const groups = new Map();
    for (const [t, lane] of placed) {
      const r = rows.get(t[2] + "#" + lane); if (r == null) continue;
      const bad = t[6] !== "OK";
      const x = LEFT + (t[3] - t0) * sx, w = Math.max(bad ? 4 : 1, (t[4] - t[3]) * sx), y = r * LANE + 2;
      if (bad) erred++;
      groups.set(t[1], (groups.get(t[1]) || 0) + 1);
      g.fillStyle = bad ? ERR : groupColor(t[1]); g.fillRect(x, y, w, LANE - 4);
      if (bad) { g.strokeStyle = "#000"; g.lineWidth = 1; g.strokeRect(x + .5, y + .5, Math.max(w - 1, 1), LANE - 5); }
      if (t[5] > 0) { const tw = Math.max(1, t[5] * sx); g.fillStyle = TRANSFER; g.fillRect(x - tw, y, tw, 3); }
      this.hit.push([x, y, w, LANE - 4, t]);
    }
    for (const tr of this.transfers) {  // [worker, peer, start, stop, nbytes, nkeys] on the worker's first lane
      const r = rows.get(tr[0] + "#0"); if (r == null || tr[3] < t0) continue;
      const x = LEFT + (tr[2] - t0) * sx, w = Math.max(1, (tr[3] - tr[2]) * sx);
      g.fillStyle = TRANSFER; g.fillRect(x, r * LANE + LANE - 3, w, 2);
    }
    g.fillStyle = "#5b6475";
    for (let k = 0; k <= 5; k++) g.fillText("+" + fmtSec(k * span / 5), LEFT + k * (width - LEFT - 50) / 5, rows.size * LANE + 15);
    const shown = document.getElementById("stream-summary");
    shown.dataset.tasks = placed.length; shown.dataset.erred = erred; shown.dataset.lanes = rows.size;
    shown.textContent = `${placed.length} most recent tasks on ${rows.size} thread lanes over ${fmtSec(span)}; ${erred} erred (red, outlined).`;
    document.getElementById("legend").innerHTML = [...groups.entries()].sort((a, b) => b[1] - a[1]).slice(0, 20)
      .map(([n, c]) => `<span><span class="sw" style="background:${groupColor(n)}"></span>${esc(n)} (${c})</span>`).join("") +
      `<span><span class="sw" style="background:${ERR};outline:1px solid #000"></span>erred</span><span><span class="sw" style="background:${TRANSFER}"></span>transfer</span>`;
  },
};

function progressRow(p) {
  const total = Math.max(p.total, 1);
  const seg = (n, color, label) => n ? `<span title="${label}: ${n}" style="width:${100 * n / total}%;background:${color}"></span>` : "";
  const c = groupColor(p.group);
  return `<tr data-group="${esc(p.group)}"><td class="wrap"><span class="sw" style="background:${c}"></span>${esc(p.group)}</td>` +
    `<td><div class="bar" role="img" aria-label="${p.done} of ${p.total} done, ${p.failed} erred">` +
    seg(p.done, c, "done") + seg(p.failed, ERR, "erred") + seg(p.processing, "#6b7fa8", "processing") +
    seg(p.queued, "#b9c2d3", "queued") + `</div></td>` +
    `<td class="c-waiting">${p.waiting}</td><td class="c-queued">${p.queued}</td><td class="c-processing">${p.processing}</td>` +
    `<td class="c-memory">${p.memory}</td><td class="c-erred ${p.failed ? "err" : ""}">${p.failed}</td>` +
    `<td class="c-done">${p.done}</td><td class="c-total">${p.total}</td></tr>`;
}

function memoryRow(m) {
  const top = Math.max(m.limit || 0, m.process || 0, 1);
  return `<tr data-worker="${esc(m.address)}"><td>${esc(m.address.replace("tcp://", ""))}</td><td><div class="bar" role="img" aria-label="process memory ${fmtBytes(m.process)} of ${fmtBytes(m.limit)}">` +
    `<span style="width:${100 * Math.min(m.managed, m.process || m.managed) / top}%;background:#1f77b4" title="managed ${fmtBytes(m.managed)}"></span>` +
    `<span style="width:${100 * Math.max(0, (m.process || 0) - m.managed) / top}%;background:#aec7e8" title="unmanaged"></span></div></td>` +
    `<td>${fmtBytes(m.process)}</td><td>${fmtBytes(m.limit)}</td></tr>`;
}

function initStatus() {
  const canvas = document.getElementById("stream"), tip = document.getElementById("tooltip");
  canvas.addEventListener("mousemove", ev => {
    const r = canvas.getBoundingClientRect(), x = ev.clientX - r.left, y = ev.clientY - r.top;
    const h = (Stream.hit || []).find(([hx, hy, hw, hh]) => x >= hx && x <= hx + hw && y >= hy && y <= hy + hh);
    if (!h) { tip.style.display = "none"; canvas.style.cursor = ""; return; }
    const t = h[4];
    tip.style.display = "block"; tip.style.left = ev.clientX + 12 + "px"; tip.style.top = ev.clientY + 12 + "px";
    tip.textContent = `${t[0]} on ${t[2]}: ${fmtSec(t[4] - t[3])}${t[5] ? ", transfer " + fmtSec(t[5]) : ""}${t[6] !== "OK" ? " (erred)" : ""}`;
    canvas.style.cursor = "pointer"; canvas.dataset.key = t[0];
  });
  canvas.addEventListener("mouseleave", () => { tip.style.display = "none"; });
  canvas.addEventListener("click", () => { if (canvas.dataset.key && canvas.style.cursor) location.href = "/task/" + encodeURIComponent(canvas.dataset.key); });
  subscribe("/api/status/events", d => {
    if (d.stream.next < Stream.next) { Stream.tasks = []; Stream.transfers = []; }  // scheduler restarted
    Stream.add(d.stream); Stream.draw(); setFigures(d.summary);
    document.querySelector("#progress tbody").innerHTML = d.progress.length ? d.progress.map(progressRow).join("") :
      `<tr><td colspan="9" class="muted">No tasks yet.</td></tr>`;
    document.querySelector("#memory tbody").innerHTML = d.memory.map(memoryRow).join("");
  }, () => `${Stream.next},${Stream.nextTransfer}`);
}

// ---------------------------------------------------------------- workers
function initWorkers() {
  subscribe("/api/workers/events", d => {
    setFigures(d.summary);
    document.querySelector("#workers tbody").innerHTML = d.workers.map(w =>
      `<tr data-worker="${esc(w.address)}" tabindex="0"><td>${esc(w.address)}</td><td class="wrap">${esc(w.name || "")}</td>` +
      `<td class="c-threads">${w.nthreads}</td><td class="c-cpu">${w.cpu == null ? "-" : w.cpu.toFixed(0) + " %"}</td>` +
      `<td class="c-process">${fmtBytes(w.memory_process)}</td><td class="c-managed">${fmtBytes(w.memory_managed)}</td>` +
      `<td>${fmtBytes(w.memory_spilled)}</td><td>${fmtBytes(w.memory_limit)}</td>` +
      `<td class="c-running">${w.executing}</td><td class="c-processing">${w.processing}</td><td class="c-stored">${w.stored}</td>` +
      `<td class="c-restarts">${w.nanny ? w.restarts : "no nanny"}</td><td class="wrap c-last-exit">${esc(w.last_exit || "-")}</td></tr>`).join("") ||
      `<tr><td colspan="13" class="muted">No workers connected.</td></tr>`;
    const gone = Object.entries(d.departed || {});
    document.getElementById("departed").innerHTML = gone.length ? "<h2>Departed workers</h2><ul>" +
      gone.slice(-20).reverse().map(([w, why]) => `<li>${esc(w)}: ${esc(why)}</li>`).join("") + "</ul>" : "";
  });
}

// ---------------------------------------------------------------- task
function initTask() {
  const input = document.getElementById("key");
  const key = decodeURIComponent(location.pathname.replace(/^\/task\/?/, ""));
  input.value = key;
  const search = async () => {
    const q = input.value.trim();
    const found = await getJSON(`/api/tasks?q=${encodeURIComponent(q)}`);
    document.getElementById("matches").innerHTML = found.length ? "<ul>" + found.map(t =>
      `<li>${taskLink(t.key)} <span class="pill ${t.state}">${t.state}</span></li>`).join("") + "</ul>" : "<p class='muted'>No known key matches.</p>";
  };
  document.getElementById("lookup").addEventListener("submit", async ev => {
    // Enter: the exact key if known, else the first key containing what was typed
    ev.preventDefault();
    const q = input.value.trim();
    let target = q;
    try {
      const found = await getJSON(`/api/tasks?q=${encodeURIComponent(q)}`);
      if (found.length && !found.some(t => t.key === q)) target = found[0].key;
    } catch (e) { /* go to the page anyway: it says what the scheduler knows */ }
    location.href = "/task/" + encodeURIComponent(target);
  });
  input.addEventListener("input", () => { clearTimeout(input._t); input._t = setTimeout(search, 200); });
  if (!key) { search(); input.focus(); return; }
  poll(async () => {
    const d = await getJSON(`/api/task?key=${encodeURIComponent(key)}`);
    const out = document.getElementById("task");
    if (!d.known) { out.innerHTML = `<p>The scheduler knows nothing about <code>${esc(key)}</code> (never submitted, or forgotten long ago).</p>`; return; }
    const t0 = d.story.find(e => e.time)?.time;
    let html = `<h2>${esc(d.key)} <span class="pill ${d.state}" id="task-state">${esc(d.state)}</span></h2><table class="kv"><tbody>` +
      `<tr><th>group</th><td>${esc(d.group)}</td></tr>` +
      (d.who_has ? `<tr><th>held by</th><td>${d.who_has.map(esc).join(", ") || "-"}</td></tr><tr><th>processing on</th><td>${esc(d.processing_on || "-")}</td></tr>` +
        `<tr><th>result</th><td>${d.type_name ? esc(d.type_name) + ", " + fmtBytes(d.nbytes) : "-"}</td></tr>` +
        `<tr><th>dependencies</th><td class="wrap">${d.dependencies.map(taskLink).join(", ") || "-"}</td></tr>` +
        `<tr><th>dependents</th><td class="wrap">${d.dependents.map(taskLink).join(", ") || "-"}</td></tr>` : "") +
      `</tbody></table>`;
    if (d.error) html += `<h2 class="err">Error</h2><p id="task-error"><b>${esc(d.error.text)}</b>${d.error.worker ? " on " + esc(d.error.worker) : ""}</p>` +
      (d.error.traceback ? `<pre>${esc(d.error.traceback)}</pre>` : "");
    if (d.runs.length) html += `<h2>Runs</h2><table><thead><tr><th>worker</th><th>thread</th><th>start</th><th>duration</th><th>transfer</th><th>status</th></tr></thead><tbody>` +
      d.runs.map(r => `<tr><td>${esc(r.worker)}</td><td>${r.thread}</td><td>${new Date(r.start * 1000).toLocaleTimeString()}</td><td>${fmtSec(r.stop - r.start)}</td><td>${fmtSec(r.transfer)}</td><td class="${r.status === "OK" ? "" : "err"}">${esc(r.status)}</td></tr>`).join("") + "</tbody></table>";
    html += `<h2>Story</h2><table id="story"><thead><tr><th>when</th><th>+</th><th>from</th><th>to</th><th>why (stimulus)</th><th>note</th></tr></thead><tbody>` +
      d.story.map(e => `<tr><td>${e.time ? new Date(e.time * 1000).toLocaleTimeString() : "-"}</td><td>${e.time && t0 ? fmtSec(e.time - t0) : "-"}</td>` +
        `<td>${esc(e.from)}</td><td>${esc(e.to)}</td><td>${esc(e.stimulus)}</td><td class="wrap">${esc(e.note)}</td></tr>`).join("") + "</tbody></table>";
    out.innerHTML = html;
  }, 2000);
}
