/** Whether a descriptor of this process is open (fstat answers), for tests of descriptors kept between uses. */
import fs from 'node:fs';

export function isOpen(fd: number): boolean {
  try {
    fs.fstatSync(fd);
    return true;
  } catch {
    return false;
  }
}
