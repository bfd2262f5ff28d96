//! The scripting API: a Rhai engine whose functions drive one emulated machine.
//!
//! Owns [`State`] (the machine, booted lazily so that `machine(...)` can configure it
//! first; the output; the data directory and what scripts may write), the script-visible
//! types `Process` ([`Proc`]) and `SysResult` ([`SysRet`]), and [`build_engine`], which
//! registers every function, the C constants and the limits. Syscalls return a
//! `SysResult` to test (`r.ok`, `r.errno == EACCES`, `r.value`); a memory access that
//! the kernel answers with a signal throws a map (`#{signal, code, addr, reason, ...}`)
//! that `try`/`catch` can inspect.

use crate::narrate::{ellipsize, Head, Out};
use rhai::{
    Array, Blob, Dynamic, Engine, EvalAltResult, Map, Module, NativeCallContext, Position, INT,
};
use std::cell::RefCell;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;
use vmem::consts::*;
use vmem::{Errno, Kernel, MachineConfig, Pid, Signal, SysResult, VirtAddr};

/// Largest single transfer a script may ask for (read count, load length): 4 MiB.
pub const MAX_IO: usize = 4 << 20;
/// Largest file `file(name, size)` creates: 1 GiB (sparse).
pub const MAX_FILE: u64 = 1 << 30;
/// Most RAM a machine may have: 4 GiB.
pub const MAX_RAM: u64 = 4 << 30;

type Res<T> = Result<T, Box<EvalAltResult>>;

/// A failed `assert`: not catchable by `try`/`catch`; the run exits with status 1.
#[derive(Debug, Clone)]
pub struct AssertFail {
    /// What failed.
    pub message: String,
    /// Where.
    pub pos: Position,
}

impl std::fmt::Display for AssertFail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for AssertFail {}

/// The machine settings a script (`machine(#{...})`) or `--config key=value` may change.
pub const CONFIG_KEYS: &[(&str, &str)] = &[
    ("ram_mib", "RAM in MiB, 1..=4096 (default 64)"),
    ("ram_kib", "RAM in KiB, 256..=4194304 (instead of ram_mib)"),
    (
        "tlb_sets",
        "TLB sets, a power of two up to 65536 (default 64)",
    ),
    ("tlb_ways", "TLB ways per set, 1..=64 (default 4)"),
    (
        "read_around_pages",
        "pages read around a major fault, 0..=1024 (default 32)",
    ),
    (
        "fault_around_pages",
        "cached pages mapped around a read fault, 0..=512 (default 16)",
    ),
    (
        "mmap_min_addr",
        "lowest address mmap hands out, 0..=4 GiB (default 65536)",
    ),
    (
        "max_map_count",
        "most VMAs per process, 1..=1000000 (default 65530)",
    ),
    (
        "swap_mib",
        "swap space in MiB, 0..=4096 (default 0: no swap)",
    ),
    (
        "policy",
        "page replacement: \"two-list\" (default), \"clock\", \"fifo\", \"lru\", \"random\"",
    ),
    (
        "watermark_low",
        "free frames below which reclaim starts (default 0: automatic)",
    ),
    (
        "watermark_high",
        "free frames reclaim stops at (default 0: automatic)",
    ),
    (
        "dirty_background_ratio",
        "percent of RAM dirty pages may reach before write-back, 1..=100 (default 10)",
    ),
    (
        "translation",
        "\"paging\" (default), \"segmentation\" or \"segment-paging\"",
    ),
    (
        "paging_levels",
        "4 (default, 48-bit addresses) or 5 (57-bit)",
    ),
    (
        "transparent_hugepage",
        "2 MiB pages for anonymous memory: \"madvise\" (default: MADV_HUGEPAGE areas), \"always\" or \"never\"",
    ),
    (
        "page_size",
        "bytes per page, fixed when vmem is built as in Linux: 4096 (default build), 16384 or 65536 (built with --features page-16k or page-64k: an arm64 machine); a script that needs one page size states it here",
    ),
    (
        "nr_hugepages",
        "huge pages (2 MiB; 32 or 512 MiB with 16 or 64 KiB pages) set aside at boot for MAP_HUGETLB, 0..=2048 (default 0; x86-64 and arm64 machines; the pool gets what RAM has)",
    ),
    (
        "geometry",
        "paging hardware: \"x86-64\" (default), \"la57\" (5-level), \"i386\" (32-bit two-level, no NX, 3 GiB user space), \"sv39\" (RISC-V) or \"arm64\" (4 KiB granule); \"arm64-16k\" or \"arm64-64k\" in a vmem built with --features page-16k or page-64k",
    ),
];

/// Applies one setting (`raw` as written: `16`, `0x10000`, `clock`), checking its range.
pub fn apply_config(cfg: &mut MachineConfig, key: &str, raw: &str) -> Result<(), String> {
    if key == "policy" {
        cfg.policy = vmem::reclaim::policy::PolicyKind::parse(raw.trim()).ok_or_else(|| {
            format!("policy = {raw:?}: expected two-list, clock, fifo, lru or random")
        })?;
        return Ok(());
    }
    if key == "transparent_hugepage" {
        use vmem::config::ThpMode;
        cfg.thp = match raw.trim() {
            "madvise" => ThpMode::Madvise,
            "always" => ThpMode::Always,
            "never" => ThpMode::Never,
            _ => {
                return Err(format!(
                    "transparent_hugepage = {raw:?}: expected madvise, always or never"
                ))
            }
        };
        return Ok(());
    }
    if key == "translation" {
        use vmem::config::TranslationMode;
        cfg.translation = match raw.trim() {
            "paging" => TranslationMode::Paging,
            "segmentation" => TranslationMode::Segmentation,
            "segment-paging" | "segpage" => TranslationMode::SegmentPaging,
            _ => {
                return Err(format!(
                    "translation = {raw:?}: expected paging, segmentation or segment-paging"
                ))
            }
        };
        return Ok(());
    }
    if key == "geometry" {
        let name = raw.trim().trim_matches('"');
        let geom = vmem::config::PagingGeometry::parse(name).ok_or_else(|| {
            format!(
                "geometry = {raw:?}: expected {}",
                vmem::config::PagingGeometry::names_for_this_kernel().join(", ")
            )
        })?;
        if let Some(why) = geom.unfit_reason() {
            return Err(format!("geometry = {raw:?}: {why}"));
        }
        cfg.geometry = geom;
        return Ok(());
    }
    if !CONFIG_KEYS.iter().any(|(k, _)| *k == key) {
        let known: Vec<&str> = CONFIG_KEYS.iter().map(|(k, _)| *k).collect();
        return Err(format!(
            "unknown machine setting `{key}` (known: {})",
            known.join(", ")
        ));
    }
    let v = parse_int(raw).ok_or_else(|| format!("{key} = {raw:?} is not an integer"))?;
    let range = |lo: i64, hi: i64| -> Result<u64, String> {
        if (lo..=hi).contains(&v) {
            Ok(v as u64)
        } else {
            Err(format!("{key} = {v} is out of range ({lo}..={hi})"))
        }
    };
    match key {
        "ram_mib" => cfg.ram_bytes = range(1, (MAX_RAM >> 20) as i64)? << 20,
        "ram_kib" => cfg.ram_bytes = (range(256, (MAX_RAM >> 10) as i64)? << 10) & !0xfff,
        "tlb_sets" => {
            let n = range(1, 65536)?;
            if !n.is_power_of_two() {
                return Err(format!("tlb_sets = {v} is not a power of two"));
            }
            cfg.tlb_sets = n as usize;
        }
        "tlb_ways" => cfg.tlb_ways = range(1, 64)? as usize,
        "read_around_pages" => cfg.read_around_pages = range(0, 1024)?,
        "fault_around_pages" => cfg.fault_around_pages = range(0, 512)?,
        "mmap_min_addr" => cfg.mmap_min_addr = range(0, 1 << 32)?,
        "max_map_count" => cfg.max_map_count = range(1, 1_000_000)? as usize,
        "swap_mib" => cfg.swap_bytes = range(0, 4096)? << 20,
        "watermark_low" => cfg.watermark_low = range(0, 1 << 20)?,
        "watermark_high" => cfg.watermark_high = range(0, 1 << 20)?,
        "dirty_background_ratio" => cfg.dirty_background_ratio = range(1, 100)?,
        "nr_hugepages" => cfg.nr_hugepages = range(0, 2048)?,
        "paging_levels" => {
            let geom = if range(4, 5)? == 5 {
                vmem::config::PagingGeometry::X86_64_5LEVEL
            } else {
                vmem::config::PagingGeometry::X86_64_4LEVEL
            };
            if let Some(why) = geom.unfit_reason() {
                return Err(format!("{key} = {v}: {why}"));
            }
            cfg.geometry = geom;
        }
        "page_size" => {
            let size = range(4096, 65536)?;
            if size != vmem::addr::PAGE_SIZE {
                let build = match size {
                    16384 => "build vmem with `--features page-16k`",
                    65536 => "build vmem with `--features page-64k`",
                    4096 => "build vmem without the page-16k / page-64k features",
                    _ => "page sizes are 4096, 16384 or 65536",
                };
                return Err(format!(
                    "page_size = {size}: this vmem was built with {} byte pages ({build}); \
                     as in Linux, the page size is chosen when the kernel is built",
                    vmem::addr::PAGE_SIZE
                ));
            }
        }
        _ => unreachable!("checked against CONFIG_KEYS above"),
    }
    Ok(())
}

