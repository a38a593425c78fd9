/**
 * The child process of fuzzInChild (harness.ts): runs one target's loop, writes where it is to the
 * progress file (so that the parent can name the input of a hang or a crash), and sends the report.
 */
import * as fs from 'node:fs';
import { PROGRESS_SLOTS, fuzzLoop, type FuzzOptions } from './harness.js';

const opts = JSON.parse(process.env.LLAMATS_FUZZ_OPTIONS!) as FuzzOptions;
const fd = fs.openSync(process.env.LLAMATS_FUZZ_PROGRESS!, 'r+');
const slots = new Float64Array(PROGRESS_SLOTS);
const bytes = new Uint8Array(slots.buffer);
const write = () => void fs.writeSync(fd, bytes, 0, bytes.length, 0);
const report = fuzzLoop(opts, {
  start(iteration) {
    slots[0] = iteration;
    slots[1] = Date.now();
    write();
  },
  end(done, failures) {
    slots[1] = 0;
    slots[2] = done;
    slots[3] = failures;
    write();
  },
});
fs.closeSync(fd);
process.send!({ report }, () => process.exit(0));
