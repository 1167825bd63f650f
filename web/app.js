// zeroqc line camera: capture parts from a camera (motion-triggered or by hand), send them to the
// service, show verdicts with boxes and heat map, keep a reviewable history; teach the product
// from reviews, see and roll back its versions, watch the yield. No build step.
'use strict';

const $ = (id) => document.getElementById(id);
const state = { key: '', cursor: null, moving: false, still: 0, prev: null, timer: null, busy: false, captures: 0 };

function setStatus(text, error = false) {
  $('status').textContent = text;
  $('status').className = error ? 'error' : '';
}

async function api(path, options = {}) {
  const headers = Object.assign({ Authorization: 'Bearer ' + state.key }, options.headers || {});
  const res = await fetch(path, Object.assign({}, options, { headers }));
  if (!res.ok) {
    let message = res.status + ' ' + res.statusText;
    try { message = (await res.json()).error.message; } catch (e) { /* not JSON */ }
    throw new Error(message);
  }
  return res.status === 204 ? null : res.json();
}

// Images behind the API key: fetched with the header, shown through an object URL.
async function authedImage(path) {
  const res = await fetch(path, { headers: { Authorization: 'Bearer ' + state.key } });
  if (!res.ok) throw new Error('image ' + res.status);
  return URL.createObjectURL(await res.blob());
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v; else if (k.startsWith('on')) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

function verdictBadge(v) {
  return el('span', { class: 'verdict ' + (v || 'ERR') }, v || 'ERROR');
}

// ---- products, references ----
async function loadProducts() {
  const { items } = await api('/v1/products');
  const select = $('product');
  const keep = select.value || localStorage.getItem('zeroqc.product');
  select.replaceChildren(...items.map((p) => el('option', { value: p.name }, p.name + ' (' + p.engine + ')')));
  if (keep && items.some((p) => p.name === keep)) select.value = keep;
  await productChanged();
}

// One reload at a time, in the order asked: a slow earlier reload (a reference added) must not draw
// its older versions and references over a later one's (that reference removed).
let reloads = Promise.resolve();
function productChanged() {
  const next = reloads.then(reloadProduct, reloadProduct);
  reloads = next.catch(() => {});
  return next;
}

let calibrationAsked = 0;

async function reloadProduct() {
  localStorage.setItem('zeroqc.product', $('product').value);
  $('refs').replaceChildren();
  $('calibration').textContent = '';
  $('defect-examples').replaceChildren();
  if (!$('product').value) return;
  await loadReferences();
  await Promise.all([loadHistory(true), loadVersions(), loadYield(), loadDefectExamples()]);
  loadCalibration();  // builds the engine if need be: may take a while, nothing waits for it
}

const productPath = () => '/v1/products/' + encodeURIComponent($('product').value);

// Thumbnails with each reference's own score (filled in by loadCalibration) and a remove button.
async function loadReferences() {
  const p = await api(productPath());
  const figures = [];
  for (const r of p.references) {
    figures.push(el('figure', { 'data-ref': String(r.id) },
      el('img', { src: await authedImage(r.image), alt: r.filename, title: r.filename }),
      el('figcaption', {}, el('span', { class: 'name' }, r.filename), ' ', el('span', { class: 'score' }),
        el('button', { class: 'remove', title: 'remove this reference (a new version)', onclick: () => removeReference(r.id, r.filename) }, '\u00d7'))));
  }
  $('refs').replaceChildren(...figures);
}

async function loadCalibration() {
  const product = $('product').value, asked = ++calibrationAsked;
  $('calibration').textContent = 'calibrating\u2026';
  try {
    const c = await api(productPath() + '/calibration');
    if ($('product').value !== product || asked !== calibrationAsked) return;  // a newer one is on its way
    const t = typeof c.threshold === 'number' ? c.threshold.toFixed(3) : 'n/a';
    $('calibration').textContent = 'threshold ' + t + ' (version ' + c.version + ', ' + c.engine + ' engine)' +
      (c.copy_scores && c.copy_scores.length ? '; one reference: scores of its shifted copies ' + c.copy_scores.map((x) => x.toFixed(3)).join(', ') : '');
    $('calibration').dataset.threshold = String(c.threshold);
    for (const r of c.references) {
      const s = document.querySelector(`#refs figure[data-ref="${r.id}"] .score`);
      if (s && typeof r.score === 'number') {
        s.textContent = r.score.toFixed(3);
        s.title = 'this reference scored against the others (the threshold comes from these)';
      }
    }
  } catch (e) {
    if (asked === calibrationAsked) $('calibration').textContent = 'no calibration: ' + e.message;
  }
}

async function createProduct() {
  const name = $('new-name').value.trim();
  try {
    await api('/v1/products', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ name }) });
    $('new-name').value = '';
    localStorage.setItem('zeroqc.product', name);
    $('product').value = '';
    await loadProducts();  // selects it (the stored choice) and loads it
    setStatus('product ' + name + ' created: add reference photos of good parts');
  } catch (e) { setStatus(e.message, true); }
}

