/**
 * The last lines of a process's output, for a rollback reason or a failed re-exec check. Node prints an
 * uncaught error as a few lines of source, the message, up to 10 stack lines and its properties, so the last 10 lines
 * often miss the one line that says what went wrong (an EMFILE while loading modules, say): keep the last error
 * message line in front of them.
 */
export function outputTail(stderr: string, count = 10): string {
  const isError = (line: string) => /^([A-Z]\w*)?(Error|Exception)\b/.test(line);
  const lines = stderr.trim().split('\n');
  const tail = lines.slice(-count);
  if (!tail.some(isError)) {
    for (let i = lines.length - count - 1; i >= 0; i--) {
      if (isError(lines[i]!)) return [lines[i]!, '…', ...tail].join('\n');
    }
  }
  return tail.join('\n');
}
