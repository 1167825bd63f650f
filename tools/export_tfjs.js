#!/usr/bin/env node
// Unwraps a TF.js layers model shipped as JS modules (nsfwjs' *.min.js) into plain files the
// C++ converter reads: model.json (topology + weights manifest) and weights.bin (the shards'
// decoded bytes, concatenated in manifest order). Only Node can evaluate the minified modules
// reliably; everything about the graph itself is done in C++ (src/features/tfjs_convert.cc).
'use strict';
const fs = require('fs');
const path = require('path');

const [srcDir, outDir] = process.argv.slice(2);
if (!srcDir || !outDir) {
  console.error('usage: export_tfjs.js MODEL_DIR OUT_DIR   (MODEL_DIR holds model.min.js and group*-shard*.min.js)');
  process.exit(2);
}
const model = require(path.resolve(srcDir, 'model.min.js'));
if (!model.modelTopology || !Array.isArray(model.weightsManifest)) {
  console.error(`${srcDir}/model.min.js does not export {modelTopology, weightsManifest}`);
  process.exit(1);
}
const parts = [];
let expected = 0;
for (const group of model.weightsManifest) {
  for (const w of group.weights) {
    const count = w.shape.reduce((a, b) => a * b, 1);
    const dtype = w.quantization ? w.quantization.dtype : w.dtype;
    expected += count * ({ uint8: 1, uint16: 2, float16: 2, float32: 4, int32: 4 }[dtype] || NaN);
  }
  for (const p of group.paths) {
    const b64 = require(path.resolve(srcDir, `${p}.min.js`));
    if (typeof b64 !== 'string') throw new Error(`${p}.min.js does not export a base64 string`);
    parts.push(Buffer.from(b64, 'base64'));
  }
}
const weights = Buffer.concat(parts);
if (weights.length !== expected) {
  console.error(`weights: ${weights.length} bytes decoded, manifest describes ${expected}`);
  process.exit(1);
}
fs.mkdirSync(outDir, { recursive: true });
fs.writeFileSync(path.join(outDir, 'model.json'),
  JSON.stringify({ modelTopology: model.modelTopology, weightsManifest: model.weightsManifest }));
fs.writeFileSync(path.join(outDir, 'weights.bin'), weights);
console.log(`exported ${weights.length} weight bytes to ${outDir}`);
