import { afterEach, expect, it, vi } from 'vitest';

/**
 * An error that is camgpu's bug (not a CamgpuError, or an InternalError) reaches the CLI as
 * one line asking for a report, exit 70; the stack only with --debug or CAMGPU_DEBUG=1.
 * loadModel is replaced by one that throws, since no malformed input may take this path.
 */
const hooks = vi.hoisted(() => ({ error: null as unknown }));

vi.mock('../src/node.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../src/node.js')>();
  return { ...real, loadModel: () => { throw hooks.error; } };
});

const { main } = await import('../tools/cli.js');
const { InternalError } = await import('../src/runtime/errors.js');

async function cli(args: string[]): Promise<{ code: number; lines: string[] }> {
  const lines: string[] = [];
  const spy = vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => {
    lines.push(...a.map(String).join(' ').split('\n'));
  });
  try {
    return { code: await main(args), lines: lines.filter((l) => !/artificially reduced/.test(l)) };
  } finally {
    spy.mockRestore();
  }
}

afterEach(() => {
  delete process.env.CAMGPU_DEBUG;
});

const ARGS = ['run', '--model', 'm.onnx', '--input-npy', 'x.npy'];

it('a plain Error: one line, please report, exit 70, no stack', async () => {
  hooks.error = new TypeError('boom');
  const r = await cli(ARGS);
  expect(r.code).toBe(70);
  expect(r.lines).toEqual([
    'camgpu: internal error [INTERNAL]: during the command: TypeError: boom — this is a bug in camgpu; please report it with the command and the model (rerun with --debug for the stack)',
  ]);
});

it('an InternalError keeps its stage; --debug (anywhere) adds the stack of its cause', async () => {
  hooks.error = new InternalError('import', new RangeError('Invalid array length'));
  const r = await cli([...ARGS.slice(0, 3), '--debug', ...ARGS.slice(3)]);
  expect(r.code).toBe(70);
  expect(r.lines[0]).toBe('camgpu: internal error [INTERNAL]: during import: RangeError: Invalid array length — this is a bug in camgpu; please report it with the command and the model');
  expect(r.lines[1]).toBe('RangeError: Invalid array length');
  expect(r.lines[2]).toMatch(/^\s+at /);
});

it('CAMGPU_DEBUG=1 prints the stack too', async () => {
  hooks.error = new TypeError('boom');
  process.env.CAMGPU_DEBUG = '1';
  const r = await cli(ARGS);
  expect(r.code).toBe(70);
  expect(r.lines[1]).toBe('TypeError: boom');
  expect(r.lines.length).toBeGreaterThan(2);
});