/// Parses an integer as scripts write them: `42`, `0x1000`, `0o644`, `0b101`, `1_000`.
pub fn parse_int(s: &str) -> Option<i64> {
    let t = s.trim().replace('_', "");
    let (neg, t) = match t.strip_prefix('-') {
        Some(r) => (true, r.to_string()),
        None => (false, t),
    };
    let v = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        i64::from_str_radix(h, 16).ok()?
    } else if let Some(o) = t.strip_prefix("0o") {
        i64::from_str_radix(o, 8).ok()?
    } else if let Some(b) = t.strip_prefix("0b") {
        i64::from_str_radix(b, 2).ok()?
    } else {
        t.parse().ok()?
    };
    Some(if neg { -v } else { v })
}

/// Everything one run shares.
pub struct State {
    kernel: RefCell<Option<Kernel>>,
    cfg: RefCell<MachineConfig>,
    overrides: Vec<(String, String)>,
    /// Standard output.
    pub out: Rc<RefCell<Out>>,
    /// Where scripts create files (canonical).
    pub data_dir: PathBuf,
    /// Roots under which scripts may create, write and truncate files (canonical).
    writable: Vec<PathBuf>,
    /// The first failed assertion, even if a `try` caught it.
    pub assertion: RefCell<Option<AssertFail>>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("data_dir", &self.data_dir)
            .finish()
    }
}

impl State {
    /// A state writing to `out`, with its data in `data_dir`; `allow_write` adds roots
    /// scripts may write under; `overrides` are `--config` settings (already checked).
    pub fn new(
        out: Rc<RefCell<Out>>,
        data_dir: &Path,
        allow_write: &[PathBuf],
        overrides: Vec<(String, String)>,
    ) -> std::io::Result<State> {
        let data_dir = data_dir.canonicalize()?;
        let mut writable = vec![data_dir.clone()];
        for p in allow_write {
            writable.push(canonical_prefix(p).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("--allow-write {}: not a usable path", p.display()),
                )
            })?);
        }
        out.borrow_mut()
            .strip_prefix(&data_dir.display().to_string());
        Ok(State {
            kernel: RefCell::new(None),
            cfg: RefCell::new(MachineConfig::default()),
            overrides,
            out,
            data_dir,
            writable,
            assertion: RefCell::new(None),
        })
    }

    /// Whether the machine has been booted.
    pub fn booted(&self) -> bool {
        self.kernel.borrow().is_some()
    }

    /// Boots the machine (with the `--config` settings over the script's).
    fn boot(&self) -> Result<(), String> {
        let mut slot = self.kernel.borrow_mut();
        if slot.is_some() {
            return Ok(());
        }
        let mut cfg = self.cfg.borrow().clone();
        for (k, v) in &self.overrides {
            apply_config(&mut cfg, k, v)?;
        }
        let mut k = Kernel::try_new(cfg).map_err(|e| format!("cannot boot the machine: {e}"))?;
        if self.out.borrow().mode() != crate::narrate::Mode::Quiet {
            k.set_observer(Some(Box::new(crate::narrate::Tap(self.out.clone()))));
        }
        *slot = Some(k);
        Ok(())
    }

    /// Runs `f` on the machine, booting it first if needed (a machine that cannot boot
    /// with its settings boots with the defaults).
    pub fn with_kernel<R>(&self, f: impl FnOnce(&mut Kernel) -> R) -> R {
        if self.boot().is_err() {
            *self.cfg.borrow_mut() = MachineConfig::default();
            let mut k = Kernel::new(MachineConfig::default());
            if self.out.borrow().mode() != crate::narrate::Mode::Quiet {
                k.set_observer(Some(Box::new(crate::narrate::Tap(self.out.clone()))));
            }
            *self.kernel.borrow_mut() = Some(k);
        }
        let mut slot = self.kernel.borrow_mut();
        let k = slot.get_or_insert_with(|| Kernel::new(MachineConfig::default()));
        f(k)
    }

    /// Takes the machine out (at the end of a run), if it was booted.
    pub fn take_kernel(&self) -> Option<Kernel> {
        self.kernel.borrow_mut().take()
    }

    /// A script path: relative paths are inside the data directory.
    pub fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.data_dir.join(p)
        }
    }

    /// Whether scripts may create, write or truncate `path`.
    pub fn may_write(&self, path: &Path) -> bool {
        if path == Path::new("/dev/zero") || path == Path::new("/dev/null") {
            return true;
        }
        // A dangling symlink would let O_CREAT make its target, wherever it points.
        if let Ok(md) = path.symlink_metadata() {
            if md.file_type().is_symlink() && path.canonicalize().is_err() {
                return false;
            }
        }
        match canonical_prefix(path) {
            Some(c) => self.writable.iter().any(|root| c.starts_with(root)),
            None => false,
        }
    }

    fn note(&self, msg: &str) {
        let mut out = self.out.borrow_mut();
        out.flush();
        eprintln!("vmem: {msg}");
    }

    fn line_of(pos: Position) -> Option<usize> {
        pos.line()
    }
}

/// The canonical form of `p`: its longest existing ancestor canonicalized, with the rest
/// appended. `None` if a missing part is `..` or otherwise not a plain name.
fn canonical_prefix(p: &Path) -> Option<PathBuf> {
    let mut cur = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().ok()?.join(p)
    };
    let mut tail: Vec<std::ffi::OsString> = Vec::new();
    loop {
        if let Ok(c) = cur.canonicalize() {
            let mut c = c;
            for t in tail.iter().rev() {
                c.push(t);
            }
            return Some(c);
        }
        let name = match cur.components().next_back() {
            Some(Component::Normal(n)) => n.to_os_string(),
            _ => return None,
        };
        tail.push(name);
        cur = cur.parent()?.to_path_buf();
    }
}

/// A process, as scripts see it (`let p = spawn();`).
#[derive(Clone)]
pub struct Proc {
    pid: Pid,
    st: Rc<State>,
}

/// What a syscall returned: a value, or an errno.
#[derive(Clone, Debug)]
pub struct SysRet {
    call: &'static str,
    r: Result<Dynamic, Errno>,
    data: Option<Vec<u8>>,
}

impl SysRet {
    fn value(&self) -> Res<Dynamic> {
        match &self.r {
            Ok(v) => Ok(v.clone()),
            Err(e) => Err(format!(
                "{}() failed with {e}: test r.ok or r.errno before using r.value",
                self.call
            )
            .into()),
        }
    }

    fn show(&self) -> String {
        match &self.r {
            Ok(v) => {
                if let Ok(i) = v.as_int() {
                    show_int(i)
                } else {
                    v.to_string()
                }
            }
            Err(e) => format!("-1 {e}"),
        }
    }
}

