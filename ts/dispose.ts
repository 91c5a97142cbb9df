/**
 * `Symbol.dispose`, for `using`. Node 20 defines it as `Symbol.for('nodejs.dispose')`
 * in its main realm only; other realms (a `vm` context, jest's sandbox) lack it. We
 * define the same symbol there, so `using` works in both and objects move freely.
 * @internal
 * @packageDocumentation
 */
const symbols = Symbol as unknown as { dispose?: symbol };
symbols.dispose ??= Symbol.for('nodejs.dispose');

export const dispose: typeof Symbol.dispose = symbols.dispose as typeof Symbol.dispose;
