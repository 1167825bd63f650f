// Issue 11: the line page sets up, teaches and traces, in Debian's Chromium through Playwright,
// against a real zeroqc serve with the embedded engine. The product is created and its reference
// uploaded on the page (thumbnail, threshold). A good part judged NOK (one reference does not cover
// it) is added to the references from the result ("Good part: add to references"), the versions
// list shows who added it from which inspection, re-inspecting it gives OK, "Roll back to this"
// restores the old version (and its NOK), and the yield chart and score histogram show the parts
// with the threshold. A defect region is named by clicking its box on the image, and the next such part carries the
// name; a reference uploaded on the page is removed there. Saves a screenshot.
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
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'zeroqc-page-'));
const tb = path.join(env.SOURCE_DIR, '..', 'shared', 'datasets', 'mvtec-toothbrush');
const data = path.join(work, 'data');
const key = execFileSync(env.ZEROQC_BIN, ['keys', 'create', '--data', data, '--scope', 'admin', '--name', 'line lead']).toString().trim();
// No line window: the parts below are judged by the one reference, whose false alarm a review corrects.
const { server, port } = await startServe(env.ZEROQC_BIN, ['--data', data, '--cache', env.ZEROQC_CACHE, '--line-window', '0']);
const base = `http://127.0.0.1:${port}`;
const auth = { Authorization: 'Bearer ' + key };

async function upload(file) {
  const form = new FormData();
  form.append('image', new Blob([fs.readFileSync(file)], { type: 'image/png' }), path.basename(file));
  form.append('product', 'brush');
  form.append('batch', 'B-1');
  // The page shares the key's rate limit (the default): wait as told when it is spent.
  let r;
  while ((r = await fetch(base + '/v1/inspections?wait=true', { method: 'POST', headers: auth, body: form })).status === 429)
    await new Promise((ok) => setTimeout(ok, 1000 * Number(r.headers.get('Retry-After') || 1)));
  assert.equal(r.status, 200);
  return r.json();
}

