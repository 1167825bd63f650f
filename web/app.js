// zeroqc line camera: capture parts from a camera (motion-triggered or by hand), send them to the
// service, show verdicts with boxes and heat map, keep a reviewable history. No build step.
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

async function productChanged() {
  localStorage.setItem('zeroqc.product', $('product').value);
  $('refs').replaceChildren();
  if (!$('product').value) return;
  const p = await api('/v1/products/' + encodeURIComponent($('product').value));
  for (const r of p.references) $('refs').append(el('img', { src: await authedImage(r.image), alt: r.filename, title: r.filename }));
  await loadHistory(true);
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
    await loadHistory(true);
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
  for (const o of r.objects || []) {
    const b = o.bounding_box;
    defects.append(el('li', { class: 'defect' }, el('b', {}, o.name + ' '), '(' + o.color + ', ' + o.qc + ') ', o.reason,
      b ? ' [' + b.x_min + ',' + b.y_min + ' - ' + b.x_max + ',' + b.y_max + ']' : ''));
  }
  const review = el('div', { class: 'controls' }, 'Review: ',
    el('button', { onclick: () => reviewAs(ins.id, 'OK') }, 'Confirm OK'),
    el('button', { onclick: () => reviewAs(ins.id, 'NOK') }, 'Confirm NOK'),
    ins.reviews && ins.reviews.length ? el('span', {}, ' reviewed: ', verdictBadge(ins.final_verdict)) : '');
  box.replaceChildren(el('p', {}, verdictBadge(ins.verdict), ' ', r.text || ins.error || ''), defects, review);
  if (ins.links && ins.links.overlay) {
    // The service draws the heat map and the boxes on the image.
    const img = el('img', { id: 'overlay', alt: 'inspected image with defects' });
    img.src = await authedImage(ins.links.overlay);
    box.prepend(img);
  }
}

async function reviewAs(id, verdict) {
  try {
    const ins = await api('/v1/inspections/' + id + '/review', {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ verdict, comment: 'from the line page' }),
    });
    await showResult(ins);
    await loadHistory(true);
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
  if (state.key) loadProducts().catch((e) => setStatus(e.message, true));
  else setStatus('enter an API key (zeroqc keys create)');
}

init();
