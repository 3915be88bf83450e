import { deepStrictEqual as assertEquals, throws } from "node:assert/strict";
import {
  crc32c,
  encodeEvent,
  eventsFileName,
  eventsFileSeconds,
  maskedCrc32c,
  tfRecord,
} from "./tfevents.ts";

function hex(s: string): Uint8Array {
  return Uint8Array.from(s.match(/../g)!.map((b) => parseInt(b, 16)));
}

Deno.test("crc32c() gives the CRC-32C test vectors of RFC 3720 (B.4) and the check value", () => {
  const ramp = Uint8Array.from({ length: 32 }, (_, i) => i);
  // B.4's iSCSI SCSI Read (10) command PDU.
  const read10 = hex(
    "01c00000" + "00000000".repeat(3) + "14000000" + "00000400" + "00000014" + "00000018" +
      "28000000" + "00000000" + "02000000" + "00000000",
  );
  assertEquals(crc32c(new Uint8Array(32)), 0x8a9136aa);
  assertEquals(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43);
  assertEquals(crc32c(ramp), 0x46dd794e);
  assertEquals(crc32c(ramp.slice().reverse()), 0x113fdb5c);
  assertEquals(crc32c(read10), 0xd9963a56);
  // The catalogue's check value: the CRC of the ASCII digits 1 to 9.
  assertEquals(crc32c(new TextEncoder().encode("123456789")), 0xe3069283);
  assertEquals(crc32c(new Uint8Array(0)), 0);
});

Deno.test("maskedCrc32c() rotates right by 15 and adds 0xa282ead8 modulo 2^32", () => {
  const zeros = new Uint8Array(32);
  const crc = 0x8a9136aa;
  const rotated = ((crc >>> 15) | (crc << 17)) >>> 0;
  assertEquals(maskedCrc32c(zeros), (rotated + 0xa282ead8) % 2 ** 32);
});

Deno.test("tfRecord() frames the data: little-endian uint64 length, its masked CRC, data, data's masked CRC", () => {
  const data = new Uint8Array(300).fill(7);
  const r = tfRecord(data);
  const view = new DataView(r.buffer);
  const littleEndian = true;
  assertEquals(r.length, 8 + 4 + 300 + 4);
  assertEquals([...r.subarray(0, 8)], [0x2c, 0x01, 0, 0, 0, 0, 0, 0]);
  assertEquals(view.getUint32(8, littleEndian), maskedCrc32c(r.subarray(0, 8)));
  assertEquals(r.subarray(12, 312), data);
  assertEquals(view.getUint32(312, littleEndian), maskedCrc32c(data));
});

Deno.test("encodeEvent() writes wall_time, step as a varint, and a summary of tag and float value", () => {
  const e = encodeEvent({
    wallTime: 0.5,
    step: 300,
    payload: { kind: "scalars", values: [{ tag: "a", value: 1 }] },
  });
  // wall_time: key 0x09 and 8 bytes of 0.5; step 300 = 0xac 0x02.
  assertEquals([...e.subarray(0, 9)], [0x09, 0, 0, 0, 0, 0, 0, 0xe0, 0x3f]);
  assertEquals(
    [...e.subarray(9)],
    // summary (5) { value (1) { tag (1) "a", simple_value (2) 1.0f } }
    [0x10, 0xac, 0x02, 0x2a, 10, 0x0a, 8, 0x0a, 1, 0x61, 0x15, 0, 0, 0x80, 0x3f],
  );
});

Deno.test("encodeEvent() refuses a step that is not a non-negative integer", () => {
  for (const step of [-1, 1.5, 2 ** 53]) {
    throws(() => encodeEvent({ wallTime: 0, step, payload: { kind: "sessionStart" } }), RangeError);
  }
});

Deno.test("eventsFileName() and eventsFileSeconds() agree; other names have no second", () => {
  assertEquals(eventsFileSeconds(eventsFileName(1712345678.9, "host.local")), 1712345678);
  assertEquals(eventsFileSeconds("events.out.tfevents.x"), undefined);
  assertEquals(eventsFileSeconds("report.json"), undefined);
});
