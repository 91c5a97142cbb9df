// The web console against hostile clients, as the probes that once killed it sent them:
// malformed request targets with and without the token, inherited property names as
// asset paths, oversized and lying WebSocket frames, a viewer that floods a guest that
// reads nothing, a DNS-rebound Host header. The server runs in a child process so that
// its memory is its own; after every probe it must still serve the page.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';

import WsClient from 'ws';

const DIST = join(__dirname, '..', 'dist', 'index.js');

/** A console server in a child process whose guest never reads its input. */
const SERVER = `
const { Readable, Writable } = require('node:stream');
const { serveConsole } = require(${JSON.stringify(DIST)});
const output = new Readable({ read() {} });
const input = new Writable({ highWaterMark: 16384, write() {} }); // never completes
output.push('guest output\\n');
serveConsole({ output, input }).then((web) => process.stdout.write(web.url + '\\n'));
`;

let child: ChildProcess;
let url: URL;

beforeAll(async () => {
  child = spawn(process.execPath, ['-e', SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
  url = new URL(
    await new Promise<string>((resolve, reject) => {
      child.stdout!.once('data', (d: Buffer) => resolve(d.toString().trim()));
      child.once('exit', (code) => reject(new Error(`the server exited (${code})`)));
    }),
  );
});

afterAll(() => {
  child.kill();
});

/** The child's resident memory, in bytes. */
const rssOf = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;

/** Sends `request` as is over TCP; resolves to the status line of the answer ('' if none). */
function raw(request: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(Number(url.port), url.hostname);
    let answer = '';
    socket.on('data', (d) => (answer += d.toString('latin1')));
    socket.on('error', () => resolve(answer.split('\r\n')[0]));
    socket.on('close', () => resolve(answer.split('\r\n')[0]));
    socket.setTimeout(3000, () => socket.destroy());
    socket.end(request);
  });
}

const get = (target: string, headers: Record<string, string> = {}) =>
  raw(
    `GET ${target} HTTP/1.1\r\n${Object.entries({ Host: url.host, Connection: 'close', ...headers })
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('')}\r\n`,
  );

const upgrade = {
  Upgrade: 'websocket',
  Connection: 'Upgrade',
  'Sec-WebSocket-Version': '13',
  'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
};

/** The page still answers: the server survived. */
async function alive(): Promise<void> {
  expect(await get(url.pathname)).toBe('HTTP/1.1 200 OK');
  expect(child.exitCode).toBeNull();
}

test('malformed request targets are 400, with or without the token, as a page or a WebSocket', async () => {
  for (const target of ['//', 'http://[', '//x/../', '*', `${url.pathname}%`]) {
    const page = await get(target);
    expect([target, page]).toEqual([target, expect.stringMatching(/^HTTP\/1\.1 (400|404)/)]);
    const ws = await get(target, { ...upgrade, Origin: url.origin });
    expect([target, ws]).toEqual([target, expect.stringMatching(/^HTTP\/1\.1 (400|404)/)]);
  }
  expect(await get('//')).toMatch(/^HTTP\/1\.1 400/);
  expect(await get('http://[')).toMatch(/^HTTP\/1\.1 400/);
  expect(await raw('GET / HTTP/1.1\r\nHost: \u0000\r\n\r\n')).toMatch(/^HTTP\/1\.1 4\d\d/);
  expect(await raw('BLAH\r\n\r\n')).toMatch(/^HTTP\/1\.1 400/);
  await alive();
});

test('inherited property names are not assets', async () => {
  for (const name of ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf']) {
    expect([name, await get(`${url.pathname}${name}`)]).toEqual([name, 'HTTP/1.1 404 Not Found']);
  }
  await alive();
});

