// The playground's Inside mode: one forward pass of the served model on the user's text, drawn from
// POST /inside (serve/inside.py, viz/inside.py). No library, no build step: plain DOM and canvases.
"use strict";

const Inside = (() => {
  const $ = (id) => document.getElementById(id);
  let view = null;            // the /inside answer for the text on screen
  let maps = [];              // maps[layer][head]: (T, T) weights, filled as layers arrive
  let chosen = {layer: 0, head: 0};  // the enlarged map (0-based)
  let focus = null;           // the position whose attention row is shown (a token hovered or focused)

  function headers() {
    const h = {"Content-Type": "application/json"};
    if ($("api-key").value) h["Authorization"] = "Bearer " + $("api-key").value;
    return h;
  }

  async function post(body) {
    const r = await fetch("/inside", {method: "POST", headers: headers(), body: JSON.stringify(body)});
    const answer = await r.json();
    if (!r.ok) throw new Error(answer.error ? answer.error.message : r.statusText);
    return answer;
  }

  // The weights come as whole millionths (half the JSON of decimals): back to fractions here.
  const fractions = (heads) => heads.map((rows) => rows.map((row) => row.map((n) => n / 1e6)));

  async function look() {
    $("inside-error").textContent = "";
    const started = performance.now();
    const body = {model: $("model").value, text: $("inside-text").value, millionths: true};
    let answer;
    try {
      answer = await post(body);
    } catch (e) {
      $("inside-error").textContent = e.message;
      return;
    }
    const again = view && view.tokens.join() === answer.tokens.join();  // the same text, newer weights: keep picks
    view = answer;
    maps = (view.attention || []).map(fractions);
    if (!again) { chosen = {layer: 0, head: 0}; focus = view.tokens.length - 1; }
    drawAll();
    // Too many weights to send at once: every layer asked for on its own, all at once (the server writes one
    // while the page reads another), each drawn as it comes.
    const missing = [];
    for (let layer = maps.length; layer < view.config.n_layer; layer++) missing.push(layer);
    try {
      await Promise.all(missing.map(async (layer) => {
        const part = await post({...body, layer: layer + 1});
        if (view !== answer) return;  // a newer text is on screen
        maps[layer] = fractions(part.attention);
        paintLayer(layer);
        if (layer === chosen.layer) { drawChosen(); drawRow(); }
      }));
    } catch (e) { $("inside-error").textContent = e.message; return; }
    if (view !== answer) return;
    const seconds = (performance.now() - started) / 1000;
    $("inside-status").textContent = `${view.tokens.length} tokens, ${view.config.n_layer} layers x ` +
      `${view.config.n_head} heads, on screen in ${seconds.toFixed(2)} s` +
      (view.step !== undefined ? ` (the weights of step ${view.step})` : "");
    $("inside").dataset.step = view.step === undefined ? "" : view.step;
    $("inside").dataset.seconds = seconds;
    $("inside").dataset.ready = "1";  // for tests and scripts: every part is drawn
  }

  function drawAll() {
    $("inside").dataset.ready = "";
    const cross = !!view.columns;  // an encoder-decoder: the target it wrote, reading the source
    $("inside-note").textContent = cross ? `it writes ${JSON.stringify(view.written)}; each map's row t is what ` +
      "the decoder read of the source (the columns) while writing target token t" : (view.note || "");
    for (const id of ["inside-lens-box", "inside-next-box", "inside-pca-box", "inside-stages-box"]) {
      $(id).classList.toggle("hidden", cross);
    }
    drawTokens(); drawGrid(); drawChosen(); drawRow();
    if (!cross) { drawStages(); drawLens(); drawNext(); drawEmbeddings(); }
  }

  // ---- the tokens -----------------------------------------------------------------------------------

  function drawTokens() {
    const box = $("inside-tokens");
    box.innerHTML = "";
    view.tokens.forEach((t, i) => {
      const chip = document.createElement("button");
      chip.className = "chip" + (i === focus ? " focus" : "");
      chip.dataset.position = i;
      const id = view.ids[i] !== undefined ? view.ids[i] : i;  // an encoder-decoder's rows: by position
      chip.innerHTML = `<span class="t"></span><span class="id">${id}</span>`;
      chip.querySelector(".t").textContent = t;
      chip.title = `position ${i}` + (view.ids[i] !== undefined ? `, id ${id}` : "");
      const show = () => { focus = i; markFocus(); drawRow(); drawChosen(); };
      chip.addEventListener("mouseenter", show);
      chip.addEventListener("focus", show);
      box.appendChild(chip);
    });
  }

  function markFocus() {
    document.querySelectorAll("#inside-tokens .chip").forEach((c) => c.classList.toggle("focus", +c.dataset.position === focus));
  }

  // ---- shapes ---------------------------------------------------------------------------------------

  function drawStages() {
    const c = view.config;
    $("inside-config").textContent = `B = 1, T = ${view.tokens.length}, C = n_embd = ${c.n_embd}, n_head = ${c.n_head}, ` +
      `head_size = ${c.head_size}, vocab_size = ${c.vocab_size}, block_size = ${c.block_size}`;
    const table = $("inside-stages");
    table.innerHTML = "<tr><th>tensor</th><th>dims</th><th>shape</th><th>what it holds</th></tr>";
    for (const s of view.stages) {
      const tr = document.createElement("tr");
      tr.innerHTML = "<td></td><td class='mono'></td><td class='mono'></td><td></td>";
      const cells = tr.querySelectorAll("td");
      cells[0].textContent = s.name; cells[1].textContent = s.dims;
      cells[2].textContent = "(" + s.shape.join(", ") + ")"; cells[3].textContent = s.what;
      table.appendChild(tr);
    }
  }

  // ---- attention ------------------------------------------------------------------------------------

  // One pixel per weight (the canvas is T x T, the page scales it up): row t = what position t reads.
  function paint(canvas, weights, outline) {
    const T = weights.length, S = view.columns ? view.columns.length : T;  // rows x columns (cross: target x source)
    canvas.width = S; canvas.height = T;
    const ctx = canvas.getContext("2d"), image = ctx.createImageData(S, T), px = image.data;
    for (let t = 0; t < T; t++) {
      const row = weights[t];
      for (let s = 0; s < S; s++) {
        const i = 4 * (t * S + s);
        if (view.causal && s > t) { px[i] = 236; px[i + 1] = 238; px[i + 2] = 242; }  // masked: a later position
        else { const w = row[s]; px[i] = 255 - 208 * w; px[i + 1] = 255 - 144 * w; px[i + 2] = 255 - 33 * w; }
        px[i + 3] = 255;
      }
    }
    ctx.putImageData(image, 0, 0);
    if (outline && focus !== null) {  // the row being read
      ctx.fillStyle = "rgba(217, 72, 15, 0.35)";
      ctx.fillRect(0, focus, S, 1);
    }
  }

  function drawGrid() {
    const grid = $("inside-grid");
    grid.innerHTML = "";
    grid.style.gridTemplateColumns = `auto repeat(${view.config.n_head}, 1fr)`;
    grid.appendChild(document.createElement("span"));
    for (let h = 0; h < view.config.n_head; h++) {
      const label = document.createElement("span"); label.className = "axis"; label.textContent = `head ${h + 1}`;
      grid.appendChild(label);
    }
    for (let l = 0; l < view.config.n_layer; l++) {
      const label = document.createElement("span"); label.className = "axis"; label.textContent = `layer ${l + 1}`;
      grid.appendChild(label);
      for (let h = 0; h < view.config.n_head; h++) {
        const canvas = document.createElement("canvas");
        canvas.className = "map";
        canvas.tabIndex = 0;
        canvas.dataset.layer = l; canvas.dataset.head = h;
        canvas.title = `layer ${l + 1}, head ${h + 1}: click to enlarge`;
        canvas.setAttribute("aria-label", canvas.title);
        const pickMap = () => { chosen = {layer: l, head: h}; markChosen(); drawChosen(); drawRow(); };
        canvas.addEventListener("click", pickMap);
        canvas.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); pickMap(); } });
        grid.appendChild(canvas);
      }
      paintLayer(l);
    }
    markChosen();
  }

  function paintLayer(l) {
    if (!maps[l]) return;
    document.querySelectorAll(`#inside-grid canvas.map[data-layer="${l}"]`).forEach((c) => paint(c, maps[l][+c.dataset.head], false));
  }

  function markChosen() {
    document.querySelectorAll("#inside-grid canvas.map").forEach((c) =>
      c.classList.toggle("chosen", +c.dataset.layer === chosen.layer && +c.dataset.head === chosen.head));
  }

  function drawChosen() {
    $("inside-chosen-title").textContent = `layer ${chosen.layer + 1}, head ${chosen.head + 1}` +
      (view.columns ? " (cross-attention: target rows, source columns)" :
       view.causal ? " (grey: later positions, masked)" : " (an encoder: every position reads every other)");
    const m = maps[chosen.layer];
    if (m) paint($("inside-big"), m[chosen.head], true);
  }

  function drawRow() {
    const table = $("inside-row");
    table.innerHTML = "";
    const m = maps[chosen.layer];
    if (!m || focus === null) return;
    const row = m[chosen.head][focus];
    $("inside-row-title").textContent = `what ${JSON.stringify(view.tokens[focus])} (position ${focus}) reads, ` +
      `layer ${chosen.layer + 1}, head ${chosen.head + 1}`;
    row.forEach((w, s) => {
      if (view.causal && s > focus) return;
      const tr = document.createElement("tr");
      tr.dataset.position = s; tr.dataset.weight = w;
      tr.innerHTML = `<td class="mono"></td><td style="width: 55%"><div class="bar"></div></td><td class="w">${w.toFixed(4)}</td>`;
      tr.querySelector(".mono").textContent = `${s} ${(view.columns || view.tokens)[s]}`;
      tr.querySelector(".bar").style.width = (100 * w).toFixed(1) + "%";
      table.appendChild(tr);
    });
  }

  // ---- the logit lens -------------------------------------------------------------------------------

  function drawLens() {
    const table = $("inside-lens");
    table.innerHTML = "";
    const head = document.createElement("tr");
    head.innerHTML = "<th>after</th>";
    view.tokens.forEach((t) => { const th = document.createElement("th"); th.className = "mono"; th.textContent = t; head.appendChild(th); });
    table.appendChild(head);
    for (const layer of view.lens) {
      const tr = document.createElement("tr");
      tr.innerHTML = `<th>block ${layer.layer}</th>`;
      layer.tokens.forEach((t, i) => {
        const td = document.createElement("td");
        const p = layer.probs[i];
        td.className = "mono"; td.textContent = t; td.dataset.id = layer.ids[i]; td.dataset.prob = p;
        td.title = `${(100 * p).toFixed(1)}%`;
        td.style.background = `rgba(47, 111, 222, ${(0.08 + 0.6 * p).toFixed(3)})`;
        tr.appendChild(td);
      });
      table.appendChild(tr);
    }
  }

  // ---- the next token -------------------------------------------------------------------------------

  // softmax(logits / T) over the sent logits, then top-k and top-p as the sampler applies them, renormalised.
  function distribution() {
    const T = Number($("inside-temperature").value), k = Number($("inside-top-k").value);
    const p = Number($("inside-top-p").value);
    const logits = view.next.logits;  // largest first
    const m = logits[0] / T;
    let probs = logits.map((z) => Math.exp(z / T - m));
    const total = probs.reduce((a, b) => a + b, 0);
    probs = probs.map((x) => x / total);
    let keep = probs.length;
    if (k > 0) keep = Math.min(keep, k);
    if (p < 1) { let sum = 0, n = 0; while (n < keep && sum < p) { sum += probs[n]; n++; } keep = Math.max(1, n); }
    const kept = probs.slice(0, keep), z = kept.reduce((a, b) => a + b, 0);
    return probs.map((x, i) => (i < keep ? x / z : 0));
  }

  function drawNext() {
    $("inside-temperature-value").textContent = Number($("inside-temperature").value).toFixed(2);
    const probs = distribution();
    const table = $("inside-next");
    table.innerHTML = "";
    const shown = Math.min(15, probs.length);
    for (let i = 0; i < shown; i++) {
      const tr = document.createElement("tr");
      tr.dataset.id = view.next.ids[i]; tr.dataset.prob = probs[i]; tr.dataset.logit = view.next.logits[i];
      tr.innerHTML = `<td class="mono"></td><td style="width: 55%"><div class="bar"></div></td><td>${(100 * probs[i]).toFixed(1)}%</td>`;
      tr.querySelector(".mono").textContent = view.next.tokens[i];
      tr.querySelector(".bar").style.width = (100 * probs[i]).toFixed(1) + "%";
      table.appendChild(tr);
    }
    $("inside-next-note").textContent = view.next.all ? "" :
      `(the likeliest ${view.next.logits.length} of ${view.config.vocab_size} tokens; the rest hold too little to show)`;
  }

  // ---- embeddings -----------------------------------------------------------------------------------

  function drawEmbeddings() {
    const canvas = $("inside-pca"), e = view.embeddings, size = 320, pad = 14;
    canvas.width = canvas.height = size;
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, size, size);
    const xs = e.points.map((p) => p.x), ys = e.points.map((p) => p.y);
    const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
    const sx = (x) => pad + (size - 2 * pad) * (x - x0) / ((x1 - x0) || 1);
    const sy = (y) => size - pad - (size - 2 * pad) * (y - y0) / ((y1 - y0) || 1);
    const marked = new Set(e.marked);
    ctx.font = "11px ui-monospace, monospace";
    for (const p of e.points) {
      const on = marked.has(p.id);
      ctx.fillStyle = on ? "#d9480f" : "#9aa3b2";
      ctx.beginPath(); ctx.arc(sx(p.x), sy(p.y), on ? 4 : 2, 0, 2 * Math.PI); ctx.fill();
      if (on || e.points.length <= 80) { ctx.fillStyle = on ? "#1d2330" : "#6b7280"; ctx.fillText(p.token, sx(p.x) + 5, sy(p.y) - 4); }
    }
    $("inside-pca-note").textContent = `the two axes hold ${(100 * e.explained[0]).toFixed(0)}% and ` +
      `${(100 * e.explained[1]).toFixed(0)}% of the embeddings' variance; the text's tokens in orange`;
  }

  // ---- watching a run learn (tinygpt serve RUN --watch) ---------------------------------------------

  let watching = null;  // the interval polling /watch

  function watch(model) {
    clearInterval(watching); watching = null;
    $("inside-watch").classList.toggle("hidden", !model);
    if (!model) return;
    const poll = async () => {
      const r = await fetch("/watch?model=" + encodeURIComponent(model), {headers: headers()});
      const status = await r.json();
      if (!r.ok) { $("inside-watch-step").textContent = status.error.message; return; }
      $("inside-watch").dataset.step = status.step;
      const ago = status.written_at ? ((Date.now() / 1000 - status.written_at).toFixed(0) + " s ago") : "";
      $("inside-watch-step").textContent = `step ${status.step}, written ${ago}` + (status.problem ? ` (${status.problem})` : "");
      drawCurves(status.metrics);
      // New weights: look again at the same text (only one look at a time).
      if (view && status.step !== view.step && !looking) { looking = true; try { await look(); } finally { looking = false; } }
    };
    poll();
    watching = setInterval(poll, 1000);
  }
  let looking = false;

  function drawCurves(records) {
    const canvas = $("inside-curves"), w = canvas.width = 560, h = canvas.height = 180, pad = 30;
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, w, h);
    const series = [["train_loss", "#2f6fde"], ["val_loss", "#d9480f"]]
      .map(([key, colour]) => [key, colour, records.filter((r) => typeof r[key] === "number").map((r) => [r.step, r[key]])])
      .filter(([, , points]) => points.length);
    const all = series.flatMap(([, , points]) => points);
    if (!all.length) return;
    const x1 = Math.max(1, ...all.map((p) => p[0])), y0 = Math.min(...all.map((p) => p[1])), y1 = Math.max(...all.map((p) => p[1]));
    const sx = (x) => pad + (w - 2 * pad) * x / x1, sy = (y) => h - pad - (h - 2 * pad) * (y - y0) / ((y1 - y0) || 1);
    ctx.font = "11px system-ui, sans-serif"; ctx.fillStyle = "#6b7280";
    ctx.fillText(y1.toFixed(2), 2, sy(y1) + 4); ctx.fillText(y0.toFixed(2), 2, sy(y0) + 4);
    ctx.fillText("step " + x1, w - pad - 40, h - 8);
    series.forEach(([key, colour, points], i) => {
      ctx.strokeStyle = colour; ctx.lineWidth = 2; ctx.beginPath();
      points.forEach(([x, y], j) => (j ? ctx.lineTo(sx(x), sy(y)) : ctx.moveTo(sx(x), sy(y))));
      ctx.stroke();
      ctx.fillStyle = colour; ctx.fillText(key, pad + 8 + 80 * i, 14);
    });
  }

  function start() {
    $("inside-look").addEventListener("click", look);
    $("inside-text").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) look(); });
    for (const id of ["inside-temperature", "inside-top-k", "inside-top-p"]) {
      $(id).addEventListener("input", () => view && drawNext());
    }
  }

  return {start, look, watch};
})();
