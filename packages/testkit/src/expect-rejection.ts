/** Rejection of `promise`, checked to be an `errorClass` (with `code` when given). */
export async function expectRejection<E extends Error>(
  promise: Promise<unknown>,
  errorClass: abstract new (...args: never[]) => E,
  code?: string,
): Promise<E> {
  let caught: unknown;
  let settled = false;
  try {
    await promise;
    settled = true;
  } catch (err) {
    caught = err;
  }
  if (settled) throw new Error(`expected a ${errorClass.name}, but the promise resolved`);
  if (!(caught instanceof errorClass)) throw new Error(`expected a ${errorClass.name}, got ${String(caught)}`, { cause: caught });
  if (code !== undefined && (caught as unknown as { code?: string }).code !== code) {
    throw new Error(`expected code ${code}, got ${(caught as unknown as { code?: string }).code}: ${caught.message}`, { cause: caught });
  }
  return caught;
}
