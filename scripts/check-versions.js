// Part of `npm run lint`: every platform package (npm/<platform>/package.json) has the
// main package's version, and the crates the workspace's (`napi version` sets the
// former when releasing; this catches a hand edit that forgot one).
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const version = require(path.join(root, 'package.json')).version;
const wrong = [];
for (const dir of fs.readdirSync(path.join(root, 'npm'))) {
  const file = path.join(root, 'npm', dir, 'package.json');
  if (!fs.existsSync(file)) continue;
  const v = JSON.parse(fs.readFileSync(file, 'utf8')).version;
  if (v !== version) wrong.push(`npm/${dir}/package.json has ${v}`);
}
const cargo = fs.readFileSync(path.join(root, 'Cargo.toml'), 'utf8');
const crate = /\[workspace\.package\][^[]*?version\s*=\s*"([^"]+)"/.exec(cargo)?.[1];
if (crate !== version) wrong.push(`Cargo.toml's workspace version is ${crate}`);
if (wrong.length) {
  console.error(`versions differ from package.json's ${version}:\n  ${wrong.join('\n  ')}`);
  process.exit(1);
}
