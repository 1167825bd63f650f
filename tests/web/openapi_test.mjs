// web/openapi.json against a real `zeroqc serve`: the description passes an OpenAPI validator
// (@apidevtools/swagger-parser), then every operation is called with real images and keys, and each
// answer's status must be described for its operation and its JSON body must match the described
// schema (ajv, JSON Schema 2020-12 as OpenAPI 3.1 uses it). Every operation must have been called.
// The service runs with --log-format json: every stderr line must be a JSON object with time, level,
// event and message, and the finished inspections must be there with id, product and duration.
// Environment: ZEROQC_BIN, SOURCE_DIR, ZEROQC_CACHE, NODE_DEPS (a node_modules folder).
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';
import { startServe } from './serve.mjs';

const env = process.env;
const require = createRequire(path.join(env.NODE_DEPS, 'package.json'));
const SwaggerParser = require('@apidevtools/swagger-parser');
const Ajv2020 = require('ajv/dist/2020').default;
const addFormats = require('ajv-formats').default;

const specPath = path.join(env.SOURCE_DIR, 'web', 'openapi.json');
const raw = JSON.parse(fs.readFileSync(specPath, 'utf8'));
await SwaggerParser.validate(structuredClone(raw)); // throws with the reason when invalid
const spec = await SwaggerParser.dereference(structuredClone(raw));
console.log('valid OpenAPI', spec.openapi, 'with', Object.keys(spec.paths).length, 'paths');

const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);

// path template -> regex, to find the operation a concrete path belongs to
const templates = Object.keys(spec.paths).map((t) => ({
  t, re: new RegExp('^' + t.replace(/\{[^}]+\}/g, '[^/]+') + '$'),
}));
const called = new Set();

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'zeroqc-openapi-'));
const data = path.join(work, 'data');
const keys = {};
for (const scope of ['admin', 'write', 'read'])
  keys[scope] = execFileSync(env.ZEROQC_BIN, ['keys', 'create', '--data', data, '--scope', scope, '--name', scope + ' key']).toString().trim();
const { server, port, exited } = await startServe(env.ZEROQC_BIN, ['--data', data, '--cache', env.ZEROQC_CACHE,
  '--max-upload-bytes', '2000000', '--web', path.join(env.SOURCE_DIR, 'web'), '--log-format', 'json',
  // Calls follow each other as fast as the machine answers: the per-key bucket (tested on its own in
  // Hardening) must not turn a fast machine's answers into 429s.
  '--rate', '1000', '--burst', '1000'], 'pipe');
let log = '';
server.stderr.on('data', (d) => { log += d; });
const base = `http://127.0.0.1:${port}`;

// Calls the API and checks the answer against the description; returns { status, body, json }.
async function call(method, url, { key, body, type, expect } = {}) {
  const headers = {};
  if (key) headers.Authorization = 'Bearer ' + keys[key];
  if (type) headers['Content-Type'] = type;
  const r = await fetch(base + url, { method, headers, body });
  const buf = Buffer.from(await r.arrayBuffer());
  const p = new URL(base + url).pathname;
  const tpl = templates.find((x) => x.re.test(p));
  assert.ok(tpl, `${method} ${p}: no path of the description matches`);
  const op = spec.paths[tpl.t][method.toLowerCase()];
  assert.ok(op, `${method} ${tpl.t} is not described`);
  called.add(`${method} ${tpl.t}`);
  const where = `${method} ${url} -> ${r.status}`;
  if (expect !== undefined) assert.equal(r.status, expect, `${where}: ${buf.toString().slice(0, 300)}`);
  const described = op.responses[String(r.status)] ?? op.responses.default;
  assert.ok(described, `${where}: status not described for ${method} ${tpl.t}`);
  const ctype = (r.headers.get('content-type') || '').split(';')[0];
  let json;
  if (described.content) {
    assert.ok(described.content[ctype], `${where}: content type ${ctype} not described (${Object.keys(described.content)})`);
    const schema = described.content[ctype].schema;
    if (ctype === 'application/json') {
      json = JSON.parse(buf.toString());
      const validate = ajv.compile(schema);
      assert.ok(validate(json), `${where}: body does not match the schema: ${ajv.errorsText(validate.errors)}\n${buf.toString().slice(0, 500)}`);
    }
  } else {
    assert.equal(buf.length, 0, `${where}: a body where none is described`);
  }
  return { status: r.status, body: buf, json };
}

