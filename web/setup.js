// zeroqc line page, the engineer's screen (admin keys): the product and its references, a verdict on
// whether they will do, a check on known good and defective photos with a threshold to drag and
// save, the versions, the named defect types, the yield.
'use strict';

// The setup verdict's rules, as `zeroqc refs check` has them: fewer than 4 references is too few
// unless photos show otherwise; a reference unlike the others comes marked by the service
// (calibration's references[].outlier, the rule refs check applies).
const FEW_REFERENCES = 4;
const check = { parts: [], threshold: null, calibrated: null };

// `switched`: another product, whose check photos and threshold start afresh.
function clearSetup(switched) {
  $('refs').replaceChildren();
  $('calibration').textContent = '';
  $('defect-examples').replaceChildren();
  if (!switched) return;
  $('setup-verdict').textContent = '';
  check.parts = [];
  check.threshold = null;
  check.references = undefined;
  drawCheck();
}

async function loadSetup() {
  await loadReferences();
  await Promise.all([loadVersions(), loadDefectExamples()]);
  loadCalibration();  // builds the engine if need be: may take a while, nothing waits for it
}

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
  $('refs').dataset.count = String(p.references.length);
  check.fixed = p.settings && typeof p.settings.threshold === 'number';
}

let calibrationAsked = 0;

async function loadCalibration() {
  const product = $('product').value, asked = ++calibrationAsked;
  $('calibration').textContent = 'calibrating\u2026 (the engine is built from the references)';
  try {
    const c = await api(productPath() + '/calibration');
    if ($('product').value !== product || asked !== calibrationAsked) return;  // a newer one is on its way
    const t = typeof c.threshold === 'number' ? c.threshold.toFixed(3) : 'n/a';
    $('calibration').textContent = 'threshold ' + t + ' (version ' + c.version + ', ' + c.engine + ' engine' + (check.fixed ? ', set by hand' : '') + ')' +
      (c.copy_scores && c.copy_scores.length ? '; one reference: scores of its shifted copies ' + c.copy_scores.map((x) => x.toFixed(3)).join(', ') : '');
    // A change of references moves a calibrated threshold: say so, with the value before.
    if (check.shownThreshold && check.shownThreshold.product === product && check.shownThreshold.version !== c.version &&
        typeof c.threshold === 'number' && Math.abs(check.shownThreshold.value - c.threshold) > 5e-4) {
      $('calibration').append(el('span', { class: 'moved' }, ' \u2014 the threshold moved from ' + check.shownThreshold.value.toFixed(3) +
        ' (version ' + check.shownThreshold.version + ') to ' + c.threshold.toFixed(3)));
    }
    if (typeof c.threshold === 'number') check.shownThreshold = { product, version: c.version, value: c.threshold };
    $('calibration').dataset.threshold = String(c.threshold);
    check.calibrated = c.threshold;
    if (check.threshold === null && typeof c.threshold === 'number') check.threshold = c.threshold;
    const outliers = [];
    for (const r of c.references) {
      const fig = document.querySelector(`#refs figure[data-ref="${r.id}"]`);
      if (!fig || typeof r.score !== 'number') continue;
      fig.querySelector('.score').textContent = r.score.toFixed(3);
      const unlike = r.outlier === true;  // the service applies refs check's rule
      fig.classList.toggle('outlier', unlike);
      fig.title = unlike ? 'unlike the other references: defective, or a variant shown once' : 'this reference scored against the others';
      if (unlike) outliers.push(r.filename);
    }
    check.references = c.references.length;
    check.outliers = outliers;
    drawCheck();
  } catch (e) {
    if (asked === calibrationAsked) $('calibration').textContent = 'no calibration: ' + e.message;
  }
}

