/**
 * The web console: a guest's serial console in a browser terminal (xterm.js) over a
 * WebSocket, for `npx vcpu boot --web` and for apps that embed a VM.
 * @packageDocumentation
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { isIP, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Duplex, Readable, Writable } from 'node:stream';

// `ws` is loaded when a console is first served, not with the package.
import type { WebSocket } from 'ws';

import { VcpuError } from './errors';
import { checkOptions } from './options';

/** What a console is: bytes out of the guest, bytes into it (a `LinuxMachine` is one). */
export interface ConsoleSource {
  /** The guest's output. */
  readonly output: Readable;
  /** The guest's input. */
  readonly input: Writable;
}

/** One viewer: where the guest's bytes go, and where its keys come from. */
export interface ConsolePeer {
  /** Sends the guest's output to the viewer. */
  send(bytes: Uint8Array): void;
  /** Calls `callback` with each chunk the viewer types. */
  onData(callback: (bytes: Uint8Array) => void): void;
  /** Stops taking the viewer's input while the guest's input is full (backpressure). */
  pause?(): void;
  /** Takes the viewer's input again. */
  resume?(): void;
}

/** Options of {@link serveConsole}. */
export interface ConsoleOptions {
  /** TCP port; 0 (the default) picks a free one. */
  port?: number;
  /** Address to bind; loopback (`127.0.0.1`) by default. */
  host?: string;
  /** Bytes of output kept and replayed to each new viewer (default 1 MiB). */
  scrollback?: number;
}

/** A running web console. */
export interface WebConsole {
  /** The page's address, with its secret token: give it only to who may use the console. */
  readonly url: string;
  /** Stops serving and disconnects every viewer. */
  close(): Promise<void>;
}

/**
 * Shares one console among any number of viewers: each sees the whole output (the
 * scrollback is replayed when it connects), and what each types goes to the guest.
 * {@link serveConsole} uses one for its WebSockets; an Electron app can connect a
 * `MessagePort` (see `examples/electron-console/`).
 *
 * @example
 * ```ts
 * const hub = new ConsoleHub(linux);
 * const { port1, port2 } = new MessageChannelMain(); // Electron's main process
 * hub.connect({ send: (b) => port1.postMessage(b), onData: (cb) => port1.on('message', (e) => cb(e.data)) });
 * port1.start();
 * window.webContents.postMessage('console', null, [port2]);
 * ```
 */
export class ConsoleHub {
  readonly #source: ConsoleSource;
  readonly #limit: number;
  readonly #peers = new Set<ConsolePeer>();
  #kept: Buffer[] = [];
  #keptBytes = 0;
  readonly #onOutput = (chunk: Buffer) => {
    this.#keep(chunk);
    for (const peer of this.#peers) peer.send(chunk);
  };

