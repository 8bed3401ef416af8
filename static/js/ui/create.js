// The create screen: Text and File tabs (ARIA tabs, arrow keys), paste and drag-and-drop
// anywhere on the page, a keyboard-reachable drop zone, the options (expiry from /api/config,
// one-time, download limit, password, quick share), and the offer to resume an unfinished
// upload after a reload. It hands the work to upload.js and shows progress, then the link.

import { ApiError, serverConfig } from '../api.js';
import { unfinishedUploads } from '../resume-store.js';
import { parseTyped } from '../secret.js';
import { Cancelled, UserError, discardUpload, resumeFile, shareFile, shareText } from '../upload.js';
import { $, expiryName, formatBytes, screen, setText, show } from './dom.js';
import { progressScreen } from './progress.js';
import { resultScreen } from './result.js';

let chosenFile = null;
let busy = false;

function selectTab(name, { focus = false } = {}) {
  for (const tab of ['text', 'file']) {
    const selected = tab === name;
    const button = $(`tab-${tab}`);
    button.setAttribute('aria-selected', String(selected));
    button.tabIndex = selected ? 0 : -1;
    show(`panel-${tab}`, selected);
    if (selected && focus) button.focus();
  }
  $('share').textContent = name === 'text' ? 'Encrypt and share' : 'Encrypt and upload';
  syncOptions();
}

const currentTab = () => ($('tab-file').getAttribute('aria-selected') === 'true' ? 'file' : 'text');

function setupTabs() {
  for (const tab of ['text', 'file']) $(`tab-${tab}`).addEventListener('click', () => selectTab(tab));
  $('tab-text').parentElement.addEventListener('keydown', (e) => {
    const keys = { ArrowLeft: 'text', ArrowRight: 'file', Home: 'text', End: 'file' };
    if (!(e.key in keys)) return;
    e.preventDefault();
    const next = e.key.startsWith('Arrow') ? (currentTab() === 'text' ? 'file' : 'text') : keys[e.key];
    selectTab(next, { focus: true });
  });
}

function chooseFile(file) {
  chosenFile = file;
  show('chosen', !!file);
  show('drop', !file);
  if (file) {
    setText('chosen-name', file.name || 'Pasted file');
    setText('chosen-size', formatBytes(file.size));
    selectTab('file');
  }
  setText('form-error', '');
}

function setupFilePicking() {
  const input = $('file');
  $('drop').addEventListener('click', () => input.click());
  input.addEventListener('change', () => input.files[0] && chooseFile(input.files[0]));
  $('chosen-clear').addEventListener('click', () => {
    input.value = '';
    chooseFile(null);
    $('drop').focus();
  });

  // Drag and drop anywhere on the page.
  let depth = 0;
  const hasFiles = (e) => [...(e.dataTransfer?.types ?? [])].includes('Files');
  document.addEventListener('dragenter', (e) => {
    if (!hasFiles(e) || $('create').hidden) return;
    e.preventDefault();
    depth++;
    document.body.classList.add('dragging');
  });
  document.addEventListener('dragover', (e) => {
    if (hasFiles(e) && !$('create').hidden) e.preventDefault();
  });
  document.addEventListener('dragleave', () => {
    depth = Math.max(0, depth - 1);
    if (!depth) document.body.classList.remove('dragging');
  });
  document.addEventListener('drop', (e) => {
    depth = 0;
    document.body.classList.remove('dragging');
    if (!hasFiles(e) || $('create').hidden) return;
    e.preventDefault();
    const file = e.dataTransfer.files[0];
    if (file) chooseFile(file);
  });

  // Paste anywhere: a file goes to the File tab; text outside a field goes to the Text tab.
  document.addEventListener('paste', (e) => {
    if ($('create').hidden || busy) return;
    const file = [...(e.clipboardData?.files ?? [])][0];
    if (file) {
      e.preventDefault();
      chooseFile(file);
      return;
    }
    const inField = e.target instanceof HTMLInputElement || e.target instanceof HTMLTextAreaElement;
    const text = e.clipboardData?.getData('text/plain');
    if (!inField && text) {
      e.preventDefault();
      selectTab('text');
      $('text').value = text;
      $('text').dispatchEvent(new Event('input'));
      $('text').focus();
    }
  });
}

function syncOptions() {
  const quick = currentTab() === 'text' && $('quick').checked;
  const once = $('once').checked;
  $('password').disabled = quick;
  $('expiry').disabled = quick;
  $('limit').disabled = once;
  if (quick) $('password').value = '';
  setText('limit-hint', once ? 'A one-time link allows one download.' : 'Gone after this many downloads.');
}

function setupOptions(config) {
  const select = $('expiry');
  select.replaceChildren();
  for (const value of config.expiryOptions) {
    const option = document.createElement('option');
    option.value = value;
    option.textContent = expiryName(value);
    select.append(option);
  }
  select.value = config.defaultExpiry ?? config.expiryOptions.at(-1);
  for (const id of ['quick', 'once']) $(id).addEventListener('change', syncOptions);
  const show = $('password-show');
  show.addEventListener('click', () => {
    const visible = $('password').type === 'password';
    $('password').type = visible ? 'text' : 'password';
    show.textContent = visible ? 'Hide' : 'Show';
    show.setAttribute('aria-pressed', String(visible));
  });
  $('text').addEventListener('input', () => {
    const n = new TextEncoder().encode($('text').value.trim()).length;
    setText('text-count', n ? `${formatBytes(n)} of text` : '');
  });
  setText('max-file', formatBytes(config.maxUploadSize));
}

