/**
 * A signal that fires on the first SIGINT or SIGTERM, for a command that stops cleanly (finishing
 * or abandoning what is in flight) instead of dying. Call `release` when the command ends.
 */
export function abortOnInterrupt(): { signal: AbortSignal; release(): void } {
  const ctl = new AbortController();
  const onSignal = (): void => ctl.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  return {
    signal: ctl.signal,
    release: () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}
