import { RopeswitchError } from '@ropeswitch/core';
import { benchCommand, benchUsage } from './commands/bench.js';
import { demoCommand, demoUsage } from './commands/demo.js';
import { generateCommand, generateUsage } from './commands/generate.js';
import { logitsCommand, logitsUsage } from './commands/logits.js';
import { makeModelCommand, makeModelUsage } from './commands/make-model.js';
import { makeTinyCommand, makeTinyUsage } from './commands/make-tiny.js';
import { quoted } from './args.js';
import type { CommandIO } from './io.js';
import { UsageError } from './usage-error.js';

const COMMANDS: Record<string, (argv: string[], io: CommandIO) => Promise<void>> = {
  demo: demoCommand,
  'make-tiny': makeTinyCommand,
  'make-model': makeModelCommand,
  logits: logitsCommand,
  generate: generateCommand,
  bench: benchCommand,
};

export const usage = ['usage:', demoUsage, makeTinyUsage, makeModelUsage, logitsUsage, generateUsage, benchUsage].join('\n  ');

/**
 * Runs one `ropeswitch` command line and returns its exit code: 0 on success, 2 for a usage
 * error, 1 for any other failure. Errors are one line on stderr, without a stack trace unless
 * `ROPESWITCH_DEBUG` is set.
 */
export async function main(argv: string[], io: CommandIO): Promise<number> {
  const [name, ...rest] = argv;
  if (name === '--help' || name === '-h' || name === 'help') {
    io.stdout(`${usage}\n`);
    return 0;
  }
  const command = name !== undefined && Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  try {
    const known = `commands: ${Object.keys(COMMANDS).join(', ')}; see ropeswitch --help`;
    if (name === undefined) throw new UsageError(`no command given (${known})`);
    if (!command) throw new UsageError(`unknown command ${quoted(name)} (${known})`);
    await command(rest, io);
    return 0;
  } catch (error) {
    if (process.env.ROPESWITCH_DEBUG && error instanceof Error) io.stderr(`${error.stack}\n`);
    if (error instanceof UsageError) {
      io.stderr(`ropeswitch: ${error.message}\n`);
      return 2;
    }
    const message = error instanceof RopeswitchError ? error.message : `unexpected error: ${(error as Error)?.message ?? String(error)}`;
    io.stderr(`ropeswitch: ${message.split('\n')[0]}\n`);
    return 1;
  }
}