fn show_int(i: INT) -> String {
    if (0..10).contains(&i) {
        i.to_string()
    } else if (0..65536).contains(&i) {
        format!("{i} (0x{i:x})")
    } else {
        format!("0x{i:x}")
    }
}

fn i32c(v: INT) -> i32 {
    i32::try_from(v).unwrap_or(-1)
}

fn rt_err(pos: Position, msg: impl Into<String>) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(Dynamic::from(msg.into()), pos))
}

fn errno_map(call: &str, e: Errno) -> Dynamic {
    let mut m = Map::new();
    m.insert("call".into(), call.into());
    m.insert("errno".into(), (e as i32 as INT).into());
    m.insert("error".into(), e.name().into());
    m.insert("message".into(), e.message().into());
    Dynamic::from_map(m)
}

fn counters_map(c: &vmem::Counters) -> Map {
    let mut m = Map::new();
    for (k, v) in c.fields() {
        m.insert(k.into(), (v as INT).into());
    }
    m
}

impl Proc {
    fn alive(&self) -> bool {
        self.st.with_kernel(|k| k.is_alive(self.pid))
    }

    /// Runs a syscall, narrated, and wraps its result.
    fn sys<T>(
        &self,
        ctx: &NativeCallContext,
        call: &'static str,
        f: impl FnOnce(&mut Kernel, Pid) -> SysResult<T>,
        conv: impl FnOnce(T) -> (Dynamic, Option<Vec<u8>>),
    ) -> SysRet {
        let st = &self.st;
        st.out
            .borrow_mut()
            .begin(State::line_of(ctx.call_position()));
        let (r, head) = if self.alive() {
            (st.with_kernel(|k| f(k, self.pid)), Head::Syscall)
        } else {
            (
                Err(Errno::ESRCH),
                Head::Text {
                    pid: self.pid.0,
                    call: format!("{call}(...)"),
                    result: "= -1 ESRCH (the process has exited)".into(),
                    failed: true,
                },
            )
        };
        st.out.borrow_mut().finish(head);
        match r {
            Ok(v) => {
                let (value, data) = conv(v);
                SysRet {
                    call,
                    r: Ok(value),
                    data,
                }
            }
            Err(e) => SysRet {
                call,
                r: Err(e),
                data: None,
            },
        }
    }

    /// Runs a memory access, narrated; a signal becomes a thrown map.
    fn access<T>(
        &self,
        ctx: &NativeCallContext,
        op: &str,
        addr: INT,
        arg: Option<String>,
        f: impl FnOnce(&mut Kernel, Pid, VirtAddr) -> Result<T, Signal>,
        show: impl FnOnce(&T) -> String,
    ) -> Res<T> {
        let pos = ctx.call_position();
        if !self.alive() {
            return Err(rt_err(
                pos,
                format!("{op}: process {} has exited", self.pid),
            ));
        }
        let st = &self.st;
        st.out.borrow_mut().begin(State::line_of(pos));
        let va = VirtAddr(addr as u64);
        let r = st.with_kernel(|k| f(k, self.pid, va));
        let args = match &arg {
            Some(a) => format!("{va}, {a}"),
            None => format!("{va}"),
        };
        let (result, failed) = match &r {
            Ok(v) => {
                let s = show(v);
                (if s.is_empty() { s } else { format!("= {s}") }, false)
            }
            Err(sig) => (format!(": {}", sig.name()), true),
        };
        st.out.borrow_mut().finish(Head::Text {
            pid: self.pid.0,
            call: format!("{op}({args})"),
            result,
            failed,
        });
        r.map_err(|sig| {
            let mut m = Map::new();
            m.insert("signal".into(), sig.name().into());
            m.insert("number".into(), (sig.number() as INT).into());
            m.insert("code".into(), sig.code_name().into());
            m.insert("addr".into(), (sig.addr().0 as INT).into());
            m.insert("reason".into(), sig.reason().into());
            m.insert("pid".into(), (self.pid.0 as INT).into());
            m.insert("op".into(), op.into());
            Box::new(EvalAltResult::ErrorRuntime(Dynamic::from_map(m), pos))
        })
    }

    fn open(&mut self, ctx: NativeCallContext, path: &str, flags: INT, mode: INT) -> SysRet {
        let p = self.st.resolve(path);
        let flags = i32c(flags);
        let wants_write = flags & O_ACCMODE != O_RDONLY || flags & (O_CREAT | O_TRUNC) != 0;
        if wants_write && !self.st.may_write(&p) {
            let flag_s = vmem::fs::syscalls::open_flags_str(flags);
            self.st.note(&format!(
                "open(\"{}\", {flag_s}) refused with EACCES: scripts may create, write and \
                 truncate files only inside the data directory ({}); allow more with \
                 --allow-write PATH",
                p.display(),
                self.st.data_dir.display()
            ));
            self.st
                .out
                .borrow_mut()
                .begin(State::line_of(ctx.call_position()));
            self.st.out.borrow_mut().finish(Head::Text {
                pid: self.pid.0,
                call: format!("open(\"{}\", {flag_s})", p.display()),
                result: "= -1 EACCES (refused by the vmem sandbox)".into(),
                failed: true,
            });
            return SysRet {
                call: "open",
                r: Err(Errno::EACCES),
                data: None,
            };
        }
        let mode = u32::try_from(mode).unwrap_or(0o644);
        self.sys(
            &ctx,
            "open",
            |k, pid| k.open(pid, &p, flags, mode),
            |fd| ((fd as INT).into(), None),
        )
    }
}

fn bytes_of(d: &Dynamic) -> Option<Vec<u8>> {
    if d.is_string() {
        d.clone().into_string().ok().map(String::into_bytes)
    } else if d.is_blob() {
        d.clone().try_cast::<Blob>()
    } else {
        None
    }
}

fn vma_map(v: &vmem::mm::vma::Vma) -> Dynamic {
    let mut m = Map::new();
    m.insert("start".into(), (v.start.0 as INT).into());
    m.insert("end".into(), (v.end.0 as INT).into());
    m.insert("perms".into(), v.perms().into());
    m.insert("pages".into(), (v.pages() as INT).into());
    m.insert("anonymous".into(), v.is_anon().into());
    m.insert("shared".into(), v.is_shared().into());
    Dynamic::from_map(m)
}

fn exec_map(e: &vmem::exec::ExecInfo) -> Dynamic {
    let mut m = image_fields(&e.image);
    m.insert("brk".into(), (e.brk.0 as INT).into());
    m.insert("stack_start".into(), (e.stack_start.0 as INT).into());
    m.insert("stack_top".into(), (e.stack_top.0 as INT).into());
    Dynamic::from_map(m)
}

/// `#{entry, bias, interp, segments}` of a loaded ELF image.
fn image_fields(img: &vmem::exec::LoadedImage) -> Map {
    let mut m = Map::new();
    m.insert("entry".into(), (img.entry.0 as INT).into());
    m.insert("bias".into(), (img.bias as INT).into());
    m.insert(
        "interp".into(),
        img.interp.clone().map_or(Dynamic::UNIT, |s| s.into()),
    );
    let segs: Array = img
        .segments
        .iter()
        .map(|s| {
            let mut sm = Map::new();
            sm.insert("start".into(), (s.start.0 as INT).into());
            sm.insert("file_end".into(), (s.file_end.0 as INT).into());
            sm.insert("mem_end".into(), (s.mem_end.0 as INT).into());
            sm.insert("prot".into(), (s.prot as INT).into());
            sm.insert("offset".into(), (s.offset as INT).into());
            Dynamic::from_map(sm)
        })
        .collect();
    m.insert("segments".into(), segs.into());
    m
}

