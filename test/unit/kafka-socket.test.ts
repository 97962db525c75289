/**
 * The Kafka clients' sockets (connectors/kafka/socket.ts): every read lands in
 * one reused buffer and each response reaches kafkajs whole, copied once.
 * The assembler is driven byte by byte here, and the socket against a real
 * TCP server; every integration test runs the clients over these sockets.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createRequire } from 'node:module';
import net from 'node:net';
import { describe, it } from 'node:test';
import tls from 'node:tls';
import { FrameAssembler, framedSocketFactory, MAX_FRAME_BYTES } from '../../connectors/kafka/socket.ts';
import { createRng } from '../../lib/prng.ts';

const require = createRequire(import.meta.url);
const Connection = require('kafkajs/src/network/connection');

/** A response as the broker frames it: its size, then its bytes. */
function frameOf(payload: Buffer): Buffer {
  const size = Buffer.alloc(4);
  size.writeInt32BE(payload.length);
  return Buffer.concat([size, payload]);
}

function payloadOf(length: number, seed: number): Buffer {
  const rng = createRng(seed);
  return Buffer.from(Array.from({ length }, () => rng.int(0, 255)));
}

/** Pushes `stream` through an assembler in pieces cut at `cuts`, scribbling over each piece once pushed, as the socket's reused buffer is. */
function assemble(stream: Buffer, cuts: number[]): { frames: Buffer[]; problem: string | null } {
  const frames: Buffer[] = [];
  const assembler = new FrameAssembler((frame) => frames.push(frame));
  const reused = Buffer.alloc(stream.length);
  let problem: string | null = null;
  for (let i = 0, from = 0; i <= cuts.length && problem === null; i++) {
    const to = cuts[i] ?? stream.length;
    const piece = reused.subarray(0, to - from);
    stream.copy(piece, 0, from, to);
    problem = assembler.push(piece);
    piece.fill(0xee);
    from = to;
  }
  return { frames, problem };
}

