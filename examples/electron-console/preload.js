// Hands the console's MessagePort from the main process to the page.
'use strict';
const { ipcRenderer } = require('electron');

ipcRenderer.on('vcpu-console', (event) => window.postMessage('vcpu-console', '*', event.ports));
