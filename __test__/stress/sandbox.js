// Sandbox races, in a process of their own so that a crash fails the test instead of
// taking jest down: `node sandbox.js SNAPSHOT WORKERS ROUNDS`. Each worker keeps a pool
// restored from SNAPSHOT (a guest built from __test__/sandbox/guest.c) and, round after
// round, at random: calls and checks a result, lets a spinning call time out after 1–4 ms
// and resets, spins through callAsync and closes the sandbox under it, or resets twice.
// The main thread terminates one worker in the middle of its rounds. Prints one JSON
// line with what the rounds saw.
'use strict';
const { join } = require('node:path');
const { Worker } = require('node:worker_threads');

const PKG = join(__dirname, '..', '..', 'dist');
const [file, workers = '4', rounds = '200'] = process.argv.slice(2);

const BODY = `
  const { workerData, parentPort } = require('node:worker_threads');
  const { Sandbox, VcpuError } = require(${JSON.stringify(PKG)});
  const pool = Sandbox.pool({ snapshot: workerData.file, size: 2 });
  const seen = {};
  const tally = (k) => (seen[k] = (seen[k] ?? 0) + 1);
  (async () => {
    for (let round = 0; round < workerData.rounds; round++) {
      const sb = pool.acquire();
      const pick = Math.random();
      try {
        if (pick < 0.4) {
          const n = BigInt(Math.floor(Math.random() * 1e9));
          tally(sb.call('add', n, 1n) === n + 1n && sb.call('count') === 1n ? 'call ok' : 'call WRONG');
        } else if (pick < 0.6) {
          sb.timeoutMs = 1 + Math.floor(Math.random() * 4);
          try { sb.call('spin'); tally('spin returned'); } catch (e) { tally(e.code === 'ETIMEDOUT' ? 'timeout' : 'spin ' + e.code); }
          sb.reset();
          sb.timeoutMs = 1000;
          tally(sb.call('add', 2n, 2n) === 4n ? 'after reset ok' : 'after reset WRONG');
        } else if (pick < 0.8) {
          sb.timeoutMs = 0;
          const p = sb.callAsync('spin');
          await new Promise((r) => setTimeout(r, Math.random() * 3));
          sb.close();
          try { await p; tally('async returned'); } catch (e) { tally(e instanceof VcpuError ? 'closed under callAsync' : 'not a VcpuError'); }
        } else {
          sb.call('write_pages', BigInt(Math.floor(Math.random() * 100)));
          sb.reset();
          sb.reset();
          tally(sb.call('read_pages') === 0n ? 'reset ok' : 'reset WRONG');
        }
      } catch (e) {
        tally('error ' + (e && e.code));
      }
      pool.release(sb);
      if (round % 16 === 0) await new Promise((r) => setImmediate(r));
    }
    pool.close();
    parentPort.postMessage(seen);
  })();`;

async function main() {
  const total = {};
  const runs = [];
  for (let i = 0; i < Number(workers); i++) {
    const w = new Worker(BODY, { eval: true, workerData: { file, rounds: Number(rounds) } });
    runs.push(
      new Promise((resolve) => {
        w.once('message', (seen) => {
          for (const [k, v] of Object.entries(seen)) total[k] = (total[k] ?? 0) + v;
          resolve();
        });
        w.once('error', (e) => {
          total[`worker error ${e}`] = 1;
          resolve();
        });
        w.once('exit', () => resolve());
      }),
    );
    if (i === 0) {
      // Terminated mid-run: whatever it was doing, the process goes on.
      setTimeout(() => w.terminate().then(() => (total.terminated = 1)), 50 + Math.random() * 100);
    }
  }
  await Promise.all(runs);
  process.stdout.write(`${JSON.stringify(total)}\n`);
}

main();
