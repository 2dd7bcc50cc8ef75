#!/usr/bin/env node
// The `baton` command. The CLI itself is TypeScript, compiled to dist/ by `npm install` (prepare).
import('../dist/src/cli/main.js')
  .then((cli) => cli.main(process.argv.slice(2)))
  .then((code) => {
    if (typeof code === 'number') process.exitCode = code;
  })
  .catch((err) => {
    if (err && err.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('dist/src/cli')) {
      console.error('baton: not built yet. Run `npm install` (or `npm run build`) in the baton package.');
    } else {
      console.error(`baton: ${err?.stack ? err.stack : err}`);
    }
    process.exitCode = 1;
  });