let browser;
try {
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run'] });
  const page = await browser.newPage({ viewport: { width: 1280, height: 1800 } });
  page.on('pageerror', (e) => console.error('page error:', e.message));
  page.on('dialog', (d) => d.accept());
  await page.goto(base + '/#key=' + key);

  // Setup on the page (the engineer's screen): the product, then its reference photo; the threshold is shown.
  await page.click('#tab-setup');
  await page.fill('#new-name', 'brush');
  await page.click('#create');
  await page.waitForFunction(() => document.querySelector('#product').value === 'brush');
  await page.setInputFiles('#ref-files', path.join(tb, 'train/good/000.png'));
  await page.waitForFunction(() => document.querySelectorAll('#refs img').length === 1);
  await page.waitForFunction(() => Number(document.querySelector('#calibration').dataset.threshold) > 0, null, { timeout: 120000 });
  assert.match(await page.innerText('#calibration'), /threshold \d\.\d{3} \(version 2, patch engine\)/);

  // A few parts for the yield chart, then a good part the one reference does not cover.
  for (const f of ['test/defective/000.png', 'test/good/001.png']) await upload(path.join(tb, f));
  let falseAlarm = null;
  // Which good parts one reference does not cover depends on the backbone: candidates for each.
  for (const f of ['train/good/013.png', 'train/good/029.png', 'train/good/041.png', 'test/good/002.png', 'test/good/007.png',
                   'train/good/016.png', 'train/good/021.png']) {
    const ins = await upload(path.join(tb, f));
    if (ins.verdict === 'NOK') { falseAlarm = { ins, file: path.join(tb, f) }; break; }
  }
  assert.ok(falseAlarm, 'one of these good parts is a false alarm at one reference (else this test proves nothing)');

  await page.click('#tab-line');
  await page.click('#refresh');
  await page.click('#tab-setup');
  await page.waitForSelector('#versions tbody tr[data-op="add_reference"]');
  assert.equal(await page.locator('#versions tbody tr').count(), 2, 'created, reference added');

  // Yield: the parts of batch B-1 and the histogram's threshold line.
  await page.selectOption('#yield-by', 'batch');
  await page.waitForSelector('#yield-chart g.yield-bar[data-group="B-1"]');
  const bar = page.locator('#yield-chart g.yield-bar[data-group="B-1"]');
  const ok = Number(await bar.getAttribute('data-ok')), nok = Number(await bar.getAttribute('data-nok'));
  assert.ok(ok + nok >= 3 && nok >= 2, `batch B-1: ${ok} OK, ${nok} NOK`);
  assert.ok(Number(await page.getAttribute('#threshold-line', 'data-threshold')) > 0, 'the threshold line is drawn');

  // Open the false alarm from the history (the line screen) and teach it.
  await page.click('#tab-line');
  await page.click(`#history tr[data-id="${falseAlarm.ins.id}"] button`);
  await page.waitForSelector(`#result[data-id="${falseAlarm.ins.id}"]`);
  await page.click('#teach');
  await page.click('#tab-setup');
  await page.waitForSelector('#versions tbody tr[data-version="3"][data-op="add_reference"]');
  const row = await page.locator('#versions tbody tr[data-version="3"]').innerText();
  assert.match(row, /line lead/, 'who');
  assert.match(row, new RegExp(falseAlarm.ins.id), 'from which inspection');
  await page.waitForFunction(() => document.querySelectorAll('#refs img').length === 2);
  const again = await upload(falseAlarm.file);
  assert.equal(again.verdict, 'OK', 'taught: the same part is OK now');
  assert.equal(again.reference_version, 3);

  // Roll back to version 2: the reference goes, and the old verdict comes back.
  await page.click('#versions tbody tr[data-version="2"] button.rollback');
  await page.waitForSelector('#versions tbody tr[data-version="4"][data-op="rollback"]');
  await page.waitForFunction(() => document.querySelectorAll('#refs img').length === 1);
  const back = await upload(falseAlarm.file);
  assert.equal(back.verdict, 'NOK', 'the rollback restores the old verdict');
  assert.equal(back.reference_version, 4);

  // Name the defect of a NOK part on the page; the same kind of part later carries the name.
  const defective = await upload(path.join(tb, 'test/defective/000.png'));
  assert.equal(defective.verdict, 'NOK');
  await page.click('#tab-line');
  await page.click('#refresh');
  await page.click(`#history tr[data-id="${defective.id}"] button`);
  await page.waitForSelector(`#result[data-id="${defective.id}"] li.defect button.name-defect`);
  await page.click('#result .overlay-wrap button.box-hit[data-index="0"]');  // the box on the image
  await page.fill('#result input.defect-name', 'splayed bristles');
  await page.click('#result button.save-name');
  await page.waitForSelector('#result li.named');
  await page.click('#tab-setup');
  await page.waitForSelector('#defect-examples li[data-name="splayed bristles"]');
  const named = await upload(path.join(tb, 'test/defective/000.png'));
  assert.equal(named.result.objects[0].name, 'splayed bristles', JSON.stringify(named.result.objects[0]));
  assert.match(named.result.objects[0].reason, /similarity/);

  // A reference uploaded on the page, then removed there: two more versions.
  await page.setInputFiles('#ref-files', path.join(tb, 'train/good/013.png'));
  await page.waitForFunction(() => document.querySelectorAll('#refs img').length === 2);
  await page.click('#refs figure:last-child button.remove');
  await page.waitForSelector('#versions tbody tr[data-version="6"][data-op="remove_reference"]');
  assert.equal(await page.locator('#refs img').count(), 1);

  await page.click('#tab-line');
  await page.click('#refresh');
  await page.screenshot({ path: path.join(out, 'web-page.png'), fullPage: true });
  console.log('ok: set up, taught, traced, rolled back, named, removed; screenshot', path.join(out, 'web-page.png'));
} finally {
  if (browser) await browser.close();
  server.kill('SIGTERM');
  fs.rmSync(work, { recursive: true, force: true });
}
