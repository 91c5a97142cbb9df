/**
 * The GDB stub: {@link Vm.gdbServer}.
 * @packageDocumentation
 */
import { call, VcpuError } from './errors';
import type { NativeVm } from './native';
import { checkOptions } from './options';

/** Options of {@link Vm.gdbServer}. */
export interface GdbServerOptions {
  /** The TCP port; 0 (the default) picks a free one. */
  port?: number;
  /** The address to listen on; loopback by default. */
  host?: string;
  /**
   * Hold every vcpu before its first instruction until gdb continues (QEMU's `-s -S`).
   * Off by default: the guest runs until gdb connects (and stops it).
   */
  wait?: boolean;
}

/** A listening GDB stub. */
export interface GdbServer {
  /** The port it listens on (`target remote host:port`). */
  readonly port: number;
  /** Stops listening; a debugger still attached is detached and the guest runs on. Idempotent. */
  close(): void;
}

/** @internal */
export function startGdbServer(vm: NativeVm, options: GdbServerOptions): GdbServer {
  const o = checkOptions<GdbServerOptions>('gdbServer', options, ['port', 'host', 'wait']);
  const { port = 0, host = '127.0.0.1', wait = false } = o;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new VcpuError('EINVAL', 'gdbServer', `gdbServer: port must be 0 to 65535, got ${String(port)}`);
  }
  if (typeof host !== 'string' || host === '') {
    throw new VcpuError('EINVAL', 'gdbServer', 'gdbServer: host must be an address such as 127.0.0.1');
  }
  if (typeof vm.gdbServer !== 'function') {
    throw new VcpuError('ENOTSUP', 'gdbServer', `gdbServer: not available on ${process.arch} yet`);
  }
  const server = call('gdbServer', () => vm.gdbServer(host, port, !!wait));
  return Object.freeze({ port: server.port, close: () => server.close() });
}
