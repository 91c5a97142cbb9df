// Electron: a VM's serial console in a window, over a MessagePort instead of a
// WebSocket (no server, no port, nothing another app can reach). The renderer uses the
// same client as the web page (`web/console.js`) with its MessagePort transport.
//
//   npm install electron vcpu   then   npx electron . path/to/vmlinux
//
// The vcpu runs on a native thread (`LinuxMachine.start` uses the device loop), so the
// main process never blocks.
'use strict';
const path = require('node:path');
const { app, BrowserWindow, MessageChannelMain } = require('electron');
const { bootLinux, ConsoleHub } = require('vcpu');

app.whenReady().then(async () => {
  const kernel = process.argv[process.argv.length - 1];
  const linux = bootLinux({ kernel, memory: '256M' });
  const hub = new ConsoleHub(linux);
  const window = new BrowserWindow({
    width: 900,
    height: 600,
    webPreferences: { preload: path.join(__dirname, 'preload.js'), contextIsolation: true, sandbox: true },
  });
  await window.loadFile(path.join(__dirname, 'index.html'));
  const { port1, port2 } = new MessageChannelMain();
  hub.connect({
    send: (bytes) => port1.postMessage(bytes),
    onData: (callback) => port1.on('message', (event) => callback(event.data)),
  });
  port1.start();
  window.webContents.postMessage('vcpu-console', null, [port2]);
  const exit = await linux.start();
  console.log('guest stopped:', exit.kind);
  hub.close();
  linux.close();
  app.quit();
});