  constructor(source: ConsoleSource, scrollback = 1 << 20) {
    this.#source = source;
    this.#limit = scrollback;
    source.output.on('data', this.#onOutput);
  }

  /**
   * Adds a viewer: replays the output so far, then streams it; returns how to remove
   * it. While the guest's input stream is full, the viewer is paused (if it can be)
   * until the stream drains.
   */
  connect(peer: ConsolePeer): () => void {
    if (this.#keptBytes > 0) peer.send(Buffer.concat(this.#kept));
    this.#peers.add(peer);
    const input = this.#source.input;
    peer.onData((bytes) => {
      if (!this.#peers.has(peer) || input.destroyed) return;
      if (!input.write(Buffer.from(bytes)) && peer.pause) {
        peer.pause();
        input.once('drain', () => peer.resume?.());
      }
    });
    return () => this.#peers.delete(peer);
  }

  /** Stops following the console; viewers get nothing more. */
  close(): void {
    this.#source.output.off('data', this.#onOutput);
    this.#peers.clear();
  }

  #keep(chunk: Buffer): void {
    this.#kept.push(chunk);
    this.#keptBytes += chunk.length;
    while (this.#keptBytes > this.#limit && this.#kept.length > 1) this.#keptBytes -= this.#kept.shift()!.length;
  }
}

/** The browser side, served with the page (a Map: only these names, never inherited ones). */
const ASSETS = new Map<string, { file: () => string; type: string }>([
  ['', { file: () => join(__dirname, '..', 'web', 'console.html'), type: 'text/html; charset=utf-8' }],
  ['console.js', { file: () => join(__dirname, '..', 'web', 'console.js'), type: 'text/javascript; charset=utf-8' }],
  ['xterm.js', { file: () => require.resolve('@xterm/xterm/lib/xterm.js'), type: 'text/javascript; charset=utf-8' }],
  ['xterm.css', { file: () => require.resolve('@xterm/xterm/css/xterm.css'), type: 'text/css; charset=utf-8' }],
]);

/** The largest WebSocket message a viewer may send (typing and pasting fit well). */
const MAX_MESSAGE = 64 * 1024;

/** Headers of every page and asset: nothing else may load, frame or learn the URL. */
const HEADERS = {
  'Content-Security-Policy':
    "default-src 'self'; img-src 'self' data:; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'",
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'no-referrer',
  'Cache-Control': 'no-store',
  'X-Content-Type-Options': 'nosniff',
};

/**
 * Serves `console` (a {@link LinuxMachine}, or any {@link ConsoleSource}) as a web page
 * with a terminal. The URL carries a random token: without it the page, its assets and
 * the WebSocket are refused (404), and a WebSocket whose `Origin` is not the page's own
 * is refused (403), so another site open in the same browser cannot reach the guest.
 * Binds to loopback unless `host` says otherwise.
 *
 * @example
 * ```ts
 * const linux = bootLinux({ kernel: 'vmlinux' });
 * const web = await serveConsole(linux, { port: 8080 });
 * console.log(`console at ${web.url}`);
 * await linux.start();
 * await web.close();
 * ```
 */
export async function serveConsole(console: ConsoleSource, options: ConsoleOptions = {}): Promise<WebConsole> {
  const o = checkOptions<ConsoleOptions>('serveConsole', options, ['port', 'host', 'scrollback']);
  const { port = 0, host = '127.0.0.1', scrollback = 1 << 20 } = o;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new VcpuError('EINVAL', 'serveConsole', `serveConsole: port must be 0 to 65535, got ${String(port)}`);
  }
  if (typeof host !== 'string' || host === '') {
    throw new VcpuError('EINVAL', 'serveConsole', 'serveConsole: host must be an address such as 127.0.0.1');
  }
  const { WebSocketServer } = await import('ws');
  const token = randomBytes(24).toString('hex');
  const prefix = `/${token}/`;
  const hub = new ConsoleHub(console, scrollback);
  let hosts: (name: string | undefined) => boolean = () => false;
  const server = createServer((req, res) => serve(req, res, prefix, hosts));
  // A malformed request is answered 400 by Node (its default clientError handling) and
  // a socket that fails is destroyed: neither reaches the process as an error.
  server.on('clientError', (_error, socket: Duplex) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    socket.destroy();
  });
  const sockets = new WebSocketServer({ noServer: true, maxPayload: MAX_MESSAGE });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    const refusal = refuseSocket(req, prefix, hosts);
    if (refusal) {
      socket.end(`HTTP/1.1 ${refusal}\r\nConnection: close\r\n\r\n`);
      return;
    }
    sockets.handleUpgrade(req, socket, head, (ws: WebSocket) => {
      // A protocol error (a frame over the limit, a bad frame) closes this connection.
      ws.on('error', () => ws.terminate());
      const disconnect = hub.connect({
        send: (bytes) => ws.send(bytes),
        onData: (cb) => ws.on('message', (data: Buffer) => cb(data)),
        pause: () => ws.pause(),
        resume: () => ws.resume(),
      });
      ws.on('close', disconnect);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      reject(
        new VcpuError(e.code ?? 'EIO', 'serveConsole', `serveConsole: cannot listen on ${host}:${port}: ${e.message}`),
      ),
    );
    server.listen(port, host, resolve);
  });
  server.on('error', () => {}); // after listening, errors belong to single connections
  const address = server.address() as AddressInfo;
  hosts = allowedHosts(address);
  const shown = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `http://${shown}:${address.port}${prefix}`,
    close: async () => {
      hub.close();
      for (const ws of sockets.clients) ws.terminate();
      sockets.close();
      // A browser keeps its HTTP connections alive after the page is gone: close them
      // too, or server.close() would wait for the browser.
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
  };
}