function readOptions() {
  const raw = $('limit').value.trim();
  const limit = raw === '' ? null : Number(raw);
  if (!$('once').checked && limit !== null && !(Number.isInteger(limit) && limit >= 1 && limit <= 10000)) {
    throw new UserError('limit', 'The download limit must be a whole number from 1 to 10000.');
  }
  return {
    expiry: $('expiry').value,
    oneTime: $('once').checked,
    maxDownloads: $('once').checked ? null : limit,
    password: $('password').value,
    quick: currentTab() === 'text' && $('quick').checked,
  };
}

function explain(e) {
  if (e instanceof UserError) return e.message;
  if (e instanceof ApiError) {
    if (e.network) return 'The network failed. Check your connection and try again.';
    if (e.status === 429) return `Too many uploads from here just now; try again in ${Math.ceil(e.retryAfter ?? 60)} seconds.`;
    if (e.status === 413) return 'The server refused this size.';
    if (e.status === 404) return 'The upload expired on the server. Share it again.';
    return e.message;
  }
  return `Something went wrong: ${e.message}`;
}

/**
 * Run one share (or resume), from the progress screen to the result. A failure returns to the
 * create screen with its explanation; `onError` may take it instead (returning true).
 */
async function run(name, work, options, onError = () => false) {
  busy = true;
  const hooks = progressScreen(name);
  try {
    const done = await work(hooks);
    resultScreen({ ...done, maxDownloads: options?.maxDownloads ?? null }, { onNew: () => reset() });
  } catch (e) {
    screen('create');
    await offerResume();
    if (e instanceof Cancelled || hooks.cancelled()) setText('form-error', 'Cancelled. Nothing was kept on the server.');
    else if (!(await onError(e))) setText('form-error', explain(e));
  } finally {
    busy = false;
  }
}

function reset() {
  $('share-form').reset();
  chooseFile(null);
  $('text').dispatchEvent(new Event('input'));
  syncOptions();
  screen('create');
  offerResume();
}

let config = null;

async function submit(e) {
  e.preventDefault();
  if (busy) return;
  setText('form-error', '');
  let options;
  try {
    options = readOptions();
  } catch (err) {
    setText('form-error', explain(err));
    return;
  }
  if (currentTab() === 'file') {
    if (!chosenFile) {
      setText('form-error', 'Choose or drop a file first.');
      $('drop').focus();
      return;
    }
    const file = chosenFile;
    await run(file.name, (hooks) => shareFile(file, options, config, hooks), options);
  } else {
    const text = $('text').value;
    if (!text.trim()) {
      setText('form-error', 'Type or paste some text first.');
      $('text').focus();
      return;
    }
    await run(options.quick ? 'Quick share' : 'Text', (hooks) => shareText(text, options, config, hooks), options);
  }
}

/** Unfinished uploads older than this are given up unasked (the server abandons idle ones after a day). */
const RESUME_MAX_AGE = 7 * 24 * 3600 * 1000;

async function offerResume() {
  const records = await unfinishedUploads();
  for (const old of records.filter((r) => Date.now() - r.createdAt > RESUME_MAX_AGE)) await discardUpload(old);
  const [record] = records.filter((r) => Date.now() - r.createdAt <= RESUME_MAX_AGE);
  show('resume-offer', !!record);
  if (!record) return;
  setText('resume-name', record.name);
  setText('resume-size', formatBytes(record.size));
  setText('resume-error', '');
  const input = $('resume-file');
  $('resume-pick').onclick = () => input.click();
  input.onchange = async () => {
    const file = input.files[0];
    input.value = '';
    if (!file) return;
    await run(file.name, (hooks) => resumeFile(record, file, hooks), record.options, async (err) => {
      const startAgain = err instanceof UserError && (err.code === 'nothing_to_prove' || err.code === 'expired');
      if (startAgain) {
        await discardUpload(record);
        show('resume-offer', false);
        chooseFile(file);
        setText('form-error', err.message);
      } else {
        setText('resume-error', explain(err));
      }
      return true;
    });
  };
  $('resume-discard').onclick = async () => {
    await discardUpload(record);
    await offerResume();
  };
}

function setupCodeForm() {
  $('code-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const parsed = parseTyped($('code').value);
    if (!parsed) {
      setText('code-error', 'Type the 12 characters of a code (like AB12CD · XY34ZW) or paste a whole link.');
      return;
    }
    location.assign(`/${parsed.kind}/${parsed.id}${parsed.secret ? `#${parsed.secret}` : ''}`);
  });
}

export async function startCreate() {
  screen('create', { focus: false });
  setupTabs();
  setupFilePicking();
  setupCodeForm();
  $('share-form').addEventListener('submit', submit);
  $('share').disabled = true;
  try {
    config = await serverConfig();
  } catch (e) {
    setText('form-error', `The server did not answer: ${explain(e)} Reload to try again.`);
    return;
  }
  setupOptions(config);
  syncOptions();
  $('share').disabled = false;
  await offerResume();
}
