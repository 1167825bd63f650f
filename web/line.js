// zeroqc line page, the operator's screen: capture parts from a camera (motion-triggered or by hand)
// or a file, one clear state per part (waiting, result, error) in a big tile, today's counters, the
// last parts, the history with reviews.
'use strict';

// ---- the result area: exactly one part's state at a time ----
let waitTimer = null;

function setTile(cls, verdict, text) {
  clearInterval(waitTimer);
  waitTimer = null;
  const tile = $('tile');
  tile.className = 'tile ' + cls;
  tile.dataset.state = cls.toLowerCase();
  $('tile-verdict').textContent = verdict;
  $('tile-text').textContent = text;
}

function showEmpty(text) {
  setTile('EMPTY', '\u2013', text);
  $('result').replaceChildren();
  delete $('result').dataset.id;
  delete $('result').dataset.verdict;
}

// Waiting for the verdict, with the seconds counting: the first part after a change waits for the
// engine to be built from the references.
function showWaiting(filename) {
  showEmpty('');
  setTile('WAITING', '\u2026', 'inspecting ' + filename);
  const t0 = Date.now();
  waitTimer = setInterval(() => {
    const s = Math.round((Date.now() - t0) / 1000);
    $('tile-text').textContent = 'inspecting ' + filename + ': ' + s + ' s' +
      (s >= 2 ? ' (the first part after a change waits while the engine is built from the references)' : '');
  }, 500);
}

function showError(filename, message) {
  showEmpty('');
  setTile('ERROR', 'ERROR', filename + ': ' + message);
  $('result').dataset.verdict = 'ERROR';
}

// ---- inspection ----
async function submit(blob, filename) {
  if (state.busy) return;
  state.busy = true;
  const product = $('product').value;
  showWaiting(filename);
  setStatus('inspecting ' + filename + ' ...');
  try {
    if (!product) throw new Error('choose a product first');
    const form = new FormData();
    form.append('image', blob, filename);
    form.append('product', product);
    form.append('batch', $('batch').value);
    form.append('station', 'web');
    const res = await authedFetch('/v1/inspections?wait=true', { method: 'POST', body: form });
    let body = {};
    try { body = await res.json(); } catch (e) { /* not JSON */ }
    if (!res.ok) throw new Error(body.error ? body.error.message : res.status + ' ' + res.statusText);
    if (product !== $('product').value) return;  // the operator moved on to another product
    await showResult(body);
    setStatus(body.status === 'done' ? 'done' : body.status);
    await loadLine();
  } catch (e) {
    showError(filename, e.message);
    setStatus(e.message, true);
  } finally {
    state.busy = false;
  }
}