// In words, as refs check says it: ready, add references, or references disagree; the check
// photos, when there are some, have the last word on false rejects.
function setupVerdict(count, outliers) {
  const v = $('setup-verdict');
  const rejected = check.parts.filter((p) => p.label === 'good' && p.score > check.threshold);
  let cls = 'ready', text = 'ready: ' + count + ' references agree' + (check.parts.length ? ' and the check photos are judged right' : '') + '.';
  if (outliers.length) {
    cls = 'disagree';
    text = 'references disagree: ' + outliers.join(', ') + ' look' + (outliers.length === 1 ? 's' : '') +
      ' unlike the others (marked red). If defective, remove; if a variant, add more photos like it.';
  } else if (rejected.length) {
    cls = 'add';
    text = 'add references like these: ' + rejected.map((p) => p.name).join(', ') + ' (known good, judged NOK).';
  } else if (count < FEW_REFERENCES && !check.parts.length) {
    cls = 'add';
    text = 'add references: ' + count + ' is too few. On the development suite defects rank at AUROC 0.78 from 1 reference, 0.81 from 4, 0.86 from 16; ' +
      'add photos that cover the variants (colour, position, light), or check known photos below.';
  }
  v.className = 'setup-verdict ' + cls;
  v.dataset.verdict = cls;
  v.textContent = text;
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

// All the photos chosen at once go up in one request: one version.
async function addReferences(files) {
  try {
    const form = new FormData();
    for (const f of files) form.append('image', f, f.name);
    setStatus('uploading ' + files.length + ' reference photo(s)\u2026');
    const added = await api(productPath() + '/references', { method: 'POST', body: form });
    setStatus(files.length + ' reference(s) added' + (added.version ? ' as version ' + added.version : ''));
    await productChanged();
  } catch (e) { setStatus('references: ' + e.message, true); }
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
    case 'update': {
      const t = c.settings && typeof c.settings.threshold === 'number' ? 'threshold set to ' + c.settings.threshold.toFixed(3) : 'settings changed';
      return t + (c.reason ? ': ' + c.reason : '');
    }
    case 'add_reference': return 'reference ' + c.filename + ' added' + (c.from_inspection ? ' (from inspection ' + c.from_inspection + ')' : '');
    case 'add_references': return (c.filenames || []).length + ' references added: ' + (c.filenames || []).join(', ');
    case 'remove_reference': return 'reference ' + c.filename + ' removed';
    case 'rollback': return 'rolled back to version ' + c.to;
    case 'retire': return 'retired';
    default: return c.op || '';
  }
}

async function loadVersions() {
  const body = $('versions').tBodies[0];
  body.replaceChildren();
  if (!$('product').value) return;
  const v = await api(productPath() + '/versions');
  for (const item of v.items) {
    const current = item.version === v.current;
    body.append(el('tr', { 'data-version': String(item.version), 'data-op': item.change.op || '' },
      el('td', {}, String(item.version) + (current ? ' (current)' : '')), el('td', {}, new Date(item.created_at).toLocaleString()),
      el('td', {}, item.actor), el('td', { class: 'change' }, changeText(item.change)), el('td', {}, String(item.references.length)),
      el('td', {}, current || item.change.op === 'migrated' ? '' : el('button', { class: 'rollback', onclick: () => rollback(item.version) }, 'Roll back to this'))));
  }
}

async function rollback(version) {
  if (!confirm('Restore version ' + version + "'s references and settings (as a new version)?")) return;
  try {
    await api(productPath() + '/versions/' + version + '/rollback', { method: 'POST' });
    setStatus('rolled back to version ' + version);
    await productChanged();
  } catch (e) { setStatus('rollback: ' + e.message, true); }
}

// ---- the check: known photos judged aside, a threshold to drag, then saved as a version ----
async function checkPhotos(files, label) {
  const product = $('product').value;
  let done = 0;
  for (const f of files) {
    $('check-progress').textContent = 'judging ' + f.name + ' (' + (++done) + '/' + files.length + ')\u2026';
    try {
      const form = new FormData();
      form.append('image', f, f.name);
      const r = await api(productPath() + '/score', { method: 'POST', body: form });
      if ($('product').value !== product) return;
      check.parts.push({ name: f.name, label, score: r.score });
      if (typeof r.threshold === 'number' && check.threshold === null) check.threshold = r.threshold;
    } catch (e) {
      check.parts.push({ name: f.name, label, error: e.message });
    }
    drawCheck();
  }
  $('check-progress').textContent = check.parts.length + ' photo(s) judged by the references';
}

// The threshold where the check photos are judged best (balanced accuracy), halfway between scores.
function bestThreshold(parts) {
  const good = parts.filter((p) => p.label === 'good'), bad = parts.filter((p) => p.label === 'defective');
  if (!good.length || !bad.length) return null;
  const s = [...new Set(parts.map((p) => p.score))].sort((a, b) => a - b);
  const cuts = [s[0] - 1e-6, ...s.slice(1).map((v, i) => (v + s[i]) / 2), s[s.length - 1]];
  let best = null;
  for (const t of cuts) {
    const ba = (bad.filter((p) => p.score > t).length / bad.length + good.filter((p) => p.score <= t).length / good.length) / 2;
    if (!best || ba > best.ba + 1e-12) best = { t, ba };
  }
  return best;
}

