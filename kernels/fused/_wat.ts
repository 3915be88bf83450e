/**
 * A small assembler for the subset of WebAssembly text (WAT) that the fused
 * kernels are written in, so they ship as readable source and need no build
 * tool: folded instructions only, named params/locals/labels/functions, one
 * imported memory, i32/f32 scalar ops and the f32x4/i32x4 SIMD ops listed in
 * {@link OPS}. Private to `kernels/fused/`.
 *
 * Grammar accepted (anything else throws with the offending form):
 *
 * ```wat
 * (module
 *   (import "env" "memory" (memory 1))            ;; or (memory 1 65536 shared)
 *   (func $name (export "name") (param $p i32) (result f32) (local $x v128)
 *     (block $out (loop $top (br_if $out (i32.ge_u (local.get $i) (local.get $n))) …))))
 * ```
 *
 * @module
 */
import { uleb128 } from "../../base/mod.ts";

type Node = string | Node[];

const VALTYPE: Record<string, number> = { i32: 0x7f, i64: 0x7e, f32: 0x7d, f64: 0x7c, v128: 0x7b };

/** Immediate kinds: how the atoms after an opcode are encoded. */
type Imm = "none" | "local" | "i32" | "f32" | "mem" | "label" | "call" | "lane" | "v128";

/** Opcode (0xfd-prefixed when `simd`), immediate kind, natural alignment (log2) of memory ops. */
interface Op {
  readonly code: number;
  readonly simd?: boolean;
  readonly imm: Imm;
  readonly align?: number;
}

function table(): Map<string, Op> {
  const ops = new Map<string, Op>();
  const plain = (code: number, ...names: string[]): void => {
    names.forEach((n, i) => ops.set(n, { code: code + i, imm: "none" }));
  };
  const simd = (code: number, imm: Imm, ...names: string[]): void => {
    names.forEach((n, i) => ops.set(n, { code: code + i, simd: true, imm }));
  };
  ops.set("unreachable", { code: 0x00, imm: "none" });
  ops.set("nop", { code: 0x01, imm: "none" });
  ops.set("br", { code: 0x0c, imm: "label" });
  ops.set("br_if", { code: 0x0d, imm: "label" });
  ops.set("return", { code: 0x0f, imm: "none" });
  ops.set("call", { code: 0x10, imm: "call" });
  ops.set("drop", { code: 0x1a, imm: "none" });
  ops.set("select", { code: 0x1b, imm: "none" });
  ops.set("local.get", { code: 0x20, imm: "local" });
  ops.set("local.set", { code: 0x21, imm: "local" });
  ops.set("local.tee", { code: 0x22, imm: "local" });
  ops.set("i32.load", { code: 0x28, imm: "mem", align: 2 });
  ops.set("f32.load", { code: 0x2a, imm: "mem", align: 2 });
  ops.set("i32.store", { code: 0x36, imm: "mem", align: 2 });
  ops.set("f32.store", { code: 0x38, imm: "mem", align: 2 });
  ops.set("i32.const", { code: 0x41, imm: "i32" });
  ops.set("f32.const", { code: 0x43, imm: "f32" });
  plain(0x45, "i32.eqz", "i32.eq", "i32.ne", "i32.lt_s", "i32.lt_u", "i32.gt_s", "i32.gt_u");
  plain(0x4c, "i32.le_s", "i32.le_u", "i32.ge_s", "i32.ge_u");
  plain(0x5b, "f32.eq", "f32.ne", "f32.lt", "f32.gt", "f32.le", "f32.ge");
  plain(0x6a, "i32.add", "i32.sub", "i32.mul", "i32.div_s", "i32.div_u", "i32.rem_s");
  plain(0x70, "i32.rem_u", "i32.and", "i32.or", "i32.xor", "i32.shl", "i32.shr_s", "i32.shr_u");
  plain(0x8b, "f32.abs", "f32.neg", "f32.ceil", "f32.floor", "f32.trunc", "f32.nearest");
  plain(0x91, "f32.sqrt", "f32.add", "f32.sub", "f32.mul", "f32.div", "f32.min", "f32.max");
  ops.set("i32.trunc_f32_s", { code: 0xa8, imm: "none" });
  ops.set("f32.convert_i32_s", { code: 0xb2, imm: "none" });
  ops.set("i32.reinterpret_f32", { code: 0xbc, imm: "none" });
  ops.set("f32.reinterpret_i32", { code: 0xbe, imm: "none" });
  ops.set("v128.load", { code: 0x00, simd: true, imm: "mem", align: 4 });
  ops.set("v128.load32_splat", { code: 0x09, simd: true, imm: "mem", align: 2 });
  ops.set("v128.store", { code: 0x0b, simd: true, imm: "mem", align: 4 });
  ops.set("v128.const", { code: 0x0c, simd: true, imm: "v128" });
  simd(0x11, "none", "i32x4.splat");
  simd(0x13, "none", "f32x4.splat");
  simd(0x1b, "lane", "i32x4.extract_lane");
  simd(0x1f, "lane", "f32x4.extract_lane", "f32x4.replace_lane");
  simd(0x41, "none", "f32x4.eq", "f32x4.ne", "f32x4.lt", "f32x4.gt", "f32x4.le", "f32x4.ge");
  simd(0x4d, "none", "v128.not", "v128.and", "v128.andnot", "v128.or", "v128.xor");
  simd(0x52, "none", "v128.bitselect");
  simd(0x67, "none", "f32x4.ceil", "f32x4.floor", "f32x4.trunc", "f32x4.nearest");
  simd(0xab, "none", "i32x4.shl", "i32x4.shr_s", "i32x4.shr_u", "i32x4.add");
  simd(0xb1, "none", "i32x4.sub");
  simd(0xb5, "none", "i32x4.mul", "i32x4.min_s", "i32x4.min_u", "i32x4.max_s", "i32x4.max_u");
  simd(0xe0, "none", "f32x4.abs", "f32x4.neg");
  simd(0xe3, "none", "f32x4.sqrt", "f32x4.add", "f32x4.sub", "f32x4.mul", "f32x4.div");
  simd(0xe8, "none", "f32x4.min", "f32x4.max", "f32x4.pmin", "f32x4.pmax");
  simd(0xf8, "none", "i32x4.trunc_sat_f32x4_s");
  simd(0x105, "none", "f32x4.relaxed_madd", "f32x4.relaxed_nmadd");
  simd(0xfa, "none", "f32x4.convert_i32x4_s");
  return ops;
}

