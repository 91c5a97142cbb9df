// Fuzzes the web console's request routing over TCP: a console server in a child
// process gets the regression corpus (__test__/fuzz/web_console/corpus/, one raw HTTP
// request per file; HOST, PORT and TOKEN stand for the server's own), then mutations
// of it (bytes flipped, inserted, deleted, lines repeated) for the given time. Every
// answer must be a status the server is documented to give, and the page must still
// be served at the end. `npm run fuzz:targets` runs it; the jest suite for 2 s.
//
//   node scripts/fuzz-web-console.js [seconds] [seed]
'use strict';
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');

const ROOT = path.join(__dirname, '..');
const CORPUS = path.join(ROOT, '__test__', 'fuzz', 'web_console', 'corpus');
const DIST = path.join(ROOT, 'dist', 'index.js');
/** What the server may answer (or close without an answer, for a request cut short). */
const ALLOWED = /^HTTP\/1\.1 (101|200|400|403|404|421|431) /;

const SERVER = `
const { Readable, Writable } = require('node:stream');
const { serveConsole } = require(${JSON.stringify(DIST)});
const output = new Readable({ read() {} });
const input = new Writable({ write(c, e, done) { done(); } });
serveConsole({ output, input }).then((web) => process.stdout.write(web.url + '\\n'));
`;

/** A small seeded PRNG (xorshift32), so that a run can be repeated. */
function prng(seed) {
  let x = seed >>> 0 || 1;
  return (n) => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x % n;
  };
}

/** Sends `bytes`; resolves to the first line of the answer ('' if none came). */
function send(port, bytes) {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let answer = '';
    const done = () => resolve(answer.split('\r\n')[0]);
    socket.on('data', (d) => {
      answer += d.toString('latin1');
      if (answer.includes('\r\n')) socket.destroy();
    });
    socket.on('error', done);
    socket.on('close', done);
    socket.setTimeout(2000, () => socket.destroy());
    socket.end(bytes);
  });
}

/** One mutation of `input`. */
function mutate(input, rand) {
  const b = Buffer.from(input);
  switch (rand(5)) {
    case 0:
      if (b.length) b[rand(b.length)] ^= 1 << rand(8);
      return b;
    case 1: {
      const at = rand(b.length + 1);
      return Buffer.concat([b.subarray(0, at), Buffer.from([rand(256)]), b.subarray(at)]);
    }
    case 2: {
      const at = rand(b.length + 1);
      return Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + rand(8))]);
    }
    case 3: {
      const lines = b.toString('latin1').split('\r\n');
      const i = rand(lines.length);
      lines.splice(i, 0, lines[i]);
      return Buffer.from(lines.join('\r\n'), 'latin1');
    }
    default: {
      const specials = ['//', '%', '[', '..', '\u0000', 'http://', '__proto__', 'constructor', ':'];
      const at = rand(b.length + 1);
      return Buffer.concat([b.subarray(0, at), Buffer.from(specials[rand(specials.length)], 'latin1'), b.subarray(at)]);
    }
  }
}

/** Runs the fuzzer for `seconds`; resolves to { inputs, answers } or rejects with a finding. */
async function fuzzWebConsole({ seconds = 2, seed = 1 } = {}) {
  const child = spawn(process.execPath, ['-e', SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const url = new URL(
      await new Promise((resolve, reject) => {
        child.stdout.once('data', (d) => resolve(d.toString().trim()));
        child.once('exit', (code) => reject(new Error(`the console server exited (${code})`)));
      }),
    );
    const fill = (bytes) =>
      Buffer.from(
        bytes
          .toString('latin1')
          .replaceAll('TOKEN', url.pathname)
          .replaceAll('HOST', url.host)
          .replaceAll('PORT', url.port),
        'latin1',
      );
    const corpus = fs
      .readdirSync(CORPUS)
      .sort()
      .map((f) => fill(fs.readFileSync(path.join(CORPUS, f))));
    const rand = prng(seed);
    const answers = {};
    let inputs = 0;
    const check = async (bytes) => {
      const line = await send(Number(url.port), bytes);
      inputs++;
      const status = line === '' ? 'closed' : line.slice(9, 12);
      answers[status] = (answers[status] ?? 0) + 1;
      if (line !== '' && !ALLOWED.test(line)) {
        throw new Error(`unexpected answer ${JSON.stringify(line)} to ${JSON.stringify(bytes.toString('latin1'))}`);
      }
      if (child.exitCode !== null) {
        throw new Error(`the server died on ${JSON.stringify(bytes.toString('latin1'))}`);
      }
    };
    for (const input of corpus) await check(input);
    const until = Date.now() + seconds * 1000;
    while (Date.now() < until) {
      let input = corpus[rand(corpus.length)];
      for (let n = 1 + rand(4); n > 0; n--) input = mutate(input, rand);
      await check(input);
    }
    const page = await send(Number(url.port), fill(Buffer.from('GET TOKEN HTTP/1.1\r\nHost: HOST\r\n\r\n')));
    if (!page.startsWith('HTTP/1.1 200')) throw new Error(`the page is gone after fuzzing: ${page}`);
    return { inputs, answers };
  } finally {
    child.kill();
  }
}

module.exports = { fuzzWebConsole };

if (require.main === module) {
  const seconds = Number(process.argv[2] ?? 60);
  const seed = Number(process.argv[3] ?? Date.now() % 2 ** 31);
  fuzzWebConsole({ seconds, seed }).then(
    ({ inputs, answers }) =>
      console.log(`fuzz web_console: ${inputs} inputs (seed ${seed}), answers ${JSON.stringify(answers)}`),
    (e) => {
      console.error(`fuzz web_console (seed ${seed}): ${e.message}`);
      process.exit(1);
    },
  );
}
