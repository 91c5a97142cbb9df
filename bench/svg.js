// A bar chart of per-exit cost relative to the Rust floor, as a standalone SVG.
'use strict';
const fs = require('node:fs');

const COLORS = { rust: '#888888', run: '#3b7dd8', runUntil: '#2a9d5c' };

function writeSvg(file, result) {
  const scenarios = Object.keys(result.exits);
  const modes = Object.keys(result.exits[scenarios[0]]);
  const max = Math.max(1.2, ...scenarios.flatMap((s) => modes.map((m) => result.exits[s][m].ratio)));
  const W = 720,
    H = 360,
    left = 60,
    bottom = 60,
    top = 40;
  const plotH = H - bottom - top;
  const groupW = (W - left - 20) / scenarios.length;
  const barW = (groupW - 20) / modes.length;
  const y = (v) => top + plotH - (v / max) * plotH;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">Cost per exit relative to the pure Rust loop (median, lower is better)</text>`,
  ];
  for (const v of [0, 0.5, 1, max]) {
    parts.push(`<line x1="${left}" x2="${W - 20}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/>`);
    parts.push(`<text x="${left - 6}" y="${y(v) + 4}" text-anchor="end">×${v.toFixed(2)}</text>`);
  }
  scenarios.forEach((s, i) => {
    const x0 = left + i * groupW + 10;
    modes.forEach((m, j) => {
      const r = result.exits[s][m];
      const x = x0 + j * barW;
      parts.push(
        `<rect x="${x}" y="${y(r.ratio)}" width="${barW - 4}" height="${y(0) - y(r.ratio)}" fill="${COLORS[m] ?? '#999'}"><title>${s} ${m}: ${r.medianNs} ns</title></rect>`,
      );
      parts.push(
        `<text x="${x + (barW - 4) / 2}" y="${y(r.ratio) - 4}" text-anchor="middle" font-size="10">${r.ratio.toFixed(2)}</text>`,
      );
    });
    parts.push(`<text x="${x0 + (groupW - 20) / 2}" y="${H - bottom + 18}" text-anchor="middle">${s}</text>`);
  });
  modes.forEach((m, j) => {
    parts.push(`<rect x="${left + j * 140}" y="${H - 22}" width="12" height="12" fill="${COLORS[m] ?? '#999'}"/>`);
    parts.push(
      `<text x="${left + j * 140 + 18}" y="${H - 12}">${m === 'rust' ? 'Rust loop (floor)' : m === 'run' ? 'JS run() + handler' : 'runUntil'}</text>`,
    );
  });
  parts.push('</svg>');
  fs.writeFileSync(file, parts.join('\n') + '\n');
}

module.exports = { writeSvg };
