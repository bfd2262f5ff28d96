//! exec of real ELF binaries from this system, and a shared library mapped into several
//! processes: the layout follows the program headers, text is one physical copy, data is
//! copied on write, the stack grows down and brk moves the heap.
// Written with the default build's 4 KiB pages in its numbers (x86 and RISC-V geometries,
// file sizes, counts of 4 KiB pages): it runs in that build; tests/page_sizes.rs covers the
// 16 and 64 KiB builds.
#![cfg(not(any(feature = "page-16k", feature = "page-64k")))]

use object::read::elf::{FileHeader, ProgramHeader};
use vmem::consts::*;
use vmem::{Kernel, VirtAddr};

const PAGE: u64 = vmem::PAGE_SIZE;

/// A real executable and a real shared library present on every Debian system.
fn binary() -> &'static str {
    "/bin/true"
}
fn libc_path() -> Option<&'static str> {
    [
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        "/lib/x86_64-linux-gnu/libc.so.6",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
}

/// (vaddr, offset, filesz, memsz, prot) of each PT_LOAD, read with `object` independently
/// of the loader.
fn loads(path: &str) -> Vec<(u64, u64, u64, u64, i32)> {
    let bytes = std::fs::read(path).unwrap();
    let hdr = object::elf::FileHeader64::<object::Endianness>::parse(&*bytes).unwrap();
    let e = hdr.endian().unwrap();
    hdr.program_headers(e, &*bytes)
        .unwrap()
        .iter()
        .filter(|ph| ph.p_type(e) == object::elf::PT_LOAD)
        .map(|ph| {
            let f = ph.p_flags(e);
            let prot = (if f & 4 != 0 { PROT_READ } else { 0 })
                | (if f & 2 != 0 { PROT_WRITE } else { 0 })
                | (if f & 1 != 0 { PROT_EXEC } else { 0 });
            (
                ph.p_vaddr(e),
                ph.p_offset(e),
                ph.p_filesz(e),
                ph.p_memsz(e),
                prot,
            )
        })
        .collect()
}

#[test]
fn exec_maps_each_load_segment_as_its_program_header_says() {
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let info = k.exec(p, binary()).unwrap();
    assert_eq!(
        info.image.bias,
        vmem::exec::ELF_ET_DYN_BASE,
        "a PIE loads at ELF_ET_DYN_BASE"
    );
    assert_eq!(
        info.image.interp.as_deref(),
        Some("/lib64/ld-linux-x86-64.so.2")
    );
    let vmas = k.vmas(p).unwrap();
    let bytes = std::fs::read(binary()).unwrap();
    for (vaddr, offset, filesz, memsz, prot) in loads(binary()) {
        let start = (vaddr + info.image.bias) & !(PAGE - 1);
        let v = vmas
            .iter()
            .find(|v| v.start.0 <= start && start < v.end.0)
            .unwrap_or_else(|| panic!("no VMA for segment at {start:#x}"));
        assert_eq!(v.prot, prot, "segment at {start:#x}");
        assert_eq!(
            v.pgoff_of(VirtAddr(start)).byte_offset(),
            offset & !(PAGE - 1)
        );
        // The bytes at the segment's address are the file's.
        let n = filesz.min(64) as usize;
        let got = k.load_vec(p, VirtAddr(vaddr + info.image.bias), n).unwrap();
        assert_eq!(got, bytes[offset as usize..offset as usize + n]);
        if memsz > filesz {
            // .bss reads as zero, also inside the last file page.
            let bss = VirtAddr(vaddr + info.image.bias + filesz);
            assert_eq!(k.load_u8(p, bss).unwrap(), 0);
        }
    }
    let maps = k.maps(p).unwrap();
    assert!(maps.contains("[stack]"), "{maps}");
    assert!(maps.contains("r-xp"), "{maps}");
    assert!(maps.contains(binary()), "{maps}");
}

#[test]
fn the_stack_grows_down_and_brk_moves_the_heap() {
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let info = k.exec(p, binary()).unwrap();
    // A store 1 MiB below the initial stack VMA grows it.
    let deep = VirtAddr(info.stack_start.0 - (1 << 20));
    k.store_u64(p, deep, 7).unwrap();
    assert_eq!(k.load_u64(p, deep).unwrap(), 7);
    let stack = k
        .vmas(p)
        .unwrap()
        .into_iter()
        .find(|v| v.contains(deep))
        .unwrap();
    assert_eq!(stack.end, info.stack_top);
    // Past the 8 MiB limit it does not.
    let too_deep = VirtAddr(info.stack_top.0 - (9 << 20));
    assert!(k.store_u64(p, too_deep, 1).is_err());
    // brk.
    assert_eq!(k.brk(p, VirtAddr(0)).unwrap(), info.brk);
    let end = k.brk(p, info.brk.add(3 * PAGE)).unwrap();
    assert_eq!(end, info.brk.add(3 * PAGE));
    k.store(p, info.brk.add(PAGE), b"heap").unwrap();
    assert!(k.maps(p).unwrap().contains("[heap]"));
    k.brk(p, info.brk).unwrap();
    assert!(
        k.load_u8(p, info.brk.add(PAGE)).is_err(),
        "shrunk heap is gone"
    );
}

