#!/usr/bin/env python3
"""The machine code NVIDIA's Vulkan driver made of a kernel, from its pipeline cache (session 28).

`bench/vk_pipeline_stats.c --cache=DIR` writes each kernel's pipeline cache data (driver 580 on
the H200): a 32-byte Vulkan header, then NVIDIA's own header and a zstd frame. The frame holds an
"NVDA" container whose second section record (at byte 0x48: type 1, size, offset from byte 8) is
the kernel's SASS, which `nvdisasm -b SM90` disassembles (nvdisasm ships in Triton's wheel:
`pip download --no-deps triton`, then `triton/backends/nvidia/bin/nvdisasm`). Found by reading
the data, not from any documentation: another driver may lay it out otherwise, and the script
then says so.

For each kernel of each cache file it writes FILE.sass (FILE.N.sass where a file holds several) and prints each loop of at least --min-loop instructions
(a backward branch and its target): its length, its instruction mix and where in it the global
loads (LDG) are, which shows where the compiler put the token loop's requests.

Usage: sass_from_cache.py [--nvdisasm=PATH] [--min-loop=150] FILE.cache|FILE.bin...
Needs the `zstd` command.
"""

import collections
import os
import re
import struct
import subprocess
import sys

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def machine_codes(cache: bytes):
    """The SASS section of each kernel in one cache file: every zstd frame that holds an NVDA
    container (a Vulkan pipeline cache, bench/vk_pipeline_stats.c --cache, has one; a .bin file of
    the driver's own disk cache, `__GL_SHADER_DISK_CACHE_PATH` (session 47), has a small ELF frame
    first and then one frame per pipeline the process built, session 50). zstd stops at a frame's
    end and complains of what follows, so its status is not checked: the container's magic is."""
    start = cache.find(ZSTD_MAGIC)
    found = 0
    while start >= 0:
        raw = subprocess.run(["zstd", "-d", "-c"], input=cache[start:], capture_output=True).stdout
        if raw.startswith(b"NVDA"):
            kind, size, offset = struct.unpack_from("<III", raw, 0x48)
            if kind != 1 or offset + 8 + size > len(raw):
                raise ValueError(f"unexpected section record: type {kind}, size {size}, offset {offset}")
            found += 1
            yield raw[offset + 8 : offset + 8 + size]
        start = cache.find(ZSTD_MAGIC, start + 4)
    if found == 0:
        raise ValueError("no zstd frame holds an NVDA container")


def disassemble(code: bytes, nvdisasm: str) -> list[tuple[int, str]]:
    """(address, instruction) pairs of raw SM90 code."""
    path = "/tmp/sass_from_cache.bin"
    with open(path, "wb") as f:
        f.write(code)
    text = subprocess.run([nvdisasm, "-b", "SM90", path], capture_output=True, text=True).stdout
    out = []
    for line in text.splitlines():
        m = re.match(r"\s*/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;", line)
        if m:
            out.append((int(m.group(1), 16), m.group(2)))
    return out


def loops(ins: list[tuple[int, str]], min_len: int):
    """Each backward branch's loop of at least min_len instructions: (first, last) indices."""
    index = {a: i for i, (a, _) in enumerate(ins)}
    for i, (a, text) in enumerate(ins):
        if "BRA" not in text:
            continue
        targets = re.findall(r"0x([0-9a-f]+)", text)
        if targets and int(targets[-1], 16) < a and int(targets[-1], 16) in index:
            j = index[int(targets[-1], 16)]
            if i - j + 1 >= min_len:
                yield j, i


def opcode(text: str) -> str:
    """The mnemonic without its predicate; memory operations keep their suffixes (a 2-byte and a
    16-byte load are different things: LDG.E.U16 against LDG.E.128)."""
    op = re.sub(r"^@!?U?P\w+\s+", "", text).split()[0]
    return op if re.match(r"(LD|ST)", op) else op.split(".")[0]


def main() -> None:
    nvdisasm = os.environ.get("NVDISASM", "nvdisasm")
    min_len = 150
    files = []
    for arg in sys.argv[1:]:
        if arg.startswith("--nvdisasm="):
            nvdisasm = arg.split("=", 1)[1]
        elif arg.startswith("--min-loop="):
            min_len = int(arg.split("=", 1)[1])
        else:
            files.append(arg)
    for path in files:
        name = os.path.basename(path).removesuffix(".cache")
        try:
            codes = list(machine_codes(open(path, "rb").read()))
        except (ValueError, subprocess.CalledProcessError) as e:
            print(f"{name}: {e}")
            continue
        for n, code in enumerate(codes):
            ins = disassemble(code, nvdisasm)
            tag = name if len(codes) == 1 else f"{name}#{n}"
            with open(f"{path}{'' if len(codes) == 1 else f'.{n}'}.sass", "w") as f:
                f.writelines(f"/*{a:04x}*/ {t};\n" for a, t in ins)
            spills = sum(opcode(t).split(".")[0] in ("STL", "LDL") for _, t in ins)
            regs = max((int(r) for _, t in ins for r in re.findall(r"\bR(\d+)\b", t)), default=-1) + 1
            hmma = sum(opcode(t) == "HMMA" for _, t in ins)
            print(f"{tag}: {len(ins)} instructions, registers up to R{regs - 1}, {hmma} HMMA, "
                  f"{spills} local-memory accesses")
            for j, i in loops(ins, min_len):
                body = ins[j : i + 1]
                mix = collections.Counter(opcode(t) for _, t in body)
                top = ", ".join(f"{op} {n}" for op, n in mix.most_common(12))
                loads = [k for k, (_, t) in enumerate(body) if opcode(t).startswith("LDG")]
                print(f"  loop {body[0][0]:#x}-{body[-1][0]:#x}: {len(body)} instructions ({top})")
                print(f"    LDG at {loads}")

if __name__ == "__main__":
    main()
