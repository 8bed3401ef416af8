// One chunk POST through XMLHttpRequest (it reports upload progress; fetch does not), told as
// plain messages to `report`: {type:'progress', loaded}, {type:'sent'}, {type:'answer',
// status, body, retryAfter}, {type:'failed'} or {type:'aborted'}. Used inside send-worker.js
// and, where no module worker can run, on the page itself. Returns an abort function.

export function postChunk(url, body, sha256, report) {
  const xhr = new XMLHttpRequest();
  xhr.open('POST', url);
  xhr.setRequestHeader('content-type', 'application/octet-stream');
  xhr.setRequestHeader('x-chunk-sha256', sha256);
  xhr.upload.onprogress = (e) => report({ type: 'progress', loaded: e.loaded });
  xhr.upload.onload = () => report({ type: 'sent' });
  xhr.onload = () => report({ type: 'answer', status: xhr.status, body: xhr.responseText, retryAfter: xhr.getResponseHeader('retry-after') });
  xhr.onerror = () => report({ type: 'failed' });
  xhr.onabort = () => report({ type: 'aborted' });
  xhr.send(body);
  return () => xhr.abort();
}