async function showResult(ins) {
  const box = $('result');
  const r = ins.result || {};
  const v = ins.verdict || 'ERROR';
  setTile(v === 'ERROR' ? 'ERROR' : v, v, r.text || ins.error || '');
  box.className = '';
  box.dataset.id = ins.id;
  box.dataset.verdict = v;
  const defects = el('ul', { class: 'defects' });
  const mayReview = can('write') && ins.status === 'done';
  (r.objects || []).forEach((o, i) => {
    const b = o.bounding_box;
    const li = el('li', { class: 'defect', 'data-index': String(i) }, el('b', {}, o.name + ' '), '(' + o.color + ', ' + o.qc + ') ', o.reason,
      b ? ' [' + b.x_min + ',' + b.y_min + ' - ' + b.x_max + ',' + b.y_max + ']' : '');
    if (b && o.qc === 'NOK' && mayReview) {
      li.append(' ', el('button', { class: 'name-defect', title: 'name this region: later regions like it get the name',
        onclick: () => nameDefect(li, ins.id, b) }, 'Name\u2026'));
    }
    defects.append(li);
  });
  for (const n of ins.named_defects || []) defects.append(el('li', { class: 'named' }, 'named by a review: ', el('b', {}, n.name)));
  const review = el('div', { class: 'controls' });
  if (mayReview) {
    review.append('Review: ', el('button', { onclick: () => reviewAs(ins.id, 'OK') }, 'Confirm OK'),
      el('button', { onclick: () => reviewAs(ins.id, 'NOK') }, 'Confirm NOK'));
    if (can('admin')) {
      review.append(el('button', { id: 'teach', title: 'a false alarm: this part becomes a reference of the product (a new version)',
        onclick: () => reviewAs(ins.id, 'OK', true) }, 'Good part: add to references'));
    }
  }
  if (ins.reviews && ins.reviews.length) review.append(' reviewed: ', verdictBadge(ins.final_verdict));
  const version = ins.reference_version ? el('p', { class: 'muted' }, 'judged by version ' + ins.reference_version +
    (typeof r.score === 'number' ? ', score ' + r.score.toFixed(3) + ' / threshold ' + r.threshold.toFixed(3) : '')) : '';
  box.replaceChildren(defects, version, review);
  if (ins.links && ins.links.overlay) {
    // The service draws the heat map and the boxes on the image; each NOK box is also a button that
    // names its region (the same form as "Name..." beside it).
    const img = el('img', { id: 'overlay', alt: 'inspected image with defects' });
    img.src = await authedImage(ins.links.overlay);
    const wrap = el('div', { class: 'overlay-wrap' }, img);
    (r.objects || []).forEach((o, i) => {
      const b = o.bounding_box;
      const size = r.image || {};
      if (!b || o.qc !== 'NOK' || !mayReview || !size.width || !size.height) return;
      const pct = (val, total) => (100 * val / total).toFixed(2) + '%';
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
      await Promise.all([can('admin') ? loadDefectExamples() : null, loadHistory(true)]);
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
      await loadLine();
    }
  } catch (e) { setStatus(e.message, true); }
}

// ---- today's counters and the last parts ----
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

const scoreText = (ins) => (ins.result && typeof ins.result.score === 'number' ? ins.result.score.toFixed(3) : '');

async function loadCounters() {
  const items = await recentInspections(500);
  const today = new Date().toDateString();
  const c = { parts: 0, ok: 0, nok: 0, errors: 0 };
  for (const ins of items) {
    if (new Date(ins.created_at).toDateString() !== today) continue;
    c.parts++;
    if (ins.status === 'failed' || (ins.status === 'done' && !ins.verdict)) c.errors++;
    else if (ins.final_verdict === 'NOK') c.nok++;
    else if (ins.final_verdict === 'OK') c.ok++;
  }
  $('count-parts').textContent = c.parts;
  $('count-ok').textContent = c.ok;
  $('count-nok').textContent = c.nok;
  $('count-errors').textContent = c.errors;
  const last = items.slice(0, 8);
  const rows = [];
  for (const ins of last) {
    const img = el('img', { alt: ins.image_name || ins.id, class: 'thumb' });
    thumbnail(ins.id).then((u) => { img.src = u; }).catch(() => {});
    rows.push(el('li', { 'data-id': ins.id, title: 'show this part', onclick: () => showResult(ins) }, img,
      el('span', { class: 'name' }, ins.image_name || ins.id), verdictBadge(ins.status === 'done' || ins.status === 'failed' ? ins.final_verdict : ins.status),
      el('span', { class: 'score' }, scoreText(ins))));
  }
  $('last-parts').replaceChildren(...rows);
}

async function loadLine() {
  await Promise.all([loadHistory(true), loadCounters(), can('admin') ? loadYield() : null]);
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
    const img = el('img', { alt: '', class: 'thumb' });
    thumbnail(ins.id).then((u) => { img.src = u; }).catch(() => {});
    body.append(el('tr', { 'data-id': ins.id },
      el('td', {}, img), el('td', {}, new Date(ins.created_at).toLocaleString()), el('td', { class: 'file' }, ins.image_name || ''),
      el('td', {}, ins.batch || ''),
      el('td', {}, ins.status === 'done' || ins.status === 'failed' ? verdictBadge(ins.verdict) : ins.status),
      el('td', { class: 'score' }, scoreText(ins)),
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

function initLine() {
  $('start').addEventListener('click', startCamera);
  $('capture').addEventListener('click', () => capture('manual'));
  $('file').addEventListener('change', (e) => {
    const f = e.target.files[0];
    if (f) submit(f, f.name).then(() => { e.target.value = ''; });
  });
  for (const id of ['sensitivity', 'settle']) $(id).addEventListener('input', () => { $(id + '-value').textContent = $(id).value; });
  $('refresh').addEventListener('click', () => loadHistory(true).catch((e) => setStatus(e.message, true)));
  $('more').addEventListener('click', () => loadHistory(false).catch((e) => setStatus(e.message, true)));
  $('filter-verdict').addEventListener('change', () => loadHistory(true).catch((e) => setStatus(e.message, true)));
}