const OPS = table();

function tokenize(src: string): string[] {
  const out: string[] = [];
  const re = /\(;[\s\S]*?;\)|;;[^\n]*|"[^"]*"|[()]|[^\s()";]+/g;
  for (const m of src.matchAll(re)) {
    const t = m[0];
    if (t.startsWith(";;") || t.startsWith("(;")) continue;
    out.push(t);
  }
  return out;
}

function parse(tokens: string[]): Node {
  let i = 0;
  const read = (): Node => {
    const t = tokens[i++];
    if (t === undefined) throw new Error("wat: unexpected end of input");
    if (t === ")") throw new Error("wat: unexpected )");
    if (t !== "(") return t;
    const list: Node[] = [];
    while (tokens[i] !== ")") {
      if (i >= tokens.length) throw new Error("wat: missing )");
      list.push(read());
    }
    i++;
    return list;
  };
  const node = read();
  if (i !== tokens.length) throw new Error("wat: text after the module");
  return node;
}

function show(n: Node): string {
  return typeof n === "string" ? n : `(${n.map(show).join(" ")})`;
}

function head(n: Node | undefined): string | undefined {
  return Array.isArray(n) && typeof n[0] === "string" ? n[0] : undefined;
}

function uleb(value: number, out: number[]): void {
  out.push(...uleb128(value >>> 0));
}

function sleb(value: number, out: number[]): void {
  let v = value | 0;
  for (;;) {
    const byte = v & 0x7f;
    v >>= 7;
    const done = (v === 0 && (byte & 0x40) === 0) || (v === -1 && (byte & 0x40) !== 0);
    out.push(done ? byte : byte | 0x80);
    if (done) return;
  }
}

function f32Bytes(value: number, out: number[]): void {
  const b = new Uint8Array(new Float32Array([value]).buffer);
  out.push(...b);
}

function num(atom: Node, what: string): number {
  if (typeof atom !== "string") throw new Error(`wat: ${what} expected, got ${show(atom)}`);
  const v = Number(atom.replaceAll("_", ""));
  if (Number.isNaN(v)) throw new Error(`wat: ${what} expected, got ${atom}`);
  return v;
}

function str(atom: Node): string {
  if (typeof atom !== "string" || !atom.startsWith('"')) {
    throw new Error(`wat: string expected, got ${show(atom)}`);
  }
  return atom.slice(1, -1);
}

interface FuncDecl {
  readonly name: string;
  readonly exportName?: string;
  readonly params: { name: string; type: string }[];
  readonly results: string[];
  readonly locals: { name: string; type: string }[];
  readonly body: Node[];
}