async function addReferences(files) {
  try {
    for (const f of files) {
      const form = new FormData();
      form.append('image', f, f.name);
      await api(productPath() + '/references', { method: 'POST', body: form });
    }
    setStatus(files.length + ' reference(s) added');
    await productChanged();
  } catch (e) { setStatus(e.message, true); }
}

async function removeReference(id, filename) {
  if (!confirm('Remove reference ' + filename + '? (a new version; a rollback brings it back)')) return;
  try {
    await api(productPath() + '/references/' + id, { method: 'DELETE' });
    setStatus('reference ' + filename + ' removed');
    await productChanged();
  } catch (e) { setStatus(e.message, true); }
}

async function loadDefectExamples() {
  const { items } = await api(productPath() + '/defect-examples');
  $('defect-examples').replaceChildren(...items.map((x) => el('li', { 'data-example': String(x.id), 'data-name': x.name },
    el('b', {}, x.name), ' from inspection ' + x.inspection + ' by ' + x.actor + ' ',
    el('button', { class: 'remove', title: 'forget this example', onclick: () => removeExample(x.id) }, '\u00d7'))));
}

async function removeExample(id) {
  try {
    await api(productPath() + '/defect-examples/' + id, { method: 'DELETE' });
    await loadDefectExamples();
  } catch (e) { setStatus(e.message, true); }
}

// ---- versions ----
function changeText(c) {
  switch (c.op) {
    case 'create': return 'created';
    case 'update': return 'settings changed';
    case 'add_reference': return 'reference ' + c.filename + ' added' + (c.from_inspection ? ' (from inspection ' + c.from_inspection + ')' : '');
    case 'remove_reference': return 'reference ' + c.filename + ' removed';
    case 'rollback': return 'rolled back to version ' + c.to;
    case 'retire': return 'retired';
    default: return c.op || '';
  }
}

async function loadVersions() {
  const name = $('product').value;
  const body = $('versions').tBodies[0];
  body.replaceChildren();
  if (!name) return;
  const v = await api(productPath() + '/versions');
  for (const item of v.items) {
    const current = item.version === v.current;
    body.append(el('tr', { 'data-version': String(item.version), 'data-op': item.change.op || '' },
      el('td', {}, String(item.version) + (current ? ' (current)' : '')), el('td', {}, new Date(item.created_at).toLocaleString()),
      el('td', {}, item.actor), el('td', {}, changeText(item.change)), el('td', {}, String(item.references.length)),
      el('td', {}, current || item.change.op === 'migrated' ? '' : el('button', { class: 'rollback', onclick: () => rollback(item.version) }, 'Roll back to this'))));
  }
}

async function rollback(version) {
  if (!confirm('Restore version ' + version + "'s references and settings (as a new version)?")) return;
  try {
    await api(productPath() + '/versions/' + version + '/rollback', { method: 'POST' });
    setStatus('rolled back to version ' + version);
    await productChanged();
  } catch (e) { setStatus('rollback: ' + e.message + ' (an admin key is needed)', true); }
}

