// The batch of the Node example and the browser page: 3 ragged sequences, 8 query heads on 2 KV heads, head dim 64, f16
// KV, from a seeded generator so the tests can rebuild the same input.

/** Builds the input; `encodeKV` comes from the library. */
export function demoInput(encodeKV) {
  const seqLens = [300, 17, 129];
  const numHeads = 8;
  const numKVHeads = 2;
  const headDim = 64;
  const tokens = seqLens.reduce((a, b) => a + b, 0);
  let seed = 12345;
  const rand = (n) =>
    Float32Array.from({ length: n }, () => {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      return seed / 2 ** 32 - 0.5;
    });
  return {
    q: rand(seqLens.length * numHeads * headDim),
    k: encodeKV(rand(tokens * numKVHeads * headDim), "f16"),
    v: encodeKV(rand(tokens * numKVHeads * headDim), "f16"),
    kvDtype: "f16",
    seqLens,
    numHeads,
    numKVHeads,
    headDim,
  };
}
