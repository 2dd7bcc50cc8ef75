/**
 * What an fd is: kind, address family, addresses, blocking mode. Read-only (fstat, fcntl F_GETFL/F_GETFD,
 * getsockopt, getsockname, getpeername): probing never changes the fd.
 */
import { fdOf, type FdSource } from './fd-of.js';
import type { FdInfo } from './fd-info.js';
import { native } from './native.js';

export type { FdAddress, FdInfo, FdKind } from './fd-info.js';

export function probe(source: FdSource): FdInfo {
  return native.probe(fdOf(source));
}