/// The C constants and errno names, visible everywhere (functions included).
fn constants() -> Module {
    let mut m = Module::new();
    let mut c = |name: &str, v: i64| {
        m.set_var(name, v);
    };
    for (n, v) in [
        ("PROT_NONE", PROT_NONE),
        ("PROT_READ", PROT_READ),
        ("PROT_WRITE", PROT_WRITE),
        ("PROT_EXEC", PROT_EXEC),
        ("PROT_SEM", PROT_SEM),
        ("PROT_GROWSDOWN", PROT_GROWSDOWN),
        ("PROT_GROWSUP", PROT_GROWSUP),
        ("MAP_SHARED", MAP_SHARED),
        ("MAP_PRIVATE", MAP_PRIVATE),
        ("MAP_SHARED_VALIDATE", MAP_SHARED_VALIDATE),
        ("MAP_DROPPABLE", MAP_DROPPABLE),
        ("MAP_TYPE", MAP_TYPE),
        ("MAP_FIXED", MAP_FIXED),
        ("MAP_ANONYMOUS", MAP_ANONYMOUS),
        ("MAP_ANON", MAP_ANONYMOUS),
        ("MAP_32BIT", MAP_32BIT),
        ("MAP_GROWSDOWN", MAP_GROWSDOWN),
        ("MAP_DENYWRITE", MAP_DENYWRITE),
        ("MAP_EXECUTABLE", MAP_EXECUTABLE),
        ("MAP_LOCKED", MAP_LOCKED),
        ("MAP_NORESERVE", MAP_NORESERVE),
        ("MAP_POPULATE", MAP_POPULATE),
        ("MAP_NONBLOCK", MAP_NONBLOCK),
        ("MAP_STACK", MAP_STACK),
        ("MAP_HUGETLB", MAP_HUGETLB),
        ("MAP_HUGE_2MB", MAP_HUGE_2MB),
        ("MAP_HUGE_1GB", MAP_HUGE_1GB),
        ("MAP_SYNC", MAP_SYNC),
        ("MAP_FIXED_NOREPLACE", MAP_FIXED_NOREPLACE),
        ("MAP_UNINITIALIZED", MAP_UNINITIALIZED),
        ("MS_ASYNC", MS_ASYNC),
        ("MS_INVALIDATE", MS_INVALIDATE),
        ("MS_SYNC", MS_SYNC),
        ("MADV_NORMAL", MADV_NORMAL),
        ("MADV_RANDOM", MADV_RANDOM),
        ("MADV_SEQUENTIAL", MADV_SEQUENTIAL),
        ("MADV_WILLNEED", MADV_WILLNEED),
        ("MADV_DONTNEED", MADV_DONTNEED),
        ("MADV_FREE", MADV_FREE),
        ("MADV_REMOVE", MADV_REMOVE),
        ("MADV_DONTFORK", MADV_DONTFORK),
        ("MADV_DOFORK", MADV_DOFORK),
        ("MADV_MERGEABLE", MADV_MERGEABLE),
        ("MADV_UNMERGEABLE", MADV_UNMERGEABLE),
        ("MADV_HUGEPAGE", MADV_HUGEPAGE),
        ("MADV_NOHUGEPAGE", MADV_NOHUGEPAGE),
        ("MADV_DONTDUMP", MADV_DONTDUMP),
        ("MADV_DODUMP", MADV_DODUMP),
        ("MADV_WIPEONFORK", MADV_WIPEONFORK),
        ("MADV_KEEPONFORK", MADV_KEEPONFORK),
        ("MADV_COLD", MADV_COLD),
        ("MADV_PAGEOUT", MADV_PAGEOUT),
        ("MADV_POPULATE_READ", MADV_POPULATE_READ),
        ("MADV_POPULATE_WRITE", MADV_POPULATE_WRITE),
        ("MREMAP_MAYMOVE", MREMAP_MAYMOVE),
        ("MREMAP_FIXED", MREMAP_FIXED),
        ("MREMAP_DONTUNMAP", MREMAP_DONTUNMAP),
        ("O_RDONLY", O_RDONLY),
        ("O_WRONLY", O_WRONLY),
        ("O_RDWR", O_RDWR),
        ("O_ACCMODE", O_ACCMODE),
        ("O_CREAT", O_CREAT),
        ("O_EXCL", O_EXCL),
        ("O_NOCTTY", O_NOCTTY),
        ("O_TRUNC", O_TRUNC),
        ("O_APPEND", O_APPEND),
        ("O_NONBLOCK", O_NONBLOCK),
        ("O_DIRECTORY", O_DIRECTORY),
        ("O_CLOEXEC", O_CLOEXEC),
        ("SEEK_SET", SEEK_SET),
        ("SEEK_CUR", SEEK_CUR),
        ("SEEK_END", SEEK_END),
    ] {
        c(n, v as i64);
    }
    c("PAGE_SIZE", vmem::PAGE_SIZE as i64);
    c("MAP_FAILED", -1);
    for e in Errno::ALL {
        c(e.name(), *e as i32 as i64);
    }
    m
}

/// Names of every constant (for completion and `help`).
pub fn constant_names() -> Vec<String> {
    let m = constants();
    let mut v: Vec<String> = m.iter_var().map(|(k, _)| k.to_string()).collect();
    v.sort();
    v
}

/// Limits that stop a runaway script.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Rhai operations before the script is stopped (0: no limit).
    pub max_ops: u64,
    /// When to stop the script (the shell sets it again for each entry).
    pub deadline: Rc<std::cell::Cell<Option<Instant>>>,
}

/// Why `on_progress` stopped a script.
pub const STOP_TIMEOUT: &str = "timeout";
/// Standard output was closed.
pub const STOP_BROKEN_PIPE: &str = "stdout closed";

/// An engine with the whole API registered over `st`.
pub fn build_engine(st: &Rc<State>, limits: Limits) -> Engine {
    let mut engine = Engine::new();
    engine.set_max_operations(limits.max_ops);
    engine.set_max_call_levels(64);
    engine.set_max_expr_depths(128, 64);
    engine.set_max_string_size(16 << 20);
    engine.set_max_array_size(MAX_IO);
    engine.set_max_map_size(1 << 16);
    engine.set_fail_on_invalid_map_property(true);
    engine.register_global_module(constants().into());
    // Rhai reserves `spawn` and `sync` for future use; here they are the C names.
    #[allow(deprecated)]
    engine.on_parse_token(|tok, _, _| match tok {
        rhai::Token::Reserved(s) if matches!(s.as_str(), "spawn" | "sync") => {
            rhai::Token::Identifier(s)
        }
        other => other,
    });

    {
        let out = st.out.clone();
        engine.on_print(move |s| out.borrow_mut().print(s));
        let out = st.out.clone();
        engine.on_debug(move |s, _src, pos| {
            let at = pos.line().map(|l| format!(" line {l}")).unwrap_or_default();
            out.borrow_mut().print(&format!("[debug{at}] {s}"));
        });
        let out = st.out.clone();
        let deadline = limits.deadline;
        engine.on_progress(move |ops| {
            if ops % 1024 != 0 {
                return None;
            }
            if out.borrow().broken {
                return Some(STOP_BROKEN_PIPE.into());
            }
            match deadline.get() {
                Some(d) if Instant::now() >= d => Some(STOP_TIMEOUT.into()),
                _ => None,
            }
        });
    }

    register_machine(&mut engine, st);
    register_files(&mut engine, st);
    register_asserts(&mut engine, st);
    register_sysret(&mut engine);
    register_process(&mut engine);
    register_memory(&mut engine);
    engine
}

/// The huge-page lines of /proc/meminfo as a script map (`HugePages_Total`, ...).
fn huge_pages_map(h: &vmem::mm::hugetlb::HugePagesInfo) -> Map {
    let mut m = Map::new();
    m.insert("HugePages_Total".into(), (h.total as INT).into());
    m.insert("HugePages_Free".into(), (h.free as INT).into());
    m.insert("HugePages_Rsvd".into(), (h.rsvd as INT).into());
    m.insert("HugePages_Surp".into(), (h.surp as INT).into());
    m.insert("Hugepagesize".into(), (h.page_size as INT).into());
    m
}

