// The process tree under a PID, read from /proc: what the browser tests and the browser
// benchmark (scripts/bench-browser.mjs) sum Chromium's memory over.

import { readFileSync, readdirSync } from 'node:fs';

/** Processes below `root` in the process tree. */
export function descendants(root) {
  const parent = new Map();
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      parent.set(Number(pid), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // gone meanwhile
    }
  }
  const out = [];
  const walk = (p) => {
    for (const [child, pp] of parent) {
      if (pp === p) {
        out.push(child);
        walk(child);
      }
    }
  };
  walk(root);
  return out;
}
