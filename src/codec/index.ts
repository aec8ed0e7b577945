/**
 * Encrypted history: a Temporal `PayloadCodec` with AES-256-GCM. With `TANDEM_PAYLOAD_KEY` set, workers, clients,
 * the log reader and the CLI encrypt every payload (workflow input, activity inputs and results, signals, memos)
 * and the message and stack trace of failures; the database and anyone without the key see only ciphertext.
 * Each encrypted payload names its key id, so keys can rotate: the first key encrypts, all listed keys decrypt.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { type DataConverter, type Payload, type PayloadCodec } from '@temporalio/common';
import proto from '@temporalio/proto';
import { TandemError } from '../shared/errors.js';

const { temporal } = proto;

/** `metadata.encoding` of an encrypted payload. */
export const ENCRYPTED_ENCODING = 'binary/encrypted';
/** Metadata key naming the key that encrypted a payload. */
export const KEY_ID_METADATA = 'encryption-key-id';
const CIPHER = 'aes-256-gcm';
const IV_BYTES = 12;
const TAG_BYTES = 16;

/** A key and the id payloads name it by (the first 8 bytes of its SHA-256, in hex). */
export interface PayloadKey {
  id: string;
  key: Buffer;
}

/** A problem with the configured keys; the message says what to do. */
export class PayloadKeyError extends TandemError {}

/** Parses `TANDEM_PAYLOAD_KEY`: comma-separated base64 keys of 32 bytes each; the first one encrypts. */
export function parsePayloadKeys(value: string): PayloadKey[] {
  const keys = value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((b64, i) => {
      const key = Buffer.from(b64, 'base64');
      if (key.length !== 32)
        throw new PayloadKeyError(
          `TANDEM_PAYLOAD_KEY entry ${i + 1} is ${key.length} bytes, not 32; make one with \`openssl rand -base64 32\``,
        );
      return { id: createHash('sha256').update(key).digest('hex').slice(0, 16), key };
    });
  if (keys.length === 0) throw new PayloadKeyError('TANDEM_PAYLOAD_KEY is empty; unset it or give a base64 key of 32 bytes');
  return keys;
}

const utf8 = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array | null | undefined) => (b ? Buffer.from(b).toString('utf8') : '');

/** AES-256-GCM payload codec. Payloads that are not encrypted pass through `decode` unchanged. */
export class AesGcmCodec implements PayloadCodec {
  private readonly byId: Map<string, Buffer>;

  constructor(private readonly keys: PayloadKey[]) {
    this.byId = new Map(keys.map((k) => [k.id, k.key]));
  }

  async encode(payloads: Payload[]): Promise<Payload[]> {
    const { id, key } = this.keys[0]!;
    return payloads.map((p) => {
      const plain = temporal.api.common.v1.Payload.encode(p).finish();
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv(CIPHER, key, iv);
      const data = Buffer.concat([iv, cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
      return { metadata: { encoding: utf8(ENCRYPTED_ENCODING), [KEY_ID_METADATA]: utf8(id) }, data };
    });
  }

  async decode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((p) => this.decodeOne(p));
  }

  private decodeOne(p: Payload): Payload {
    if (text(p.metadata?.encoding) !== ENCRYPTED_ENCODING) return p;
    const id = text(p.metadata?.[KEY_ID_METADATA]);
    const key = this.byId.get(id);
    if (!key)
      throw new PayloadKeyError(`a payload was encrypted with key ${id}, which TANDEM_PAYLOAD_KEY does not list; add that key`);
    const data = Buffer.from(p.data ?? []);
    if (data.length < IV_BYTES + TAG_BYTES) throw new PayloadKeyError('an encrypted payload is too short to be one');
    const decipher = createDecipheriv(CIPHER, key, data.subarray(0, IV_BYTES), { authTagLength: TAG_BYTES });
    decipher.setAuthTag(data.subarray(data.length - TAG_BYTES));
    const plain = Buffer.concat([decipher.update(data.subarray(IV_BYTES, data.length - TAG_BYTES)), decipher.final()]);
    const decoded = temporal.api.common.v1.Payload.decode(plain);
    return { metadata: decoded.metadata ?? {}, data: decoded.data ?? new Uint8Array() };
  }
}

/** The codec configured by `TANDEM_PAYLOAD_KEY`, or undefined when encryption is off. */
export function codecFromEnv(env: NodeJS.ProcessEnv = process.env): AesGcmCodec | undefined {
  return env.TANDEM_PAYLOAD_KEY ? new AesGcmCodec(parsePayloadKeys(env.TANDEM_PAYLOAD_KEY)) : undefined;
}

/** Module path of the failure converter that encrypts failure messages and stack traces (workers and clients). */
export const failureConverterPath = new URL('./failure-converter.cjs', import.meta.url).pathname;

/** The data converter for `codec` (undefined, the default converter, when encryption is off). */
export function tandemDataConverter(codec: PayloadCodec | undefined): DataConverter | undefined {
  return codec ? { payloadCodecs: [codec], failureConverterPath } : undefined;
}

function isPayload(v: unknown): v is Payload {
  return (
    typeof v === 'object' &&
    v !== null &&
    !Array.isArray(v) &&
    !(v instanceof Uint8Array) &&
    'data' in v &&
    'metadata' in v &&
    typeof (v as Payload).metadata === 'object'
  );
}

/**
 * Decodes every payload of raw history events in place with `codecs` (payloads, memo fields, headers and the
 * encoded attributes of failures), then restores the message and stack trace of failures from their encoded
 * attributes. Search attributes are never encoded and are left alone.
 */
export async function decodeHistoryInPlace<T>(events: T[], codecs: PayloadCodec[]): Promise<T[]> {
  if (codecs.length === 0) return events;
  const slots: Array<{ holder: Record<string, unknown> | unknown[]; key: string | number; payload: Payload }> = [];
  const failures: Array<Record<string, unknown>> = [];
  const walk = (v: unknown, parentKey = ''): void => {
    if (!v || typeof v !== 'object' || v instanceof Uint8Array || parentKey === 'searchAttributes') return;
    const entries: Array<[string | number, unknown]> = Array.isArray(v) ? [...v.entries()] : Object.entries(v);
    for (const [k, child] of entries) {
      if (isPayload(child)) slots.push({ holder: v as Record<string, unknown>, key: k, payload: child });
      else walk(child, String(k));
    }
    if (!Array.isArray(v) && 'encodedAttributes' in v && (v as Record<string, unknown>).encodedAttributes)
      failures.push(v as Record<string, unknown>);
  };
  walk(events);
  let payloads = slots.map((s) => s.payload);
  for (const codec of [...codecs].reverse()) payloads = await codec.decode(payloads);
  slots.forEach((s, i) => ((s.holder as Record<string | number, unknown>)[s.key] = payloads[i]));
  for (const f of failures) {
    try {
      const attrs = JSON.parse(text((f.encodedAttributes as Payload).data)) as { message?: string; stack_trace?: string };
      if (typeof attrs.message === 'string') f.message = attrs.message;
      if (typeof attrs.stack_trace === 'string') f.stackTrace = attrs.stack_trace;
    } catch {
      // not JSON: leave the failure as it is
    }
  }
  return events;
}
