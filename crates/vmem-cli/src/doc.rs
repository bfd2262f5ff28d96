//! The script API reference: one entry per function, for `help`, completion and `vmem api`.

/// One documented function.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// Name as typed (`mmap`, `load_u8`).
    pub name: &'static str,
    /// How it is called.
    pub sig: &'static str,
    /// What it does and returns.
    pub doc: &'static str,
}

const fn e(name: &'static str, sig: &'static str, doc: &'static str) -> Entry {
    Entry { name, sig, doc }
}

/// Sections of the reference, in order.
pub const SECTIONS: &[(&str, &[Entry])] = &[
    (
        "Machine and processes",
        &[
            e("machine", "machine(#{ram_mib: 16, tlb_sets: 64, tlb_ways: 4, read_around_pages: 32, fault_around_pages: 16})",
              "Configures the machine; call it before the first spawn() or stats(). Also ram_kib, mmap_min_addr, max_map_count. --config key=value overrides it."),
            e("spawn", "let p = spawn()", "A new process with an empty address space. Throws #{errno, error} if it cannot."),
            e("stats", "stats()", "The machine's counters as a map (minor_faults, major_faults, disk_reads, copied_to_user, mapped_loads, ...) plus frames_in_use, free_frames, total_frames, processes."),
            e("sync", "sync()", "Writes every dirty page of every file to disk (Linux sync). Returns 0 or -errno."),
            e("cached_pages", "cached_pages(path)", "Pages of the file in the page cache."),
            e("meminfo", "meminfo()", "The hugetlb pool as /proc/meminfo shows it: #{HugePages_Total, HugePages_Free, HugePages_Rsvd, HugePages_Surp, Hugepagesize}."),
            e("set_nr_hugepages", "set_nr_hugepages(n)", "echo n > /proc/sys/vm/nr_hugepages: grows the 2 MiB pool (as far as RAM allows) or shrinks it (pages in use or reserved become surplus); returns the size it reads back. The boot size is the machine setting nr_hugepages."),
        ],
    ),
    (
        "Files (data directory)",
        &[
            e("file", "file(name, \"text\" | blob | size [, pattern])",
              "Creates a file in the data directory and returns its path: with this text or blob, or size bytes of zeros (sparse), or size bytes repeating pattern."),
            e("path", "path(name)", "The path of name inside the data directory (nothing created)."),
            e("read_file", "read_file(path)", "The file's contents as a string, read with std::fs, not through the machine: what is on disk."),
            e("read_file_bytes", "read_file_bytes(path)", "The same as a blob."),
            e("file_size", "file_size(path)", "The file's size on disk."),
            e("data_dir", "data_dir()", "The data directory (a temporary one unless --dir)."),
        ],
    ),
    (
        "File syscalls (p is a process; they return a SysResult r)",
        &[
            e("open", "p.open(path, flags [, mode])", "O_RDONLY, O_RDWR, O_CREAT, ... Relative paths are in the data directory; writing outside it needs --allow-write. r.fd is the descriptor."),
            e("close", "p.close(fd)", "Mappings made through fd stay valid."),
            e("read", "p.read(fd, count)", "Copies from the page cache: r.count bytes, r.data (string), r.bytes (blob)."),
            e("pread", "p.pread(fd, count, offset)", "read at offset without moving the file position."),
            e("write", "p.write(fd, \"text\" | blob)", "Copies into the page cache; r.count bytes written."),
            e("pwrite", "p.pwrite(fd, data, offset)", "write at offset."),
            e("lseek", "p.lseek(fd, offset, whence)", "SEEK_SET, SEEK_CUR, SEEK_END; r.offset."),
            e("ftruncate", "p.ftruncate(fd, length)", "Shrinking drops pages past the end: later accesses there get SIGBUS."),
            e("fsync", "p.fsync(fd)", "Writes the file's dirty pages to disk."),
            e("dup", "p.dup(fd)", "A second descriptor for the same open file."),
        ],
    ),
    (
        "Memory syscalls",
        &[
            e("mmap", "p.mmap(addr, len, prot, flags, fd, offset)", "Creates a VMA and loads nothing; r.addr is the start. Use fd -1 with MAP_ANONYMOUS."),
            e("munmap", "p.munmap(addr, len)", "Removes mappings (splitting VMAs)."),
            e("mprotect", "p.mprotect(addr, len, prot)", "Changes protection (splitting VMAs)."),
            e("msync", "p.msync(addr, len, flags)", "MS_SYNC writes the dirty shared pages back to the file."),
            e("madvise", "p.madvise(addr, len, advice)", "MADV_DONTNEED, MADV_WILLNEED, MADV_SEQUENTIAL, ..."),
            e("mremap", "p.mremap(old, old_len, new_len, flags [, new_addr])", "MREMAP_MAYMOVE, MREMAP_FIXED, MREMAP_DONTUNMAP; r.addr."),
            e("mincore", "p.mincore(addr, len)", "r.value is an array, one 0/1 per page: resident or not."),
            e("brk", "p.brk(addr)", "Moves the end of the heap (after exec); r.addr is the new end."),
            e("exec", "p.exec(path)", "Replaces the address space with a real ELF executable (no instruction runs); r.value is #{entry, brk, stack_start, stack_top, segments, interp}."),
            e("map_library", "p.map_library(path)", "Maps a real shared object (e.g. libc.so.6) as the dynamic loader does: each PT_LOAD segment MAP_PRIVATE at a free address; r.value is #{entry, bias, segments, interp}."),
            e("fork", "let c = p.fork()", "A child process sharing every page copy-on-write. Throws #{errno, error} if it cannot."),
            e("exit", "p.exit()", "Ends the process: unmaps everything, closes its descriptors."),
        ],
    ),
    (
        "Memory accesses (through the MMU; signals are thrown)",
        &[
            e("load_u8", "p.load_u8(addr)", "Also load_u16, load_u32, load_u64 (little-endian; u64 comes back as a signed 64-bit integer). A SIGSEGV or SIGBUS is thrown as #{signal, code, addr, reason, number, pid, op}: catch it with try { ... } catch (e) { ... }."),
            e("store_u8", "p.store_u8(addr, value)", "Also store_u16, store_u32, store_u64."),
            e("load_str", "p.load_str(addr, len)", "len bytes as a string (invalid UTF-8 replaced)."),
            e("store_str", "p.store_str(addr, \"text\")", "Stores the string's bytes (no terminating NUL)."),
            e("load_bytes", "p.load_bytes(addr, len)", "len bytes as a blob."),
            e("store_bytes", "p.store_bytes(addr, blob)", "Stores a blob."),
            e("fetch", "p.fetch(addr, len)", "Instruction fetch: needs PROT_EXEC."),
        ],
    ),
    (
        "Looking at a process",
        &[
            e("maps", "p.maps()", "The address space as /proc/PID/maps prints it."),
            e("vmas", "p.vmas()", "Array of #{start, end, perms, pages, anonymous, shared}."),
            e("stats", "p.stats()", "The process's counters, plus rss_file, rss_anon, page_table_frames, vmas."),
            e("frame_of", "p.frame_of(addr)", "The physical frame mapped at addr, or -1 (a look at the tables, no access)."),
            e("pte", "p.pte(addr)", "The leaf page-table entry for addr, decoded."),
            e(
                "pmd",
                "p.pmd(addr)",
                "The PMD entry for addr, decoded: a 2 MiB page's own entry, or a table's.",
            ),
            e("pid", "p.pid / p.alive", "The process id; whether it is still running."),
        ],
    ),
    (
        "Results of syscalls (SysResult r)",
        &[
            e("ok", "r.ok / r.failed", "Whether the call succeeded."),
            e("errno", "r.errno / r.error / r.message", "The errno number (0 on success; compare with EACCES, EINVAL, ...), its name, its strerror text."),
            e("value", "r.value (also r.addr, r.fd, r.count, r.offset, r.unwrap())", "The result; using it after a failure stops the script with the errno."),
            e("data", "r.data / r.bytes", "What read()/pread() returned, as a string / blob."),
        ],
    ),
    (
        "Checks and output",
        &[
            e("assert", "assert(cond [, message])", "Fails the run (exit status 1) if cond is false; try/catch does not catch it."),
            e("assert_eq", "assert_eq(left, right [, message])", "Fails the run unless left == right, showing both."),
            e("assert_ne", "assert_ne(left, right [, message])", "Fails the run if left == right."),
            e("print", "print(value)", "Prints a line, inline with the narration."),
            e("section", "section(\"title\")", "Prints a heading."),
            e("explain", "explain(false) / explain(true)", "Pauses / resumes the narration (with --explain or --json)."),
            e("hex", "hex(n)", "\"0x...\"."),
            e("errno_name", "errno_name(n)", "The name of errno n, e.g. \"EACCES\"."),
        ],
    ),
];

