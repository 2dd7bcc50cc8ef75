/**
 * Framing of logical messages into SEQPACKET records, and their reassembly.
 *
 * A record is one sendmsg: a 4-byte header, up to RECORD_PAYLOAD_MAX bytes of payload, and up to
 * SCM_MAX_FD (253) fds. A logical message of any size or fd count is cut into as many records as it
 * needs; every record but the last has the MORE flag. SEQPACKET keeps records whole and in order, so
 * reassembly is concatenation.
 *
 *   byte 0   0xBA            magic: a stray peer speaking something else is caught on its first record
 *   byte 1   1               framing version
 *   byte 2   flags           bit 0: MORE (another record of this message follows)
 *   byte 3   0               reserved, must be 0
 */
import { batonError, type BatonError } from './errors.js';
import { native } from './native.js';

export const HEADER_SIZE = 4;
export const MAGIC = 0xba;
export const FRAMING_VERSION = 1;
export const FLAG_MORE = 0x01;
/** Payload bytes per record: well under the default socket send buffer, so one record always fits. */
export const RECORD_PAYLOAD_MAX = 64 * 1024;
export const RECORD_FDS_MAX = native.SCM_MAX_FD;

// Headers are immutable and shared: the addon only reads them.
const HEADER_LAST = Buffer.from([MAGIC, FRAMING_VERSION, 0, 0]);
const HEADER_MORE = Buffer.from([MAGIC, FRAMING_VERSION, FLAG_MORE, 0]);

export interface OutRecord {
  header: Buffer;
  payload: Uint8Array | null;
  fds: number[] | null;
}

/** Cut one logical message into records. The common case (small, <= 253 fds) is a single record. */
export function encodeMessage(data: Uint8Array, fds: readonly number[]): OutRecord[] {
  const byBytes = Math.ceil(data.byteLength / RECORD_PAYLOAD_MAX);
  const byFds = Math.ceil(fds.length / RECORD_FDS_MAX);
  const count = Math.max(1, byBytes, byFds);
  if (count === 1) {
    return [
      { header: HEADER_LAST, payload: data.byteLength ? data : null, fds: fds.length ? (fds as number[]) : null },
    ];
  }
  const records: OutRecord[] = new Array(count);
  for (let i = 0; i < count; i++) {
    const payload = data.subarray(i * RECORD_PAYLOAD_MAX, (i + 1) * RECORD_PAYLOAD_MAX);
    const slice = fds.slice(i * RECORD_FDS_MAX, (i + 1) * RECORD_FDS_MAX);
    records[i] = {
      header: i === count - 1 ? HEADER_LAST : HEADER_MORE,
      payload: payload.byteLength ? payload : null,
      fds: slice.length ? slice : null,
    };
  }
  return records;
}

export interface ReassemblyLimits {
  /** Largest logical message accepted, in payload bytes. */
  maxMessageBytes: number;
  /** Most fds accepted in one logical message. */
  maxMessageFds: number;
}

export interface InMessage {
  data: Buffer;
  fds: number[];
}

/**
 * Collects records into messages. It owns the fds of a message until the message is complete; on any
 * error it closes them (and those of the offending record) before throwing, so nothing leaks.
 */
export class Reassembler {
  #parts: Buffer[] = [];
  #bytes = 0;
  #fds: number[] = [];
  readonly #limits: ReassemblyLimits;

  constructor(limits: ReassemblyLimits) {
    this.#limits = limits;
  }

  /** True while a message has started and its last record has not arrived. */
  get partial(): boolean {
    return this.#parts.length > 0;
  }

  /** Add one record; returns the message it completes, or null. Throws a BatonError for bad input. The
   * message takes ownership of `fds` (the array itself may become the message's fds array). */
  push(record: Buffer, fds: number[] | null): InMessage | null {
    if (
      record.length < HEADER_SIZE ||
      record[0] !== MAGIC ||
      record[1] !== FRAMING_VERSION ||
      record[3] !== 0 ||
      (record[2]! & ~FLAG_MORE) !== 0
    ) {
      if (fds) native.closeMany(fds);
      const why =
        record.length < HEADER_SIZE
          ? `a ${record.length}-byte record is shorter than the ${HEADER_SIZE}-byte header`
          : record[0] !== MAGIC
            ? `bad magic byte 0x${record[0]!.toString(16)} (not a baton peer?)`
            : record[1] !== FRAMING_VERSION
              ? `unsupported framing version ${record[1]} (this baton speaks ${FRAMING_VERSION})`
              : 'reserved header bits are set';
      throw this.#fail(
        'ERR_BATON_BAD_RECORD',
        `bad record from peer: ${why}${fds ? `; closed ${fds.length} fds it carried` : ''}`,
      );
    }
    // The common case, a whole message in one record: no copying of fds or parts.
    if (this.#parts.length === 0 && (record[2]! & FLAG_MORE) === 0) {
      const nfds = fds ? fds.length : 0;
      if (record.length - HEADER_SIZE <= this.#limits.maxMessageBytes && nfds <= this.#limits.maxMessageFds) {
        return { data: record.subarray(HEADER_SIZE), fds: fds ?? [] };
      }
    }
    const payload = record.subarray(HEADER_SIZE);
    this.#parts.push(payload);
    this.#bytes += payload.length;
    if (fds) for (const fd of fds) this.#fds.push(fd);
    if (this.#bytes > this.#limits.maxMessageBytes || this.#fds.length > this.#limits.maxMessageFds) {
      throw this.#fail(
        'ERR_BATON_MESSAGE_TOO_LARGE',
        `message from peer exceeds the limit (${this.#bytes} bytes / ${this.#fds.length} fds so far; ` +
          `at most ${this.#limits.maxMessageBytes} bytes and ${this.#limits.maxMessageFds} fds)`,
      );
    }
    if (record[2]! & FLAG_MORE) return null;
    const data = this.#parts.length === 1 ? this.#parts[0]! : Buffer.concat(this.#parts, this.#bytes);
    const out = { data, fds: this.#fds };
    this.#parts = [];
    this.#bytes = 0;
    this.#fds = [];
    return out;
  }

  /** Drop a partial message, closing its fds. Returns how many fds were closed. */
  abort(): number {
    const n = this.#fds.length;
    if (n) native.closeMany(this.#fds);
    this.#parts = [];
    this.#bytes = 0;
    this.#fds = [];
    return n;
  }

  #fail(code: 'ERR_BATON_BAD_RECORD' | 'ERR_BATON_MESSAGE_TOO_LARGE', message: string): BatonError {
    this.abort();
    return batonError(code, message);
  }
}
