// The live view: one EventSource on /api/live/stream; each message redraws the frame with its
// boxes, the face cards, the stats and the per-track charts. No library, no build step.
// Text from the daemon (file names, labels) is set with textContent only, never as HTML.
"use strict";

const COLORS = { angry: "#e4572e", disgust: "#76b041", fear: "#9c6ade", happy: "#f3a712",
                 sad: "#2e86de", surprise: "#17c3b2", neutral: "#9aa5b1", contempt: "#c0587e" };
const PALETTE = ["#e4572e", "#76b041", "#9c6ade", "#f3a712", "#2e86de", "#17c3b2", "#9aa5b1", "#c0587e"];
const MAX_POINTS = 90;

const view = { seq: 0, drawn: 0, closed: false, classes: [], history: new Map(), cards: "" };

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = tag.startsWith("svg:")
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
    : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

function colorOf(name) {
  return COLORS[name] || PALETTE[Math.max(0, view.classes.indexOf(name)) % PALETTE.length];
}

function pct(p) { return p == null ? "–" : `${Math.round(p * 100)}%`; }

function setStatus(text, kind) {
  const s = $("status");
  s.textContent = text;
  s.className = `status ${kind}`;
}

function connect() {
  const source = new EventSource("/api/live/stream");
  source.onopen = () => setStatus("live", "ok");
  source.onmessage = (e) => render(JSON.parse(e.data));
  source.addEventListener("busy", (e) => { setStatus(JSON.parse(e.data).error, "bad"); source.close(); });
  source.onerror = () => {
    if (view.closed) { setStatus("the run has ended", "bad"); source.close(); }
    else setStatus("reconnecting…", "bad");
  };
}

function render(m) {
  if (m.seq < view.seq) view.history.clear();  // the daemon restarted
  view.seq = m.seq;
  view.classes = m.classes.length ? m.classes : view.classes;
  view.closed = m.closed;
  mergeHistory(m.history);
  drawInfo(m);
  drawFrame(m);
  drawFaces(m);
  drawStats(m.stats);
  drawCharts(m.tracks);
  if (m.closed) setStatus("the run has ended", "bad");
}

function drawInfo(m) {
  const i = m.info || {};
  const parts = [i.model && `${i.model} v${i.model_version}`, i.delegate && `delegate ${i.delegate}`,
                 m.preview ? "preview on" : "preview off: no images"];
  $("info").textContent = parts.filter(Boolean).join(" · ");
}

// --- the frame and its boxes ---------------------------------------------------------------

function drawFrame(m) {
  const f = m.frame;
  const canvas = $("frame");
  if (!f) return;
  if (canvas.width !== f.width || canvas.height !== f.height) { canvas.width = f.width; canvas.height = f.height; }
  const where = [f.source, f.file, `frame ${f.index}`].filter((x) => x != null && x !== "").join(" · ");
  if (!f.url) {  // preview off: the boxes on a blank frame
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#0b0d10";
    ctx.fillRect(0, 0, f.width, f.height);
    ctx.fillStyle = "#8b949e";
    ctx.font = `${Math.round(f.width / 40)}px system-ui, sans-serif`;
    ctx.fillText("preview off: frames are not shown", 12, f.height - 12);
    finishFrame(canvas, ctx, m.boxes, f, where);
    return;
  }
  const image = new Image();
  image.onload = () => {
    if (f.seq < view.drawn) return;  // a newer frame was drawn meanwhile
    const ctx = canvas.getContext("2d");
    ctx.drawImage(image, 0, 0, f.width, f.height);
    finishFrame(canvas, ctx, m.boxes, f, where);
  };
  image.src = f.url;
}

// the guard's three verdicts; events from before the third one carry only `preserved`
const VERDICTS = {
  preserved: { color: "#3ddc97", css: "ok", text: "✓ expression kept" },
  changed: { color: "#ff9f1c", css: "bad", text: "✗ expression changed" },
  unverified: { color: "#9aa4ad", css: "unverified", text: "? expression not verified" },
};
const verdictOf = (g) => g.verdict || (g.preserved ? "preserved" : "changed");

function finishFrame(canvas, ctx, boxes, f, where) {
  view.drawn = f.seq;
  const size = Math.max(12, Math.round(f.width / 45));
  ctx.font = `600 ${size}px system-ui, sans-serif`;
  ctx.lineWidth = Math.max(2, f.width / 320);
  for (const b of boxes) {
    const [x0, y0, x1, y1] = b.bbox;
    const color = VERDICTS[verdictOf(b)].color;
    ctx.strokeStyle = color;
    ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
    const label = `#${b.track_id} ${b.expression} ${pct(b.p)}`;
    const w = ctx.measureText(label).width + 8;
    const top = y0 - size - 6 < 0 ? y1 : y0 - size - 6;
    ctx.fillStyle = color;
    ctx.fillRect(x0, top, w, size + 6);
    ctx.fillStyle = "#111418";
    ctx.fillText(label, x0 + 4, top + size);
  }
  canvas.dataset.frame = String(f.index);
  $("frame-caption").textContent = where;
}

