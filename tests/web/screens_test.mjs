// Issue 28: the page's two screens in Debian's Chromium through Playwright, against a real zeroqc
// serve (default rate limits). The operator's screen, with a write key on an 800 px wide window:
// no admin control anywhere, one state per part in the tile (waiting, then the verdict), a failed
// upload's error in the result area with no verdict of the part before beside it, counters and
// the last parts with thumbnails, and a product switch that clears the result. The engineer's
// screen, with an admin key: a batch of reference photos is one version, known good and defective
// photos give the confusion matrix, the threshold is dragged, saved with a reason, and the new
// version shows who set it and why. Saves screenshots of both.
// Environment: ZEROQC_BIN, SOURCE_DIR, OUT_DIR, ZEROQC_CACHE, PLAYWRIGHT_DIR.
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';
import { startServe } from './serve.mjs';

const env = process.env;
const require = createRequire(path.join(env.PLAYWRIGHT_DIR, 'package.json'));
const { chromium } = require('playwright-core');

const out = env.OUT_DIR;
fs.mkdirSync(out, { recursive: true });
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'zeroqc-screens-'));
const tb = path.join(env.SOURCE_DIR, '..', 'shared', 'datasets', 'mvtec-toothbrush');
const data = path.join(work, 'data');
const keyFor = (scope, name) => execFileSync(env.ZEROQC_BIN, ['keys', 'create', '--data', data, '--scope', scope, '--name', name]).toString().trim();
const admin = keyFor('admin', 'quality engineer');
const operator = keyFor('write', 'line 2 tablet');
const { server, port } = await startServe(env.ZEROQC_BIN, ['--data', data, '--cache', env.ZEROQC_CACHE, '--line-window', '0']);
const base = `http://127.0.0.1:${port}`;

