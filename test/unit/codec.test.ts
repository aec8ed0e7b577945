import { randomBytes } from 'node:crypto';
import { defaultPayloadConverter } from '@temporalio/common';
import { describe, expect, it } from 'vitest';
import { AesGcmCodec, decodeHistoryInPlace, parsePayloadKeys, PayloadKeyError } from '../../src/codec/index.js';

const k1 = randomBytes(32).toString('base64');
const k2 = randomBytes(32).toString('base64');

describe('payload codec', () => {
  it('encrypts with the first key, names it, and decrypts with any listed key', async () => {
    const payload = defaultPayloadConverter.toPayload({ output: 'tool output here' });
    const [enc] = await new AesGcmCodec(parsePayloadKeys(k1)).encode([payload]);
    expect(Buffer.from(enc!.metadata!.encoding!).toString()).toBe('binary/encrypted');
    expect(Buffer.from(enc!.data!).toString('latin1')).not.toContain('tool output');
    // Rotated: k2 encrypts now, k1 still decrypts the old payload.
    const rotated = new AesGcmCodec(parsePayloadKeys(`${k2},${k1}`));
    const [dec] = await rotated.decode([enc!]);
    expect(defaultPayloadConverter.fromPayload(dec!)).toEqual({ output: 'tool output here' });
    const [plain] = await rotated.decode([payload]);
    expect(plain).toBe(payload); // unencrypted payloads pass through
    await expect(new AesGcmCodec(parsePayloadKeys(k2)).decode([enc!])).rejects.toThrow(PayloadKeyError);
    // One byte changed (flipped: setting it to a fixed value would leave it as it was once in 256 runs).
    const flipped = Buffer.from(enc!.data!);
    flipped[20] = flipped[20]! ^ 0xff;
    const tampered = { ...enc!, data: flipped };
    await expect(rotated.decode([tampered])).rejects.toThrow();
    // A payload cut short, down to a few bytes of tag, is refused rather than checked against a shorter tag.
    const cut = { ...enc!, data: Buffer.from(enc!.data!).subarray(0, 20) };
    await expect(rotated.decode([cut])).rejects.toThrow(/too short/);
  });

  it('refuses keys that are not 32 bytes', () => {
    expect(() => parsePayloadKeys(randomBytes(16).toString('base64'))).toThrow(/16 bytes, not 32.*openssl rand -base64 32/);
  });

  it('decodes every payload of a raw history and restores encoded failure messages', async () => {
    const codec = new AesGcmCodec(parsePayloadKeys(k1));
    const [input, attrs, memo] = await codec.encode([
      defaultPayloadConverter.toPayload({ agent: 'a' }),
      defaultPayloadConverter.toPayload({ message: 'clone failed', stack_trace: 'at x' }),
      defaultPayloadConverter.toPayload({ type: 'session.error' }),
    ]);
    const events = [
      { workflowExecutionStartedEventAttributes: { input: { payloads: [input] } } },
      { activityTaskFailedEventAttributes: { failure: { message: 'Encoded failure', encodedAttributes: attrs } } },
      { workflowPropertiesModifiedEventAttributes: { upsertedMemo: { fields: { tandem_event: memo } } } },
    ];
    await decodeHistoryInPlace(events, [codec]);
    expect(defaultPayloadConverter.fromPayload(events[0]!.workflowExecutionStartedEventAttributes!.input.payloads[0]!)).toEqual({ agent: 'a' });
    expect(events[1]!.activityTaskFailedEventAttributes!.failure).toMatchObject({ message: 'clone failed', stackTrace: 'at x' });
    expect(defaultPayloadConverter.fromPayload(events[2]!.workflowPropertiesModifiedEventAttributes!.upsertedMemo.fields.tandem_event!)).toEqual({
      type: 'session.error',
    });
  });
});