fn register_machine(engine: &mut Engine, st: &Rc<State>) {
    let s = st.clone();
    engine.register_fn("machine", move |ctx: NativeCallContext, m: Map| -> Res<()> {
        let pos = ctx.call_position();
        if s.booted() {
            return Err(rt_err(
                pos,
                "machine(...) must come before the first spawn() or stats(): the machine is already running",
            ));
        }
        let mut cfg = s.cfg.borrow_mut();
        for (k, v) in m {
            let raw = if let Ok(i) = v.as_int() {
                i.to_string()
            } else if v.is_string() {
                v.to_string()
            } else {
                return Err(rt_err(
                    pos,
                    format!("machine: {k} must be an integer or a string, not {}", v.type_name()),
                ));
            };
            apply_config(&mut cfg, &k, &raw).map_err(|e| rt_err(pos, format!("machine: {e}")))?;
        }
        Ok(())
    });

    let s = st.clone();
    engine.register_fn("spawn", move |ctx: NativeCallContext| -> Res<Proc> {
        let pos = ctx.call_position();
        s.boot().map_err(|e| rt_err(pos, e))?;
        s.out.borrow_mut().begin(State::line_of(pos));
        let r = s.with_kernel(|k| k.spawn());
        let (result, failed) = match &r {
            Ok(pid) => (format!("= pid {pid}: a new process, nothing mapped"), false),
            Err(e) => (format!("= -1 {e}"), true),
        };
        s.out.borrow_mut().finish(Head::Text {
            pid: r.map_or(0, |p| p.0),
            call: "spawn()".into(),
            result,
            failed,
        });
        match r {
            Ok(pid) => Ok(Proc { pid, st: s.clone() }),
            Err(e) => Err(Box::new(EvalAltResult::ErrorRuntime(
                errno_map("spawn", e),
                pos,
            ))),
        }
    });

    let s = st.clone();
    engine.register_fn("stats", move |ctx: NativeCallContext| -> Res<Map> {
        s.boot().map_err(|e| rt_err(ctx.call_position(), e))?;
        Ok(s.with_kernel(|k| {
            let mut m = counters_map(&k.stats());
            m.insert("frames_in_use".into(), (k.frames_in_use() as INT).into());
            m.insert("free_frames".into(), (k.free_frames() as INT).into());
            m.insert("total_frames".into(), (k.total_frames() as INT).into());
            m.insert("processes".into(), (k.pids().len() as INT).into());
            m
        }))
    });

    let s = st.clone();
    engine.register_fn("meminfo", move |ctx: NativeCallContext| -> Res<Map> {
        s.boot().map_err(|e| rt_err(ctx.call_position(), e))?;
        Ok(s.with_kernel(|k| huge_pages_map(&k.huge_pages_info())))
    });

    // echo n > /proc/sys/vm/nr_hugepages: returns what it reads back.
    let s = st.clone();
    engine.register_fn(
        "set_nr_hugepages",
        move |ctx: NativeCallContext, n: INT| -> Res<INT> {
            let pos = ctx.call_position();
            if !(0..=1 << 20).contains(&n) {
                return Err(rt_err(
                    pos,
                    format!("set_nr_hugepages: {n} is out of range (0..=1048576)"),
                ));
            }
            s.boot().map_err(|e| rt_err(pos, e))?;
            s.out.borrow_mut().begin(State::line_of(pos));
            let got = s.with_kernel(|k| k.set_nr_hugepages(n as u64));
            s.out.borrow_mut().finish(Head::Text {
                pid: 0,
                call: format!("echo {n} > /proc/sys/vm/nr_hugepages"),
                result: format!("= {got} huge pages in the pool"),
                failed: false,
            });
            Ok(got as INT)
        },
    );

    let s = st.clone();
    engine.register_fn("sync", move |ctx: NativeCallContext| -> INT {
        s.out
            .borrow_mut()
            .begin(State::line_of(ctx.call_position()));
        let r = s.with_kernel(|k| k.sync());
        s.out.borrow_mut().finish(Head::Text {
            pid: 0,
            call: "sync()".into(),
            result: match r {
                Ok(()) => "= 0".into(),
                Err(e) => format!("= -1 {e}"),
            },
            failed: r.is_err(),
        });
        match r {
            Ok(()) => 0,
            Err(e) => -(e as i32 as INT),
        }
    });

    let s = st.clone();
    engine.register_fn("cached_pages", move |path: &str| -> INT {
        let p = s.resolve(path);
        s.with_kernel(|k| k.cached_pages(&p) as INT)
    });

    let s = st.clone();
    engine.register_fn("section", move |title: &str| {
        s.out.borrow_mut().section(title);
    });
    let s = st.clone();
    engine.register_fn("explain", move |on: bool| {
        s.out.borrow_mut().muted = !on;
    });
    engine.register_fn("hex", |v: INT| format!("0x{v:x}"));
    engine.register_fn("errno_name", |v: INT| -> String {
        i32::try_from(v)
            .ok()
            .and_then(Errno::from_raw)
            .map_or_else(|| format!("errno {v}"), |e| e.name().to_string())
    });
}

fn register_files(engine: &mut Engine, st: &Rc<State>) {
    fn data_path(st: &State, pos: Position, name: &str) -> Res<PathBuf> {
        let p = Path::new(name);
        if name.is_empty() || !p.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(rt_err(
                pos,
                format!(
                    "file name {name:?} must be relative and stay inside the data directory \
                     (no leading /, no ..)"
                ),
            ));
        }
        Ok(st.data_dir.join(p))
    }
    fn create(
        st: &State,
        pos: Position,
        name: &str,
        bytes: Option<&[u8]>,
        size: u64,
    ) -> Res<String> {
        let p = data_path(st, pos, name)?;
        let io = |e: std::io::Error| rt_err(pos, format!("file({name:?}): {e}"));
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        match bytes {
            Some(b) => std::fs::write(&p, b).map_err(io)?,
            None => {
                if size > MAX_FILE {
                    return Err(rt_err(
                        pos,
                        format!("file({name:?}, {size}): at most {MAX_FILE} bytes"),
                    ));
                }
                let f = std::fs::File::create(&p).map_err(io)?;
                f.set_len(size).map_err(io)?;
            }
        }
        Ok(p.display().to_string())
    }

    let s = st.clone();
    engine.register_fn(
        "file",
        move |ctx: NativeCallContext, name: &str, text: &str| -> Res<String> {
            create(&s, ctx.call_position(), name, Some(text.as_bytes()), 0)
        },
    );
    let s = st.clone();
    engine.register_fn(
        "file",
        move |ctx: NativeCallContext, name: &str, b: Blob| -> Res<String> {
            create(&s, ctx.call_position(), name, Some(&b), 0)
        },
    );
    let s = st.clone();
    engine.register_fn(
        "file",
        move |ctx: NativeCallContext, name: &str, size: INT| -> Res<String> {
            let pos = ctx.call_position();
            let size =
                u64::try_from(size).map_err(|_| rt_err(pos, "file: the size must be >= 0"))?;
            create(&s, pos, name, None, size)
        },
    );
    let s = st.clone();
    engine.register_fn(
        "file",
        move |ctx: NativeCallContext, name: &str, size: INT, pattern: &str| -> Res<String> {
            let pos = ctx.call_position();
            let size = usize::try_from(size)
                .ok()
                .filter(|n| *n <= 64 << 20)
                .ok_or_else(|| rt_err(pos, "file: the size must be 0..=64 MiB with a pattern"))?;
            if pattern.is_empty() {
                return Err(rt_err(pos, "file: the pattern must not be empty"));
            }
            let b: Vec<u8> = pattern.bytes().cycle().take(size).collect();
            create(&s, pos, name, Some(&b), 0)
        },
    );
    let s = st.clone();
    engine.register_fn(
        "path",
        move |ctx: NativeCallContext, name: &str| -> Res<String> {
            Ok(data_path(&s, ctx.call_position(), name)?
                .display()
                .to_string())
        },
    );
    let s = st.clone();
    engine.register_fn("data_dir", move || s.data_dir.display().to_string());

    fn read_limited(st: &State, pos: Position, path: &str) -> Res<Vec<u8>> {
        use std::io::Read;
        let p = st.resolve(path);
        let f = std::fs::File::open(&p)
            .map_err(|e| rt_err(pos, format!("read_file({}): {e}", p.display())))?;
        let mut v = Vec::new();
        f.take(MAX_IO as u64)
            .read_to_end(&mut v)
            .map_err(|e| rt_err(pos, format!("read_file({}): {e}", p.display())))?;
        Ok(v)
    }
    let s = st.clone();
    engine.register_fn(
        "read_file",
        move |ctx: NativeCallContext, path: &str| -> Res<String> {
            let v = read_limited(&s, ctx.call_position(), path)?;
            Ok(String::from_utf8_lossy(&v).into_owned())
        },
    );
    let s = st.clone();
    engine.register_fn(
        "read_file_bytes",
        move |ctx: NativeCallContext, path: &str| -> Res<Blob> {
            read_limited(&s, ctx.call_position(), path)
        },
    );
    let s = st.clone();
    engine.register_fn(
        "file_size",
        move |ctx: NativeCallContext, path: &str| -> Res<INT> {
            let p = s.resolve(path);
            std::fs::metadata(&p).map(|m| m.len() as INT).map_err(|e| {
                rt_err(
                    ctx.call_position(),
                    format!("file_size({}): {e}", p.display()),
                )
            })
        },
    );
}

