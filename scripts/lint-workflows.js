// Checks that every workflow under .github/workflows parses as YAML and has the shape
// GitHub Actions needs (on, jobs, each job with runs-on and steps, each step with uses
// or run). actionlint is not in the registries this project builds from.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const YAML = require('yaml');

const dir = path.join(__dirname, '..', '.github', 'workflows');
let failed = 0;
for (const file of fs.readdirSync(dir).filter((f) => /\.ya?ml$/.test(f))) {
  const problems = [];
  const doc = YAML.parseDocument(fs.readFileSync(path.join(dir, file), 'utf8'));
  for (const e of doc.errors) problems.push(e.message);
  const wf = doc.toJS() ?? {};
  if (!wf.on) problems.push('no "on"');
  if (!wf.jobs || typeof wf.jobs !== 'object') problems.push('no "jobs"');
  for (const [name, job] of Object.entries(wf.jobs ?? {})) {
    if (!job['runs-on']) problems.push(`job ${name}: no runs-on`);
    if (!Array.isArray(job.steps) || job.steps.length === 0) problems.push(`job ${name}: no steps`);
    for (const [i, step] of (job.steps ?? []).entries()) {
      if (!step.uses && !step.run) problems.push(`job ${name} step ${i + 1}: neither uses nor run`);
    }
    for (const need of [].concat(job.needs ?? []))
      if (!wf.jobs[need]) problems.push(`job ${name}: needs unknown job ${need}`);
  }
  if (problems.length) {
    failed++;
    console.error(`${file}:\n  ${problems.join('\n  ')}`);
  }
}
if (failed) process.exit(1);
console.log('workflows ok');
