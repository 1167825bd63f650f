// zeroqc line page, the common part: the API, the key and what its scope may do, the screens
// (line: the operator's; setup: the engineer's; station: a camera and PLC's), the product choice.
// line.js, setup.js and station.js hold the screens; the page starts once all have loaded. No build step.
'use strict';

const $ = (id) => document.getElementById(id);
const state = { key: '', scope: '', cursor: null, moving: false, still: 0, prev: null, timer: null, busy: false, captures: 0 };

function setStatus(text, error = false) {
  $('status').textContent = text;
  $('status').className = error ? 'error' : '';
}

// A request, retried (up to twice) when the key's rate limit answers 429: the page waits as told.
async function authedFetch(path, options = {}) {
  const headers = Object.assign({ Authorization: 'Bearer ' + state.key }, options.headers || {});
  for (let attempt = 0; ; attempt++) {
    const res = await fetch(path, Object.assign({}, options, { headers }));
    if (res.status !== 429 || attempt === 2) return res;
    const wait = Math.min(5, Number(res.headers.get('Retry-After')) || 1);
    await new Promise((r) => setTimeout(r, wait * 1000));
  }
}

async function api(path, options = {}) {
  const res = await authedFetch(path, options);
  if (!res.ok) {
    let message = res.status + ' ' + res.statusText;
    try { message = (await res.json()).error.message; } catch (e) { /* not JSON */ }
    throw new Error(message);
  }
  return res.status === 204 ? null : res.json();
}

// Images behind the API key: fetched with the header, shown through an object URL.
async function authedImage(path) {
  const res = await authedFetch(path);
  if (!res.ok) throw new Error('image ' + res.status);
  return URL.createObjectURL(await res.blob());
}

// Thumbnails of inspections: each fetched once, one at a time and spaced out, so that a page of
// history leaves the key's rate limit (10 requests a second by default) to the work that matters.
const thumbs = new Map();
let thumbQueue = Promise.resolve();
function thumbnail(id) {
  if (!thumbs.has(id)) {
    const next = thumbQueue.then(() => authedImage('/v1/inspections/' + id + '/image'))
      .finally(() => new Promise((r) => setTimeout(r, 250)));
    thumbQueue = next.catch(() => {});
    thumbs.set(id, next);
    next.catch(() => thumbs.delete(id));
  }
  return thumbs.get(id);
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v; else if (k.startsWith('on')) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

const SVG = 'http://www.w3.org/2000/svg';
function svg(tag, attrs = {}, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function verdictBadge(v) {
  return el('span', { class: 'verdict ' + (v || 'ERR') }, v || 'ERROR');
}

// ---- the key's scope: a control is shown only when the key may use it ----
const RANK = { read: 0, write: 1, admin: 2 };
const can = (scope) => state.scope !== '' && RANK[state.scope] >= RANK[scope];

function applyScope() {
  document.body.dataset.scope = state.scope;
  for (const e of document.querySelectorAll('[data-scope]')) e.hidden = !can(e.dataset.scope);
  if (!can('admin') && document.body.dataset.screen === 'setup') showScreen('line');
}

async function loadScope() {
  const me = await api('/v1/whoami');
  state.scope = me.scope;
  $('whoami').textContent = (me.name || 'key ' + me.id) + ' (' + me.scope + ')';
  applyScope();
}

function showScreen(name) {
  document.body.dataset.screen = name;
  $('screen-line').hidden = name !== 'line';
  $('screen-setup').hidden = name !== 'setup';
  $('screen-station').hidden = name !== 'station';
  stationShown(name === 'station');
  for (const t of document.querySelectorAll('#screens [role=tab]')) t.setAttribute('aria-selected', String(t.dataset.screen === name));
}

// ---- products ----
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
let shownProduct = null;
function productChanged() {
  const next = reloads.then(reloadProduct, reloadProduct);
  reloads = next.catch(() => {});
  return next;
}

async function reloadProduct() {
  const product = $('product').value;
  localStorage.setItem('zeroqc.product', product);
  // Another product: the last product's verdict must not stand beside this one's.
  const switched = product !== shownProduct;
  if (switched) {
    shownProduct = product;
    showEmpty(product ? 'No part of ' + product + ' inspected yet.' : 'No product: create one on the Setup screen.');
  }
  clearSetup(switched);
  if (!product) return;
  await Promise.all([loadLine(), can('admin') ? loadSetup() : Promise.resolve()]);
}

const productPath = () => '/v1/products/' + encodeURIComponent($('product').value);

// ---- wiring ----
async function start() {
  try {
    await loadScope();
    await loadStation();
    await loadProducts();
  } catch (e) {
    setStatus(e.message, true);
  }
}

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
    start();
  });
  $('product').addEventListener('change', () => productChanged().catch((e) => setStatus(e.message, true)));
  for (const t of document.querySelectorAll('#screens [role=tab]')) t.addEventListener('click', () => showScreen(t.dataset.screen));
  initLine();
  initSetup();
  showScreen('line');
  if (state.key) start();
  else setStatus('enter an API key (zeroqc keys create)');
}

document.addEventListener('DOMContentLoaded', init);