function declareFunc(form: Node[]): FuncDecl {
  let i = 1;
  const name = typeof form[1] === "string" && form[1].startsWith("$") ? form[i++] as string : "";
  let exportName: string | undefined;
  const params: { name: string; type: string }[] = [];
  const results: string[] = [];
  const locals: { name: string; type: string }[] = [];
  for (; i < form.length; i++) {
    const f = form[i]!;
    const h = head(f);
    if (h === "export") exportName = str((f as Node[])[1]!);
    else if (h === "param" || h === "local") {
      const [, n, t] = f as string[];
      if (n === undefined || t === undefined || VALTYPE[t] === undefined) {
        throw new Error(`wat: ${show(f)} must be (${h} $name type)`);
      }
      (h === "param" ? params : locals).push({ name: n, type: t });
    } else if (h === "result") results.push(...(f as string[]).slice(1));
    else break;
  }
  return {
    name,
    ...(exportName !== undefined ? { exportName } : {}),
    params,
    results,
    locals,
    body: form.slice(i),
  };
}

class FuncEmitter {
  private readonly labels: (string | undefined)[] = [];
  private readonly localIndex = new Map<string, number>();
  readonly code: number[] = [];

  constructor(private readonly decl: FuncDecl, private readonly funcIndex: Map<string, number>) {
    [...decl.params, ...decl.locals].forEach((l, i) => {
      if (this.localIndex.has(l.name)) {
        throw new Error(`wat: ${decl.name} declares ${l.name} twice`);
      }
      this.localIndex.set(l.name, i);
    });
  }

  emitBody(): void {
    for (const n of this.decl.body) this.instr(n);
    this.code.push(0x0b);
  }

  private blockType(form: Node[], start: number): [number, number] {
    const f = form[start];
    if (head(f) === "result") {
      const t = (f as string[])[1]!;
      return [VALTYPE[t]!, start + 1];
    }
    return [0x40, start];
  }

  private labelOf(form: Node[]): [string | undefined, number] {
    const l = form[1];
    return typeof l === "string" && l.startsWith("$") ? [l, 2] : [undefined, 1];
  }

  private instr(n: Node): void {
    if (typeof n === "string") return this.op(n, [], n);
    const h = head(n);
    if (h === undefined) throw new Error(`wat: instruction expected, got ${show(n)}`);
    if (h === "block" || h === "loop") {
      const [label, at] = this.labelOf(n);
      const [bt, body] = this.blockType(n, at);
      this.code.push(h === "block" ? 0x02 : 0x03, bt);
      this.labels.push(label);
      for (const x of n.slice(body)) this.instr(x);
      this.labels.pop();
      this.code.push(0x0b);
      return;
    }
    if (h === "if") {
      const [label, at] = this.labelOf(n);
      const [bt, rest] = this.blockType(n, at);
      const parts = n.slice(rest);
      const thenAt = parts.findIndex((p) => head(p) === "then");
      if (thenAt < 0) throw new Error(`wat: if without then: ${show(n)}`);
      for (const c of parts.slice(0, thenAt)) this.instr(c);
      this.code.push(0x04, bt);
      this.labels.push(label);
      for (const x of (parts[thenAt] as Node[]).slice(1)) this.instr(x);
      const other = parts[thenAt + 1];
      if (other !== undefined) {
        if (head(other) !== "else") throw new Error(`wat: bad if arm ${show(other)}`);
        this.code.push(0x05);
        for (const x of (other as Node[]).slice(1)) this.instr(x);
      }
      this.labels.pop();
      this.code.push(0x0b);
      return;
    }
    const imms: Node[] = [];
    const operands: Node[] = [];
    for (const x of n.slice(1)) (typeof x === "string" ? imms : operands).push(x);
    for (const x of operands) this.instr(x);
    this.op(h, imms, show(n));
  }

  private op(name: string, imms: Node[], where: string): void {
    const op = OPS.get(name);
    if (op === undefined) throw new Error(`wat: unknown instruction ${name} in ${where}`);
    if (op.simd) {
      this.code.push(0xfd);
      uleb(op.code, this.code);
    } else this.code.push(op.code);
    switch (op.imm) {
      case "none":
        if (imms.length > 0) throw new Error(`wat: ${name} takes no immediate: ${where}`);
        return;
      case "local": {
        const ref = imms[0] as string;
        const idx = ref?.startsWith("$") ? this.localIndex.get(ref) : num(ref, "local index");
        if (idx === undefined) throw new Error(`wat: unknown local ${ref} in ${where}`);
        return uleb(idx, this.code);
      }
      case "i32":
        return sleb(num(imms[0]!, "i32"), this.code);
      case "f32":
        return f32Bytes(num(imms[0]!, "f32"), this.code);
      case "mem": {
        let align = op.align ?? 0;
        let offset = 0;
        for (const m of imms as string[]) {
          if (m.startsWith("offset=")) offset = num(m.slice(7), "offset");
          else if (m.startsWith("align=")) align = Math.log2(num(m.slice(6), "align"));
          else throw new Error(`wat: bad memory immediate ${m} in ${where}`);
        }
        uleb(align, this.code);
        return uleb(offset, this.code);
      }
      case "label": {
        const ref = imms[0] as string;
        const at = this.labels.lastIndexOf(ref);
        if (at < 0) throw new Error(`wat: unknown label ${ref} in ${where}`);
        return uleb(this.labels.length - 1 - at, this.code);
      }
      case "call": {
        const idx = this.funcIndex.get(imms[0] as string);
        if (idx === undefined) throw new Error(`wat: unknown function in ${where}`);
        return uleb(idx, this.code);
      }
      case "lane":
        this.code.push(num(imms[0]!, "lane"));
        return;
      case "v128": {
        const [shape, ...xs] = imms as string[];
        const bytes = shape === "f32x4"
          ? new Uint8Array(new Float32Array(xs.map((x) => num(x, "f32"))).buffer)
          : shape === "i32x4"
          ? new Uint8Array(new Int32Array(xs.map((x) => num(x, "i32"))).buffer)
          : undefined;
        if (bytes === undefined || bytes.length !== 16) {
          throw new Error(`wat: v128.const needs f32x4 or i32x4 and 4 lanes: ${where}`);
        }
        this.code.push(...bytes);
        return;
      }
    }
  }
}

