/** Flag parsers and the usage error shared by the CLI's commands. */
import { InvalidArgumentError } from 'commander';

/** Thrown for a bad command line; exits with 2 like commander's own usage errors. */
export class UsageError extends Error {}

export function csv(v: string): string[] {
  return v.split(',').map((s) => s.trim()).filter(Boolean);
}

/** For options that may be repeated or comma-separated. */
export function collect(v: string, prev: string[]): string[] {
  return [...prev, ...csv(v)];
}

export function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`'${v}' is not a positive integer`);
  return n;
}

export function positiveNumber(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`'${v}' is not a positive number`);
  return n;
}

export function nonNegativeInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new InvalidArgumentError(`'${v}' is not an integer in [0, 2^32)`);
  return n;
}

export function meanStd(v: string): number[] {
  const t = csv(v).map(Number);
  if ((t.length !== 1 && t.length !== 3) || t.some((x) => !Number.isFinite(x))) throw new InvalidArgumentError(`'${v}' is not one or three comma-separated numbers`);
  return t;
}