/**
 * The `Host` headers a request may carry: the address the server is bound to (with its
 * port), and `localhost` on loopback. A bound wildcard address allows any IP address
 * literal. Never another name: a page whose DNS name was rebound to this address sends
 * its own name, and is refused (DNS rebinding).
 */
function allowedHosts(address: AddressInfo): (name: string | undefined) => boolean {
  const port = String(address.port);
  const wildcard = address.address === '0.0.0.0' || address.address === '::';
  const loopback = address.address === '::1' || address.address.startsWith('127.');
  return (name) => {
    const m = name === undefined ? null : /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(name.toLowerCase());
    if (!m || m[2] !== port) return false;
    const hostname = m[1].startsWith('[') ? m[1].slice(1, -1) : m[1];
    if (hostname === address.address) return true;
    if (loopback && hostname === 'localhost') return true;
    return wildcard && isIP(hostname) !== 0;
  };
}

/** The request's path, or undefined for a target that is not a path (`//`, `http://[`, …). */
function pathOf(req: IncomingMessage): string | undefined {
  const target = req.url ?? '';
  if (!target.startsWith('/') || target.startsWith('//')) return undefined;
  try {
    return new URL(target, 'http://localhost').pathname;
  } catch {
    return undefined;
  }
}

function serve(
  req: IncomingMessage,
  res: ServerResponse,
  prefix: string,
  hosts: (name: string | undefined) => boolean,
): void {
  res.on('error', () => {}); // a viewer gone mid-answer
  const text = (status: number, body: string) =>
    res.writeHead(status, { ...HEADERS, 'Content-Type': 'text/plain' }).end(`${body}\n`);
  const path = pathOf(req);
  if (path === undefined) return void text(400, 'bad request');
  if (!hosts(req.headers.host)) return void text(421, 'misdirected request');
  const asset = hasToken(path, prefix) ? ASSETS.get(path.slice(prefix.length)) : undefined;
  if (!asset || req.method !== 'GET') return void text(404, 'not found');
  res.writeHead(200, { ...HEADERS, 'Content-Type': asset.type }).end(readFileSync(asset.file()));
}

/** Why a WebSocket request is refused (`400`, `421`, `404`, `403`), or undefined. */
function refuseSocket(
  req: IncomingMessage,
  prefix: string,
  hosts: (name: string | undefined) => boolean,
): string | undefined {
  const path = pathOf(req);
  if (path === undefined) return '400 Bad Request';
  if (!hosts(req.headers.host)) return '421 Misdirected Request';
  if (!hasToken(path, prefix) || path.slice(prefix.length) !== 'ws') return '404 Not Found';
  // A browser always names the page a WebSocket comes from: it must be ours.
  if (req.headers.origin !== `http://${req.headers.host}`) return '403 Forbidden';
  return undefined;
}

/** Whether `path` starts with the secret prefix, compared in constant time. */
function hasToken(path: string, prefix: string): boolean {
  const head = Buffer.from(path.slice(0, prefix.length));
  const want = Buffer.from(prefix);
  return head.length === want.length && timingSafeEqual(head, want);
}
