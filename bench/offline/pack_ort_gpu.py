"""Pack an onnxruntime-gpu wheel for one GPU architecture, small enough to carry to an offline GPU box.

The wheel's CUDA provider library holds machine code for every supported architecture (sm_75 ... sm_120:
284 MB in 1.31.1); a box with one kind of GPU loads only its own. This writes the wheel's package tree
with the other architectures' cubin payloads zeroed (headers kept, so the library's layout and the
driver's choice of image are unchanged; zeros compress to nothing), without the TensorRT provider and the
C-API library the Python binding does not load, as one ``.tar.xz`` to unpack into a folder on
PYTHONPATH (``SITE`` of bench/gpu_check.sh). 1.31.1 for sm_90 (H100/H200): 255.6 MB wheel -> 60.6 MB.

    python bench/offline/pack_ort_gpu.py onnxruntime_gpu-1.31.1-cp312-...whl --arch 90 -o ort-sm90.tar.xz

Needs pyelftools. If the target GPU's architecture is not kept, its kernels are gone: the CUDA
provider then fails at its first kernel ("no kernel image is available"), it never computes garbage.
"""

from __future__ import annotations

import argparse
import collections
import struct
import subprocess
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

FATBIN_MAGIC = 0xBA55ED50
DROPPED = ("libonnxruntime_providers_tensorrt.so", "libonnxruntime.so")  # unused by the Python binding


def fatbin_entries(
    buf: bytes | bytearray, offset: int, size: int
) -> Iterator[tuple[int, int, int, int, int]]:
    """(entry offset, kind, header size, payload size, sm arch) of every fatbin entry in a section."""
    end, p = offset + size, offset
    while p < end:
        magic, _version, header_size, fat_size = struct.unpack_from("<IHHQ", buf, p)
        if magic != FATBIN_MAGIC:
            p += 8  # fatbins are 8-byte aligned; skip padding
            continue
        q, fat_end = p + header_size, p + header_size + fat_size
        while q < fat_end:
            kind, _unknown, entry_header, payload = struct.unpack_from("<HHIQ", buf, q)
            arch = struct.unpack_from("<I", buf, q + 28)[0]
            yield q, kind, entry_header, payload, arch
            q += entry_header + payload
        p = fat_end


def keep_archs(library: Path, archs: set[int]) -> collections.Counter[int]:
    """Zero the payloads of ``library``'s fatbin entries for other architectures; bytes kept per arch."""
    from elftools.elf.elffile import ELFFile

    with library.open("rb") as handle:
        sections = [
            (s["sh_offset"], s["sh_size"]) for s in ELFFile(handle).iter_sections() if s.name == ".nv_fatbin"
        ]
    buf = bytearray(library.read_bytes())
    kept: collections.Counter[int] = collections.Counter()
    for offset, size in sections:
        for q, _kind, header, payload, arch in fatbin_entries(buf, offset, size):
            if arch in archs:
                kept[arch] += payload
            else:
                buf[q + header : q + header + payload] = bytes(payload)
    library.write_bytes(buf)
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("wheel", type=Path)
    parser.add_argument("--arch", default="90", help="sm numbers to keep, comma-separated [90]")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    archs = {int(a) for a in args.arch.split(",")}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with zipfile.ZipFile(args.wheel) as wheel:
            wheel.extractall(root)
        capi = root / "onnxruntime" / "capi"
        for path in capi.iterdir():
            if path.name.startswith(DROPPED):
                path.unlink()
        cuda = capi / "libonnxruntime_providers_cuda.so"
        kept = keep_archs(cuda, archs)
        if not kept:
            raise SystemExit(f"{cuda.name} holds no code for sm {sorted(archs)}: nothing would run there")
        for path in capi.glob("*.so*"):
            path.chmod(0o755)
        with args.output.open("wb") as out:
            tar = subprocess.Popen(["tar", "-C", str(root), "-cf", "-", "."], stdout=subprocess.PIPE)
            subprocess.run(["xz", "-T0", "-9e"], stdin=tar.stdout, stdout=out, check=True)
            tar.wait()
    mib = {arch: round(n / 2**20, 1) for arch, n in sorted(kept.items())}
    print(f"{args.output}: {args.output.stat().st_size / 2**20:.1f} MiB; cubin MiB kept per sm: {mib}")


if __name__ == "__main__":
    main()