test('a Host header other than the bound address is refused (DNS rebinding)', async () => {
  expect(await get(url.pathname, { Host: `evil.example:${url.port}` })).toMatch(/^HTTP\/1\.1 421/);
  expect(await get(url.pathname, { Host: `127.0.0.1:1` })).toMatch(/^HTTP\/1\.1 421/);
  expect(await get(url.pathname, { Host: `localhost:${url.port}` })).toBe('HTTP/1.1 200 OK');
  const ws = await get(`${url.pathname}ws`, {
    ...upgrade,
    Host: `evil.example:${url.port}`,
    Origin: `http://evil.example:${url.port}`,
  });
  expect(ws).toMatch(/^HTTP\/1\.1 421/);
  await alive();
});

/** Opens the console's WebSocket; resolves once open. */
function viewer(): Promise<WsClient> {
  const ws = new WsClient(`ws://${url.host}${url.pathname}ws`, { origin: url.origin });
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

/** Writes raw bytes on a viewer's socket (frames the client library would not make). */
async function rawFrame(frame: Buffer): Promise<number> {
  const ws = await viewer();
  const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
  ws.on('error', () => {});
  (ws as unknown as { _socket: import('node:net').Socket })._socket.write(frame);
  return closed;
}

test('a WebSocket frame over the limit, or claiming 2^63 bytes, closes that connection only', async () => {
  const other = await viewer();
  // A masked binary frame announcing a 64-bit length: 2^63 - 1, then 70 000 bytes.
  const header = (length: bigint) => {
    const b = Buffer.alloc(14);
    b[0] = 0x82;
    b[1] = 0x80 | 127;
    b.writeBigUInt64BE(length, 2);
    return b;
  };
  expect(await rawFrame(Buffer.concat([header(2n ** 63n - 1n), Buffer.alloc(64)]))).toBeGreaterThanOrEqual(1002);
  expect(await rawFrame(Buffer.concat([header(70_000n), Buffer.alloc(70_000)]))).toBe(1009);
  expect(other.readyState).toBe(WsClient.OPEN);
  other.close();
  await alive();
});

test('a viewer flooding a guest that reads nothing is paused: the server keeps its memory', async () => {
  const ws = await viewer();
  const before = rssOf(child.pid!);
  const chunk = Buffer.alloc(60_000, 0x61);
  let sent = 0;
  const until = Date.now() + 4000;
  // Send as fast as the server takes it, up to 240 MiB or 4 s.
  while (sent < 240 << 20 && Date.now() < until) {
    if (ws.bufferedAmount > 4 << 20) {
      await new Promise((r) => setTimeout(r, 10));
      continue;
    }
    ws.send(chunk);
    sent += chunk.length;
  }
  await new Promise((r) => setTimeout(r, 300));
  const grew = rssOf(child.pid!) - before;
  expect(sent).toBeLessThan(240 << 20); // it stopped taking input
  expect(grew).toBeLessThan(32 << 20);
  ws.terminate();
  await alive();
});

test("import 'vcpu' loads neither ws nor xterm.js until a console is served", () => {
  const script = `
    const loaded = () => Object.keys(require.cache).filter((p) => /node_modules\\/(ws|@xterm)\\//.test(p)).length;
    const vcpu = require(${JSON.stringify(DIST)});
    const before = loaded();
    const { Readable, Writable } = require('node:stream');
    vcpu.serveConsole({ output: new Readable({ read() {} }), input: new Writable({ write(c, e, d) { d(); } }) })
      .then(async (web) => { const after = loaded(); await web.close(); console.log(JSON.stringify({ before, after })); });
  `;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
  expect(JSON.parse(r.stdout)).toEqual({ before: 0, after: expect.any(Number) });
  expect(JSON.parse(r.stdout).after).toBeGreaterThan(0);
  // The same exports from the package's own entry for them.
  const sub = spawnSync(
    process.execPath,
    ['-e', "const w = require('vcpu/web-console'); console.log(typeof w.serveConsole, typeof w.ConsoleHub)"],
    { encoding: 'utf8', cwd: join(__dirname, '..') },
  );
  expect(sub.stdout.trim()).toBe('function function');
});
