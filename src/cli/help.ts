/** The text of `baton --help` and of each command's --help. */
import { VERSION } from '../version.js';

const SOCKET_HELP = `  --socket PATH          control socket (default: $BATON_SOCKET, else $XDG_RUNTIME_DIR/baton.sock,
                         else ./baton.sock). Its directory and every parent must be owned by root or
                         you and not writable by others; in a sticky shared directory such as /tmp it
                         moves to a private subdirectory: /tmp/app.sock -> /tmp/baton-<uid>/app.sock`;

export const HELP: Record<string, string> = {
  main: `baton ${VERSION} — zero-downtime restarts for Node.js

Usage:
  baton run [options] -- COMMAND [ARGS...]   supervise an app; upgrade it in place on reload
  baton run --config baton.config.json        the same, with the command and options from a file
  baton reload [options]                      start the next generation; exit 0 once it serves
  baton reload --supervisor [options]         re-execute the supervisor from the baton installed now
  baton status [options]                      generations, listeners, connections, last upgrades
  baton stop [options]                        stop gracefully: every generation drains, then exits

Options:
  -h, --help             show help (also: baton help COMMAND)
  -v, --version          print the version

In the app: import { Upgrader } from 'baton-reload' — see README.md.
`,
  run: `Usage: baton run [options] -- COMMAND [ARGS...]
       baton run --config FILE [--env NAME] [options] [-- COMMAND [ARGS...]]

Start COMMAND as generation 1 and supervise it. The supervisor keeps its pid (PID 1 in a container,
MAINPID for systemd) and a copy of every listening socket, so the port stays open even when a
generation crashes. SIGHUP or \`baton reload\` starts the next generation; SIGUSR2 or
\`baton reload --supervisor\` re-executes the supervisor itself from the baton installed now (same pid,
the generations keep serving); SIGTERM/SIGINT stop gracefully (a second one forces). If a supervisor on
this socket crashed, the generation it left behind is taken over: its connections move to the first
generation started here (README: "After a supervisor crash").

Options:
${SOCKET_HELP}
  --ready-timeout S      seconds a new generation has to call ready() (default 30)
  --drain-timeout S      seconds a replaced generation has to drain (default 30)
  --hello-timeout S      seconds a process that connects to the control socket has to say hello before
                         it is disconnected (default 5; more than 0)
  --max-starts N         give up (exit 1 with the last error and its output) after N starts in a row
                         fail while nothing serves: no ready(), or an exit within --min-uptime of it
                         (default 5; 0: retry forever). Crashes after that restart with backoff
                         (100 ms doubling to 10 s); \`baton status\` counts the restarts
  --min-uptime S         a generation that exits sooner than S seconds after ready() counts as a
                         failed start (default 1)
  --log-format F         text (default) or json: one line per event on stderr
  --config FILE          the command, env and these options from a file (.json, .js, .mjs, .cjs; see
                         docs/config.md); a flag given here wins over the file
  --env NAME             apply the file's environments.NAME overrides (e.g. --env production)
  --fdstore              also keep the listeners in systemd's file descriptor store, so that even a
                         restart of the service keeps the ports open (FileDescriptorStoreMax=)
  --metrics [HOST:]PORT  serve Prometheus metrics at http://HOST:PORT/metrics (HOST: an IP address or
                         localhost, default 127.0.0.1; 0.0.0.0:PORT for every interface): docs/operations.md
  --workers N|max        processes per generation; max: one per CPU this process may use (default 1).
                         Each reload starts all N, then each old worker hands its connections to its
                         successor (docs/workers.md); \`baton reload --workers M\` changes N
  --balance B            with --workers N > 1, how workers share a port: reuseport (a socket each, the
                         kernel spreads connections; default) or shared (one socket for all)
  --rolling              with --workers N > 1, each reload replaces one worker at a time (new worker i
                         ready, old worker i hands over and exits, then the next): at most N + 1
                         processes instead of 2N; a failure stops it there, the generations mixed
  -h, --help             show this help

Under systemd (Type=notify or notify-reload) it reports READY=1, RELOADING=1, STOPPING=1 and STATUS=,
pings the watchdog, and takes sockets from socket activation (LISTEN_FDS): see docs/systemd.md.
`,
  reload: `Usage: baton reload [options]

Ask the supervisor to start the next generation and wait for the outcome: exit 0 when it serves,
1 with the reason (exit code, timeout, its last output) when it was rolled back — the old generation
kept serving throughout.

With --supervisor: re-execute the supervisor itself (same pid) from the baton installed now — the way to
upgrade baton without a restart. The generations, listeners and connections are untouched. The new
version is checked in a child process first; exit 0 once the new supervisor runs, 1 with the reason
when the check or the exec failed (the old supervisor keeps running). SIGUSR2 does the same.

Options:
${SOCKET_HELP}
  --supervisor           re-execute the supervisor instead of starting a new generation
  --rolling              (--workers N > 1) this reload replaces one worker at a time: at most N + 1
                         processes; a worker that fails stops it there (exit 1 naming the worker; the
                         workers before it serve the new generation, the rest the old one)
  --workers M|max        (--workers N > 1) change the number of workers at this reload: M new workers
                         start two-phase; growing binds sockets for the new slots, shrinking moves the
                         removed workers' connections to the remaining ones. Later reloads run M
  --timeout S            seconds to wait for the outcome (default 120)
  --json                 print the upgrade record as JSON
  -h, --help             show this help
`,
  status: `Usage: baton status [options]

Show the supervisor, its generations (pid, state, start time, time to ready, open connections), the
listening sockets, and the last 10 upgrades. With --workers N a row per worker process: its slot, the
connections it accepted and its slot's restarts too (docs/operations.md).

Options:
${SOCKET_HELP}
  --json                 machine-readable output
  -w, --watch            a live view refreshed in place (event loop, CPU, memory, last reloads); q quits
  --interval S           seconds between refreshes with --watch (default 1)
  -h, --help             show this help
`,
  stop: `Usage: baton stop [options]

Stop gracefully: the generations stop accepting, drain, exit, and then the supervisor exits.

Options:
${SOCKET_HELP}
  -h, --help             show this help
`,
};