function drawCheck() {
  if (check.references !== undefined) setupVerdict(check.references, check.outliers);
  const parts = check.parts.filter((p) => typeof p.score === 'number');
  const t = check.threshold;
  const cm = { tp: 0, fn: 0, fp: 0, tn: 0 };
  for (const p of parts) {
    const nok = t !== null && p.score > t;
    if (p.label === 'defective') cm[nok ? 'tp' : 'fn']++; else cm[nok ? 'fp' : 'tn']++;
  }
  for (const k of Object.keys(cm)) $('cm-' + k).textContent = String(cm[k]);
  if (t !== null && document.activeElement !== $('threshold-input')) $('threshold-input').value = t.toFixed(3);
  const best = bestThreshold(parts);
  $('best-threshold').textContent = best ? 'best for these photos: ' + best.t.toFixed(3) + ' (balanced accuracy ' + best.ba.toFixed(2) + ')' : '';
  $('best-threshold').dataset.value = best ? String(best.t) : '';
  $('check-parts').replaceChildren(...check.parts.map((p) => el('li', { class: p.label, 'data-name': p.name },
    p.label + ': ' + p.name + ' ', p.error ? el('span', { class: 'error' }, p.error)
      : verdictBadge(t !== null && p.score > t ? 'NOK' : 'OK'), p.error ? '' : ' ' + p.score.toFixed(3))));
  // The histogram: good photos green, defective red, the threshold a line to drag.
  const h = $('check-histogram');
  h.replaceChildren();
  const W = 640, H = 170, L = 40, R = 10, B = 36, top = 12;
  const scores = parts.map((p) => p.score).concat(t !== null ? [t] : []);
  if (!scores.length) return;
  const lo = Math.min(...scores) * 0.9, hi = Math.max(...scores) * 1.1 || 1;
  const x = (v) => L + (v - lo) / (hi - lo) * (W - L - R);
  const bins = 24, bw = (W - L - R) / bins;
  const counts = { good: new Array(bins).fill(0), defective: new Array(bins).fill(0) };
  for (const p of parts) counts[p.label][Math.min(bins - 1, Math.floor((p.score - lo) / (hi - lo) * bins))]++;
  const peak = Math.max(1, ...counts.good, ...counts.defective);
  for (const label of ['good', 'defective']) {
    counts[label].forEach((n, b) => {
      if (!n) return;
      const bh = n / peak * (H - top - B);
      h.append(svg('rect', { x: L + b * bw + (label === 'good' ? 0 : bw / 2), y: H - B - bh, width: bw / 2 - 1, height: bh,
        class: label === 'good' ? 'ok' : 'nok', 'data-count': String(n) }));
    });
  }
  h.append(svg('line', { x1: L, x2: W - R, y1: H - B, y2: H - B, class: 'axis-line' }), svg('line', { x1: L, x2: L, y1: top, y2: H - B, class: 'axis-line' }),
    svg('text', { x: L - 6, y: top + 8, 'text-anchor': 'end', class: 'axis' }, String(peak)),
    svg('text', { x: L - 6, y: H - B, 'text-anchor': 'end', class: 'axis' }, '0'),
    svg('text', { x: 12, y: (H - B) / 2, class: 'axis', transform: `rotate(-90 12 ${(H - B) / 2})`, 'text-anchor': 'middle' }, 'photos'),
    svg('text', { x: L, y: H - B + 14, class: 'axis' }, lo.toFixed(3)), svg('text', { x: W - R, y: H - B + 14, 'text-anchor': 'end', class: 'axis' }, hi.toFixed(3)),
    svg('text', { x: (L + W - R) / 2, y: H - 6, 'text-anchor': 'middle', class: 'axis' }, 'score (NOK above the threshold)'));
  if (t !== null) {
    const tx = x(t);
    h.append(svg('line', { id: 'check-threshold', x1: tx, x2: tx, y1: 0, y2: H - B, class: 'threshold draggable', 'data-threshold': String(t) }),
      svg('text', { x: tx + 4, y: 10, class: 'axis' }, 'threshold ' + t.toFixed(3)));
  }
  h.dataset.lo = String(lo);
  h.dataset.hi = String(hi);
}

// Dragging anywhere on the histogram moves the threshold there.
function dragThreshold(e) {
  const h = $('check-histogram');
  if (!h.dataset.hi || (e.type === 'pointermove' && !(e.buttons & 1))) return;
  const box = h.getBoundingClientRect(), scale = 640 / box.width;
  const lo = Number(h.dataset.lo), hi = Number(h.dataset.hi);
  const v = lo + ((e.clientX - box.left) * scale - 40) / (640 - 50) * (hi - lo);
  check.threshold = Math.max(0.001, Math.min(hi, v));
  drawCheck();
}