#[test]
fn a_shared_library_has_one_physical_copy_of_its_text() {
    let Some(libc) = libc_path() else {
        eprintln!("no libc.so.6 on this system; skipped");
        return;
    };
    let mut k = Kernel::default();
    let procs: Vec<_> = (0..3).map(|_| k.spawn().unwrap()).collect();
    let images: Vec<_> = procs
        .iter()
        .map(|&p| k.map_library(p, libc).unwrap())
        .collect();
    let text = images[0]
        .segments
        .iter()
        .find(|s| s.prot & PROT_EXEC != 0)
        .unwrap()
        .clone();
    let data = images[0]
        .segments
        .iter()
        .find(|s| s.prot & PROT_WRITE != 0)
        .unwrap()
        .clone();
    let text_off = text.start.0 - images[0].bias;
    let data_off = data.start.0 - images[0].bias;
    // Every process touches the first text page: one frame, mapped three times.
    let frames: Vec<_> = procs
        .iter()
        .zip(&images)
        .map(|(&p, img)| {
            let va = VirtAddr(img.bias + text_off);
            k.load_u8(p, va).unwrap();
            k.frame_of(p, va).unwrap()
        })
        .collect();
    assert!(
        frames.windows(2).all(|w| w[0] == w[1]),
        "one physical copy: {frames:?}"
    );
    assert_eq!(
        k.frame_refcount(frames[0]),
        1 + 3,
        "page cache + three mappings"
    );
    let before = k.frames_in_use();
    // A write to the data segment in process 0 copies that page for it alone.
    let d0 = VirtAddr(images[0].bias + data_off);
    let d1 = VirtAddr(images[1].bias + data_off);
    k.load_u8(procs[1], d1).unwrap();
    let original = k.load_u8(procs[0], d0).unwrap();
    k.store_u8(procs[0], d0, original ^ 0xff).unwrap();
    assert_eq!(k.load_u8(procs[1], d1).unwrap(), original);
    assert_ne!(k.frame_of(procs[0], d0), k.frame_of(procs[1], d1));
    assert_eq!(
        k.frames_in_use(),
        before + 1,
        "exactly one new frame: the copy"
    );
    // Writing to text is refused.
    assert!(k
        .store_u8(procs[0], VirtAddr(images[0].bias + text_off), 0)
        .is_err());
}

#[test]
fn exec_of_a_non_elf_file_is_enoexec() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("script.sh");
    std::fs::write(&path, b"#!/bin/sh\necho hi\n").unwrap();
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    assert_eq!(k.exec(p, &path).unwrap_err(), vmem::Errno::ENOEXEC);
    assert_eq!(
        k.exec(p, dir.path().join("missing")).unwrap_err(),
        vmem::Errno::ENOENT
    );
}

#[test]
fn a_segment_whose_offset_and_address_disagree_within_a_page_is_einval() {
    // The first PT_LOAD's file offset moved by 16 bytes: it no longer agrees with its
    // address modulo the page size, so elf_map's mmap gets an unaligned offset (EINVAL),
    // as a binary linked for smaller pages does on a kernel with larger ones.
    let mut bytes = std::fs::read(binary()).unwrap();
    let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    let phoff = u64_at(&bytes, 0x20) as usize;
    let phentsize = u16::from_le_bytes([bytes[0x36], bytes[0x37]]) as usize;
    let phnum = u16::from_le_bytes([bytes[0x38], bytes[0x39]]) as usize;
    let load = (0..phnum)
        .map(|i| phoff + i * phentsize)
        .find(|&ph| u32::from_le_bytes(bytes[ph..ph + 4].try_into().unwrap()) == 1)
        .expect("a PT_LOAD");
    let off = u64_at(&bytes, load + 8) + 16;
    bytes[load + 8..load + 16].copy_from_slice(&off.to_le_bytes());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("misaligned");
    std::fs::write(&path, &bytes).unwrap();
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    assert_eq!(k.exec(p, &path).unwrap_err(), vmem::Errno::EINVAL);
}
