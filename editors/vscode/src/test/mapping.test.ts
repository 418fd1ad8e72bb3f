import { test } from 'node:test';
import * as assert from 'node:assert/strict';

import { branchSides, rerunArguments, serverSettings, testsByFile, verdict, workspacePercent, UpdatePayload } from '../mapping';

const update: UpdatePayload = {
  version: 3,
  tests: [
    { id: 'k::tests::b', label: 'b', uri: 'file:///w/src/lib.rs', line: 30, outcome: 'failed', duration_ms: 4, message: 'boom' },
    { id: 'k::tests::a', label: 'a', uri: 'file:///w/src/lib.rs', line: 20, outcome: 'passed', duration_ms: 2, message: null },
    { id: 'api::c', label: 'c', uri: null, line: null, outcome: 'crashed', duration_ms: 9, message: null },
  ],
  files: [
    { uri: 'file:///w/src/lib.rs', covered: 3, coverable: 4, tests: ['k::tests::a'] },
    { uri: 'file:///w/src/other.rs', covered: 0, coverable: 4, tests: [] },
  ],
};

test('outcomes become test run verdicts', () => {
  assert.deepEqual(verdict(update.tests[1]), { kind: 'passed', duration: 2 });
  assert.deepEqual(verdict(update.tests[0]), { kind: 'failed', duration: 4, message: 'boom' });
  assert.deepEqual(verdict(update.tests[2]), { kind: 'errored', duration: 9, message: 'the test process crashed' });
  assert.deepEqual(verdict({ ...update.tests[1], outcome: 'ignored' }), { kind: 'skipped' });
});

test('the workspace percentage sums every file', () => {
  assert.equal(workspacePercent(update), '37.5%');
  assert.equal(workspacePercent({ version: 1, tests: [], files: [] }), '–');
});

test('tests are grouped by file in line order', () => {
  const byFile = testsByFile(update);
  assert.deepEqual(byFile.get('file:///w/src/lib.rs')?.map((t) => t.id), ['k::tests::a', 'k::tests::b']);
  assert.deepEqual(byFile.get('')?.map((t) => t.id), ['api::c']);
});

test('reruns name tests, or all', () => {
  assert.deepEqual(rerunArguments([]), { command: 'coverlay.rerunAll', arguments: [] });
  assert.deepEqual(rerunArguments(['b', 'a', 'b']), { command: 'coverlay.rerunTest', arguments: ['a', 'b'] });
});

test('only server settings are sent to the server', () => {
  const configured: Record<string, unknown> = { severity: 'off', 'server.path': '/x', countCap: 5 };
  assert.deepEqual(serverSettings((key) => configured[key]), { severity: 'off', countCap: 5 });
});

test('branch sides carry their counts and a label per side', () => {
  assert.deepEqual(branchSides([{ construct: 'if', oriented: true, taken: 3, not_taken: 0 }]), [
    { executed: 3, label: '`if` true' },
    { executed: 0, label: '`if` false' },
  ]);
  assert.deepEqual(
    branchSides([
      { construct: 'try', oriented: true, taken: 0, not_taken: 2 },
      { construct: 'if_let', oriented: false, taken: 1, not_taken: 1 },
    ]).map((s) => s.label),
    ['`?` #1 early return', '`?` #1 value', '`let` pattern #2 one', '`let` pattern #2 other'],
  );
  assert.deepEqual(branchSides([]), []);
  assert.deepEqual(
    branchSides([{ construct: 'if', oriented: true, taken: 1, not_taken: 1 }], [
      { arms: [{ line: 13, hits: 2 }, { line: 15, hits: 0 }] },
    ]).slice(2),
    [
      { executed: 2, label: '`match` arm at line 14' },
      { executed: 0, label: '`match` arm at line 16' },
    ],
  );
});
