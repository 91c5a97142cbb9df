// `npm run example -- <name>`: compiles the TypeScript examples and runs one
// (hello, workers, mmio-device, hypercall).
'use strict';
const { execFileSync } = require('node:child_process');
const path = require('node:path');

const name = process.argv[2] ?? 'hello';
const js = path.join(__dirname, `${name}.js`);
const ts = path.join(__dirname, `${name}.ts`);
if (require('node:fs').existsSync(ts)) {
  execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', __dirname], { stdio: 'inherit' });
  require(path.join(__dirname, 'dist', `${name}.js`)).main();
} else {
  require(js);
}
