// The benchmarks' charts: grouped bars as a standalone SVG.
'use strict';
const fs = require('node:fs');

/**
 * Writes a grouped bar chart to `file`: one group per entry of `groups` along the x
 * axis ({ labels: lines under the group, values: one per series, tips?: a tooltip per
 * bar }), one colour per entry of `series` ({ label, color }, shown as a legend), each
 * bar labelled with `format(value)`, guides at `ticks` labelled with `tickLabel`, the
 * scale up to `max` (or the largest value above it).
 */
function barChart(file, { title, series, groups, format, ticks = [], tickLabel = String, max = 0 }) {
  const top = Math.max(max, ...groups.flatMap((g) => g.values));
  const W = 760;
  const H = 380;
  const left = 60;
  const head = 50;
  const foot = 20 + 14 * Math.max(...groups.map((g) => g.labels.length));
  const plotH = H - head - foot;
  const groupW = (W - left - 20) / groups.length;
  const barW = (groupW - 16) / series.length;
  const y = (v) => head + plotH - (v / top) * plotH;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11">`,
    '<rect width="100%" height="100%" fill="white"/>',
    `<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">${title}</text>`,
  ];
  series.forEach(({ label, color }, i) => {
    parts.push(`<rect x="${left + i * 180}" y="30" width="10" height="10" fill="${color}"/>`);
    parts.push(`<text x="${left + i * 180 + 14}" y="39">${label}</text>`);
  });
  for (const v of ticks) {
    parts.push(`<line x1="${left}" x2="${W - 20}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/>`);
    parts.push(`<text x="${left - 6}" y="${y(v) + 4}" text-anchor="end">${tickLabel(v)}</text>`);
  }
  groups.forEach((g, i) => {
    const x0 = left + i * groupW + 8;
    g.values.forEach((v, j) => {
      const x = x0 + j * barW;
      const tip = g.tips ? `<title>${g.tips[j]}</title>` : '';
      parts.push(
        `<rect x="${x}" y="${y(v)}" width="${barW - 3}" height="${y(0) - y(v)}" fill="${series[j].color}">${tip}</rect>`,
      );
      parts.push(
        `<text x="${x + (barW - 3) / 2}" y="${y(v) - 3}" text-anchor="middle" font-size="9">${format(v)}</text>`,
      );
    });
    g.labels.forEach((label, k) => {
      parts.push(
        `<text x="${x0 + (groupW - 16) / 2}" y="${H - foot + 16 + 14 * k}" text-anchor="middle">${label}</text>`,
      );
    });
  });
  parts.push('</svg>');
  fs.writeFileSync(file, parts.join('\n') + '\n');
}

const MODES = [
  ['rust', 'Rust loop (floor)', '#888888'],
  ['run', 'JS run() + handler', '#3b7dd8'],
  ['runUntil', 'runUntil', '#2a9d5c'],
];

/** `npm run bench`'s chart: each exit's cost per mode relative to the Rust floor. */
function writeSvg(file, result) {
  barChart(file, {
    title: 'Cost per exit relative to the pure Rust loop (median, lower is better)',
    series: MODES.map(([, label, color]) => ({ label, color })),
    groups: Object.entries(result.exits).map(([scenario, rows]) => ({
      labels: [scenario],
      values: MODES.map(([mode]) => rows[mode].ratio),
      tips: MODES.map(([mode]) => `${scenario} ${mode}: ${rows[mode].medianNs} ns`),
    })),
    format: (v) => v.toFixed(2),
    ticks: [0, 0.5, 1],
    tickLabel: (v) => `×${v.toFixed(2)}`,
    max: 1.2,
  });
}

module.exports = { barChart, writeSvg };
