/**
 * The sockets sluice's Kafka clients connect with. Node hands a socket's
 * reads over as a fresh 64 KiB buffer each, which kafkajs collects and then
 * concatenates into one response: a 3 MiB fetch cost some fifty allocations,
 * a copy, and garbage the collector must find. Here every read lands in one
 * buffer reused for the socket's life (Node's `onread`), and each response is
 * copied once, straight into a buffer of its own size, and handed to kafkajs
 * whole, as one `data` event.
 */
import { createRequire } from 'node:module';
import net from 'node:net';
import type { ISocketFactory } from 'kafkajs';

/** The size of the buffer each socket reads into. */
const READ_BUFFER_BYTES = 65_536;
const SIZE_BYTES = 4;
/**
 * More than any response sluice asks for (a fetch is at most 10 MiB, or one
 * record batch more): a larger size means the peer is not a Kafka broker
 * (an HTTP server's "HTTP" reads as 1.2 GB), and is refused, not allocated.
 */
export const MAX_FRAME_BYTES = 256 * 1024 * 1024;
/** kafkajs's own keep-alive. */
const KEEP_ALIVE_DELAY_MS = 60_000;

/**
 * Cuts a stream of Kafka responses (each a 4-byte big-endian size, then that
 * many bytes) into whole frames, size included, as kafkajs reads them. The
 * bytes passed to push() may be overwritten once it returns: each frame is
 * copied out.
 */
export class FrameAssembler {
  readonly #onFrame: (frame: Buffer) => void;
  /** The frame being filled, once its size is known. */
  #frame: Buffer | null = null;
  #filled = 0;
  /** The size of the next frame, as far as it has arrived. */
  readonly #size = Buffer.alloc(SIZE_BYTES);
  #sizeFilled = 0;

  constructor(onFrame: (frame: Buffer) => void) {
    this.#onFrame = onFrame;
  }

  /**
   * Takes `bytes`, handing over each frame they complete. Returns null, or the
   * problem when a frame's size is impossible (the peer is not a Kafka broker,
   * or the stream is corrupt): nothing can be read after that.
   */
  push(bytes: Uint8Array): string | null {
    let at = 0;
    while (at < bytes.length) {
      if (this.#frame === null) {
        // The size first (it may be split across reads), then a frame of that size, which starts with it.
        const take = Math.min(SIZE_BYTES - this.#sizeFilled, bytes.length - at);
        this.#size.set(bytes.subarray(at, at + take), this.#sizeFilled);
        this.#sizeFilled += take;
        at += take;
        if (this.#sizeFilled < SIZE_BYTES) return null;
        this.#sizeFilled = 0;
        const problem = this.#start(this.#size.readInt32BE(0));
        if (problem !== null) return problem;
      }
      const frame = this.#frame!;
      const take = Math.min(frame.length - this.#filled, bytes.length - at);
      frame.set(bytes.subarray(at, at + take), this.#filled);
      this.#filled += take;
      at += take;
      if (this.#filled === frame.length) {
        this.#frame = null;
        this.#onFrame(frame);
      }
    }
    return null;
  }

  #start(size: number): string | null {
    if (size < 0 || size > MAX_FRAME_BYTES) {
      return `a response declared a size of ${size} bytes, which no Kafka response has: is the address a Kafka broker's listener?`;
    }
    this.#frame = Buffer.allocUnsafe(SIZE_BYTES + size);
    this.#frame.set(this.#size, 0);
    this.#filled = SIZE_BYTES;
    return null;
  }
}

/** kafkajs's own socket factory: sluice's for TLS connections, and bench/fetch.ts's yardstick. */
export const kafkajsSocketFactory: ISocketFactory = createRequire(import.meta.url)('kafkajs/src/network/socketFactory')();

/**
 * kafkajs's socket factory, reading through a FrameAssembler. TLS sockets
 * (which sluice does not open today) are made by kafkajs's own factory.
 */
export const framedSocketFactory: ISocketFactory = (args) => {
  if (args.ssl) return kafkajsSocketFactory(args);
  const { host, port, onConnect } = args;
  const frames = new FrameAssembler((frame) => socket.emit('data', frame));
  const socket: net.Socket = net.connect(
    {
      host,
      port,
      onread: {
        buffer: Buffer.allocUnsafe(READ_BUFFER_BYTES),
        callback: (bytesRead, buffer) => {
          const problem = frames.push(buffer.subarray(0, bytesRead));
          if (problem !== null) socket.destroy(new Error(problem));
          return true; // keep reading
        },
      },
    },
    onConnect,
  );
  socket.setKeepAlive(true, KEEP_ALIVE_DELAY_MS);
  return socket;
};
