// Writes ts/exit_layout.ts from the native binary's `exitRecordLayout()` (the Rust
// `vcpu_kvm::ExitRecord`) and `exitSchema()` (`VcpuExit::SCHEMA`): the record's layout and
// the exit codes as `const enum`s (TypeScript puts the numbers into the code that reads
// the record, so the per-exit path reads no layout object at run time), and the
// `VcpuExit` type, every kind with its payload and documentation. The Rust enum is the
// one definition of the exits: a new kind is a Rust change and `npm run build`.
// `--check` (part of `npm run lint`) fails if the file differs from what the binary says;
// `npm run build:ts` rewrites it. The facade also compares the two when it loads.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const target = path.join(__dirname, '..', 'ts', 'exit_layout.ts');

/** `record`'s entries in the order of their values (the binary's maps have none). */
const byValue = (record) => Object.fromEntries(Object.entries(record).sort(([, a], [, b]) => a - b));

/** `doc` as a JSDoc comment indented by `indent`. */
const jsdoc = (doc, indent) => {
  const lines = doc.split('\n').filter((l) => l.trim() !== '');
  return lines.length === 1
    ? `${indent}/** ${lines[0].trim()} */`
    : [`${indent}/**`, ...lines.map((l) => `${indent} * ${l.trim()}`), `${indent} */`].join('\n');
};

/** The `VcpuExit` union from the schema: one member per kind with a payload, one for the rest. */
function exitTypes(schema) {
  const plain = schema.filter((k) => k.fields.length === 0);
  const rich = schema.filter((k) => k.fields.length > 0);
  const member = (k) =>
    [
      '  | {',
      jsdoc(k.doc, '      '),
      `      readonly kind: '${k.name}';`,
      ...k.fields.flatMap((f) => [jsdoc(f.doc, '      '), `      readonly ${f.name}: ${f.tsType};`]),
      '    }',
    ].join('\n');
  return `/** Exit kinds that carry nothing beyond their \`kind\`: ${plain.map((k) => k.name).join(', ')}. */
export type PlainExitKind = ${plain.map((k) => `'${k.name}'`).join(' | ')};

/**
 * Why \`run()\` returned: a union discriminated on \`kind\`, with crosvm's variant names
 * (generated from the Rust \`VcpuExit\`). \`Intr\` is an interrupted run (immediate exit or
 * a signal handle).
 *
 * @example
 * \`\`\`ts
 * const exit = vcpu.run();
 * switch (exit.kind) {
 *   case 'Io': vcpu.handleIo(onIo); break;
 *   case 'FailEntry': throw new Error(\`entry failed: \${exit.hardwareEntryFailureReason}\`);
 * }
 * \`\`\`
 */
export type VcpuExit =
  | {
      /** An exit that carries nothing else. */
      readonly kind: PlainExitKind;
    }
${rich.map(member).join('\n')};

/** Any exit kind. */
export type VcpuExitKind = VcpuExit['kind'];

/** The kinds whose exits carry a payload (read with \`lastExit\`). */
export const PAYLOAD_KINDS: readonly string[] = ${JSON.stringify(rich.map((k) => k.name))};
`;
}

/** The file's text for `layout` ({ size, offsets, sizes, pending, kinds }) and `schema`, before formatting. */
function render(layout, schema) {
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

/* eslint-disable @typescript-eslint/no-duplicate-enum-values -- many fields are as wide as others */
/** Size in bytes of each field. */
export const enum Size {
${members(layout.sizes)}
}
/* eslint-enable @typescript-eslint/no-duplicate-enum-values */

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

${exitTypes(schema)}`;
}

async function main() {
  const native = require('../native');
  const { size, offsets, sizes, pending } = native.exitRecordLayout();
  const schema = native.exitSchema();
  const kinds = Object.fromEntries(schema.map((kind, code) => [kind.name, code]));
  const ordered = byValue(offsets);
  const layout = {
    size,
    offsets: ordered,
    sizes: Object.fromEntries(Object.keys(ordered).map((name) => [name, sizes[name]])),
    pending: byValue(pending),
    kinds,
  };
  const prettier = require('prettier');
  const text = await prettier.format(render(layout, schema), {
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
