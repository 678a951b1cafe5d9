// The latent list and the latent page of the browser; data files call
// browseLatents / browseLatent (script tags, since file:// forbids fetch).
"use strict";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "style") node.style.cssText = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : String(c));
  return node;
}

function fmt(v, digits = 3) {
  return v === null || v === undefined ? "–" : Number(v).toPrecision(digits);
}

function safe(hookpoint) { return hookpoint.split("/").join("--"); }

function latentHref(row) { return `latent.html#${row.arch}/${safe(row.hookpoint)}/${row.latent}`; }

function hashParams() { return new URLSearchParams(location.hash.slice(1)); }

// ---- latent list ----
function browseLatents(data) {
  const form = document.getElementById("filters");
  const scorer = form.elements.scorer;
  for (const s of data.scorers) scorer.append(el("option", {value: s}, s));
  const params = hashParams();
  for (const [k, v] of params) {
    const input = form.elements[k];
    if (!input) continue;
    if (input.type === "checkbox") input.checked = v === "1"; else input.value = v;
  }
  const render = () => renderList(data, form);
  form.addEventListener("input", () => {
    const p = new URLSearchParams();
    for (const input of form.elements) {
      const v = input.type === "checkbox" ? (input.checked ? "1" : "") : input.value;
      if (v) p.set(input.name, v);
    }
    if (params.get("arch")) p.set("arch", params.get("arch"));
    history.replaceState(null, "", "#" + p.toString());
    render();
  });
  render();
}

function renderList(data, form) {
  const f = Object.fromEntries([...form.elements].map(i => [i.name, i.type === "checkbox" ? i.checked : i.value]));
  const only = hashParams().get("arch");
  const num = v => (v === "" ? null : Number(v));
  const [min, max, fmin, fmax] = [num(f.min), num(f.max), num(f.fmin), num(f.fmax)];
  const q = f.q.toLowerCase();
  const score = r => r.scores[f.scorer] ?? null;
  const keep = r => (!only || r.arch === only)
    && (!q || (r.explanation || "").toLowerCase().includes(q))
    && (min === null || (score(r) !== null && score(r) >= min))
    && (max === null || (score(r) !== null && score(r) <= max))
    && (fmin === null || r.frequency >= fmin) && (fmax === null || r.frequency <= fmax);
  const key = {score, frequency: r => r.frequency, latent: r => r.latent, explanation: r => r.explanation || ""}[f.sort];
  const sign = f.asc ? 1 : -1;
  const rows = data.latents.filter(keep).sort((a, b) => {
    const [x, y] = [key(a), key(b)];
    if (x === y) return 0;
    if (x === null) return 1;
    if (y === null) return -1;
    return (x < y ? -1 : 1) * sign;
  });
  const list = document.getElementById("list");
  list.replaceChildren();
  const coders = [...new Set(data.latents.map(r => `${r.arch}\t${r.hookpoint}`))];
  for (const coder of coders) {
    const [arch, hookpoint] = coder.split("\t");
    if (only && arch !== only) continue;
    const mine = rows.filter(r => r.arch === arch && r.hookpoint === hookpoint);
    const body = el("tbody");
    for (const r of mine) {
      body.append(el("tr", {"class": "latent-row", "data-latent": r.latent, "data-arch": r.arch},
        el("td", {}, el("a", {href: latentHref(r)}, r.latent)),
        el("td", {"class": "num"}, fmt(score(r))),
        el("td", {"class": "num muted"}, fmt(r.shuffled[f.scorer])),
        el("td", {"class": "num"}, fmt(r.frequency)),
        el("td", {}, r.explanation ?? "(no explanation parsed)")));
    }
    list.append(el("section", {"class": "arch", "data-arch": arch},
      el("h2", {}, `${arch} `, el("small", {}, `${hookpoint}: ${mine.length} shown`)),
      el("table", {"class": "latents"},
        el("thead", {}, el("tr", {}, ...["latent", f.scorer || "score", "shuffled", "frequency", "explanation"].map(h => el("th", {}, h)))),
        body)));
  }
}

// ---- latent page ----
function loadLatent() {
  const [arch, hookpoint, latent] = location.hash.slice(1).split("/");
  if (!latent) return;
  const script = el("script", {src: `data/${arch}/${hookpoint}/${latent}.js`});
  script.onerror = () => document.getElementById("latent").replaceChildren(
    el("p", {"class": "error"}, `No data for ${location.hash.slice(1)}: was it part of the autointerp sample?`));
  document.body.append(script);
}
window.addEventListener("hashchange", () => { if (document.getElementById("latent")) loadLatent(); });