/// Every entry.
pub fn entries() -> impl Iterator<Item = &'static Entry> {
    SECTIONS.iter().flat_map(|(_, es)| es.iter())
}

/// Names a script can call (for completion and "did you mean").
pub fn function_names() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = entries().map(|e| e.name).collect();
    v.extend([
        "load_u16",
        "load_u32",
        "load_u64",
        "store_u16",
        "store_u32",
        "store_u64",
        "stats",
        "alive",
        "failed",
        "error",
        "message",
        "addr",
        "fd",
        "count",
        "offset",
        "unwrap",
        "bytes",
    ]);
    v.sort_unstable();
    v.dedup();
    v
}

/// The entry for `name` (`p.stats` and `stats` both work).
pub fn find(name: &str) -> Vec<&'static Entry> {
    let name = name.trim().trim_start_matches("p.").trim_end_matches("()");
    let name = match name {
        "load_u16" | "load_u32" | "load_u64" => "load_u8",
        "store_u16" | "store_u32" | "store_u64" => "store_u8",
        other => other,
    };
    entries().filter(|e| e.name == name).collect()
}

/// The whole reference as text.
pub fn reference() -> String {
    let mut s = String::new();
    for (title, es) in SECTIONS {
        s.push_str(&format!("{title}\n"));
        for e in es.iter() {
            s.push_str(&format!("  {}\n", e.sig));
            for l in crate::narrate::wrap(6, e.doc, crate::narrate::WIDTH) {
                s.push_str(&l);
                s.push('\n');
            }
        }
        s.push('\n');
    }
    s.push_str(
        "Constants: PROT_*, MAP_*, MS_*, MADV_*, MREMAP_*, O_*, SEEK_*, PAGE_SIZE and every\n\
         errno name (EACCES, EINVAL, ENOMEM, ...) as integers.\n",
    );
    s
}

/// Levenshtein distance, for "did you mean".
pub fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The known name closest to `name`, if close enough to be a typo.
pub fn suggest(name: &str) -> Option<&'static str> {
    function_names()
        .into_iter()
        .map(|n| (distance(name, n), n))
        .filter(|(d, n)| *d > 0 && *d <= 2.max(n.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names() {
        assert_eq!(suggest("mmapp"), Some("mmap"));
        assert_eq!(suggest("lod_u8"), Some("load_u8"));
        assert_eq!(suggest("completely_different"), None);
    }

    #[test]
    fn finds_entries() {
        assert_eq!(find("mmap")[0].name, "mmap");
        assert_eq!(find("p.load_u64")[0].name, "load_u8");
        assert!(!find("stats").is_empty());
    }
}
