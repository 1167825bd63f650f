// The web page in Debian's Chromium, driven by Playwright, with a fake camera playing real photos:
// the camera starts, the motion trigger fires once when the part settles (not when the light
// changes), the result with its boxes and heat map appears, the history lists it. Saves a screenshot.
// Environment: ZEROQC_BIN, MAKE_Y4M, SOURCE_DIR, OUT_DIR, ZEROQC_CACHE, PLAYWRIGHT_DIR.
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
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'zeroqc-web-'));
const demo = path.join(env.SOURCE_DIR, 'demo', 'aws-nova-samples');
const y4m = path.join(work, 'camera.y4m');
const refPng = path.join(work, 'reference.png');
execFileSync(env.MAKE_Y4M, [y4m, refPng, path.join(demo, 'cubesponge_nok.jpg'), path.join(demo, 'cubesponge_reference.jpg')]);

const data = path.join(work, 'data');
const key = execFileSync(env.ZEROQC_BIN, ['keys', 'create', '--data', data, '--scope', 'admin', '--name', 'web test']).toString().trim();
const { server, port } = await startServe(env.ZEROQC_BIN, ['--data', data, '--cache', env.ZEROQC_CACHE]);
const base = `http://127.0.0.1:${port}`;
const auth = { Authorization: 'Bearer ' + key };

let browser;
try {
  let r = await fetch(base + '/v1/products', { method: 'POST', headers: { ...auth, 'Content-Type': 'application/json' }, body: JSON.stringify({ name: 'sponge' }) });
  assert.equal(r.status, 201);
  const form = new FormData();
  form.append('image', new Blob([fs.readFileSync(refPng)], { type: 'image/png' }), 'reference.png');
  r = await fetch(base + '/v1/products/sponge/references', { method: 'POST', headers: auth, body: form });
  assert.equal(r.status, 201);

  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
      '--use-file-for-fake-video-capture=' + y4m, '--disable-background-networking', '--disable-component-update', '--no-first-run'],
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 1100 } });
  page.on('pageerror', (e) => console.error('page error:', e.message));
  await page.goto(base + '/#key=' + key);
  await page.waitForSelector('#product option[value="sponge"]', { state: 'attached' });
  await page.waitForSelector('#refs img', { state: 'attached' });  // on the setup screen
  await page.click('#start');
  const started = Date.now();
  await page.waitForSelector('body[data-captures="1"]', { timeout: 20000 });
  const firstCapture = (Date.now() - started) / 1000;
  console.log(`motion trigger fired after ${firstCapture.toFixed(1)} s`);
  assert.ok(firstCapture > 2.0, 'no capture before the part arrived and settled');
  await page.waitForSelector('#result[data-verdict]', { timeout: 60000 });
  await page.screenshot({ path: path.join(out, 'web-camera.png'), fullPage: true });
  const verdict = await page.getAttribute('#result', 'data-verdict');
  assert.equal(verdict, 'NOK', 'the torn sponge is judged NOK');
  await page.waitForFunction(() => { const i = document.getElementById('overlay'); return i && i.complete && i.naturalWidth > 0; });
  const defects = await page.locator('#result li.defect').count();
  assert.ok(defects >= 1, 'defects listed with boxes');
  assert.ok(await page.locator('#history tbody tr').count() >= 1, 'history lists it');
  // The light changes from 4 s to 7 s into the clip while the part lies still: no second capture.
  const waitMs = 7500 - (Date.now() - started);
  if (waitMs > 0) await page.waitForTimeout(waitMs);
  assert.equal(await page.getAttribute('body', 'data-captures'), '1', 'a change of light is not motion');
  await page.screenshot({ path: path.join(out, 'web-camera.png'), fullPage: true });
  console.log('ok: NOK with', defects, 'defect(s); screenshot', path.join(out, 'web-camera.png'));
} finally {
  if (browser) await browser.close();
  server.kill('SIGTERM');
  fs.rmSync(work, { recursive: true, force: true });
}
