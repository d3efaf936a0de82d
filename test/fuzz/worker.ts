/** A fuzz client process (forked by harness.ts for --procs > 1): runs its share of the cases, reports by IPC. */
import { driveCases, type DriveOptions } from './harness.js';

let stop = false;
process.on('message', (m: { type: string }) => {
  if (m.type === 'stop') stop = true;
});

process.once('message', (m: { type: string; options: DriveOptions }) => {
  if (m.type !== 'start') return;
  let lastProgress = 0;
  void driveCases(m.options, {
    aborted: () => stop,
    onFinding: (finding) => process.send!({ type: 'finding', finding }),
    onProgress: (cases) => {
      if (Date.now() - lastProgress >= 1000) {
        lastProgress = Date.now();
        process.send!({ type: 'progress', cases });
      }
    },
  }).then(
    (result) => process.send!({ type: 'done', result }, () => process.exit(0)),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
});
