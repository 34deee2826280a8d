import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const LOADER = 'libvulkan.so.1';
const LIBRARY_DIRS = ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/lib', '/lib/x86_64-linux-gnu', '/lib64', '/usr/local/lib'];

/**
 * Whether Dawn's Vulkan backend can load the Vulkan loader. On Linux Dawn dlopens `libvulkan.so.1`
 * and, when it is missing, prints a warning with a source location to stderr on every probe; on a
 * machine without it (no GPU driver) the `auto` device search skips straight to the software path.
 * Other platforms use Metal / D3D12: always true there.
 */
export function vulkanLoaderPresent(): boolean {
  if (process.platform !== 'linux') return true;
  const dirs = [...(process.env['LD_LIBRARY_PATH'] ?? '').split(':').filter(Boolean), ...LIBRARY_DIRS];
  if (dirs.some((dir) => existsSync(join(dir, LOADER)))) return true;
  try {
    // The dynamic linker's cache lists every library the system knows, by name.
    return readFileSync('/etc/ld.so.cache').includes(LOADER);
  } catch {
    return false;
  }
}