fn fail(st: &State, message: String, pos: Position) -> Box<EvalAltResult> {
    let a = AssertFail { message, pos };
    st.assertion.borrow_mut().get_or_insert_with(|| a.clone());
    Box::new(EvalAltResult::ErrorSystem(String::new(), Box::new(a)))
}

fn show_dyn(d: &Dynamic) -> String {
    if d.is_unit() {
        return "()".into();
    }
    if let Ok(i) = d.as_int() {
        return show_int(i);
    }
    if d.is_string() {
        return format!("{:?}", d.to_string());
    }
    if let Some(r) = d.clone().try_cast::<SysRet>() {
        return r.show();
    }
    d.to_string()
}

fn equal(ctx: &NativeCallContext, a: &Dynamic, b: &Dynamic) -> bool {
    if let (Ok(x), Ok(y)) = (a.as_int(), b.as_int()) {
        return x == y;
    }
    if a.type_id() != b.type_id() {
        return false;
    }
    ctx.call_native_fn::<bool>("==", (a.clone(), b.clone()))
        .unwrap_or_else(|_| a.to_string() == b.to_string())
}

fn register_asserts(engine: &mut Engine, st: &Rc<State>) {
    let s = st.clone();
    engine.register_fn(
        "assert",
        move |ctx: NativeCallContext, cond: bool| -> Res<()> {
            if cond {
                Ok(())
            } else {
                Err(fail(&s, "assertion failed".into(), ctx.call_position()))
            }
        },
    );
    let s = st.clone();
    engine.register_fn(
        "assert",
        move |ctx: NativeCallContext, cond: bool, msg: &str| -> Res<()> {
            if cond {
                Ok(())
            } else {
                Err(fail(
                    &s,
                    format!("assertion failed: {msg}"),
                    ctx.call_position(),
                ))
            }
        },
    );
    for (name, want_eq) in [("assert_eq", true), ("assert_ne", false)] {
        let s = st.clone();
        engine.register_fn(
            name,
            move |ctx: NativeCallContext, a: Dynamic, b: Dynamic| -> Res<()> {
                check_eq(&s, &ctx, &a, &b, want_eq, None)
            },
        );
        let s = st.clone();
        engine.register_fn(
            name,
            move |ctx: NativeCallContext, a: Dynamic, b: Dynamic, msg: &str| -> Res<()> {
                check_eq(&s, &ctx, &a, &b, want_eq, Some(msg))
            },
        );
    }
}

fn check_eq(
    st: &State,
    ctx: &NativeCallContext,
    a: &Dynamic,
    b: &Dynamic,
    want_eq: bool,
    msg: Option<&str>,
) -> Res<()> {
    if equal(ctx, a, b) == want_eq {
        return Ok(());
    }
    let what = if want_eq {
        "assert_eq(left, right): the two differ"
    } else {
        "assert_ne(left, right): the two are equal"
    };
    let mut m = match msg {
        Some(msg) => format!("assertion failed: {msg}"),
        None => format!("assertion failed: {what}"),
    };
    m.push_str(&format!(
        "\n  left:  {}\n  right: {}",
        show_dyn(a),
        show_dyn(b)
    ));
    Err(fail(st, m, ctx.call_position()))
}

fn register_sysret(engine: &mut Engine) {
    engine.register_type_with_name::<SysRet>("SysResult");
    engine.register_get("ok", |r: &mut SysRet| r.r.is_ok());
    engine.register_get("failed", |r: &mut SysRet| r.r.is_err());
    engine.register_get("errno", |r: &mut SysRet| -> INT {
        r.r.as_ref().err().map_or(0, |e| *e as i32 as INT)
    });
    engine.register_get("error", |r: &mut SysRet| -> String {
        r.r.as_ref()
            .err()
            .map_or(String::new(), |e| e.name().to_string())
    });
    engine.register_get("message", |r: &mut SysRet| -> String {
        r.r.as_ref()
            .err()
            .map_or(String::new(), |e| e.message().to_string())
    });
    for name in ["value", "addr", "fd", "count", "offset"] {
        engine.register_get(name, |r: &mut SysRet| r.value());
    }
    engine.register_fn("unwrap", |r: &mut SysRet| r.value());
    engine.register_get("data", |r: &mut SysRet| -> Res<String> {
        let _ = r.value()?;
        Ok(String::from_utf8_lossy(r.data.as_deref().unwrap_or_default()).into_owned())
    });
    engine.register_get("bytes", |r: &mut SysRet| -> Res<Blob> {
        let _ = r.value()?;
        Ok(r.data.clone().unwrap_or_default())
    });
    engine.register_fn("to_string", |r: &mut SysRet| r.show());
    engine.register_fn("to_debug", |r: &mut SysRet| r.show());
}

