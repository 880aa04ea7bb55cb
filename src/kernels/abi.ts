/**
 * The kernel ABI: everything the WGSL kernels read from the host, declared once. The piece and
 * reduce records of the schedule tables, the uniform blocks and the binding numbers are field
 * lists here; the TypeScript offsets and strides, the host packers and the WGSL declarations
 * (structs, named offsets, `@binding` lines) are all generated from these lists, so the host and
 * the kernels cannot disagree on a layout. The bindings are in `abi_bindings.ts`, re-exported
 * here.
 *
 * @module
 */

/** A field of a table record or uniform block: its TypeScript name and its WGSL type. */
export interface AbiField {
  /** camelCase name on the host; the WGSL name is its snake_case form. */
  readonly name: string;
  /** WGSL scalar type (`u32` unless noted). */
  readonly type?: "u32" | "f32";
}

/** A record layout: `u32` words in field order, padded to `stride` words. */
export interface AbiRecord<N extends string> {
  /** WGSL name of the record (`Piece`, `Params`, ...). */
  readonly name: string;
  /** The fields, in memory order. */
  readonly fields: readonly AbiField[];
  /** Word offset of each field. */
  readonly offsets: Readonly<Record<N, number>>;
  /** Words per record (fields plus padding). */
  readonly stride: number;
}

/** The snake_case WGSL spelling of a camelCase field name. */
export function wgslName(name: string): string {
  return name.replace(/[A-Z]/g, (m) => `_${m.toLowerCase()}`);
}

function record<const N extends string>(
  name: string,
  fields: readonly (AbiField & { name: N })[],
  stride: number = fields.length,
): AbiRecord<N> {
  if (stride < fields.length) throw new RangeError(`${name}: stride ${stride} < fields`);
  const offsets = {} as Record<N, number>;
  fields.forEach((f, i) => (offsets[f.name] = i));
  return { name, fields, offsets: Object.freeze(offsets), stride };
}

/**
 * The piece record of the schedule table: one run of one segment's tokens that a decode
 * workgroup processes, writing the final output or a partial state.
 */
export const PIECE_RECORD: AbiRecord<
  | "seq"
  | "kvHead"
  | "rowBlock"
  | "tokenBegin"
  | "tokenEnd"
  | "slot"
  | "kvStart"
  | "seqLen"
  | "qStart"
  | "qLen"
> = record("Piece", [
  { name: "seq" },
  { name: "kvHead" },
  { name: "rowBlock" },
  { name: "tokenBegin" },
  { name: "tokenEnd" },
  { name: "slot" },
  { name: "kvStart" },
  { name: "seqLen" },
  /** The sequence's first query token in q's rows (ragged batches). */
  { name: "qStart" },
  /** The sequence's query tokens. */
  { name: "qLen" },
]);

/**
 * The reduce record: one split segment whose partial-state slots the merge kernel combines.
 * Padded to 8 words.
 */
export const REDUCE_RECORD: AbiRecord<
  "seq" | "kvHead" | "rowBlock" | "firstSlot" | "numSlots" | "qStart" | "qLen"
> = record("Reduce", [
  { name: "seq" },
  { name: "kvHead" },
  { name: "rowBlock" },
  { name: "firstSlot" },
  /** 0 for an empty request's rows: the merge writes the identity (out 0, lse -inf). */
  { name: "numSlots" },
  { name: "qStart" },
  { name: "qLen" },
], 8);

/** The uniform block shared by the decode and merge kernels. */
export const PARAMS_RECORD: AbiRecord<
  | "numHeads"
  | "qLen"
  | "groupSize"
  | "rowsPerGroup"
  | "kvRow"
  | "pieceBase"
  | "reduceBase"
  | "lseBase"
  | "count"
  | "scaleLog2"
  | "pageShift"
  | "mergeCount"
  | "window"
  | "softCap"
  | "kScale"
  | "vScale"