// ---- yield ----
const SVG = 'http://www.w3.org/2000/svg';
function svg(tag, attrs = {}, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

async function recentInspections(limit) {
  const out = [];
  let cursor = null;
  while (out.length < limit) {
    const q = new URLSearchParams({ product: $('product').value, limit: String(Math.min(500, limit - out.length)) });
    if (cursor) q.set('cursor', cursor);
    const page = await api('/v1/inspections?' + q);
    out.push(...page.items);
    cursor = page.next_cursor;
    if (!cursor) break;
  }
  return out;
}

async function loadYield() {
  const chart = $('yield-chart');
  const hist = $('score-histogram');
  chart.replaceChildren();
  hist.replaceChildren();
  if (!$('product').value) return;
  const items = (await recentInspections(500)).filter((i) => i.status === 'done');
  // OK/NOK per hour or per batch, oldest first.
  const byBatch = $('yield-by').value === 'batch';
  const groups = new Map();
  for (const ins of items.slice().reverse()) {
    const t = new Date(ins.created_at);
    const key = byBatch ? (ins.batch || '(none)') : t.getFullYear() + '-' + String(t.getMonth() + 1).padStart(2, '0') + '-' +
      String(t.getDate()).padStart(2, '0') + ' ' + String(t.getHours()).padStart(2, '0') + 'h';
    const g = groups.get(key) || { ok: 0, nok: 0 };
    (ins.final_verdict === 'NOK' ? g.nok++ : g.ok++);
    groups.set(key, g);
  }
  const entries = [...groups.entries()].slice(-24);
  const W = 640, H = 180, top = 10, bottom = 40;
  const max = Math.max(1, ...entries.map(([, g]) => g.ok + g.nok));
  const bw = entries.length ? Math.min(60, (W - 40) / entries.length) : 0;
  entries.forEach(([key, g], i) => {
    const x = 30 + i * bw, scale = (H - top - bottom) / max;
    const hOk = g.ok * scale, hNok = g.nok * scale;
    const bar = svg('g', { class: 'yield-bar', 'data-group': key, 'data-ok': String(g.ok), 'data-nok': String(g.nok) });
    bar.append(svg('rect', { x, y: H - bottom - hOk, width: bw - 4, height: hOk, class: 'ok' }),
      svg('rect', { x, y: H - bottom - hOk - hNok, width: bw - 4, height: hNok, class: 'nok' }),
      svg('title', {}, key + ': ' + g.ok + ' OK, ' + g.nok + ' NOK (' + Math.round(100 * g.ok / (g.ok + g.nok)) + '% yield)'),
      svg('text', { x: x + (bw - 4) / 2, y: H - bottom + 14, 'text-anchor': 'middle', class: 'axis' }, byBatch ? key : key.slice(-3)));
    chart.append(bar);
  });
  chart.append(svg('text', { x: 2, y: top + 8, class: 'axis' }, String(max)));
  // Score histogram of the last 200 parts with the threshold as a line.
  const scored = items.slice(0, 200).filter((i) => i.result && typeof i.result.score === 'number');
  if (!scored.length) return;
  const threshold = scored[0].result.threshold;
  const hi = Math.max(threshold * 1.5, ...scored.map((i) => i.result.score)) || 1;
  const bins = new Array(30).fill(0);
  for (const i of scored) bins[Math.min(bins.length - 1, Math.floor(i.result.score / hi * bins.length))]++;
  const HH = 160, hb = 30, peak = Math.max(...bins);
  const binW = (W - 40) / bins.length;
  bins.forEach((n, b) => {
    const h = n / peak * (HH - hb - 10);
    const lo = b * hi / bins.length;
    hist.append(svg('rect', { x: 30 + b * binW, y: HH - hb - h, width: binW - 1, height: h, class: lo >= threshold ? 'nok' : 'ok', 'data-count': String(n) }));
  });
  const tx = 30 + threshold / hi * (W - 40);
  hist.append(svg('line', { id: 'threshold-line', x1: tx, x2: tx, y1: 0, y2: HH - hb, class: 'threshold', 'data-threshold': String(threshold) }),
    svg('text', { x: tx + 4, y: 12, class: 'axis' }, 'threshold ' + threshold.toFixed(3)),
    svg('text', { x: 30, y: HH - 8, class: 'axis' }, '0'), svg('text', { x: W - 10, y: HH - 8, 'text-anchor': 'end', class: 'axis' }, hi.toFixed(2)));
}

// ---- inspection ----
async function submit(blob, filename) {
  if (state.busy) return;
  state.busy = true;
  setStatus('inspecting ' + filename + ' ...');
  try {
    const form = new FormData();
    form.append('image', blob, filename);
    form.append('product', $('product').value);
    form.append('batch', $('batch').value);
    form.append('station', 'web');
    const res = await fetch('/v1/inspections?wait=true', { method: 'POST', headers: { Authorization: 'Bearer ' + state.key }, body: form });
    const body = await res.json();
    if (!res.ok) throw new Error(body.error ? body.error.message : res.statusText);
    await showResult(body);
    setStatus(body.status === 'done' ? 'done' : body.status);
    await Promise.all([loadHistory(true), loadYield()]);
  } catch (e) {
    setStatus(e.message, true);
  } finally {
    state.busy = false;
  }
}

async function showResult(ins) {
  const box = $('result');
  box.className = '';
  box.dataset.id = ins.id;
  box.dataset.verdict = ins.verdict || 'ERROR';
  const r = ins.result || {};
  const defects = el('ul', { class: 'defects' });
  (r.objects || []).forEach((o, i) => {
    const b = o.bounding_box;
    const li = el('li', { class: 'defect', 'data-index': String(i) }, el('b', {}, o.name + ' '), '(' + o.color + ', ' + o.qc + ') ', o.reason,
      b ? ' [' + b.x_min + ',' + b.y_min + ' - ' + b.x_max + ',' + b.y_max + ']' : '');
    if (b && o.qc === 'NOK' && ins.status === 'done') {
      li.append(' ', el('button', { class: 'name-defect', title: 'name this region: later regions like it get the name',
        onclick: () => nameDefect(li, ins.id, b) }, 'Name\u2026'));
    }
    defects.append(li);
  });
  for (const n of ins.named_defects || []) defects.append(el('li', { class: 'named' }, 'named by a review: ', el('b', {}, n.name)));
  const review = el('div', { class: 'controls' }, 'Review: ',
    el('button', { onclick: () => reviewAs(ins.id, 'OK') }, 'Confirm OK'),
    el('button', { onclick: () => reviewAs(ins.id, 'NOK') }, 'Confirm NOK'),
    el('button', { id: 'teach', title: 'a false alarm: this part becomes a reference of the product (a new version)',
      onclick: () => reviewAs(ins.id, 'OK', true) }, 'Good part: add to references'),
    ins.reviews && ins.reviews.length ? el('span', {}, ' reviewed: ', verdictBadge(ins.final_verdict)) : '');
  const version = ins.reference_version ? el('p', { class: 'muted' }, 'judged by version ' + ins.reference_version +
    (typeof r.score === 'number' ? ', score ' + r.score.toFixed(3) + ' / threshold ' + r.threshold.toFixed(3) : '')) : '';
  box.replaceChildren(el('p', {}, verdictBadge(ins.verdict), ' ', r.text || ins.error || ''), defects, version, review);
  if (ins.links && ins.links.overlay) {
    // The service draws the heat map and the boxes on the image; each NOK box is also a button that
    // names its region (the same form as "Name..." beside it).
    const img = el('img', { id: 'overlay', alt: 'inspected image with defects' });
    img.src = await authedImage(ins.links.overlay);
    const wrap = el('div', { class: 'overlay-wrap' }, img);
    (r.objects || []).forEach((o, i) => {
      const b = o.bounding_box;
      const size = r.image || {};
      if (!b || o.qc !== 'NOK' || ins.status !== 'done' || !size.width || !size.height) return;
      const pct = (v, total) => (100 * v / total).toFixed(2) + '%';
      const hit = el('button', { class: 'box-hit', 'data-index': String(i), title: 'name this region (' + o.name + ')' });
      // Through the CSSOM: the page's Content-Security-Policy refuses inline style attributes.
      Object.assign(hit.style, { left: pct(b.x_min, size.width), top: pct(b.y_min, size.height),
        width: pct(b.x_max - b.x_min, size.width), height: pct(b.y_max - b.y_min, size.height) });
      hit.addEventListener('click', () => {
        const li = defects.querySelector(`li.defect[data-index="${i}"]`);
        if (li && !li.querySelector('input.defect-name')) nameDefect(li, ins.id, b);
      });
      wrap.append(hit);
    });
    box.prepend(wrap);
  }
}

// An inline form on the region: the name, then a NOK review that names it.
function nameDefect(li, id, box) {
  const input = el('input', { class: 'defect-name', size: '16', maxlength: '64', placeholder: 'e.g. scratch' });
  const save = el('button', { class: 'save-name', onclick: async () => {
    try {
      const ins = await api('/v1/inspections/' + id + '/review', {
        method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ verdict: 'NOK', comment: 'from the line page', defects: [{ box, name: input.value.trim() }] }),
      });
      setStatus('named: ' + input.value.trim());
      await showResult(ins);
      await Promise.all([loadDefectExamples(), loadHistory(true)]);
    } catch (e) { setStatus(e.message, true); }
  } }, 'Save');
  li.append(' ', input, ' ', save);
  input.focus();
}

