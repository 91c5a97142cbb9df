// The arm64 suite's restored machine, in a process of its own (see linux_cases.js):
// `node restore_child.js PKG SNAPSHOT` restores the Linux machine, asks its shell for a
// variable set before the snapshot, powers it off and prints how it ended.
'use strict';
const [pkg, file] = process.argv.slice(2);
const { restoreLinux } = require(pkg);

const linux = restoreLinux(file);
let text = '';
let asked = false;
linux.output.on('data', (d) => {
  text += d;
  process.stdout.write(d);
  if (!asked && /^restored 47\r?$/m.test(text)) {
    asked = true;
    linux.input.write('poweroff -f\n');
  }
});
linux.input.write('echo restored $((X+6))\n');
linux.start().then((exit) => {
  console.log(`exit ${exit.kind}`);
  linux.close();
});
