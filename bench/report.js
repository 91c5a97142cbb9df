// What every benchmark's JSON report starts with, and where reports go
// (bench/results/): one writer for the sandbox, snapshot and virtio benchmarks.
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

/** The folder reports and plots are written to (made if missing). */
const RESULTS = path.join(__dirname, 'results');

/** The date and the machine a report was measured on. */
function header() {
  return {
    date: new Date().toISOString(),
    host: { cpus: os.cpus().length, model: os.cpus()[0]?.model, kernel: os.release(), node: process.version },
  };
}

/** Writes `report` to bench/results/`name`.json. */
function writeReport(name, report) {
  fs.mkdirSync(RESULTS, { recursive: true });
  fs.writeFileSync(path.join(RESULTS, `${name}.json`), `${JSON.stringify(report, null, 2)}\n`);
}

module.exports = { RESULTS, header, writeReport };
