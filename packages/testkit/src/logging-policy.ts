import type { CachePolicy } from '@ropeswitch/core';

/** A policy named `name` that logs `name>` on entry and `<name` on exit around `next`, into `log`. */
export function logging(name: string, log: string[]): CachePolicy {
  return {
    name,
    async wrapForward({ request, next }) {
      log.push(`${name}>`);
      const out = await next(request);
      log.push(`<${name}`);
      return out;
    },
  };
}