fn register_process(engine: &mut Engine) {
    engine.register_type_with_name::<Proc>("Process");
    engine.register_get("pid", |p: &mut Proc| p.pid.0 as INT);
    engine.register_get("alive", |p: &mut Proc| p.alive());
    engine.register_fn("to_string", |p: &mut Proc| format!("process {}", p.pid));
    engine.register_fn("to_debug", |p: &mut Proc| format!("process {}", p.pid));

    engine.register_fn(
        "open",
        |ctx: NativeCallContext, p: &mut Proc, path: &str, flags: INT| {
            p.open(ctx, path, flags, 0o644)
        },
    );
    engine.register_fn(
        "open",
        |ctx: NativeCallContext, p: &mut Proc, path: &str, flags: INT, mode: INT| {
            p.open(ctx, path, flags, mode)
        },
    );
    engine.register_fn("close", |ctx: NativeCallContext, p: &mut Proc, fd: INT| {
        p.sys(
            &ctx,
            "close",
            |k, pid| k.close(pid, i32c(fd)),
            |()| (0.into(), None),
        )
    });
    engine.register_fn(
        "read",
        |ctx: NativeCallContext, p: &mut Proc, fd: INT, count: INT| {
            // Linux clamps a transfer to MAX_RW_COUNT; the CLI clamps harder.
            let count = usize::try_from(count.max(0)).unwrap_or(0).min(MAX_IO);
            p.sys(
                &ctx,
                "read",
                |k, pid| k.read(pid, i32c(fd), count),
                |v| ((v.len() as INT).into(), Some(v)),
            )
        },
    );
    engine.register_fn(
        "pread",
        |ctx: NativeCallContext, p: &mut Proc, fd: INT, count: INT, off: INT| {
            let count = usize::try_from(count.max(0)).unwrap_or(0).min(MAX_IO);
            p.sys(
                &ctx,
                "pread",
                |k, pid| k.pread(pid, i32c(fd), count, off),
                |v| ((v.len() as INT).into(), Some(v)),
            )
        },
    );
    fn write(
        ctx: NativeCallContext,
        p: &mut Proc,
        fd: INT,
        data: Dynamic,
        off: Option<INT>,
    ) -> Res<SysRet> {
        let bytes = bytes_of(&data).ok_or_else(|| {
            rt_err(
                ctx.call_position(),
                format!(
                    "write: data must be a string or a blob, not {}",
                    data.type_name()
                ),
            )
        })?;
        Ok(match off {
            None => p.sys(
                &ctx,
                "write",
                |k, pid| k.write(pid, i32c(fd), &bytes),
                |n| ((n as INT).into(), None),
            ),
            Some(off) => p.sys(
                &ctx,
                "pwrite",
                |k, pid| k.pwrite(pid, i32c(fd), &bytes, off),
                |n| ((n as INT).into(), None),
            ),
        })
    }
    engine.register_fn(
        "write",
        |ctx: NativeCallContext, p: &mut Proc, fd: INT, data: Dynamic| {
            write(ctx, p, fd, data, None)
        },
    );
    engine.register_fn(
        "pwrite",
        |ctx: NativeCallContext, p: &mut Proc, fd: INT, data: Dynamic, off: INT| {
            write(ctx, p, fd, data, Some(off))
        },
    );
    engine.register_fn(
        "lseek",
        |ctx: NativeCallContext, p: &mut Proc, fd: INT, off: INT, whence: INT| {
            p.sys(
                &ctx,
                "lseek",
                |k, pid| k.lseek(pid, i32c(fd), off, i32c(whence)),
                |n| ((n as INT).into(), None),
            )
        },
    );
    engine.register_fn(
        "ftruncate",
        |ctx: NativeCallContext, p: &mut Proc, fd: INT, len: INT| {
            p.sys(
                &ctx,
                "ftruncate",
                |k, pid| k.ftruncate(pid, i32c(fd), len),
                |()| (0.into(), None),
            )
        },
    );
    engine.register_fn("fsync", |ctx: NativeCallContext, p: &mut Proc, fd: INT| {
        p.sys(
            &ctx,
            "fsync",
            |k, pid| k.fsync(pid, i32c(fd)),
            |()| (0.into(), None),
        )
    });
    engine.register_fn("dup", |ctx: NativeCallContext, p: &mut Proc, fd: INT| {
        p.sys(
            &ctx,
            "dup",
            |k, pid| k.dup(pid, i32c(fd)),
            |n| ((n as INT).into(), None),
        )
    });
    engine.register_fn(
        "mmap",
        |ctx: NativeCallContext,
         p: &mut Proc,
         addr: INT,
         len: INT,
         prot: INT,
         flags: INT,
         fd: INT,
         off: INT| {
            p.sys(
                &ctx,
                "mmap",
                |k, pid| {
                    k.mmap(
                        pid,
                        VirtAddr(addr as u64),
                        len as u64,
                        i32c(prot),
                        i32c(flags),
                        i32c(fd),
                        off,
                    )
                },
                |va| ((va.0 as INT).into(), None),
            )
        },
    );
    engine.register_fn(
        "munmap",
        |ctx: NativeCallContext, p: &mut Proc, addr: INT, len: INT| {
            p.sys(
                &ctx,
                "munmap",
                |k, pid| k.munmap(pid, VirtAddr(addr as u64), len as u64),
                |()| (0.into(), None),
            )
        },
    );
    engine.register_fn(
        "mprotect",
        |ctx: NativeCallContext, p: &mut Proc, addr: INT, len: INT, prot: INT| {
            p.sys(
                &ctx,
                "mprotect",
                |k, pid| k.mprotect(pid, VirtAddr(addr as u64), len as u64, i32c(prot)),
                |()| (0.into(), None),
            )
        },
    );
    engine.register_fn(
        "msync",
        |ctx: NativeCallContext, p: &mut Proc, addr: INT, len: INT, flags: INT| {
            p.sys(
                &ctx,
                "msync",
                |k, pid| k.msync(pid, VirtAddr(addr as u64), len as u64, i32c(flags)),
                |()| (0.into(), None),
            )
        },
    );
    engine.register_fn(
        "madvise",
        |ctx: NativeCallContext, p: &mut Proc, addr: INT, len: INT, advice: INT| {
            p.sys(
                &ctx,
                "madvise",
                |k, pid| k.madvise(pid, VirtAddr(addr as u64), len as u64, i32c(advice)),
                |()| (0.into(), None),
            )
        },
    );
    fn mremap(
        ctx: NativeCallContext,
        p: &mut Proc,
        old: INT,
        old_len: INT,
        new_len: INT,
        flags: INT,
        new_addr: INT,
    ) -> SysRet {
        p.sys(
            &ctx,
            "mremap",
            |k, pid| {
                k.mremap(
                    pid,
                    VirtAddr(old as u64),
                    old_len as u64,
                    new_len as u64,
                    i32c(flags),
                    VirtAddr(new_addr as u64),
                )
            },
            |va| ((va.0 as INT).into(), None),
        )
    }
    engine.register_fn(
        "mremap",
        |ctx: NativeCallContext, p: &mut Proc, old: INT, old_len: INT, new_len: INT, flags: INT| {
            mremap(ctx, p, old, old_len, new_len, flags, 0)
        },
    );
    engine.register_fn("mremap", mremap);
    engine.register_fn(
        "mincore",
        |ctx: NativeCallContext, p: &mut Proc, addr: INT, len: INT| -> Res<SysRet> {
            // The library builds the whole vector before checking the range: bound it here.
            if len as u64 > (MAX_IO as u64) << 12 {
                return Err(rt_err(
                    ctx.call_position(),
                    format!("mincore: at most {} pages at a time", MAX_IO),
                ));
            }
            Ok(p.sys(
                &ctx,
                "mincore",
                |k, pid| k.mincore(pid, VirtAddr(addr as u64), len as u64),
                |v| {
                    let a: Array = v.into_iter().map(|b| (b as INT).into()).collect();
                    (a.into(), None)
                },
            ))
        },
    );
    engine.register_fn(
        "fork",
        |ctx: NativeCallContext, p: &mut Proc| -> Res<Proc> {
            let r = p.sys(
                &ctx,
                "fork",
                |k, pid| k.fork(pid),
                |c| ((c.0 as INT).into(), None),
            );
            match r.r {
                Ok(v) => Ok(Proc {
                    pid: Pid(v.as_int().unwrap_or(0) as u32),
                    st: p.st.clone(),
                }),
                Err(e) => Err(Box::new(EvalAltResult::ErrorRuntime(
                    errno_map("fork", e),
                    ctx.call_position(),
                ))),
            }
        },
    );
    engine.register_fn("exit", |ctx: NativeCallContext, p: &mut Proc| {
        let st = p.st.clone();
        let pid = p.pid;
        st.out
            .borrow_mut()
            .begin(State::line_of(ctx.call_position()));
        let r = st.with_kernel(|k| k.exit(pid));
        st.out.borrow_mut().finish(Head::Text {
            pid: pid.0,
            call: "exit()".into(),
            result: match &r {
                Ok(()) => "= 0: mappings, descriptors and page tables released".into(),
                Err(e) => format!("= -1 {e}"),
            },
            failed: r.is_err(),
        });
        SysRet {
            call: "exit",
            r: r.map(|()| 0.into()),
            data: None,
        }
    });
    engine.register_fn(
        "exec",
        |ctx: NativeCallContext, p: &mut Proc, path: &str| {
            let path = p.st.resolve(path);
            p.sys(
                &ctx,
                "exec",
                |k, pid| k.exec(pid, &path),
                |info| (exec_map(&info), None),
            )
        },
    );
    engine.register_fn(
        "map_library",
        |ctx: NativeCallContext, p: &mut Proc, path: &str| {
            let path = p.st.resolve(path);
            p.sys(
                &ctx,
                "map_library",
                |k, pid| k.map_library(pid, &path),
                |img| (Dynamic::from_map(image_fields(&img)), None),
            )
        },
    );
    engine.register_fn("brk", |ctx: NativeCallContext, p: &mut Proc, addr: INT| {
        p.sys(
            &ctx,
            "brk",
            |k, pid| k.brk(pid, VirtAddr(addr as u64)),
            |va| ((va.0 as INT).into(), None),
        )
    });
    engine.register_fn("stats", |p: &mut Proc| -> Res<Map> {
        let pid = p.pid;
        p.st.with_kernel(|k| {
            let c = k.process_stats(pid).map_err(|e| format!("stats: {e}"))?;
            let mut m = counters_map(&c);
            if let Ok(mm) = k.mm(pid) {
                m.insert("rss_file".into(), (mm.rss_file as INT).into());
                m.insert("rss_anon".into(), (mm.rss_anon as INT).into());
                m.insert("page_table_frames".into(), (mm.pt_frames as INT).into());
                m.insert("vmas".into(), (mm.vmas.len() as INT).into());
            }
            Ok(m)
        })
    });
    engine.register_fn("maps", |p: &mut Proc| -> Res<String> {
        let pid = p.pid;
        p.st.with_kernel(|k| k.maps(pid))
            .map_err(|e| format!("maps: {e}").into())
    });
    engine.register_fn("vmas", |p: &mut Proc| -> Res<Array> {
        let pid = p.pid;
        let v =
            p.st.with_kernel(|k| k.vmas(pid))
                .map_err(|e| format!("vmas: {e}"))?;
        Ok(v.iter().map(vma_map).collect())
    });
    engine.register_fn("frame_of", |p: &mut Proc, addr: INT| -> INT {
        let pid = p.pid;
        p.st.with_kernel(|k| {
            k.frame_of(pid, VirtAddr(addr as u64))
                .map_or(-1, |f| f.0 as INT)
        })
    });
    engine.register_fn("pte", |p: &mut Proc, addr: INT| -> String {
        let pid = p.pid;
        p.st.with_kernel(|k| k.raw_pte_of(pid, VirtAddr(addr as u64)).to_string())
    });
    engine.register_fn("pmd", |p: &mut Proc, addr: INT| -> String {
        let pid = p.pid;
        p.st.with_kernel(|k| k.pmd_of(pid, VirtAddr(addr as u64)).to_string())
    });
}

