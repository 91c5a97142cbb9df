/**
 * `SandboxPool`: sandboxes of one guest kept ready, restored copy-on-write from one
 * snapshot file; a released one is reset off the caller's path (on the next turn of
 * the event loop) and used again.
 * @packageDocumentation
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { dispose } from './dispose';
import { VcpuError } from './errors';
import { checkOptions } from './options';
import type { HostFunction, Sandbox } from './sandbox';
import type { SnapshotKey } from './snapshot_options';

/** Options of {@link Sandbox.pool}. */
export interface SandboxPoolOptions {
  /** The guest, as for {@link Sandbox.create} (or `snapshot`). */
  guest?: string | Uint8Array;
  /** A file {@link Sandbox.snapshot} wrote (or `guest`). */
  snapshot?: string;
  /** How many sandboxes to keep ready (default 2). */
  size?: number;
  /** As {@link SandboxOptions.memory}, with `guest`. */
  memory?: number | string;
  /** As {@link SandboxOptions.host}. */
  host?: Record<string, HostFunction>;
  /** As {@link SandboxOptions.timeoutMs}. */
  timeoutMs?: number;
  /** The key `snapshot` was signed with. */
  key?: SnapshotKey;
}

/**
 * Sandboxes of one guest, kept ready. A pool belongs to the thread that made it (as its
 * VMs' vcpus do); make one per worker.
 *
 * @example
 * ```ts
 * const pool = Sandbox.pool({ guest: 'fn.elf', size: 4 });
 * const sb = pool.acquire();
 * sb.call('add', 1n, 2n);
 * pool.release(sb); // reset on the next turn of the event loop, then ready again
 * pool.close();
 * ```
 */
export class SandboxPool {
  readonly #restore: () => Sandbox;
  readonly #size: number;
  readonly #ready: Sandbox[] = [];
  readonly #dirty: Sandbox[] = [];
  readonly #members = new Set<Sandbox>();
  readonly #dir: string | undefined;
  #cleaning = false;
  #closed = false;

  /** @internal Use {@link Sandbox.pool}. */
  constructor(sandbox: typeof Sandbox, options: SandboxPoolOptions) {
    const op = 'Sandbox.pool';
    const o = checkOptions<SandboxPoolOptions>(op, options, [
      'guest',
      'snapshot',
      'size',
      'memory',
      'host',
      'timeoutMs',
      'key',
    ]);
    if ((o.guest === undefined) === (o.snapshot === undefined)) {
      throw new VcpuError('EINVAL', op, `${op}: give either guest or snapshot`);
    }
    const size = o.size ?? 2;
    if (!Number.isInteger(size) || size < 0 || size > 1024) {
      throw new VcpuError('EINVAL', op, `${op}: size must be an integer from 0 to 1024`);
    }
    this.#size = size;
    let file = o.snapshot;
    if (o.guest !== undefined) {
      const first = sandbox.create({ guest: o.guest, memory: o.memory, host: o.host, timeoutMs: o.timeoutMs });
      try {
        this.#dir = mkdtempSync(join(tmpdir(), 'vcpu-pool-'));
        file = join(this.#dir, 'ready.snap');
        first.snapshot(file);
      } finally {
        first.close();
      }
    }
    const restoreOptions = {
      host: o.host,
      timeoutMs: o.timeoutMs,
      ...(o.snapshot !== undefined && o.key !== undefined ? { key: o.key } : {}),
    };
    this.#restore = () => sandbox.restore(file!, restoreOptions);
    try {
      while (this.#ready.length < size) this.#ready.push(this.#join(this.#restore()));
    } catch (e) {
      this.close();
      throw e;
    }
  }

  /** How many sandboxes are ready now. */
  get available(): number {
    return this.#ready.length;
  }

  /**
   * A ready sandbox (restored, reset), or a new one if none is.
   *
   * @example
   * ```ts
   * const sb = pool.acquire();
   * ```
   */
  acquire(): Sandbox {
    if (this.#closed) throw new VcpuError('ECLOSED', 'acquire', 'acquire: the pool is closed');
    const ready = this.#ready.pop();
    if (ready) return ready;
    const dirty = this.#dirty.pop();
    if (dirty) {
      dirty.reset();
      return dirty;
    }
    return this.#join(this.#restore());
  }

  /**
   * Gives a sandbox back: it is reset on the next turn of the event loop and kept ready
   * (or closed, past the pool's size).
   *
   * @example
   * ```ts
   * pool.release(sb);
   * ```
   */
  release(sb: Sandbox): void {
    if (!this.#members.has(sb) || this.#ready.includes(sb) || this.#dirty.includes(sb)) {
      throw new VcpuError('EINVAL', 'release', 'release: the sandbox is not one this pool lent out');
    }
    if (this.#closed || sb.closed) {
      this.#leave(sb);
      return;
    }
    this.#dirty.push(sb);
    if (!this.#cleaning) {
      this.#cleaning = true;
      setImmediate(() => this.#clean());
    }
  }

  /** Closes every sandbox of the pool, lent out or not, and its snapshot file if it made one. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const sb of this.#members) sb.close();
    this.#members.clear();
    this.#ready.length = 0;
    this.#dirty.length = 0;
    if (this.#dir) rmSync(this.#dir, { recursive: true, force: true });
  }

  /** `using pool = …` closes it at the end of the scope. */
  [dispose](): void {
    this.close();
  }

  /** Resets the released sandboxes. */
  #clean(): void {
    this.#cleaning = false;
    for (let sb = this.#dirty.pop(); sb; sb = this.#dirty.pop()) {
      if (this.#ready.length >= this.#size) {
        this.#leave(sb);
        continue;
      }
      try {
        sb.reset();
        this.#ready.push(sb);
      } catch {
        this.#leave(sb);
      }
    }
  }

  #join(sb: Sandbox): Sandbox {
    this.#members.add(sb);
    return sb;
  }

  #leave(sb: Sandbox): void {
    this.#members.delete(sb);
    sb.close();
  }
}
