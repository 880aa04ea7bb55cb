/**
 * A small reader and writer of the safetensors format (no dependency): an 8-byte little-endian
 * header length, a JSON header naming each tensor's dtype, shape and byte range, then the raw
 * little-endian tensor data. Only what the runner needs: `F32`, `F16` and `BF16` tensors are
 * read as arrays; any dtype's bytes can be read.
 *
 * ```ts
 * import { openSafetensors, writeSafetensors } from "./safetensors.ts";
 * const path = await Deno.makeTempFile({ suffix: ".safetensors" });
 * await writeSafetensors(path, { w: { dtype: "F32", shape: [2, 2], data: new Float32Array([1, 2, 3, 4]) } });
 * const file = await openSafetensors(path);
 * console.log(file.info("w").shape, (await file.read("w")).data); // [ 2, 2 ] Float32Array(4) [ 1, 2, 3, 4 ]
 * file.close();
 * await Deno.remove(path);
 * ```
 *
 * @module
 */

/** Floating-point dtypes the runner reads as arrays. */
export type FloatDtype = "F32" | "F16" | "BF16";

/** A tensor in memory: `F32` as `Float32Array`, `F16`/`BF16` as `Uint16Array` bit patterns. */
export interface Tensor {
  dtype: FloatDtype;
  shape: number[];
  data: Float32Array | Uint16Array;
}

/** Where a tensor lies in its file. */
export interface TensorInfo {
  dtype: string;
  shape: number[];
  /** Byte offset in the file. */
  offset: number;
  /** Bytes of data. */
  bytes: number;
}

const ELEMENT_BYTES: Record<string, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

/** An open safetensors file: its tensor table, read tensor by tensor. */
export class SafetensorsFile {
  /** The file's path. */
  readonly path: string;
  /** Tensor names in header order. */
  readonly names: string[];
  /** The header's `__metadata__` strings. */
  readonly metadata: Record<string, string>;
  #file: Deno.FsFile;
  #infos: Map<string, TensorInfo>;
  #queue: Promise<unknown> = Promise.resolve();

  /** Use {@linkcode openSafetensors}. */
  constructor(
    path: string,
    file: Deno.FsFile,
    infos: Map<string, TensorInfo>,
    metadata: Record<string, string>,
  ) {
    this.path = path;
    this.#file = file;
    this.#infos = infos;
    this.names = [...infos.keys()];
    this.metadata = metadata;
  }

  /** Whether the file holds a tensor of this name. */
  has(name: string): boolean {
    return this.#infos.has(name);
  }

  /** A tensor's dtype, shape and byte range; throws `RangeError` for an unknown name. */
  info(name: string): TensorInfo {
    const info = this.#infos.get(name);
    if (!info) throw new RangeError(`${this.path} holds no tensor named "${name}"`);
    return info;
  }

  /** A tensor's raw bytes. Reads of one file run one at a time (they share its position). */
  readBytes(name: string): Promise<Uint8Array> {
    const read = this.#queue.then(() => this.#readNow(name));
    this.#queue = read.catch(() => {});
    return read;
  }

  async #readNow(name: string): Promise<Uint8Array> {
    const { offset, bytes } = this.info(name);
    const out = new Uint8Array(bytes);
    await this.#file.seek(offset, Deno.SeekMode.Start);
    for (let done = 0; done < bytes;) {
      const n = await this.#file.read(out.subarray(done));
      if (n === null) {
        throw new RangeError(`${this.path}: tensor "${name}" ends past the end of the file`);
      }
      done += n;
    }
    return out;
  }

  /** A floating-point tensor (`F32`, `F16`, `BF16`); other dtypes throw `TypeError`. */
  async read(name: string): Promise<Tensor> {
    const info = this.info(name);
    if (info.dtype !== "F32" && info.dtype !== "F16" && info.dtype !== "BF16") {
      throw new TypeError(
        `tensor "${name}" must be F32, F16 or BF16 to be read as floats: got ${info.dtype}`,
      );
    }
    const bytes = await this.readBytes(name);
    const data = info.dtype === "F32"
      ? new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4)
      : new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
    return { dtype: info.dtype, shape: info.shape, data };
  }

  /** Closes the file. */
  close(): void {
    this.#file.close();
  }
}