async function reviewAs(id, verdict, teach = false) {
  try {
    const ins = await api('/v1/inspections/' + id + '/review', {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ verdict, comment: 'from the line page', add_to_references: teach }),
    });
    await showResult(ins);
    if (teach) {
      setStatus('added to the references: version ' + ins.added_reference.version);
      await productChanged();
    } else {
      await Promise.all([loadHistory(true), loadYield()]);
    }
  } catch (e) { setStatus(e.message, true); }
}

// ---- history ----
async function loadHistory(fresh) {
  if (fresh) state.cursor = null;
  const q = new URLSearchParams({ limit: '20' });
  if ($('product').value) q.set('product', $('product').value);
  if ($('filter-verdict').value) q.set('verdict', $('filter-verdict').value);
  if ($('filter-since').value) q.set('since', new Date($('filter-since').value).toISOString());
  if (state.cursor) q.set('cursor', state.cursor);
  const page = await api('/v1/inspections?' + q);
  const body = $('history').tBodies[0];
  if (fresh) body.replaceChildren();
  for (const ins of page.items) {
    const n = ins.result && ins.result.objects ? ins.result.objects.filter((o) => o.qc === 'NOK').length : 0;
    body.append(el('tr', { 'data-id': ins.id },
      el('td', {}, new Date(ins.created_at).toLocaleString()), el('td', {}, ins.product), el('td', {}, ins.batch || ''),
      el('td', {}, ins.status === 'done' || ins.status === 'failed' ? verdictBadge(ins.verdict) : ins.status),
      el('td', {}, ins.reviews.length ? verdictBadge(ins.final_verdict) : ''), el('td', {}, String(n)),
      el('td', {}, el('button', { onclick: () => showResult(ins) }, 'show'))));
  }
  state.cursor = page.next_cursor;
  $('more').disabled = !state.cursor;
}

