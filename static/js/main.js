// Entry point of the page: the theme toggle, then the screen the URL asks for — the create
// screen at `/`, the open screen at `/clip/<id>` and `/file/<id>`.

import { $, show } from './ui/dom.js';
import { initTheme } from './ui/theme.js';
import { startCreate } from './ui/create.js';
import { startOpen } from './ui/open.js';

initTheme();
const opening = location.pathname.match(/^\/(clip|file)\/([^/]+)$/);
if (opening) {
  let id = opening[2];
  try {
    id = decodeURIComponent(id);
  } catch {
    // Left as it is: the open screen calls it invalid.
  }
  startOpen(opening[1], id);
} else if (!window.isSecureContext || !globalThis.crypto?.subtle) {
  show('insecure');
  show('create', false);
} else {
  startCreate();
}
$('main').dataset.ready = 'true';