> = record("Params", [
  { name: "numHeads" },
  { name: "qLen" },
  { name: "groupSize" },
  { name: "rowsPerGroup" },
  /** 16-byte loads per KV token row (all KV heads). */
  { name: "kvRow" },
  /** First u32 of the piece records in sched. */
  { name: "pieceBase" },
  /** First u32 of the reduce records in sched. */
  { name: "reduceBase" },
  /** Unused (the LSE has its own binding). */
  { name: "lseBase" },
  /** Workgroups of the decode dispatch. */
  { name: "count" },
  /** Softmax scale times log2(e). */
  { name: "scaleLog2", type: "f32" },
  /** log2 of the page size (paged kernels). */
  { name: "pageShift" },
  /** Reduce records of the merge dispatch. */
  { name: "mergeCount" },
  /** Sliding window in tokens (kernels with the window flag). */
  { name: "window" },
  /** Logit soft-cap times log2(e) (kernels with the soft-cap flag). */
  { name: "softCap", type: "f32" },
  /** Per-tensor scale of 8-bit K (kernels without a per-token scale table; else 1). */
  { name: "kScale", type: "f32" },
  /** Per-tensor scale of 8-bit V, like `kScale`. */
  { name: "vScale", type: "f32" },
]);

/**
 * The uniform block of the append kernel (`kvHeads`: KV heads of a row, for the scale table of
 * 8-bit caches; `rowWordsV`, `srcRowV`: V's row, of its own length for MLA's `headDimV`).
 */
export const APPEND_PARAMS_RECORD: AbiRecord<
  "tokens" | "rowWords" | "srcRow" | "kvHeads" | "rowWordsV" | "srcRowV"
> = record(
  "AppendParams",
  [
    { name: "tokens" },
    { name: "rowWords" },
    { name: "srcRow" },
    { name: "kvHeads" },
    { name: "rowWordsV" },
    { name: "srcRowV" },
  ],
  8,
);

/**
 * Packs a uniform block from its field values (missing fields 0) into a new `Uint32Array`.
 *
 * @example
 * ```ts
 * import { APPEND_PARAMS_RECORD, packRecord } from "./abi.ts";
 * console.log(Array.from(packRecord(APPEND_PARAMS_RECORD, { tokens: 3, rowWords: 4 })));
 * // [3, 4, 0, 0, 0, 0, 0, 0]
 * ```
 */
export function packRecord<N extends string>(
  rec: AbiRecord<N>,
  values: Partial<Record<N, number>>,
): Uint32Array<ArrayBuffer> {
  const words = new Uint32Array(rec.stride);
  const floats = new Float32Array(words.buffer);
  rec.fields.forEach((f, i) => {
    const v = values[f.name as N] ?? 0;
    if (f.type === "f32") floats[i] = v;
    else words[i] = v;
  });
  return words;
}

/**
 * The WGSL `struct` of a record (a uniform block's declaration).
 *
 * @example
 * ```ts
 * import { APPEND_PARAMS_RECORD, recordStructWGSL } from "./abi.ts";
 * console.log(recordStructWGSL(APPEND_PARAMS_RECORD).includes("row_words: u32,")); // true
 * ```
 */
export function recordStructWGSL(rec: AbiRecord<string>): string {
  const pad = Array.from(
    { length: rec.stride - rec.fields.length },
    (_, i) => `  _pad${i}: u32,`,
  );
  return `
struct ${rec.name} {
${rec.fields.map((f) => `  ${wgslName(f.name)}: ${f.type ?? "u32"},`).concat(pad).join("\n")}
}`;
}

/**
 * WGSL constants naming a table record's stride and field offsets (`PIECE_STRIDE`,
 * `PIECE_KV_START`, ...): the kernels read `sched[f + PIECE_KV_START]`.
 *
 * @example
 * ```ts
 * import { PIECE_RECORD, recordOffsetsWGSL } from "./abi.ts";
 * console.log(recordOffsetsWGSL(PIECE_RECORD).includes("const PIECE_KV_START: u32 = 6u;")); // true
 * ```
 */
export function recordOffsetsWGSL(rec: AbiRecord<string>): string {
  const prefix = rec.name.toUpperCase();
  return [`const ${prefix}_STRIDE: u32 = ${rec.stride}u;`].concat(
    rec.fields.map((f, i) => `const ${prefix}_${wgslName(f.name).toUpperCase()}: u32 = ${i}u;`),
  ).join("\n");
}

export {
  APPEND_BINDING,
  appendBindingsWGSL,
  appendLayoutEntries,
  BINDING,
  type BindingName,
  type BindingType,
  createLayout,
  kernelBindingsWGSL,
  kernelLayoutEntries,
  type LayoutEntry,
  namedEntries,
} from "./abi_bindings.ts";
