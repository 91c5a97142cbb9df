/** `SandboxError`: how a sandbox call fails. @packageDocumentation */
import { VcpuError } from './errors';

/**
 * A sandbox call that failed: a guest fault (`EFAULT`, with `rip` and, for a page
 * fault, `address`), a timeout (`ETIMEDOUT`), an unknown function (`ENOENT`), or a
 * guest that broke the protocol. After a fault or a timeout the sandbox refuses calls
 * until {@link Sandbox.reset}.
 */
export class SandboxError extends VcpuError {
  /** Where the guest was: the faulting instruction, or where the timeout stopped it. */
  readonly rip: bigint | undefined;
  /** The exception vector of a fault (14 for a page fault). */
  readonly vector: number | undefined;
  /** The address a page fault touched (CR2). */
  readonly address: bigint | undefined;

  constructor(code: string, op: string, message: string, at: { rip?: bigint; vector?: number; address?: bigint } = {}) {
    super(code, op, message);
    this.name = 'SandboxError';
    this.rip = at.rip;
    this.vector = at.vector;
    this.address = at.address;
  }
}
