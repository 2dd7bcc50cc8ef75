/**
 * `baton` command-line entry. Each command lives in its own module; this file only dispatches and prints
 * help. Exit codes: 0 success, 1 the command failed, 2 bad usage.
 */
import { VERSION } from '../version.js';

const USAGE = `baton ${VERSION} — zero-downtime restarts for Node.js

Usage:
  baton <command> [options]

Commands:
  help [command]     Show this help, or a command's help

Options:
  -h, --help         Show help
  -v, --version      Print the version

The supervisor commands (run, reload, status) are being built: see the README's roadmap.
Library API: import { FdChannel, FdChannelServer, adopt, fdOf, getSockOpt, ... } from 'baton'.
Documentation: README.md and docs/ in the package.
`;

export async function main(argv: string[]): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined || first === '-h' || first === '--help' || first === 'help') {
    if (first === 'help' && rest.length) return unknownCommand(rest[0]!);
    process.stdout.write(USAGE);
    return 0;
  }
  if (first === '-v' || first === '--version') {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  return unknownCommand(first);
}

function unknownCommand(name: string): number {
  process.stderr.write(`baton: unknown command or option '${name}'\nRun 'baton --help' for usage.\n`);
  return 2;
}
