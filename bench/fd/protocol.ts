/**
 * What the bench:fd sender and receiver say to each other, the same as bench/fd/baseline.c: every message
 * has a 16-byte payload (after baton's own 4-byte record header) whose first byte is a tag.
 *
 *   'D'  a measured message, carrying the fds
 *   'E'  end of a round (no fds): the receiver answers 'R' with the number of 'D' messages it got,
 *        as a little-endian uint32 at offset 8
 */
export const PAYLOAD_SIZE = 16;
export const TAG_DATA = 0x44; // 'D'
export const TAG_END = 0x45; // 'E'
export const TAG_REPLY = 0x52; // 'R'

export function payload(tag: number, count = 0): Buffer {
  const b = Buffer.alloc(PAYLOAD_SIZE, 'x');
  b[0] = tag;
  b.writeUInt32LE(count, 8);
  return b;
}

export interface RoundResult {
  messages: number;
  seconds: number;
  messagesPerSec: number;
  fdsPerSec: number;
  capped: boolean;
}

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}
