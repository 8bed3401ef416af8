// The sending screen: phase, progress bar, bytes done of total, speed and time left, pause and
// resume, and what the network is doing (offline, retrying, stalled). Screen readers hear the
// phase changes and every quarter of the way.

import { Cancelled } from '../upload.js';
import { $, announce, formatBytes, formatDuration, screen, setText } from './dom.js';

const PHASES = {
  checking: 'Checking the file',
  deriving: 'Deriving key',
  encrypting: 'Encrypting',
  uploading: 'Encrypting and uploading',
  finishing: 'Finishing',
};

/** Show the sending screen for `name`; returns the hooks upload.js reports to and asks. */
export function progressScreen(name) {
  screen('progress');
  setText('up-name', name);
  setText('up-note', '');
  setText('up-figures', '\u00a0');
  $('up-bar').value = 0;
  const pause = $('up-pause');
  const cancel = $('up-cancel');
  pause.disabled = true;
  pause.textContent = 'Pause';
  let engine = null;
  let quarter = 0;
  let cancelled = false;
  // Chunks waiting to be tried again; the note about them stays until they all got through.
  const retrying = new Set();

  pause.onclick = () => {
    if (!engine) return;
    if (engine.state === 'running' || engine.state === 'offline') engine.pause();
    else engine.resume();
  };
  cancel.disabled = false;
  cancel.onclick = () => {
    cancelled = true;
    cancel.disabled = true;
    pause.disabled = true;
    setText('up-note', 'Cancelling…');
    engine?.cancel();
  };

  const states = {
    running: ['', 'Pause'],
    paused: ['Paused. Nothing is lost; resume when you like.', 'Resume'],
    offline: ['You are offline. The upload carries on when the network is back.', 'Pause'],
    stalled: ['The server is not taking this chunk right now. Try again in a moment.', 'Try again'],
    done: ['', 'Pause'],
    cancelled: ['Cancelled.', 'Pause'],
  };

  const hooks = {
    cancelled: () => cancelled,
    check() {
      if (cancelled) throw new Cancelled();
    },
    phase(name) {
      hooks.check();
      setText('up-phase', PHASES[name] ?? name);
      announce(PHASES[name] ?? name);
      pause.disabled = !engine || name === 'finishing';
      if (name === 'finishing') $('up-bar').value = 1000;
    },
    engine(e) {
      engine = e;
      pause.disabled = false;
      e.addEventListener('state', ({ detail }) => {
        const [note, label] = states[detail.state] ?? ['', 'Pause'];
        setText('up-note', note);
        pause.textContent = label;
        if (note) announce(note);
      });
      e.addEventListener('retry', ({ detail }) => {
        retrying.add(detail.index);
        const wait = formatDuration(detail.delay / 1000) || 'a moment';
        const why = detail.error.status === 429 ? 'The server asked to slow down' : 'A chunk did not get through';
        setText('up-note', `${why}; trying again in ${wait}.`);
      });
      e.addEventListener('chunk', ({ detail }) => {
        if (retrying.delete(detail.index) && retrying.size === 0 && e.state === 'running') setText('up-note', '');
      });
      e.addEventListener('progress', ({ detail }) => {
        const { sent, total, speed, eta } = detail;
        $('up-bar').value = total ? Math.floor((sent / total) * 1000) : 0;
        const parts = [`${formatBytes(sent)} of ${formatBytes(total)}`];
        if (speed > 0 && e.state === 'running') {
          parts.push(`${formatBytes(speed)}/s`);
          if (eta !== null) parts.push(`${formatDuration(eta)} left`);
        }
        setText('up-figures', parts.join(' · '));
        const q = total ? Math.floor((sent / total) * 4) : 0;
        if (q > quarter && q < 4) {
          quarter = q;
          announce(`${q * 25} percent sent`);
        }
      });
    },
  };
  return hooks;
}
