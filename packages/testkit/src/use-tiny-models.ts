import { beforeAll } from 'vitest';
import { type TinyModel, tinyDynamicNtk, tinyLongRope } from './tiny-models.js';

/** Both tiny models, readable inside tests (they load in the calling file's `beforeAll`). */
export interface TinyModels {
  readonly longrope: TinyModel;
  readonly dynamic: TinyModel;
}

/**
 * Registers a `beforeAll` in the calling test file that loads the LongRoPE and dynamic NTK tiny
 * models once, and returns getters for them. Call it at the top level of the file.
 */
export function useTinyModels(): TinyModels {
  let loaded: TinyModels | undefined;
  beforeAll(async () => {
    const [longrope, dynamic] = await Promise.all([tinyLongRope(), tinyDynamicNtk()]);
    loaded = { longrope, dynamic };
  });
  const get = (): TinyModels => {
    if (loaded === undefined) throw new Error('useTinyModels: the tiny models load in beforeAll; read them inside a test or hook');
    return loaded;
  };
  return {
    get longrope() {
      return get().longrope;
    },
    get dynamic() {
      return get().dynamic;
    },
  };
}
