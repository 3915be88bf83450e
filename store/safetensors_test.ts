import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import * as E from "fp-ts/lib/Either.js";
import { decodeSafetensors, encodeSafetensors, LITTLE_ENDIAN } from "./safetensors.ts";
import {
  DTYPE_BYTES,
  type RawTensor,
  type TensorInput,
  tensorToFloat32,
  tensorValues,
} from "./tensor_data.ts";

const enc = new TextEncoder();

/** The handmade file: every byte spelled out here, independent of the encoder. */
function handmadeFile(): Uint8Array {
  const json = '{"__metadata__":{"format":"pt"},' +
    '"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},' +
    '"b":{"dtype":"F16","shape":[1,2],"data_offsets":[8,12]}}';
  assertEquals(json.length, 141);
  return new Uint8Array([
    // header length 144 (141 bytes of JSON + 3 spaces), u64 little-endian
    0x90,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    ...enc.encode(json),
    0x20,
    0x20,
    0x20,
    // a = [1.0, -2.0] as F32 little-endian
    0x00,
    0x00,
    0x80,
    0x3f,
    0x00,
    0x00,
    0x00,
    0xc0,
    // b = [[1.0, 0.5]] as F16 little-endian
    0x00,
    0x3c,
    0x00,
    0x38,
  ]);
}

/** Builds a file around a header string and a data section, for the rejection tests. */
function fileWith(json: string, dataLength: number): Uint8Array {
  const body = enc.encode(json);
  const out = new Uint8Array(8 + body.length + dataLength);
  new DataView(out.buffer).setBigUint64(0, BigInt(body.length), LITTLE_ENDIAN);
  out.set(body, 8);
  return out;
}

function errorOf(bytes: Uint8Array): string {
  const r = decodeSafetensors(bytes, "m.safetensors");
  assert(E.isLeft(r), "expected a decode error");
  assertEquals(r.left.path, "m.safetensors");
  return r.left.message;
}

Deno.test("decodeSafetensors() reads a file built byte by byte", () => {
  const r = decodeSafetensors(handmadeFile(), "hand.safetensors");
  assert(E.isRight(r));
  assertEquals(r.right.header.metadata, { format: "pt" });
  assertEquals(r.right.header.dataStart, 152);
  assertEquals(r.right.header.tensors.map(([n]) => n), ["a", "b"]);
  const a = r.right.tensors.get("a")!;
  assertEquals(a.shape, [2]);
  assertEquals(Array.from(tensorValues(a) as Float32Array), [1, -2]);
  const b = tensorToFloat32(r.right.tensors.get("b")!, "b");
  assert(E.isRight(b));
  assertEquals(Array.from(b.right), [1, 0.5]);
});

Deno.test("encodeSafetensors() produces exactly the handmade bytes", () => {
  const r = encodeSafetensors({
    b: { dtype: "F16", shape: [1, 2], data: new Float32Array([1, 0.5]) },
    a: { dtype: "F32", shape: [2], data: new Float32Array([1, -2]) },
  }, { format: "pt" });
  assert(E.isRight(r));
  assertEquals(Array.from(r.right), Array.from(handmadeFile()));
});

Deno.test("encodeSafetensors() round-trips every dtype and aligns each tensor to its element size", () => {
  const inputs: Record<string, TensorInput> = {
    f64: { dtype: "F64", shape: [2], data: new Float64Array([1.5, -1e300]) },
    f32: { dtype: "F32", shape: [3], data: new Float32Array([0.1, 2, -3]) },
    bf16: { dtype: "BF16", shape: [2], data: new Uint16Array([0x3f80, 0xc000]) },
    i64: { dtype: "I64", shape: [1], data: new BigInt64Array([-(2n ** 62n)]) },
    i32: { dtype: "I32", shape: [2, 1], data: new Int32Array([-7, 2 ** 31 - 1]) },
    i16: { dtype: "I16", shape: [1], data: new Int16Array([-300]) },
    i8: { dtype: "I8", shape: [1], data: new Int8Array([-5]) },
    u64: { dtype: "U64", shape: [1], data: new BigUint64Array([2n ** 63n]) },
    u32: { dtype: "U32", shape: [1], data: new Uint32Array([4e9]) },
    u16: { dtype: "U16", shape: [1], data: new Uint16Array([65535]) },
    u8: { dtype: "U8", shape: [3], data: new Uint8Array([1, 2, 255]) },
    flag: { dtype: "BOOL", shape: [1], data: new Uint8Array([1]) },
    empty: { dtype: "F32", shape: [0, 4], data: new Float32Array(0) },
    scalar: { dtype: "F32", shape: [], data: new Float32Array([9]) },
  };
  const bytes = encodeSafetensors(inputs, { step: "3" });
  assert(E.isRight(bytes));
  const back = decodeSafetensors(bytes.right, "all");
  assert(E.isRight(back));
  assertEquals(back.right.header.dataStart % 8, 0);
  for (const [name, input] of Object.entries(inputs)) {
    const raw: RawTensor = back.right.tensors.get(name)!;
    assertEquals(raw.dtype, input.dtype, name);
    assertEquals(raw.shape, input.shape, name);
    const values = input.dtype === "BF16" ? [1, -2] : Array.from(input.data as ArrayLike<number>);
    assertEquals(
      Array.from(tensorValues(raw) as ArrayLike<number>),
      values.map((v) => input.dtype === "F32" ? Math.fround(v) : v),
      name,
    );
  }
  // Offsets: elements of size k start at a multiple of k (largest dtype first).
  for (const [name, info] of back.right.header.tensors) {
    assertEquals(info.begin % DTYPE_BYTES[info.dtype], 0, name);
  }
});