/**
 * Opens a safetensors file and checks its header: every tensor's byte range must match its
 * dtype and shape and lie inside the file, or a `RangeError` names the tensor.
 */
export async function openSafetensors(path: string): Promise<SafetensorsFile> {
  const file = await Deno.open(path, { read: true });
  try {
    const size = (await file.stat()).size;
    const head = new Uint8Array(8);
    if (size < 8 || (await file.read(head)) !== 8) {
      throw new RangeError(`${path} is not a safetensors file: shorter than 8 bytes`);
    }
    const headerBytes = Number(new DataView(head.buffer).getBigUint64(0, true));
    if (headerBytes > size - 8 || headerBytes > 100_000_000) {
      throw new RangeError(`${path}: header length ${headerBytes} does not fit the file`);
    }
    const json = new Uint8Array(headerBytes);
    for (let done = 0; done < headerBytes;) {
      const n = await file.read(json.subarray(done));
      if (n === null) throw new RangeError(`${path}: header is cut short`);
      done += n;
    }
    const header = JSON.parse(new TextDecoder().decode(json)) as Record<string, unknown>;
    const dataStart = 8 + headerBytes;
    const infos = new Map<string, TensorInfo>();
    let metadata: Record<string, string> = {};
    for (const [name, raw] of Object.entries(header)) {
      if (name === "__metadata__") {
        metadata = raw as Record<string, string>;
        continue;
      }
      const { dtype, shape, data_offsets: range } = raw as {
        dtype: string;
        shape: number[];
        data_offsets: [number, number];
      };
      const width = ELEMENT_BYTES[dtype];
      if (width === undefined) throw new RangeError(`${path}: tensor "${name}" has dtype ${dtype}`);
      const elements = shape.reduce((a, b) => a * b, 1);
      const [begin, end] = range;
      if (end - begin !== elements * width || dataStart + end > size || begin < 0) {
        throw new RangeError(
          `${path}: tensor "${name}" (${dtype} ${
            JSON.stringify(shape)
          }) has byte range [${begin}, ${end}) that does not match its shape or the file`,
        );
      }
      infos.set(name, { dtype, shape, offset: dataStart + begin, bytes: end - begin });
    }
    return new SafetensorsFile(path, file, infos, metadata);
  } catch (e) {
    file.close();
    throw e;
  }
}

/** Writes tensors (in the given order) as a safetensors file. */
export async function writeSafetensors(
  path: string,
  tensors: Record<string, Tensor>,
  metadata: Record<string, string> = {},
): Promise<void> {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  const parts: Uint8Array[] = [];
  for (const [name, t] of Object.entries(tensors)) {
    const elements = t.shape.reduce((a, b) => a * b, 1);
    if (elements !== t.data.length) {
      throw new RangeError(
        `tensor "${name}" must have ${elements} elements for shape ${
          JSON.stringify(t.shape)
        }: got ${t.data.length}`,
      );
    }
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    header[name] = {
      dtype: t.dtype,
      shape: t.shape,
      data_offsets: [offset, offset + bytes.length],
    };
    parts.push(bytes);
    offset += bytes.length;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - ((8 + json.length) % 8)) % 8); // data 8-byte aligned, as HF writes it
  const jsonBytes = new TextEncoder().encode(json);
  const head = new Uint8Array(8);
  new DataView(head.buffer).setBigUint64(0, BigInt(jsonBytes.length), true);
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  try {
    for (const part of [head, jsonBytes, ...parts]) {
      for (let done = 0; done < part.length;) done += await file.write(part.subarray(done));
    }
  } finally {
    file.close();
  }
}
