// Writes ts/exit_layout.ts from the native binary's `exitRecordLayout()` (the Rust
// `vcpu_kvm::ExitRecord`) and `exitKinds()` (`VcpuExit::KINDS`), as `const enum`s: TypeScript puts the numbers into the code
// that reads the record, so the per-exit path reads no layout object at run time.
// `--check` (part of `npm run lint`) fails if the file differs from what the binary says;
// `npm run build:ts` rewrites it. The facade also compares the two when it loads.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const target = path.join(__dirname, '..', 'ts', 'exit_layout.ts');

/** `record`'s entries in the order of their values (the binary's maps have none). */
const byValue = (record) => Object.fromEntries(Object.entries(record).sort(([, a], [, b]) => a - b));

/** The file's text for `layout` ({ size, offsets, pending, kinds }), before formatting. */
function render(layout) {
  const members = (record) =>
    Object.entries(record)
      .map(([name, value]) => `  ${name} = ${value},`)
      .join('\n');
  return `/**
 * The exit record's layout, generated from \`vcpu_kvm::ExitRecord\` by
 * \`scripts/exit-layout.js\` (\`npm run build:ts\` writes it, \`npm run lint\` checks it):
 * do not edit.
 * @internal
 * @packageDocumentation
 */

/** Byte offset of each field. */
export const enum Offset {
${members(layout.offsets)}
}

/** The values of the \`pending\` field (\`vcpu_kvm::Pending\`). */
export const enum Pending {
${members(layout.pending)}
}

/** Each exit kind's code (\`VcpuExit::index\`), as the record's \`kind\` field holds it. */
export const enum Code {
${members(layout.kinds)}
}

/** What this file was generated from, for the check when the binary loads. */
export const LAYOUT = ${JSON.stringify(layout)};
`;
}

async function main() {
  const native = require('../native');
  const { size, offsets, pending } = native.exitRecordLayout();
  const kinds = Object.fromEntries(native.exitKinds().map((kind, code) => [kind, code]));
  const prettier = require('prettier');
  const text = await prettier.format(render({ size, offsets: byValue(offsets), pending: byValue(pending), kinds }), {
    ...(await prettier.resolveConfig(target)),
    filepath: target,
  });
  const current = fs.existsSync(target) ? fs.readFileSync(target, 'utf8') : '';
  if (current === text) return;
  if (process.argv.includes('--check')) {
    console.error(`${path.relative(process.cwd(), target)} is not what the native binary says: run npm run build:ts`);
    process.exit(1);
  }
  fs.writeFileSync(target, text);
}

main();