describe('Kafka sockets: responses cut into whole frames', () => {
  const payloads = [payloadOf(9, 1), payloadOf(0, 2), payloadOf(300, 3), payloadOf(5, 4)];
  const stream = Buffer.concat(payloads.map(frameOf));

  it('hands over every response whole and intact, wherever the reads split it, sizes included', () => {
    for (let cut = 1; cut < stream.length; cut++) {
      for (const cuts of [[cut], [cut, Math.min(stream.length, cut + 1)], [cut, Math.min(stream.length, cut + 3)]]) {
        const { frames, problem } = assemble(stream, cuts);
        assert.equal(problem, null);
        assert.deepEqual(
          frames,
          payloads.map(frameOf),
          `cut at ${cuts.join(', ')}`,
        );
      }
    }
  });

  it('hands over responses that arrive in one read, and one read byte by byte', () => {
    assert.deepEqual(assemble(stream, []).frames, payloads.map(frameOf));
    const everyByte = Array.from({ length: stream.length - 1 }, (_, i) => i + 1);
    assert.deepEqual(assemble(stream, everyByte).frames, payloads.map(frameOf));
  });

  it('keeps a response that has not fully arrived until the rest does', () => {
    const { frames, problem } = assemble(stream.subarray(0, stream.length - 1), [20]);
    assert.equal(problem, null);
    assert.deepEqual(frames, payloads.slice(0, -1).map(frameOf));
    const whole = assemble(stream, [20, stream.length - 1]);
    assert.equal(whole.problem, null);
    assert.deepEqual(whole.frames, payloads.map(frameOf), 'the last response, once its last byte arrives');
  });

  it('refuses a size no Kafka response has, whether split across reads or not, naming the likely cause', () => {
    const http = Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n');
    for (const cuts of [[], [2]]) {
      const { frames, problem } = assemble(http, cuts);
      assert.equal(frames.length, 0);
      assert.match(problem ?? '', /size of 1213486160 bytes.*Kafka broker's listener/);
    }
    const negative = Buffer.from([0xff, 0xff, 0xff, 0xfe, 1, 2]);
    assert.match(assemble(negative, []).problem ?? '', /size of -2 bytes/);
    const oversized = Buffer.alloc(4);
    oversized.writeInt32BE(MAX_FRAME_BYTES + 1);
    assert.match(assemble(oversized, []).problem ?? '', /which no Kafka response has/);
  });
});

describe('Kafka sockets: on a real connection', () => {
  async function server(onConnection: (socket: net.Socket) => void): Promise<{ port: number; close(): void }> {
    const listener = net.createServer(onConnection);
    listener.listen(0, '127.0.0.1');
    await once(listener, 'listening');
    return { port: (listener.address() as net.AddressInfo).port, close: () => listener.close() };
  }

  it('emits each response whole, then the end of the connection', async () => {
    const payloads = [payloadOf(70_000, 5), payloadOf(12, 6), payloadOf(200_000, 7)];
    const stream = Buffer.concat(payloads.map(frameOf));
    const peer = await server((socket) => {
      // Written in pieces that straddle the frames and the 64 KiB read buffer.
      for (let at = 0; at < stream.length; at += 50_001) socket.write(stream.subarray(at, at + 50_001));
      socket.end();
    });
    try {
      const socket = framedSocketFactory({ host: '127.0.0.1', port: peer.port, ssl: false as never, onConnect: () => {} });
      const frames: Buffer[] = [];
      socket.on('data', (frame: Buffer) => frames.push(frame));
      await once(socket, 'end');
      socket.destroy();
      assert.deepEqual(frames, payloads.map(frameOf));
    } finally {
      peer.close();
    }
  });

  it('closes the connection with an error naming the problem when the peer is not a Kafka broker', async () => {
    const peer = await server((socket) => socket.end('HTTP/1.1 400 Bad Request\r\n\r\n'));
    try {
      const socket = framedSocketFactory({ host: '127.0.0.1', port: peer.port, ssl: false as never, onConnect: () => {} });
      const [error] = (await once(socket, 'error')) as [Error];
      assert.match(error.message, /is the address a Kafka broker's listener\?/);
    } finally {
      peer.close();
    }
  });
});

describe('Kafka sockets: TLS', () => {
  it('leaves TLS connections to kafkajs\'s own sockets', async () => {
    const peer = net.createServer((socket) => socket.destroy());
    peer.listen(0, '127.0.0.1');
    await once(peer, 'listening');
    try {
      const port = (peer.address() as net.AddressInfo).port;
      const socket = framedSocketFactory({ host: '127.0.0.1', port, ssl: { rejectUnauthorized: false }, onConnect: () => {} });
      socket.on('error', () => {});
      assert.ok(socket instanceof tls.TLSSocket);
      socket.destroy();
    } finally {
      peer.close();
    }
  });
});

describe('kafkajs patch: a response that arrives whole is not copied', () => {
  it('reads a whole frame in place, and keeps no empty remainder that would make the next one a concatenation', () => {
    const connection = new Connection({ host: 'localhost', port: 9092, logger: { namespace: () => ({ debug() {}, info() {}, warn() {}, error() {} }) } });
    const fulfilled: Array<{ correlationId: number; payload: Buffer }> = [];
    connection.requestQueue = { fulfillRequest: (response: { correlationId: number; payload: Buffer }) => fulfilled.push(response) };
    const frames = [1, 2].map((correlationId) => {
      const body = Buffer.alloc(8);
      body.writeInt32BE(correlationId);
      body.writeInt32BE(100 + correlationId, 4);
      const frame = Buffer.allocUnsafeSlow(12); // a memory of its own, as the socket's frames have
      frameOf(body).copy(frame);
      return frame;
    });
    for (const frame of frames) connection.processData(frame);
    assert.deepEqual(
      fulfilled.map((response) => [response.correlationId, response.payload.readInt32BE(0)]),
      [
        [1, 101],
        [2, 102],
      ],
    );
    for (const [i, response] of fulfilled.entries()) assert.equal(response.payload.buffer, frames[i]!.buffer, `response ${i + 1} is a view of its frame`);
  });
});