function form(fields, image, name = 'part.jpg', mime = 'image/jpeg') {
  const f = new FormData();
  if (image) f.append('image', new Blob([image], { type: mime }), name);
  for (const [k, v] of Object.entries(fields)) f.append(k, v);
  return f;
}

const demo = path.join(env.SOURCE_DIR, 'demo', 'aws-nova-samples');
const ref = fs.readFileSync(path.join(demo, 'cubesponge_reference.jpg'));
const nok = fs.readFileSync(path.join(demo, 'cubesponge_nok.jpg'));

try {
  await call('GET', '/healthz', { expect: 200 });
  await call('GET', '/readyz', { expect: 200 });
  await call('GET', '/openapi.json', { expect: 200 });
  await call('GET', '/', { expect: 200 });
  await call('GET', '/app.js', { expect: 200 });
  await call('GET', '/line.js', { expect: 200 });
  await call('GET', '/setup.js', { expect: 200 });
  await call('GET', '/station.js', { expect: 200 });
  await call('GET', '/style.css', { expect: 200 });

  // One sigma: from one reference the torn sponge scores 1.6x the reference's jittered copies with the
  // default backbone, under the default margin (1 + 0.35 x 2 = 1.7x).
  const product = JSON.stringify({ name: 'sponge', engine: 'patch', settings: { threshold_sigmas: 1 } });
  await call('POST', '/v1/products', { body: product, type: 'application/json', expect: 401 });
  await call('POST', '/v1/products', { key: 'write', body: product, type: 'application/json', expect: 403 });
  await call('POST', '/v1/products', { key: 'admin', body: '{"name":"Bad Name"}', type: 'application/json', expect: 400 });
  await call('POST', '/v1/products', { key: 'admin', body: product, type: 'application/json', expect: 201 });
  await call('POST', '/v1/products', { key: 'admin', body: product, type: 'application/json', expect: 409 });
  const replace = JSON.stringify({ ...JSON.parse(product), replace: true });
  await call('POST', '/v1/products', { key: 'admin', body: replace, type: 'application/json', expect: 200 });
  await call('PATCH', '/v1/products/sponge', { key: 'admin', body: '{"settings":{"line_window":0}}', type: 'application/json', expect: 200 });
  await call('PATCH', '/v1/products/sponge', { key: 'admin', body: '{"name":"other"}', type: 'application/json', expect: 400 });
  await call('PATCH', '/v1/products/nope', { key: 'admin', body: '{"settings":{}}', type: 'application/json', expect: 404 });
  await call('POST', '/v1/products', { key: 'admin', body: '{"name":"old"}', type: 'application/json', expect: 201 });
  await call('DELETE', '/v1/products/old', { key: 'admin', expect: 204 });
  await call('DELETE', '/v1/products/old', { key: 'admin', expect: 404 });
  await call('GET', '/v1/keys', { key: 'admin', expect: 200 });
  await call('GET', '/v1/keys', { key: 'write', expect: 403 });
  await call('POST', '/v1/keys', { key: 'admin', body: '{"name":"no scope"}', type: 'application/json', expect: 400 });
  const made = await call('POST', '/v1/keys', { key: 'admin', body: '{"scope":"read","name":"dashboard"}', type: 'application/json', expect: 201 });
  await call('DELETE', `/v1/keys/${made.json.id}`, { key: 'admin', expect: 204 });
  await call('DELETE', `/v1/keys/${made.json.id}`, { key: 'admin', expect: 404 });
  await call('DELETE', '/v1/keys/1', { key: 'admin', expect: 409 }); // the one admin key
  await call('GET', '/v1/products', { key: 'read', expect: 200 });
  await call('GET', '/v1/products/sponge', { key: 'read', expect: 200 });
  await call('GET', '/v1/products/nope', { key: 'read', expect: 404 });

  const added = await call('POST', '/v1/products/sponge/references', { key: 'admin', body: form({}, ref, 'ref.jpg'), expect: 201 });
  const extra = await call('POST', '/v1/products/sponge/references',
    { key: 'admin', body: JSON.stringify({ image: ref.toString('base64'), filename: 'ref2.jpg' }), type: 'application/json', expect: 201 });
  await call('POST', '/v1/products/sponge/references', { key: 'admin', body: form({}, ref.subarray(0, 5000)), expect: 422 });
  await call('POST', '/v1/products/sponge/references', { key: 'admin', body: 'hello', type: 'text/plain', expect: 415 });
  await call('GET', '/v1/products/sponge/references', { key: 'read', expect: 200 });
  await call('GET', `/v1/products/sponge/references/${added.json.id}/image`, { key: 'read', expect: 200 });
  await call('DELETE', `/v1/products/sponge/references/${extra.json.id}`, { key: 'admin', expect: 204 });
  await call('DELETE', `/v1/products/sponge/references/${extra.json.id}`, { key: 'admin', expect: 404 });
  await call('GET', `/v1/products/sponge/references/${extra.json.id}/image`, { key: 'read', expect: 404 });

  const done = await call('POST', '/v1/inspections?wait=true&timeout_ms=120000',
    { key: 'write', body: form({ product: 'sponge', batch: 'B-1', metadata: '{"shift":"night"}' }, nok), expect: 200 });
  assert.equal(done.json.status, 'done');
  assert.equal(done.json.verdict, 'NOK');
  const queued = await call('POST', '/v1/inspections',
    { key: 'write', body: JSON.stringify({ product: 'sponge', image: ref.toString('base64'), filename: 'good.jpg' }), type: 'application/json', expect: 202 });
  await call('POST', '/v1/inspections?product=sponge', { key: 'write', body: ref, type: 'image/jpeg', expect: 202 });
  await call('POST', '/v1/inspections', { key: 'write', body: form({}, nok), expect: 400 });
  await call('POST', '/v1/inspections', { key: 'write', body: form({ product: 'ghost' }, nok), expect: 404 });
  await call('POST', '/v1/inspections', { key: 'read', body: form({ product: 'sponge' }, nok), expect: 403 });
  await call('POST', '/v1/inspections', { key: 'write', body: form({ product: 'sponge' }, Buffer.alloc(2100000, 7), 'big.png', 'image/png'), expect: 413 });

  const id = done.json.id;
  await call('GET', `/v1/inspections/${id}`, { key: 'read', expect: 200 });
  await call('GET', `/v1/inspections/${id}/image`, { key: 'read', expect: 200 });
  await call('GET', `/v1/inspections/${id}/overlay`, { key: 'read', expect: 200 });
  await call('GET', '/v1/inspections/ins_000000000000000000000000', { key: 'read', expect: 404 });
  await call('POST', `/v1/inspections/${id}/review`, { key: 'write', body: '{"verdict":"maybe"}', type: 'application/json', expect: 400 });
  const reviewed = await call('POST', `/v1/inspections/${id}/review`,
    { key: 'write', body: JSON.stringify({ verdict: 'OK', comment: 'a shadow' }), type: 'application/json', expect: 201 });
  assert.equal(reviewed.json.final_verdict, 'OK');
  await call('POST', `/v1/inspections/${id}/review`,
    { key: 'write', body: JSON.stringify({ verdict: 'OK', add_to_references: true }), type: 'application/json', expect: 403 });
  const taught = await call('POST', `/v1/inspections/${id}/review`,
    { key: 'admin', body: JSON.stringify({ verdict: 'OK', add_to_references: true }), type: 'application/json', expect: 201 });
  assert.equal(typeof taught.json.added_reference.version, 'number');
  const versions = await call('GET', '/v1/products/sponge/versions', { key: 'read', expect: 200 });
  assert.equal(versions.json.current, taught.json.added_reference.version);
  await call('GET', '/v1/products/nope/versions', { key: 'read', expect: 404 });
  await call('POST', '/v1/products/sponge/versions/1/rollback', { key: 'write', expect: 403 });
  await call('POST', '/v1/products/sponge/versions/999/rollback', { key: 'admin', expect: 404 });
  await call('POST', `/v1/products/sponge/versions/${versions.json.current - 1}/rollback`, { key: 'admin', expect: 200 });
  const box = done.json.result.objects[0].bounding_box;
  await call('POST', `/v1/inspections/${id}/review`, { key: 'write', body: JSON.stringify({ verdict: 'NOK', defects: [{ box, name: 'anomaly' }] }), type: 'application/json', expect: 400 });
  const named = await call('POST', `/v1/inspections/${id}/review`,
    { key: 'write', body: JSON.stringify({ verdict: 'NOK', defects: [{ box, name: 'dent' }] }), type: 'application/json', expect: 201 });
  assert.equal(named.json.named_defects[0].name, 'dent');
  const examples = await call('GET', '/v1/products/sponge/defect-examples', { key: 'read', expect: 200 });
  await call('GET', '/v1/products/nope/defect-examples', { key: 'read', expect: 404 });
  await call('DELETE', `/v1/products/sponge/defect-examples/${examples.json.items[0].id}`, { key: 'read', expect: 403 });
  await call('DELETE', `/v1/products/sponge/defect-examples/${examples.json.items[0].id}`, { key: 'write', expect: 204 });
  await call('DELETE', `/v1/products/sponge/defect-examples/${examples.json.items[0].id}`, { key: 'write', expect: 404 });
  // Who a key is, for the page's controls.
  const me = await call('GET', '/v1/whoami', { key: 'write', expect: 200 });
  assert.equal(me.json.scope, 'write');
  await call('GET', '/v1/whoami', { expect: 401 });
  // Several reference photos in one upload are one version.
  const before = (await call('GET', '/v1/products/sponge/versions', { key: 'read', expect: 200 })).json.current;
  const two = new FormData();
  two.append('image', new Blob([ref], { type: 'image/jpeg' }), 'batch-1.jpg');
  two.append('image', new Blob([ref], { type: 'image/jpeg' }), 'batch-2.jpg');
  const batch = await call('POST', '/v1/products/sponge/references', { key: 'admin', body: two, expect: 201 });
  assert.equal(batch.json.items.length, 2);
  assert.equal(batch.json.version, before + 1);
  const bad = new FormData();
  bad.append('image', new Blob([ref], { type: 'image/jpeg' }), 'fine.jpg');
  bad.append('image', new Blob([ref.subarray(0, 5000)], { type: 'image/jpeg' }), 'cut.jpg');
  const refused = await call('POST', '/v1/products/sponge/references', { key: 'admin', body: bad, expect: 422 });
  assert.match(refused.json.error.message, /cut\.jpg/);
  assert.equal((await call('GET', '/v1/products/sponge/versions', { key: 'read', expect: 200 })).json.current, before + 1, 'all or none');
  for (const r of batch.json.items) await call('DELETE', `/v1/products/sponge/references/${r.id}`, { key: 'admin', expect: 204 });
  // A photo judged aside: a result, nothing stored.
  const count = (await call('GET', '/v1/inspections?product=sponge&limit=500', { key: 'read', expect: 200 })).json.items.length;
  const scored = await call('POST', '/v1/products/sponge/score', { key: 'admin', body: form({}, nok, 'known-bad.jpg'), expect: 200 });
  assert.equal(scored.json.image.path, 'known-bad.jpg');
  assert.ok(scored.json.score > 0);
  await call('POST', '/v1/products/sponge/score', { key: 'write', body: form({}, nok), expect: 403 });
  await call('POST', '/v1/products/sponge/score', { key: 'admin', body: form({ batch: 'x' }, nok), expect: 400 });
  await call('POST', '/v1/products/nope/score', { key: 'admin', body: form({}, nok), expect: 404 });
  assert.equal((await call('GET', '/v1/inspections?product=sponge&limit=500', { key: 'read', expect: 200 })).json.items.length, count, 'stored nothing');
  // A threshold set by hand, with why.
  const set = await call('PATCH', '/v1/products/sponge', { key: 'admin', body: JSON.stringify({ settings: { threshold: 0.5, line_window: 0 }, reason: 'from 12 known parts' }), type: 'application/json', expect: 200 });
  const last = (await call('GET', '/v1/products/sponge/versions', { key: 'read', expect: 200 })).json.items[0];
  assert.equal(last.change.reason, 'from 12 known parts');
  assert.equal(set.json.settings.threshold, 0.5);
  await call('PATCH', '/v1/products/sponge', { key: 'admin', body: JSON.stringify({ settings: { threshold: null }, reason: 'x'.repeat(501) }), type: 'application/json', expect: 400 });
  await call('PATCH', '/v1/products/sponge', { key: 'admin', body: JSON.stringify({ settings: { threshold: null, line_window: null } }), type: 'application/json', expect: 200 });
  const calibration = await call('GET', '/v1/products/sponge/calibration', { key: 'read', expect: 200 });
  assert.ok(calibration.json.threshold > 0);
  await call('GET', '/v1/products/nope/calibration', { key: 'read', expect: 404 });
  for (let i = 0; i < 200; ++i) { // the queued ones finish too: a finished listing is checked as well
    const s = await call('GET', `/v1/inspections/${queued.json.id}`, { key: 'read', expect: 200 });
    if (s.json.status === 'done' || s.json.status === 'failed') break;
    await new Promise((r) => setTimeout(r, 250));
  }
  const page = await call('GET', '/v1/inspections?product=sponge&limit=1', { key: 'read', expect: 200 });
  assert.equal(typeof page.json.next_cursor, 'string');
  await call('GET', `/v1/inspections?limit=2&cursor=${page.json.next_cursor}`, { key: 'read', expect: 200 });
  await call('GET', '/v1/inspections?verdict=maybe', { key: 'read', expect: 400 });
  await call('GET', '/v1/webhooks/dead-letters', { key: 'admin', expect: 200 });
  // This server runs no station: each station route says so (the station test calls them on one that does).
  await call('GET', '/v1/station', { key: 'read', expect: 404 });
  await call('GET', '/v1/station/frame', { key: 'read', expect: 404 });
  await call('POST', '/v1/station/trigger', { key: 'read', expect: 403 });
  await call('POST', '/v1/station/trigger', { key: 'write', expect: 404 });
  await call('GET', '/metrics', { expect: 200 });

  const all = Object.entries(spec.paths).flatMap(([p, item]) => Object.keys(item).map((m) => `${m.toUpperCase()} ${p}`));
  const missed = all.filter((x) => !called.has(x));
  assert.deepEqual(missed, [], 'operations never called');
  console.log(`ok: ${all.length} operations called, every answer described and valid`);

  server.kill('SIGTERM');
  await exited;
  const events = log.trim().split('\n').map((line) => {
    let j;
    assert.doesNotThrow(() => { j = JSON.parse(line); }, `log line is not JSON: ${line}`);
    for (const k of ['time', 'level', 'event', 'message']) assert.ok(k in j, `log line without ${k}: ${line}`);
    return j;
  });
  const names = events.map((e) => e.event);
  for (const e of ['listening', 'engine_build_started', 'engine_built', 'inspection_finished', 'stopping'])
    assert.ok(names.includes(e), `no ${e} event in the log:\n${log}`);
  const finished = events.find((e) => e.event === 'inspection_finished' && e.inspection === done.json.id);
  assert.ok(finished, 'the waited-for inspection is logged');
  assert.equal(finished.product, 'sponge');
  assert.equal(finished.verdict, 'NOK');
  assert.ok(finished.duration_ms > 0);
  console.log(`ok: ${events.length} JSON log lines`);
} finally {
  server.kill('SIGTERM');
  fs.rmSync(work, { recursive: true, force: true });
}
