// The memory scenario's job as plain JavaScript (issue 25): the same as hold.ts, for a thread that
// never loads TypeScript support. Stays in flight for `input.ms` or until its signal fires.
export default async function hold(input, ctx) {
  const start = performance.now();
  await new Promise((resolve) => {
    const timer = setTimeout(resolve, input.ms);
    ctx.signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
  return { held: performance.now() - start };
}
