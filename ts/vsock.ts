/**
 * `linux.vsock`: the host side of a machine's virtio-vsock device, with Firecracker's
 * convention on its UNIX socket `uds`: `connect(port)` reaches the guest's port, and
 * `listen(port, …)` takes the guest's connections to host port `port` (they arrive on
 * the UNIX socket `uds_PORT`).
 * @packageDocumentation
 */
import { rmSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';

import { VcpuError } from './errors';

/** The vsock options of {@link bootLinux}. */
export interface VsockOptions {
  /** The guest's context id (3 or more). */
  cid: number;
  /** The host side's UNIX socket path (default: one in the OS temp directory). */
  uds?: string;
}

/** The longest answer to `CONNECT P\n` the host side waits for. */
const MAX_ANSWER = 64;

/**
 * The host side of a machine's vsock device.
 *
 * @example
 * ```ts
 * const linux = bootLinux({ kernel, vsock: { cid: 3 } });
 * linux.vsock!.listen(1234, (socket) => socket.pipe(socket)); // an echo for the guest
 * const s = await linux.vsock!.connect(5000);                 // the guest's port 5000
 * ```
 */
export class VsockHost {
  /** The guest's context id. */
  readonly cid: number;
  /** The UNIX socket the device serves. */
  readonly uds: string;
  readonly #servers = new Set<Server>();

  /** @internal */
  constructor(cid: number, uds: string) {
    this.cid = cid;
    this.uds = uds;
  }

  /**
   * A stream to the guest's port `port`, once the guest accepted it. `ECONNRESET` if
   * it refused (nothing listens there).
   *
   * @example
   * ```ts
   * const socket = await linux.vsock!.connect(5000);
   * socket.write('hello');
   * ```
   */
  connect(port: number): Promise<Socket> {
    checkPort('connect', port);
    return new Promise((resolve, reject) => {
      const socket = createConnection(this.uds);
      let answer = Buffer.alloc(0);
      const fail = (why: string, code = 'ECONNRESET') => {
        socket.destroy();
        reject(new VcpuError(code, 'connect', `connect: vsock port ${port}: ${why}`));
      };
      const onData = (chunk: Buffer) => {
        answer = Buffer.concat([answer, chunk]);
        const end = answer.indexOf('\n');
        if (end < 0) {
          if (answer.length > MAX_ANSWER) fail('the device answered something else', 'EPROTO');
          return;
        }
        socket.off('data', onData);
        socket.off('close', onClose);
        socket.off('error', onError);
        if (!/^OK \d+$/.test(answer.subarray(0, end).toString()))
          return fail('the device answered something else', 'EPROTO');
        const rest = answer.subarray(end + 1);
        if (rest.length > 0) socket.unshift(rest);
        resolve(socket);
      };
      const onClose = () => fail('the guest refused the connection');
      const onError = (e: Error) => fail(e.message, (e as { code?: string }).code ?? 'ECONNREFUSED');
      socket.on('data', onData);
      socket.once('close', onClose);
      socket.once('error', onError);
      socket.write(`CONNECT ${port}\n`);
    });
  }

  /**
   * Takes the guest's connections to host port `port`: `onConnection` gets each as a
   * socket. The server closes with the machine.
   *
   * @example
   * ```ts
   * linux.vsock!.listen(1234, (socket) => socket.pipe(socket));
   * ```
   */
  listen(port: number, onConnection: (socket: Socket) => void): Server {
    checkPort('listen', port);
    const path = `${this.uds}_${port}`;
    rmSync(path, { force: true });
    const server = createServer(onConnection);
    server.on('error', () => undefined);
    server.listen(path);
    this.#servers.add(server);
    server.once('close', () => this.#servers.delete(server));
    return server;
  }

  /** @internal Closes the listeners and removes their socket files. */
  close(): void {
    for (const s of this.#servers) s.close();
    this.#servers.clear();
  }
}

function checkPort(op: string, port: number): void {
  if (!Number.isInteger(port) || port < 0 || port > 0xffff_ffff) {
    throw new VcpuError('EINVAL', op, `${op}: a vsock port is an integer from 0 to 2^32 - 1`);
  }
}