fn char_of(v: u64) -> String {
    match u8::try_from(v) {
        Ok(b) if b.is_ascii_graphic() || b == b' ' => format!(" '{}'", b as char),
        _ => String::new(),
    }
}

fn register_memory(engine: &mut Engine) {
    macro_rules! load_store {
        ($load:literal, $store:literal, $t:ty, $lf:ident, $sf:ident) => {
            engine.register_fn(
                $load,
                |ctx: NativeCallContext, p: &mut Proc, addr: INT| -> Res<INT> {
                    p.access(
                        &ctx,
                        $load,
                        addr,
                        None,
                        |k, pid, va| k.$lf(pid, va).map(|v| v as u64 as INT),
                        |v| format!("{}{}", show_int(*v), char_of(*v as u64)),
                    )
                },
            );
            engine.register_fn(
                $store,
                |ctx: NativeCallContext, p: &mut Proc, addr: INT, v: INT| -> Res<()> {
                    p.access(
                        &ctx,
                        $store,
                        addr,
                        Some(show_int(v)),
                        |k, pid, va| k.$sf(pid, va, v as $t),
                        |_| String::new(),
                    )
                },
            );
        };
    }
    load_store!("load_u8", "store_u8", u8, load_u8, store_u8);
    load_store!("load_u16", "store_u16", u16, load_u16, store_u16);
    load_store!("load_u32", "store_u32", u32, load_u32, store_u32);
    load_store!("load_u64", "store_u64", u64, load_u64, store_u64);

    fn len_ok(ctx: &NativeCallContext, op: &str, len: INT) -> Res<usize> {
        usize::try_from(len)
            .ok()
            .filter(|n| *n <= MAX_IO)
            .ok_or_else(|| {
                rt_err(
                    ctx.call_position(),
                    format!("{op}: the length must be 0..={MAX_IO}"),
                )
            })
    }
    engine.register_fn(
        "load_bytes",
        |ctx: NativeCallContext, p: &mut Proc, addr: INT, len: INT| -> Res<Blob> {
            let n = len_ok(&ctx, "load_bytes", len)?;
            p.access(
                &ctx,
                "load_bytes",
                addr,
                Some(n.to_string()),
                |k, pid, va| k.load_vec(pid, va, n),
                |v| format!("{} bytes", v.len()),
            )
        },
    );
    engine.register_fn(
        "load_str",
        |ctx: NativeCallContext, p: &mut Proc, addr: INT, len: INT| -> Res<String> {
            let n = len_ok(&ctx, "load_str", len)?;
            p.access(
                &ctx,
                "load_str",
                addr,
                Some(n.to_string()),
                |k, pid, va| {
                    k.load_vec(pid, va, n)
                        .map(|v| String::from_utf8_lossy(&v).into_owned())
                },
                |s| ellipsize(&format!("{s:?}"), 40),
            )
        },
    );
    engine.register_fn(
        "fetch",
        |ctx: NativeCallContext, p: &mut Proc, addr: INT, len: INT| -> Res<Blob> {
            let n = len_ok(&ctx, "fetch", len)?;
            p.access(
                &ctx,
                "fetch",
                addr,
                Some(n.to_string()),
                |k, pid, va| {
                    let mut b = vec![0u8; n];
                    k.fetch(pid, va, &mut b).map(|()| b)
                },
                |v| format!("{} bytes", v.len()),
            )
        },
    );
    engine.register_fn(
        "store_str",
        |ctx: NativeCallContext, p: &mut Proc, addr: INT, s: &str| -> Res<()> {
            let shown = ellipsize(&format!("{s:?}"), 40);
            p.access(
                &ctx,
                "store_str",
                addr,
                Some(shown),
                |k, pid, va| k.store(pid, va, s.as_bytes()),
                |_| String::new(),
            )
        },
    );
    engine.register_fn(
        "store_bytes",
        |ctx: NativeCallContext, p: &mut Proc, addr: INT, b: Blob| -> Res<()> {
            p.access(
                &ctx,
                "store_bytes",
                addr,
                Some(format!("{} bytes", b.len())),
                |k, pid, va| k.store(pid, va, &b),
                |_| String::new(),
            )
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints_parse_like_scripts() {
        assert_eq!(parse_int("0x1000"), Some(4096));
        assert_eq!(parse_int("1_000"), Some(1000));
        assert_eq!(parse_int("-3"), Some(-3));
        assert_eq!(parse_int("0o644"), Some(420));
        assert_eq!(parse_int("abc"), None);
    }

    #[test]
    fn config_ranges_are_checked() {
        let mut c = MachineConfig::default();
        assert!(apply_config(&mut c, "ram_mib", "16").is_ok());
        assert_eq!(c.ram_bytes, 16 << 20);
        assert!(apply_config(&mut c, "ram_mib", "1048576").is_err());
        assert!(apply_config(&mut c, "tlb_sets", "3").is_err());
        assert!(apply_config(&mut c, "nope", "1").is_err());
        assert!(apply_config(&mut c, "policy", "clock").is_ok());
        assert!(apply_config(&mut c, "policy", "best").is_err());
        assert!(apply_config(&mut c, "ram_mib", "lots").is_err());
        assert!(apply_config(&mut c, "nr_hugepages", "8").is_ok());
        assert_eq!(c.nr_hugepages, 8);
        assert!(apply_config(&mut c, "nr_hugepages", "-1").is_err());
        assert!(apply_config(&mut c, "nr_hugepages", "4096").is_err());
    }

    #[test]
    fn canonical_prefix_refuses_dotdot_in_missing_parts() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("missing/../../etc/passwd");
        assert_eq!(canonical_prefix(&p), None);
        let q = d.path().join("missing/file");
        let c = canonical_prefix(&q).unwrap();
        assert!(c.starts_with(d.path().canonicalize().unwrap()));
    }
}