Deno.test("encodeSafetensors() rejects mismatched data, unknown dtypes and reserved names", () => {
  const wrongCount = encodeSafetensors({
    w: { dtype: "F32", shape: [3], data: new Float32Array(2) },
  });
  assert(E.isLeft(wrongCount) && /3 elements, data has 2/.test(wrongCount.left.message));
  const wrongType = encodeSafetensors({
    w: { dtype: "I32", shape: [1], data: new Float32Array(1) },
  });
  assert(E.isLeft(wrongType) && /needs a Int32Array/.test(wrongType.left.message));
  const unknown = encodeSafetensors({
    w: { dtype: "F8" as "F32", shape: [1], data: new Float32Array(1) },
  });
  assert(E.isLeft(unknown) && /unknown dtype "F8"/.test(unknown.left.message));
  const reserved = encodeSafetensors({
    __metadata__: { dtype: "U8", shape: [0], data: new Uint8Array(0) },
  });
  assert(E.isLeft(reserved) && /reserved/.test(reserved.left.message));
});

Deno.test("decodeSafetensors() rejects truncated files and header lengths past the end", () => {
  assert(/Truncated safetensors file: 5 bytes/.test(errorOf(new Uint8Array(5))));
  const good = handmadeFile();
  assert(
    /Header length 144 runs past the end of the file \(100 bytes\)/.test(
      errorOf(good.subarray(0, 100)),
    ),
  );
  // Cutting the data section leaves the header intact but the tensors out of range.
  assert(
    /Tensor "b" ends at 12, past the 10-byte data section/.test(
      errorOf(good.subarray(0, good.length - 2)),
    ),
  );
  const huge = new Uint8Array(16);
  new DataView(huge.buffer).setBigUint64(0, 2n ** 63n, LITTLE_ENDIAN);
  assert(/runs past the end/.test(errorOf(huge)));
});

Deno.test("decodeSafetensors() rejects bad JSON, unknown dtypes and sizes that do not match the shape", () => {
  assert(/Header is not valid JSON/.test(errorOf(fileWith("{not json", 0))));
  assert(/Header is not a JSON object/.test(errorOf(fileWith("[1,2]   ", 0))));
  assert(
    /Tensor "w": unknown dtype "Q4"/.test(
      errorOf(fileWith('{"w":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}}', 1)),
    ),
  );
  assert(
    /Tensor "w": holds 6 bytes but F32 × \[2\] needs 8/.test(
      errorOf(fileWith('{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,6]}}', 6)),
    ),
  );
  assert(
    /shape \[-1\] has a bad dimension/.test(
      errorOf(fileWith('{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}}', 0)),
    ),
  );
  assert(
    /__metadata__ must map strings to strings/.test(
      errorOf(fileWith('{"__metadata__":{"step":3}}', 0)),
    ),
  );
});

Deno.test("decodeSafetensors() rejects overlapping, gapped and out-of-range offsets", () => {
  const overlap = '{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},' +
    '"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}';
  assert(/Tensor "b" at \[2, 6\) overlaps "a"/.test(errorOf(fileWith(overlap, 6))));
  const gap = '{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},' +
    '"b":{"dtype":"U8","shape":[2],"data_offsets":[4,6]}}';
  assert(/Gap of 2 bytes before tensor "b"/.test(errorOf(fileWith(gap, 6))));
  const beyond = '{"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}}';
  assert(/Tensor "a" ends at 8, past the 4-byte data section/.test(errorOf(fileWith(beyond, 4))));
  const trailing = '{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}';
  assert(/Data section is 5 bytes but the tensors cover 2/.test(errorOf(fileWith(trailing, 5))));
  const backwards = '{"a":{"dtype":"U8","shape":[0],"data_offsets":[3,0]}}';
  assert(/end before they begin/.test(errorOf(fileWith(backwards, 3))));
});