function section(id: number, body: number[], out: number[]): void {
  out.push(id);
  uleb(body.length, out);
  out.push(...body);
}

function vec(items: number[][], out: number[]): void {
  uleb(items.length, out);
  for (const it of items) out.push(...it);
}

function name(s: string): number[] {
  const b = [...new TextEncoder().encode(s)];
  const out: number[] = [];
  uleb(b.length, out);
  return [...out, ...b];
}

/**
 * Assembles a module in the supported WAT subset to binary.
 *
 * @throws {Error} naming the form it cannot assemble.
 */
export function assembleWat(source: string): Uint8Array<ArrayBuffer> {
  const mod = parse(tokenize(source));
  if (head(mod) !== "module") throw new Error("wat: (module …) expected");
  const imports: number[][] = [];
  const funcs: FuncDecl[] = [];
  for (const field of (mod as Node[]).slice(1)) {
    const h = head(field);
    const f = field as Node[];
    if (h === "func") funcs.push(declareFunc(f));
    else if (h === "import" && head(f[3]) === "memory") {
      imports.push([
        ...name(str(f[1]!)),
        ...name(str(f[2]!)),
        0x02,
        ...memoryLimits(f[3] as Node[]),
      ]);
    } else throw new Error(`wat: unsupported module field ${show(field).slice(0, 80)}`);
  }
  const funcIndex = new Map(funcs.map((f, i) => [f.name, i]));
  const types: string[] = [];
  const typeBytes: number[][] = [];
  const funcTypes = funcs.map((f) => {
    const bytes = [0x60];
    uleb(f.params.length, bytes);
    bytes.push(...f.params.map((p) => VALTYPE[p.type]!));
    uleb(f.results.length, bytes);
    bytes.push(...f.results.map((r) => VALTYPE[r]!));
    const key = bytes.join(",");
    let at = types.indexOf(key);
    if (at < 0) {
      at = types.length;
      types.push(key);
      typeBytes.push(bytes);
    }
    return at;
  });
  const out = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
  const body = (items: number[][]): number[] => {
    const b: number[] = [];
    vec(items, b);
    return b;
  };
  section(1, body(typeBytes), out);
  if (imports.length > 0) section(2, body(imports), out);
  section(3, body(funcTypes.map((t) => uleb1(t))), out);
  const exports = funcs.flatMap((f, i) =>
    f.exportName === undefined ? [] : [[...name(f.exportName), 0x00, ...uleb1(i)]]
  );
  section(7, body(exports), out);
  const codes = funcs.map((f) => {
    const e = new FuncEmitter(f, funcIndex);
    e.emitBody();
    const locals: number[] = [];
    vec(f.locals.map((l) => [1, VALTYPE[l.type]!]), locals);
    const fn = [...locals, ...e.code];
    return [...uleb1(fn.length), ...fn];
  });
  section(10, body(codes), out);
  return new Uint8Array(out);
}

/** `(memory min)`, `(memory min max)` or `(memory min max shared)` as a limits encoding. */
function memoryLimits(form: Node[]): number[] {
  const [, minForm, maxForm, sharedForm] = form;
  const min = uleb1(num(minForm!, "memory size"));
  if (maxForm === undefined) return [0x00, ...min];
  const max = uleb1(num(maxForm, "memory maximum"));
  if (sharedForm === undefined) return [0x01, ...min, ...max];
  if (sharedForm !== "shared") throw new Error(`wat: bad memory form ${show(form)}`);
  return [0x03, ...min, ...max];
}

function uleb1(v: number): number[] {
  const out: number[] = [];
  uleb(v, out);
  return out;
}
