// The browser side of the web console (`serveConsole`, `npx vcpu boot --web`): an
// xterm.js terminal bound to the guest's serial console through a transport — a
// WebSocket on the page the server serves, or a MessagePort / IPC channel in an
// Electron renderer. A transport is `{ send(bytes), onData(callback) }` with
// Uint8Array bytes both ways. Plain script (no build step), also usable as a module.
(function (root) {
  'use strict';

  /** Binds `term` (an xterm.js Terminal) to `transport` and opens it in `element`. */
  function attach(term, element, transport) {
    term.open(element);
    const encoder = new TextEncoder();
    transport.onData(function (bytes) {
      term.write(bytes);
    });
    term.onData(function (text) {
      transport.send(encoder.encode(text));
    });
    term.onBinary(function (text) {
      const bytes = new Uint8Array(text.length);
      for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i) & 0xff;
      transport.send(bytes);
    });
    term.focus();
    return term;
  }

  /** A transport over a WebSocket at `url` (binary frames both ways). */
  function webSocket(url) {
    const socket = new WebSocket(url);
    socket.binaryType = 'arraybuffer';
    const queue = [];
    socket.addEventListener('open', function () {
      while (queue.length) socket.send(queue.shift());
    });
    return {
      send: function (bytes) {
        if (socket.readyState === 1) socket.send(bytes);
        else queue.push(bytes);
      },
      onData: function (callback) {
        socket.addEventListener('message', function (event) {
          callback(new Uint8Array(event.data));
        });
      },
    };
  }

  /** A transport over a MessagePort (Electron: `MessageChannelMain` in the main process). */
  function messagePort(port) {
    if (port.start) port.start();
    return {
      send: function (bytes) {
        port.postMessage(bytes);
      },
      onData: function (callback) {
        port.addEventListener('message', function (event) {
          callback(new Uint8Array(event.data));
        });
      },
    };
  }

  const api = { attach: attach, webSocket: webSocket, messagePort: messagePort };
  if (typeof module === 'object' && module.exports) module.exports = api;
  else root.VcpuConsole = api;
})(typeof self !== 'undefined' ? self : this);
