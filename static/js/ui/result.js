// The result screen: the link (built from this page's origin), a copy button, the system share
// sheet where the browser has one, the quick-share code in its spoken form, the QR code of the
// whole link drawn here, what the link allows and when it expires, and deleting the clip early
// with its delete token — after which the screen offers the link no more.

import { deleteClip } from '../api.js';
import { svgPath, encode } from '../qr.js';
import { link, verbal } from '../secret.js';
import { $, announce, copyText, formatExpiry, screen, setText, show } from './dom.js';

const SVG = 'http://www.w3.org/2000/svg';

function drawQr(svg, text) {
  const qr = encode(text);
  const side = qr.size + 8;
  svg.setAttribute('viewBox', `0 0 ${side} ${side}`);
  svg.setAttribute('shape-rendering', 'crispEdges');
  svg.replaceChildren();
  const path = document.createElementNS(SVG, 'path');
  path.setAttribute('d', svgPath(qr, 4));
  svg.append(path);
}

function rules(done) {
  if (done.quickShare) return 'Quick share: anyone with the code can open it for the next 5 minutes.';
  if (done.oneTime) return 'One-time: it is gone after the first download.';
  if (done.maxDownloads) return `It is gone after ${done.maxDownloads} downloads.`;
  return 'Anyone with the link can open it until it expires.';
}

/** After a delete: no link, no copy, no QR — only what happened and the way on. */
function deletedState() {
  $('res-link').value = '';
  $('res-qr').replaceChildren();
  show('res-live', false);
  setText('result-title', 'Deleted');
  setText('res-status', 'The link no longer opens anything, for anyone. None of its content is kept on the server.');
  $('result-title').focus();
  announce('Deleted. The link no longer opens anything.');
}

/** Show the link for a finished share (`done` is complete's answer plus kind and secret). */
export function resultScreen(done, { onNew }) {
  const url = link(location.origin, done.kind, done.clipId, done.secret);
  screen('result');
  setText('result-title', 'Your link is ready');
  show('res-live');
  $('res-link').value = url;
  setText('res-copied', '');
  setText('res-status', '');
  show('res-quick', !!done.quick);
  if (done.quick) setText('res-code', verbal(done.clipId, done.secret));
  const expiry = formatExpiry(done.expiresAt);
  setText('res-rules', `${rules(done)} Expires ${expiry}.`);
  drawQr($('res-qr'), url);
  announce(`Your link is ready. It expires ${expiry}.`);

  $('res-copy').onclick = async () => {
    const ok = await copyText(url, $('res-link'));
    setText('res-copied', ok ? 'Link copied.' : 'Select the link and copy it.');
  };
  $('res-link').onfocus = (e) => e.target.select();
  const share = $('res-share');
  const shareData = { title: 'ferry', url };
  show(share, typeof navigator.share === 'function' && (navigator.canShare?.(shareData) ?? true));
  share.onclick = async () => {
    try {
      await navigator.share(shareData);
    } catch (e) {
      // Closing the share sheet is not an error worth a word; anything else is.
      if (e?.name !== 'AbortError') setText('res-copied', 'This browser could not open its share sheet; copy the link instead.');
    }
  };
  $('res-new').onclick = onNew;

  const del = $('res-delete');
  del.disabled = false;
  del.textContent = 'Delete it now';
  let armed = false;
  del.onclick = async () => {
    if (!armed) {
      armed = true;
      del.textContent = 'Click again to delete';
      setText('res-status', 'The link will stop working for everyone.');
      return;
    }
    del.disabled = true;
    try {
      await deleteClip(done.clipId, done.deleteToken);
      deletedState();
    } catch (e) {
      // Gone already (expired or used up meanwhile): the link offers nothing either way.
      if (e?.status === 404) return deletedState();
      del.disabled = false;
      setText('res-status', `Could not delete it: ${e.message}`);
    }
  };
}

