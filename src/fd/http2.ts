/**
 * HTTP/2's graceful shutdown notice sent by nghttp2 itself (native/http2.c), the native half of the two-phase
 * GOAWAY in src/integrations/http.ts; the Node-side internals it needs are in src/integrations/internals.ts.
 *
 * Why nghttp2 has to send it. session.goaway(0, 2 ** 31 - 1) puts the right frame on the wire, but nghttp2
 * then sets NGHTTP2_GOAWAY_SENT and ignores every stream the client opens afterwards
 * (session_allow_incoming_new_stream() in nghttp2_session.c), so they are refused anyway. The one frame
 * nghttp2 exempts is the one nghttp2_submit_shutdown_notice() queues, and Node does not bind that function.
 *
 * Why not write the frame to the socket from JavaScript (what baton did for h2c before this, and still does
 * where this is unavailable). The Http2Session consumes its socket's stream from C++: it pushes itself onto
 * the StreamBase's listeners (Http2Session::Consume), so the completion of ANY write on that stream goes to
 * Http2Session::OnStreamAfterWrite, which takes it for its own write in progress (clears that state and its
 * outgoing buffers) — and the JavaScript write's own callback is never called. On a plain TCP socket a small
 * write usually completes synchronously (StreamBase::Write tries uv_try_write first), so no completion is
 * delivered and nothing is confused; a TLSSocket's TLSWrap::DoWrite always completes asynchronously (after the
 * encrypted bytes are written to the TCP stream beneath), so the completion always goes to the Http2Session.
 * Measured: the session stalled and the old generation did not drain within 30 s. Even on TCP the raw write
 * is only safe while the kernel takes the bytes at once (with the send buffer full, or a write of the session
 * queued in libuv, it goes asynchronous too).
 *
 * Other routes, measured or read and rejected (Node 20.20, 22.23, 24.21):
 * - Running the session over a JavaScript stream (Node wraps a non-StreamBase socket in JSStreamSocket) so
 *   the frame can be put between whole writes: every byte of every session would then cross into JavaScript
 *   and back, for one frame per reload; not pursued once the native notice worked.
 * - A Node binding that sends a GOAWAY without GOAWAY_SENT: none. Http2Session's bindings are goaway()
 *   (nghttp2_submit_goaway), ping, settings, altsvc and origin; ALTSVC/ORIGIN frames cannot carry a GOAWAY.
 */
import { native } from './native.js';

/** The settings ids the native side compares (SETTINGS_HEADER_TABLE_SIZE .. SETTINGS_MAX_HEADER_LIST_SIZE). */
export const HTTP2_CHECKED_SETTINGS = 6;

/**
 * Queue nghttp2's shutdown notice on the nghttp2 session under `handle`, the native handle of a server
 * Http2Session. `local` and `remote` are that session's settings as Node reports them (ids 1-6, in order):
 * the native side finds the nghttp2_session by following pointers it checks with reads that cannot fault,
 * and acts only on the one whose own settings match these. Returns 'submitted', or a sentence saying why
 * nothing was done ('unsupported: …' when this Node or system lacks what it needs, 'not found: …'); never
 * throws for those. Node sends the frame with its next batch of frames.
 */
export function http2ShutdownNotice(handle: object, local: Uint32Array, remote: Uint32Array): string {
  return native.http2ShutdownNotice(handle, local, remote);
}
