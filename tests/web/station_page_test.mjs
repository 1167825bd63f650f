// Issue 29: the page's station screen in Debian's Chromium through Playwright, against a real
// `zeroqc serve --station` whose camera is Aravis's GigE Vision simulator (arv-fake-gv-camera-0.8,
// on 127.0.0.1) fired by the station's own software trigger twice a second, and whose PLC is not
// there. With a read key: the Station tab appears, the last frame is shown, the last verdict is
// large in the tile, the counters grow, the camera is connected and the PLC is said to be
// unreachable, in red; the trigger-to-result table fills. Saves a screenshot.
// Environment: ZEROQC_BIN, SOURCE_DIR, OUT_DIR, ZEROQC_CACHE, PLAYWRIGHT_DIR.
import { execFileSync, spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';
import { startServe } from './serve.mjs';

const env = process.env;
const require = createRequire(path.join(env.PLAYWRIGHT_DIR, 'package.json'));
const { chromium } = require('playwright-core');

const out = env.OUT_DIR;
fs.mkdirSync(out, { recursive: true });
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'zeroqc-station-page-'));
const data = path.join(work, 'data');
const keyFor = (scope, name) => execFileSync(env.ZEROQC_BIN, ['keys', 'create', '--data', data, '--scope', scope, '--name', name]).toString().trim();
const admin = keyFor('admin', 'engineer');
const reader = keyFor('read', 'line display');

// A port nobody listens on: the PLC that is not there.
const freePort = () => new Promise((ok) => {
  const s = net.createServer().listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => ok(p)); });
});
const plcPort = await freePort();
fs.writeFileSync(path.join(work, 'station.json'), JSON.stringify({
  name: 'line-7', product: 'brush', trigger: 'software', software_trigger_hz: 2, queue: 4,
  camera: { id: '127.0.0.1', pixel_format: 'Mono8', roi: { x: 0, y: 0, width: 512, height: 512 } },
  plc: { host: '127.0.0.1', port: plcPort, timeout_ms: 100 },
}));

const camera = spawn('arv-fake-gv-camera-0.8', ['-i', '127.0.0.1', '-s', 'ZQPAGE'], { stdio: 'ignore' });
const { server, port } = await startServe(env.ZEROQC_BIN, ['--data', data, '--cache', env.ZEROQC_CACHE, '--station', path.join(work, 'station.json')]);
const base = `http://127.0.0.1:${port}`;

let browser;
try {
  const tb = path.join(env.SOURCE_DIR, '..', 'shared', 'datasets', 'mvtec-toothbrush', 'train', 'good');
  const auth = { Authorization: 'Bearer ' + admin };
  let r = await fetch(base + '/v1/products', { method: 'POST', headers: { ...auth, 'Content-Type': 'application/json' }, body: '{"name":"brush"}' });
  assert.equal(r.status, 201, await r.text());
  const form = new FormData();
  for (const f of ['000.png', '009.png']) form.append('image', new Blob([fs.readFileSync(path.join(tb, f))], { type: 'image/png' }), f);
  r = await fetch(base + '/v1/products/brush/references', { method: 'POST', headers: auth, body: form });
  assert.equal(r.status, 201, await r.text());

  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run'] });
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on('pageerror', (e) => { throw e; });
  await page.goto(base + '/#key=' + reader);
  await page.waitForSelector('#tab-station:not([hidden])', { timeout: 20000 });
  await page.click('#tab-station');
  assert.equal(await page.getAttribute('#screen-line', 'hidden'), '', 'one screen at a time');
  // Parts judged (the simulator's ramp is no toothbrush: NOK), their frame shown, devices said.
  await page.waitForFunction(() => Number(document.getElementById('station-parts').textContent) >= 2, null, { timeout: 60000 });
  await page.waitForFunction(() => document.getElementById('station-frame').naturalWidth > 0, null, { timeout: 20000 });
  // The first parts may meet the engine's build (errors, overruns): wait for a judged one.
  await page.waitForFunction(() => ['ok', 'nok'].includes(document.getElementById('station-tile').dataset.state), null, { timeout: 30000 });
  await page.waitForFunction(() => /^(OK|NOK)$/.test(document.getElementById('station-verdict').textContent) &&
    document.getElementById('station-tile').dataset.state === document.getElementById('station-verdict').textContent.toLowerCase(), null, { timeout: 30000 });
  assert.equal(await page.getAttribute('#station-camera', 'data-state'), 'connected');
  assert.equal(await page.getAttribute('#station-plc', 'data-state'), 'unreachable');
  assert.match(await page.textContent('#station-plc'), new RegExp('127\\.0\\.0\\.1:' + plcPort + ': unreachable'));
  assert.equal(await page.evaluate(() => getComputedStyle(document.getElementById('station-plc')).color), 'rgb(192, 38, 45)', 'unreachable in red');
  await page.waitForFunction(() => document.querySelectorAll('#station-latency tr').length >= 5, null, { timeout: 10000 });
  assert.match(await page.textContent('#station-more'), /result\(s\) the PLC could not take/);
  await page.screenshot({ path: path.join(out, 'web-station.png'), fullPage: true });
  console.log('ok: station screen; screenshot', path.join(out, 'web-station.png'));
} finally {
  if (browser) await browser.close();
  server.kill('SIGTERM');
  camera.kill('SIGTERM');
}
