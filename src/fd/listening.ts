/**
 * Start a server or UDP socket and wait for the outcome: resolves at its 'listening' event, rejects at its
 * first 'error' (or if `start` throws). Node reports listen/bind failures only as 'error' events, so every
 * place that listens on an fd needs exactly this.
 */
import type { EventEmitter } from 'node:events';

export function untilListening(emitter: EventEmitter, start: () => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => {
      emitter.off('listening', onListening);
      reject(err);
    };
    const onListening = () => {
      emitter.off('error', onError);
      resolve();
    };
    emitter.once('error', onError);
    emitter.once('listening', onListening);
    try {
      start();
    } catch (err) {
      onError(err as Error);
    }
  });
}