// ---- camera and motion trigger ----
// Each frame is shrunk to 64x48 gray and its mean subtracted, so a global change of light moves
// every pixel alike and cancels out; what remains is something moving in the scene.
function frameDifference() {
  const c = $('small');
  const ctx = c.getContext('2d', { willReadFrequently: true });
  ctx.drawImage($('video'), 0, 0, c.width, c.height);
  const px = ctx.getImageData(0, 0, c.width, c.height).data;
  const gray = new Float32Array(c.width * c.height);
  let mean = 0;
  for (let i = 0; i < gray.length; i++) {
    gray[i] = 0.299 * px[4 * i] + 0.587 * px[4 * i + 1] + 0.114 * px[4 * i + 2];
    mean += gray[i];
  }
  mean /= gray.length;
  for (let i = 0; i < gray.length; i++) gray[i] -= mean;
  let diff = 0;
  if (state.prev) for (let i = 0; i < gray.length; i++) diff += Math.abs(gray[i] - state.prev[i]);
  state.prev = gray;
  return diff / gray.length;
}

function tick() {
  if ($('video').readyState < 2) return;
  const diff = frameDifference();
  const sensitivity = Number($('sensitivity').value);
  const settle = Number($('settle').value);
  // Motion above the sensitivity arms the trigger; once the scene has been still for `settle`
  // frames, one picture is taken, and the trigger waits for the next motion.
  if (diff > sensitivity) {
    state.moving = true;
    state.still = 0;
  } else if (state.moving && ++state.still >= settle) {
    state.moving = false;
    if ($('auto').checked) capture('motion');
  }
  const text = state.moving ? 'motion ' + diff.toFixed(1) + (state.still ? ', settling ' + state.still + '/' + settle : '') : 'still (' + diff.toFixed(1) + ')';
  $('motion').textContent = text;
  document.body.dataset.motion = state.moving ? 'moving' : 'still';
}

