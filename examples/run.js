// `npm run example -- <name> [args]`: compiles the TypeScript examples and runs one
// (hello, workers, mmio-device, hypercall, snapshot-clones, sandbox, virtio-device, vmm). Every TypeScript example
// exports `main(argv, log)`; it gets the arguments after the name.
'use strict';
const { execFileSync } = require('node:child_process');
const path = require('node:path');

const name = process.argv[2] ?? 'hello';
const args = process.argv.slice(3).filter((a) => a !== '--');
const js = path.join(__dirname, `${name}.js`);
const ts = path.join(__dirname, `${name}.ts`);
if (require('node:fs').existsSync(ts)) {
  execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', __dirname], { stdio: 'inherit' });
  Promise.resolve(require(path.join(__dirname, 'dist', `${name}.js`)).main(args)).then(
    (exit) => exit?.kind === 'Intr' && process.exit(1),
  );
} else {
  require(js);
}
