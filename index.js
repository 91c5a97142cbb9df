// The package root: the TypeScript facade, built into dist/ (`npm run build`).
module.exports = require('./dist/index.js');