function capture(reason) {
  const v = $('video');
  const c = $('grab');
  c.width = v.videoWidth;
  c.height = v.videoHeight;
  c.getContext('2d').drawImage(v, 0, 0);
  state.captures++;
  document.body.dataset.captures = String(state.captures);
  c.toBlob((blob) => submit(blob, reason + '-' + new Date().toISOString() + '.jpg'), 'image/jpeg', 0.92);
}

async function startCamera() {
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 1280 }, height: { ideal: 720 } }, audio: false });
    $('video').srcObject = stream;
    $('capture').disabled = false;
    $('start').disabled = true;
    clearInterval(state.timer);
    state.timer = setInterval(tick, 100);
    setStatus('camera on');
  } catch (e) {
    setStatus('camera: ' + e.message, true);
  }
}

// ---- wiring ----
function init() {
  const fromUrl = new URLSearchParams(location.hash.slice(1)).get('key');  // kiosk setup: /#key=...
  if (fromUrl) {
    localStorage.setItem('zeroqc.key', fromUrl);
    history.replaceState(null, '', location.pathname);
  }
  state.key = localStorage.getItem('zeroqc.key') || '';
  $('key').value = state.key;
  $('key').addEventListener('change', () => {
    state.key = $('key').value.trim();
    localStorage.setItem('zeroqc.key', state.key);
    loadProducts().catch((e) => setStatus(e.message, true));
  });
  $('product').addEventListener('change', () => productChanged().catch((e) => setStatus(e.message, true)));
  $('start').addEventListener('click', startCamera);
  $('capture').addEventListener('click', () => capture('manual'));
  $('file').addEventListener('change', (e) => { if (e.target.files[0]) submit(e.target.files[0], e.target.files[0].name); });
  for (const id of ['sensitivity', 'settle']) $(id).addEventListener('input', () => { $(id + '-value').textContent = $(id).value; });
  $('refresh').addEventListener('click', () => loadHistory(true).catch((e) => setStatus(e.message, true)));
  $('more').addEventListener('click', () => loadHistory(false).catch((e) => setStatus(e.message, true)));
  $('filter-verdict').addEventListener('change', () => loadHistory(true).catch((e) => setStatus(e.message, true)));
  $('create').addEventListener('click', createProduct);
  $('ref-files').addEventListener('change', (e) => { if (e.target.files.length) addReferences([...e.target.files]).then(() => { e.target.value = ''; }); });
  $('yield-by').addEventListener('change', () => loadYield().catch((e) => setStatus(e.message, true)));
  if (state.key) loadProducts().catch((e) => setStatus(e.message, true));
  else setStatus('enter an API key (zeroqc keys create)');
}

init();
