/** A spinner on stderr for waits that print nothing else; only when stderr is a terminal, so pipes stay clean. */

const FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/** Shows `label` with a spinner while `work` runs, then clears the line. */
export async function withSpinner<T>(
  label: string,
  work: () => Promise<T>,
  stream: Pick<NodeJS.WriteStream, 'write'> & { isTTY?: boolean } = process.stderr,
): Promise<T> {
  if (!stream.isTTY) return work();
  let frame = 0;
  const draw = () => stream.write(`\r${FRAMES[frame++ % FRAMES.length]} ${label}`);
  // Short waits stay silent: the spinner appears only after a moment.
  const delay = setTimeout(() => {
    draw();
    timer = setInterval(draw, 80);
  }, 250);
  let timer: NodeJS.Timeout | undefined;
  try {
    return await work();
  } finally {
    clearTimeout(delay);
    if (timer) {
      clearInterval(timer);
      stream.write('\r\x1b[2K');
    }
  }
}