async function call(method, url, body, type) {
  const headers = { Authorization: 'Bearer ' + admin };
  if (type) headers['Content-Type'] = type;
  let r;
  while ((r = await fetch(base + url, { method, headers, body })).status === 429)
    await new Promise((ok) => setTimeout(ok, 1000 * Number(r.headers.get('Retry-After') || 1)));
  const text = await r.text();
  assert.ok(r.ok, `${method} ${url}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

const brush = (n) => path.join(tb, 'train/good', String(n).padStart(3, '0') + '.png');
async function product(name, refs) {
  await call('POST', '/v1/products', JSON.stringify({ name }), 'application/json');
  const form = new FormData();
  for (const n of refs) form.append('image', new Blob([fs.readFileSync(brush(n))], { type: 'image/png' }), path.basename(brush(n)));
  return call('POST', `/v1/products/${name}/references`, form);
}

let browser;
try {
  const batch = await product('brush', [3, 11, 27, 45]);
  assert.equal(batch.items.length, 4);
  assert.equal(batch.version, 2, 'four references, one version');
  await product('other', [20]);
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run'] });

  // ---- the operator: a write key on an 800 px tablet ----
  const page = await browser.newPage({ viewport: { width: 800, height: 1100 } });
  page.on('pageerror', (e) => { throw new Error('page error: ' + e.message); });
  page.on('dialog', (d) => { throw new Error('no confirm dialog for an operator: ' + d.message()); });
  await page.goto(base + '/#key=' + operator);
  await page.waitForSelector('body[data-scope="write"]', { state: 'attached' });
  await page.selectOption('#product', 'brush');
  assert.equal(await page.isVisible('#tab-setup'), false, 'no setup screen for a write key');
  assert.equal(await page.isVisible('#tab-station'), false, 'no station screen on a server without a station');
  for (const id of ['#create', '#ref-files', '#save-threshold', '#versions', '#new-name'])
    assert.equal(await page.isVisible(id), false, `${id} is not shown to an operator`);
  assert.equal(await page.isVisible('#camera-panel'), true);

  // Every state the tile takes, and whether a verdict's details stood beside it at that moment.
  await page.evaluate(() => {
    window.tileLog = [];
    new MutationObserver(() => {
      const t = document.getElementById('tile');
      window.tileLog.push({ state: t.dataset.state, text: document.getElementById('tile-text').textContent,
        details: !!document.querySelector('#result #overlay, #result li.defect') });
    }).observe(document.getElementById('tile'), { attributes: true, attributeFilter: ['data-state'] });
  });
  await page.setInputFiles('#file', path.join(tb, 'test/defective/000.png'));
  await page.waitForSelector('#tile[data-state="nok"], #tile[data-state="ok"]', { timeout: 120000 });
  await page.waitForSelector('#result[data-id]');
  const first = await page.evaluate(() => window.tileLog.map((x) => x.state));
  assert.equal(first[0], 'waiting', `waiting first: ${first}`);
  assert.equal(await page.locator('#result #teach').count(), 0, 'no "add to references" for an operator');
  assert.ok(await page.locator('#result button', { hasText: 'Confirm OK' }).count() === 1, 'an operator reviews');

  // A failed upload: its error in the result area, and nothing of the part before.
  await page.evaluate(() => { window.tileLog = []; });
  await page.setInputFiles('#file', { name: 'broken.jpg', mimeType: 'image/jpeg', buffer: Buffer.from('not a picture at all') });
  await page.waitForSelector('#tile[data-state="error"]');
  const tileText = await page.innerText('#tile-text');
  assert.match(tileText, /broken\.jpg: .+/, tileText);
  assert.equal(await page.getAttribute('#result', 'data-verdict'), 'ERROR');
  assert.equal(await page.locator('#result #overlay, #result li.defect').count(), 0, 'no stale verdict beside the error');
  for (const s of await page.evaluate(() => window.tileLog))
    assert.ok(!(s.details && (s.state === 'waiting' || s.state === 'error')), `a verdict's details beside ${s.state}: ${JSON.stringify(s)}`);

  // A good part: counters and the last parts, each with its thumbnail, file name and score.
  await page.setInputFiles('#file', path.join(tb, 'test/good/000.png'));
  await page.waitForSelector('#tile[data-state="nok"], #tile[data-state="ok"]');
  await page.waitForFunction(() => document.querySelectorAll('#last-parts li').length === 2);
  assert.equal(await page.innerText('#count-parts'), '2');
  assert.equal(Number(await page.innerText('#count-ok')) + Number(await page.innerText('#count-nok')), 2);
  await page.waitForFunction(() => [...document.querySelectorAll('#last-parts img')].every((i) => i.src.startsWith('blob:') && i.complete));
  assert.match(await page.innerText('#last-parts'), /000\.png[\s\S]*\d\.\d{3}/);
  await page.waitForFunction(() => [...document.querySelectorAll('#history img.thumb')].every((i) => i.src.startsWith('blob:')));
  assert.match(await page.innerText('#history tbody'), /000\.png/);
  const wide = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(wide <= 800, `nothing cut off at 800 px: the page is ${wide} px wide`);
  await page.screenshot({ path: path.join(out, 'web-operator.png'), fullPage: true });

  // Another product: the last product's verdict does not stay on screen.
  await page.selectOption('#product', 'other');
  await page.waitForSelector('#tile[data-state="empty"]');
  assert.equal(await page.locator('#result #overlay').count(), 0);
  assert.match(await page.innerText('#tile-text'), /other/);

  // ---- the engineer: an admin key on the setup screen ----
  const eng = await browser.newPage({ viewport: { width: 1280, height: 1600 } });
  eng.on('pageerror', (e) => { throw new Error('page error: ' + e.message); });
  eng.on('dialog', (d) => d.accept());
  await eng.goto(base + '/#key=' + admin);
  await eng.waitForSelector('body[data-scope="admin"]', { state: 'attached' });
  await eng.selectOption('#product', 'brush');
  await eng.click('#tab-setup');
  await eng.waitForFunction(() => Number(document.querySelector('#calibration').dataset.threshold) > 0, null, { timeout: 120000 });
  await eng.waitForSelector('#setup-verdict[data-verdict]');
  const calibrated = Number(await eng.getAttribute('#calibration', 'data-threshold'));

  // Known parts, judged aside: nothing joins the history.
  const before = (await call('GET', '/v1/inspections?product=brush&limit=500')).items.length;
  await eng.setInputFiles('#check-good', [0, 1, 2, 3].map((n) => path.join(tb, 'test/good', String(n).padStart(3, '0') + '.png')));
  await eng.waitForFunction(() => document.querySelectorAll('#check-parts li').length === 4, null, { timeout: 120000 });
  await eng.setInputFiles('#check-bad', [0, 1, 2, 3].map((n) => path.join(tb, 'test/defective', String(n).padStart(3, '0') + '.png')));
  await eng.waitForFunction(() => document.querySelectorAll('#check-parts li').length === 8, null, { timeout: 120000 });
  const cm = async () => Object.fromEntries(await Promise.all(['tp', 'fn', 'fp', 'tn'].map(async (k) => [k, Number(await eng.innerText('#cm-' + k))])));
  const at = await cm();
  assert.equal(at.tp + at.fn, 4, JSON.stringify(at));
  assert.equal(at.fp + at.tn, 4, JSON.stringify(at));
  assert.match(await eng.innerText('#best-threshold'), /best for these photos: \d\.\d{3}/);
  assert.equal((await call('GET', '/v1/inspections?product=brush&limit=500')).items.length, before, 'check photos are stored nowhere');

  // Drag the threshold to the far left: every photo is then NOK.
  const box = await eng.locator('#check-histogram').boundingBox();
  await eng.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  await eng.mouse.down();
  await eng.mouse.move(box.x + 45 * box.width / 640, box.y + box.height / 2, { steps: 5 });
  await eng.mouse.up();
  const dragged = Number(await eng.inputValue('#threshold-input'));
  assert.ok(dragged > 0 && dragged < calibrated, `dragged from ${calibrated} to ${dragged}`);
  const low = await cm();
  assert.equal(low.tp + low.fp, 8, `all NOK at a threshold below every score: ${JSON.stringify(low)}`);
  // Then to where these photos are judged best, typed in, and saved with the reason.
  const best = Number(await eng.getAttribute('#best-threshold', 'data-value'));
  await eng.fill('#threshold-input', best.toFixed(3));
  await eng.dispatchEvent('#threshold-input', 'change');
  await eng.fill('#threshold-reason', 'from 8 known parts');
  await eng.click('#save-threshold');
  const row = eng.locator('#versions tbody tr[data-op="update"]').first();
  await row.waitFor();
  const text = await row.innerText();
  assert.match(text, /quality engineer/, 'who');
  assert.match(text, new RegExp('threshold set to ' + best.toFixed(3).replace('.', '\\.') + ': from 8 known parts'), text);
  const saved = await call('GET', '/v1/products/brush');
  assert.equal(saved.settings.threshold, Number(best.toFixed(3)));
  assert.equal(saved.settings.line_window, 0);
  await eng.waitForFunction((t) => Math.abs(Number(document.querySelector('#calibration').dataset.threshold) - t) < 1e-9, Number(best.toFixed(3)));

  // A batch of reference photos on the page: one version.
  await eng.setInputFiles('#ref-files', [brush(40), brush(41)]);
  const added = eng.locator('#versions tbody tr[data-op="add_references"]', { hasText: '040.png' });
  await added.waitFor();
  assert.match(await added.innerText(), /2 references added: 040\.png, 041\.png/);
  assert.equal(await eng.locator('#versions tbody tr').count(), 4, 'created, 4 references, threshold, 2 references: one version each');
  await eng.waitForFunction(() => document.querySelectorAll('#refs img').length === 6);
  // The saved threshold is fixed: two more references do not move it, and the page says nothing moved.
  await eng.waitForFunction(() => /version 4/.test(document.querySelector('#calibration').textContent));
  assert.equal(await eng.locator('#calibration .moved').count(), 0);
  // Back to the calibrated threshold: it moves, and the page says from what to what.
  await eng.click('#calibrated-threshold');
  await eng.waitForSelector('#calibration .moved');
  assert.match(await eng.innerText('#calibration .moved'), /moved from \d\.\d{3} \(version 4\) to \d\.\d{3}/);
  await eng.screenshot({ path: path.join(out, 'web-engineer.png'), fullPage: true });
  console.log('ok: operator and engineer screens; screenshots', path.join(out, 'web-operator.png'), path.join(out, 'web-engineer.png'));
} finally {
  if (browser) await browser.close();
  server.kill('SIGTERM');
  fs.rmSync(work, { recursive: true, force: true });
}