async function saveThreshold(value, reason) {
  try {
    const settings = value === null ? { threshold: null, line_window: null } : { threshold: value, line_window: 0 };
    await api(productPath(), { method: 'PATCH', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ settings, reason }) });
    setStatus(value === null ? 'threshold: calibrated from the references again' : 'threshold ' + value.toFixed(3) + ' saved as a new version');
    if (value === null) check.threshold = null;
    await productChanged();
  } catch (e) { setStatus('threshold: ' + e.message, true); }
}

// ---- yield ----
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
  // Score histogram of the last 200 parts, each coloured by the verdict it got (a part judged by
  // an older threshold keeps its colour), with the current threshold as a line.
  const scored = items.slice(0, 200).filter((i) => i.result && typeof i.result.score === 'number');
  if (!scored.length) return;
  const threshold = scored[0].result.threshold;
  const hi = Math.max(threshold * 1.5, ...scored.map((i) => i.result.score)) || 1;
  const nb = 30, bins = { OK: new Array(nb).fill(0), NOK: new Array(nb).fill(0) };
  for (const i of scored) bins[i.verdict === 'NOK' ? 'NOK' : 'OK'][Math.min(nb - 1, Math.floor(i.result.score / hi * nb))]++;
  const HH = 160, hb = 30, peak = Math.max(1, ...bins.OK.map((n, b) => n + bins.NOK[b]));
  const binW = (W - 40) / nb;
  for (let b = 0; b < nb; b++) {
    const hOk = bins.OK[b] / peak * (HH - hb - 10), hNok = bins.NOK[b] / peak * (HH - hb - 10);
    if (bins.OK[b]) hist.append(svg('rect', { x: 30 + b * binW, y: HH - hb - hOk, width: binW - 1, height: hOk, class: 'ok', 'data-count': String(bins.OK[b]), 'data-verdict': 'OK' }));
    if (bins.NOK[b]) hist.append(svg('rect', { x: 30 + b * binW, y: HH - hb - hOk - hNok, width: binW - 1, height: hNok, class: 'nok', 'data-count': String(bins.NOK[b]), 'data-verdict': 'NOK' }));
  }
  const tx = 30 + threshold / hi * (W - 40);
  hist.append(svg('line', { id: 'threshold-line', x1: tx, x2: tx, y1: 0, y2: HH - hb, class: 'threshold', 'data-threshold': String(threshold) }),
    svg('text', { x: tx + 4, y: 12, class: 'axis' }, 'threshold ' + threshold.toFixed(3)),
    svg('text', { x: 2, y: 12, class: 'axis' }, String(peak)),
    svg('text', { x: 30, y: HH - 8, class: 'axis' }, '0'), svg('text', { x: W - 10, y: HH - 8, 'text-anchor': 'end', class: 'axis' }, hi.toFixed(2)));
}

function initSetup() {
  $('create').addEventListener('click', createProduct);
  $('ref-files').addEventListener('change', (e) => { if (e.target.files.length) addReferences([...e.target.files]).then(() => { e.target.value = ''; }); });
  $('yield-by').addEventListener('change', () => loadYield().catch((e) => setStatus(e.message, true)));
  for (const [id, label] of [['check-good', 'good'], ['check-bad', 'defective']]) {
    $(id).addEventListener('change', (e) => { if (e.target.files.length) checkPhotos([...e.target.files], label).then(() => { e.target.value = ''; }); });
  }
  $('check-clear').addEventListener('click', () => { check.parts = []; check.threshold = check.calibrated; drawCheck(); });
  const h = $('check-histogram');
  h.addEventListener('pointerdown', (e) => { h.setPointerCapture(e.pointerId); dragThreshold(e); });
  h.addEventListener('pointermove', dragThreshold);
  $('threshold-input').addEventListener('change', () => {
    const v = Number($('threshold-input').value);
    if (v > 0) { check.threshold = v; drawCheck(); }
  });
  $('save-threshold').addEventListener('click', () => {
    const v = Number($('threshold-input').value);
    if (!(v > 0)) return setStatus('threshold: a number above 0', true);
    saveThreshold(v, $('threshold-reason').value.trim());
  });
  $('calibrated-threshold').addEventListener('click', () => saveThreshold(null, 'back to the calibrated threshold'));
}