// --- face cards -----------------------------------------------------------------------------

function drawFaces(m) {
  const key = m.faces.map((f) => f.id).join(",");
  if (key === view.cards || !m.faces.length) return;
  view.cards = key;
  const cards = m.faces.map(faceCard);
  const images = cards.flatMap((card) => [...card.querySelectorAll("img")]);
  // swap the cards in once their images are decoded (no empty frames flashing); a newer set wins
  Promise.all(images.map((img) => img.decode().catch(() => null))).then(() => {
    if (view.cards === key) $("faces").replaceChildren(...cards);
  });
}

function picture(url, kind, caption) {
  const img = url ? el("img", { class: kind, src: url, alt: `${kind} face` }) : el("div", { class: "off", text: "preview off" });
  return el("figure", {}, img, el("figcaption", { text: caption }));
}

function faceCard(f) {
  const g = f.guard || {};
  const shown = VERDICTS[verdictOf(g)];
  const verdict = el("span", { class: `verdict ${shown.css}`, text: shown.text });
  const probs = el("div", { class: "probs" });
  const sorted = Object.entries(f.probabilities || {}).sort((a, b) => b[1] - a[1]);
  for (const [name, p] of sorted) {
    const bar = el("div", { class: "bar", style: `width:${Math.round((p || 0) * 100)}%;background:${colorOf(name)}` });
    probs.append(el("span", { text: name }), el("div", {}, bar), el("span", { text: pct(p) }));
  }
  const details = [`KL ${g.kl == null ? "–" : g.kl.toFixed(2)}`,
                   `landmarks ${g.landmark_error == null ? "–" : g.landmark_error.toFixed(3)}`,
                   g.fallback ? "bicubic fallback" : null, f.file, `frame ${f.frame}`];
  return el("div", { class: "face-card", "data-id": String(f.id) },
    el("div", { class: "pair" }, picture(f.lr, "lr", "LR (input)"), picture(f.sr, "sr", "SR (output)")),
    el("div", { class: "meta" }, el("span", { class: "track", text: `#${f.track_id}` }),
       el("span", { class: "expression", text: f.expression }), verdict),
    probs,
    el("div", { class: "guard", text: details.filter(Boolean).join(" · ") }));
}

// --- stats ----------------------------------------------------------------------------------

function drawStats(s) {
  if (!s) return;
  $("fps").textContent = s.fps.toFixed(1);
  const stages = Object.entries(s.latency_ms || {});
  const longest = Math.max(1, ...stages.map(([, ms]) => ms));
  const rows = stages.map(([stage, ms]) => el("tr", {},
    el("td", { text: stage }),
    el("td", {}, el("span", { class: "bar", style: `width:${Math.round(80 * ms / longest)}px` })),
    el("td", { text: `${ms.toFixed(2)} ms` })));
  $("latency").replaceChildren(el("caption", { class: "dim", text: "p50 per stage" }), ...rows);
}

// --- per-track charts -----------------------------------------------------------------------

function mergeHistory(history) {
  for (const [track, points] of Object.entries(history || {})) {
    const mine = view.history.get(track) || [];
    const last = mine.length ? mine[mine.length - 1][0] : -1;
    for (const p of points) if (p[0] > last) mine.push(p);
    view.history.set(track, mine.slice(-MAX_POINTS));
  }
}

function drawCharts(tracks) {
  for (const track of [...view.history.keys()]) if (!tracks.includes(track)) view.history.delete(track);
  $("legend").replaceChildren(...view.classes.map((c) =>
    el("span", {}, el("i", { style: `background:${colorOf(c)}` }), document.createTextNode(c))));
  const charts = [...tracks].reverse().map((track) => chart(track, view.history.get(track) || []));
  $("charts").replaceChildren(...charts);
}

function chart(track, points) {
  const W = 300, H = 80, n = Math.max(points.length - 1, 1);
  const x = (i) => (i / n) * (W - 4) + 2;
  const y = (p) => H - 6 - p * (H - 12);
  const svg = el("svg:svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img" });
  view.classes.forEach((name, c) => {
    const line = points.map((p, i) => `${x(i).toFixed(1)},${y(p[2][c] || 0).toFixed(1)}`).join(" ");
    svg.append(el("svg:polyline", { points: line, fill: "none", stroke: colorOf(name), "stroke-width": "1.5" }));
  });
  points.forEach((p, i) => {  // the guard's rejections as red ticks along the bottom
    if (p[3] === "changed") svg.append(el("svg:rect", { x: x(i) - 1, y: H - 4, width: 2, height: 4, fill: "#ff5c5c" }));
  });
  const last = points[points.length - 1];
  const top = last ? view.classes[last[2].indexOf(Math.max(...last[2]))] : "";
  return el("div", { class: "chart", "data-track": track },
    el("div", { class: "title", text: `track #${track} · now ${top || "–"} · ${points.length} upscales` }), svg);
}

connect();