function tokenSpan(token, act, maxAct) {
  const alpha = maxAct > 0 ? Math.max(act, 0) / maxAct : 0;
  return el("span", {"class": "tok", "data-act": act, "data-alpha": alpha.toFixed(3),
    title: `activation ${fmt(act)}`, style: `background-color: rgba(255, 112, 0, ${alpha.toFixed(3)})`},
    // A newline shown as a mark keeps each example on one line.
    token.replace(/\n/g, "\u21b5"));
}

function exampleRow(example, maxAct) {
  const verdict = v => (typeof v === "boolean" ? (v ? "said active" : "said inactive") : v === null ? "no answer" : fmt(v));
  const marks = Object.entries(example.marks).map(([s, vs]) =>
    el("span", {"class": "mark"}, `${s}: ${vs.map(verdict).join(", ")}`));
  return el("div", {"class": "example", "data-ids": example.ids.join(" ")},
    el("span", {"class": "label"}, example.label || `max ${fmt(Math.max(...example.acts))}`),
    el("span", {"class": "text"}, ...example.tokens.map((t, i) => tokenSpan(t, example.acts[i], maxAct))),
    ...marks);
}

function histogramSvg(hist) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "-5 -5 310 125");
  svg.setAttribute("width", "310");
  svg.setAttribute("height", "125");
  const top = Math.max(1, ...hist.counts);
  const w = 300 / Math.max(1, hist.counts.length);
  hist.counts.forEach((n, i) => {
    const rect = document.createElementNS(ns, "rect");
    const h = 100 * n / top;
    for (const [k, v] of Object.entries({x: i * w, y: 100 - h, width: w * 0.9, height: h, fill: "#ff7000"})) rect.setAttribute(k, v);
    const tip = document.createElementNS(ns, "title");
    tip.textContent = `${n} tokens in [${fmt(hist.edges[i])}, ${fmt(hist.edges[i + 1])})`;
    rect.append(tip);
    svg.append(rect);
  });
  const label = document.createElementNS(ns, "text");
  label.setAttribute("y", "115");
  label.setAttribute("class", "tick");
  label.textContent = `0 … ${fmt(hist.edges[hist.edges.length - 1])}; tallest bar ${top} tokens`;
  svg.append(label);
  return svg;
}

function logitTable(title, rows) {
  return el("table", {"class": "logits"}, el("caption", {}, title),
    el("tbody", {}, ...rows.map(([t, v]) => el("tr", {}, el("td", {}, el("code", {}, JSON.stringify(t))), el("td", {"class": "num"}, fmt(v))))));
}

function browseLatent(d) {
  document.title = `${d.arch} ${d.hookpoint} latent ${d.latent}`;
  const scores = el("table", {"class": "row"}, el("tr", {}, ...["scorer", "metric", "real", "shuffled control"].map(h => el("th", {}, h))),
    ...d.scores.map(s => el("tr", {}, el("td", {}, s.scorer), el("td", {}, s.metric), el("td", {"class": "num"}, fmt(s.real)), el("td", {"class": "num"}, fmt(s.shuffled)))));
  const sections = d.sections.map(s => el("section", {"class": "examples"}, el("h3", {}, s.title),
    ...(s.examples.length ? s.examples.map(e => exampleRow(e, d.max_activation)) : [el("p", {"class": "muted"}, "none")])));
  document.getElementById("latent").replaceChildren(
    el("h1", {}, `${d.arch} `, el("small", {}, `${d.hookpoint}`), ` latent ${d.latent}`),
    el("p", {"class": "explanation"}, d.explanation ?? "(no explanation parsed)"),
    el("p", {"class": "muted"}, `fires on ${d.firing_count} cached tokens (frequency ${fmt(d.frequency)}); max activation ${fmt(d.max_activation)}`
      + (d.donor ? `; the shuffled control used the explanation of ${d.donor}` : "")),
    scores,
    el("div", {"class": "columns"},
      el("figure", {"class": "chart"}, el("figcaption", {}, "Activation histogram (every cached firing)"), histogramSvg(d.histogram)),
      logitTable("Top logit effects (W_U · decoder row)", d.logits.top),
      logitTable("Bottom logit effects", d.logits.bottom)),
    el("p", {"class": "muted"}, "Examples are the windows Delphi's explainer and scorers saw; colour is activation / the latent's max activation in the cache."),
    ...sections);
}
