// The web console's request routing under the fuzzer (scripts/fuzz-web-console.js) for
// 2 s with a fixed seed: its regression corpus first, then mutations. Every answer must
// be one the server documents, and the page must still be served at the end.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { fuzzWebConsole } = require('../scripts/fuzz-web-console');

test('malformed and mutated requests get documented answers and never stop the server', async () => {
  const { inputs, answers } = (await fuzzWebConsole({ seconds: 2, seed: 7 })) as {
    inputs: number;
    answers: Record<string, number>;
  };
  expect(inputs).toBeGreaterThan(100);
  expect(answers['400']).toBeGreaterThan(0);
  expect(answers['200']).toBeGreaterThan(0);
});
