//! `vmem replay`: a real program's memory trace, run on the emulated machine.
//!
//! Owns the trace format (Valgrind Lackey's `--trace-mem=yes` output), the address space
//! a replay builds from the trace, and the replay's report. The accesses themselves run
//! through `Kernel::access_batch` (the machine's own TLB, page walks and faults).
//!
//! A Lackey trace names addresses, never the files behind them, so the replay maps every
//! page the trace touches as private anonymous memory: areas of touched pages (runs with
//! gaps of at most [`GAP_PAGES`] untouched pages joined), readable and writable, and
//! executable where the trace fetches instructions. Nothing is loaded until touched: the
//! first access to each page faults (a zero-fill), as a fresh process's would. Pages a
//! process could not map (below `mmap_min_addr`, from `TASK_SIZE` up) stay unmapped: the
//! records that touch them raise SIGSEGV. A modify
//! (`M`) is a load and then a store of the same bytes (one instruction: when the load
//! faults, the store does not run); stores write zeros.

use crate::narrate::{Mode, Out, Tap};
use crate::report::{EXIT_SCRIPT, EXIT_USAGE};
use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};
use vmem::consts::*;
use vmem::{Access, Kernel, MachineConfig, Pid, Signal, TraceAccess, VirtAddr, PAGE_SIZE};

/// Untouched pages between two touched ones that still join them into one area.
pub const GAP_PAGES: u64 = 16;

/// Records run per `access_batch` call.
const CHUNK: usize = 1 << 16;

/// Records pass 1 keeps in memory for pass 2 by default (24 bytes each); a longer trace
/// is read twice.
pub const KEPT_RECORDS: usize = 1 << 22;

/// Where pass 2 takes its records from.
enum Source {
    /// The records pass 1 kept, with their lines.
    Kept(std::vec::IntoIter<(Record, u64)>),
    /// The trace file, read again.
    File(Reader),
}

impl Source {
    fn next(&mut self) -> Result<Option<(Record, u64)>, Failed> {
        match self {
            Source::Kept(it) => Ok(it.next()),
            Source::File(r) => r.next(),
        }
    }
}

/// Signals printed one by one (the rest are counted).
const SIGNALS_SHOWN: usize = 10;

/// What a Lackey line records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `I`: an instruction fetch.
    Instr,
    /// `L`: a data load.
    Load,
    /// `S`: a data store.
    Store,
    /// `M`: a data modify (load, then store).
    Modify,
}

/// One record: kind, first byte, bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// What the access is.
    pub kind: Kind,
    /// The first byte's address.
    pub addr: u64,
    /// Bytes accessed, 1..=255.
    pub size: u8,
}

/// Parses one line of a Lackey trace: `Ok(None)` for a line that is not a record
/// (Valgrind's `==PID==` and `--PID--` messages, blank lines).
pub fn parse_line(line: &[u8]) -> Result<Option<Record>, String> {
    if let Some(r) = parse_record_fast(line) {
        return Ok(Some(r));
    }
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.starts_with(b"==") || line.starts_with(b"--") || line.trim_ascii().is_empty() {
        return Ok(None);
    }
    let bad = |why: &str| {
        Err(format!(
            "{why} in `{}` (a Lackey record is `I  ADDR,SIZE`, ` L ADDR,SIZE`, ` S ADDR,SIZE` \
             or ` M ADDR,SIZE`, hexadecimal address, decimal size; run valgrind with \
             --tool=lackey --trace-mem=yes --log-file=FILE so that the program's own output \
             stays out of the trace)",
            shown(line)
        ))
    };
    let rest = line.trim_ascii_start();
    let kind = match rest.first() {
        Some(b'I') => Kind::Instr,
        Some(b'L') => Kind::Load,
        Some(b'S') => Kind::Store,
        Some(b'M') => Kind::Modify,
        _ => return bad("unknown record kind"),
    };
    let rest = rest[1..].trim_ascii();
    let Some(comma) = rest.iter().position(|&b| b == b',') else {
        return bad("no `,SIZE`");
    };
    let (a, s) = (&rest[..comma], &rest[comma + 1..]);
    let a = a.strip_prefix(b"0x").unwrap_or(a);
    if a.is_empty() || !a.iter().all(u8::is_ascii_hexdigit) {
        return bad("the address is not hexadecimal");
    }
    // All hexadecimal digits, so UTF-8 (`from_str_radix` takes leading zeros).
    let addr = match u64::from_str_radix(std::str::from_utf8(a).unwrap_or_default(), 16) {
        Ok(v) => v,
        Err(_) => return bad("the address does not fit in 64 bits"),
    };
    let size = match std::str::from_utf8(s)
        .ok()
        .and_then(|s| s.parse::<u16>().ok())
    {
        Some(n) if (1..=255).contains(&n) => n as u8,
        Some(_) => return bad("the size is not 1..=255"),
        None => return bad("the size is not a decimal number"),
    };
    if addr.checked_add(u64::from(size)).is_none() {
        return bad("the access runs past the end of the address space");
    }
    Ok(Some(Record { kind, addr, size }))
}

/// The common shape of a record, exactly as Lackey writes it (`I  ADDR,SIZE` or
/// ` K ADDR,SIZE`, lowercase hexadecimal, no `0x`), parsed without checks beyond it;
/// `None` for anything else, which [`parse_line`] then reads or rejects carefully.
#[inline]
fn parse_record_fast(line: &[u8]) -> Option<Record> {
    let (kind, rest) = match line {
        [b'I', b' ', b' ', rest @ ..] => (Kind::Instr, rest),
        [b' ', b'L', b' ', rest @ ..] => (Kind::Load, rest),
        [b' ', b'S', b' ', rest @ ..] => (Kind::Store, rest),
        [b' ', b'M', b' ', rest @ ..] => (Kind::Modify, rest),
        _ => return None,
    };
    let mut addr = 0u64;
    let mut i = 0;
    while let Some(&b) = rest.get(i) {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b',' => break,
            _ => return None,
        };
        addr = (addr << 4) | u64::from(d);
        i += 1;
    }
    // At most 15 digits (a 60-bit address, more than any machine's user space) and a
    // comma.
    if i == 0 || i > 15 || rest.get(i) != Some(&b',') {
        return None;
    }
    let digits = &rest[i + 1..];
    if digits.is_empty() || digits.len() > 3 {
        return None;
    }
    let mut size = 0u32;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        size = size * 10 + u32::from(b - b'0');
    }
    if !(1..=255).contains(&size) {
        return None;
    }
    Some(Record {
        kind,
        addr,
        size: size as u8,
    })
}

/// A line as an error message quotes it: at most 120 characters.
fn shown(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    match text.char_indices().nth(120) {
        Some((cut, _)) => format!("{}... ({} bytes)", &text[..cut], line.len()),
        None => text.into_owned(),
    }
}

/// A trace being read in large blocks: its path (as given) and the current line number.
struct Reader {
    name: String,
    file: File,
    buf: Vec<u8>,
    /// The unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    eof: bool,
    line: u64,
}

/// Bytes read from the trace at a time.
const READ_BLOCK: usize = 4 << 20;

impl Reader {
    fn open(path: &Path) -> Result<Reader, Failed> {
        let file =
            File::open(path).map_err(|e| (EXIT_USAGE, format!("{}: {e}", path.display())))?;
        Ok(Reader {
            name: path.display().to_string(),
            file,
            buf: vec![0; READ_BLOCK],
            start: 0,
            end: 0,
            eof: false,
            line: 0,
        })
    }

    /// Moves the unread bytes to the front and reads more after them.
    fn refill(&mut self) -> Result<(), Failed> {
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        if self.end == self.buf.len() {
            // One line longer than the block: no trace has those.
            return Err((
                EXIT_SCRIPT,
                format!(
                    "{}:{}: a line longer than {READ_BLOCK} bytes: not a Lackey trace",
                    self.name,
                    self.line + 1
                ),
            ));
        }
        let n = self
            .file
            .read(&mut self.buf[self.end..])
            .map_err(|e| (EXIT_USAGE, format!("{}:{}: {e}", self.name, self.line + 1)))?;
        self.eof = n == 0;
        self.end += n;
        Ok(())
    }

    /// The next record with its line number; `None` at the end.
    fn next(&mut self) -> Result<Option<(Record, u64)>, Failed> {
        loop {
            let unread = &self.buf[self.start..self.end];
            let line = match unread.iter().position(|&b| b == b'\n') {
                Some(n) => {
                    self.start += n + 1;
                    &unread[..n]
                }
                None if self.eof => {
                    if unread.is_empty() {
                        return Ok(None);
                    }
                    // A last line without a newline.
                    self.start = self.end;
                    unread
                }
                None => {
                    self.refill()?;
                    continue;
                }
            };
            self.line += 1;
            match parse_line(line) {
                Ok(Some(r)) => return Ok(Some((r, self.line))),
                Ok(None) => {}
                Err(e) => return Err((EXIT_SCRIPT, format!("{}:{}: {e}", self.name, self.line))),
            }
        }
    }
}

/// The options of one replay.
pub struct Options<'a> {
    /// The trace file.
    pub trace: &'a Path,
    /// The machine.
    pub cfg: MachineConfig,
    /// Replay only the first N records (`None`: all).
    pub limit: Option<u64>,
    /// Narrate every step (for short traces, or with `limit`).
    pub explain: bool,
    /// Colour in the narration.
    pub color: bool,
    /// The report as one JSON object.
    pub json: bool,
    /// Records pass 1 keeps for pass 2 at most ([`KEPT_RECORDS`]); a longer trace is
    /// read twice.
    pub keep_records: usize,
}

/// An area the replay maps: first page, pages, executable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Area {
    start: u64,
    pages: u64,
    exec: bool,
}

/// The areas covering `pages` (page number -> fetched from), touched pages joined across
/// gaps of at most [`GAP_PAGES`].
fn areas(pages: &HashMap<u64, bool>) -> Vec<Area> {
    let mut vpns: Vec<(u64, bool)> = pages.iter().map(|(&v, &x)| (v, x)).collect();
    vpns.sort_unstable();
    let mut out: Vec<Area> = Vec::new();
    for (vpn, exec) in vpns {
        match out.last_mut() {
            Some(a) if vpn <= a.start + a.pages + GAP_PAGES => {
                a.pages = vpn - a.start + 1;
                a.exec |= exec;
            }
            _ => out.push(Area {
                start: vpn,
                pages: 1,
                exec,
            }),
        }
    }
    out
}

/// Where a replay's time went.
#[derive(Clone, Copy)]
struct Timing {
    /// In `access_batch`.
    in_model: Duration,
    /// In all.
    total: Duration,
    /// The trace was too long to keep, and was read twice.
    read_twice: bool,
}

/// Counts of what the trace held.
#[derive(Default, Debug)]
struct Tally {
    instr: u64,
    loads: u64,
    stores: u64,
    modifies: u64,
}

impl Tally {
    /// Records of every kind.
    fn records(&self) -> u64 {
        self.instr + self.loads + self.stores + self.modifies
    }
}

/// A replay error: the message and its exit status.
type Failed = (i32, String);

/// Runs a replay and prints its report; `Err` is a message for standard error with the
/// exit status that goes with it: [`EXIT_USAGE`] for a trace that cannot be opened or
/// read, [`EXIT_SCRIPT`] for a line that is not a record or an address space the machine
/// refuses.
pub fn run(o: &Options) -> Result<(), Failed> {
    report(o, &replay(o)?);
    Ok(())
}

/// What a replay leaves for its report: the machine and the replayed process, and what
/// happened.
struct Replayed {
    k: Kernel,
    p: Pid,
    areas: Vec<Area>,
    touched: u64,
    tally: Tally,
    signals: Vec<(u64, Signal)>,
    nsignals: u64,
    timing: Timing,
    out: Rc<RefCell<Out>>,
}

/// Reads the trace, maps its pages and runs its accesses.
fn replay(o: &Options) -> Result<Replayed, Failed> {
    let started = Instant::now();
    // Pass 1: the pages the trace touches.
    let mut pages: HashMap<u64, bool> = HashMap::new();
    let mut r = Reader::open(o.trace)?;
    let mut seen = 0u64;
    // The records with their lines, kept for pass 2 while there are not too many.
    let mut kept: Option<Vec<(Record, u64)>> = Some(Vec::new());
    // The page of the last record and whether it was a fetch: most records repeat it.
    let mut last_page = (u64::MAX, false);
    // The limit is checked before a line is read: the lines after it are never parsed.
    while o.limit.is_none_or(|l| seen < l) {
        let Some((rec, line)) = r.next()? else {
            break;
        };
        seen += 1;
        if let Some(v) = &mut kept {
            if v.len() < o.keep_records {
                v.push((rec, line));
            } else {
                kept = None;
            }
        }
        let exec = rec.kind == Kind::Instr;
        let (first, last) = (
            rec.addr / PAGE_SIZE,
            (rec.addr + u64::from(rec.size) - 1) / PAGE_SIZE,
        );
        if first == last && last_page == (first, exec) {
            continue;
        }
        for vpn in first..=last {
            *pages.entry(vpn).or_default() |= exec;
        }
        last_page = (last, exec);
    }
    let areas = areas(&pages);

    let mut k =
        Kernel::try_new(o.cfg.clone()).map_err(|e| (EXIT_USAGE, format!("the machine: {e}")))?;
    let out = Rc::new(RefCell::new(Out::new(
        if o.explain {
            Mode::Explain
        } else {
            Mode::Quiet
        },
        o.color,
        Box::new(std::io::BufWriter::new(std::io::stdout())),
    )));
    if o.explain {
        k.set_observer(Some(Box::new(Tap(out.clone()))));
    }
    let p = k.spawn().map_err(|e| (EXIT_USAGE, format!("spawn: {e}")))?;
    // What a process may map: from mmap_min_addr to TASK_SIZE. Pages outside stay
    // unmapped, and the records that touch them raise SIGSEGV, as in a process.
    let (low, high) = (
        k.config().mmap_min_addr.div_ceil(PAGE_SIZE),
        k.task_size() / PAGE_SIZE,
    );
    let outside = pages.keys().filter(|&&v| v < low || v >= high).count();
    if outside > 0 {
        eprintln!(
            "{}: {outside} pages lie outside what a process may map ({:#x}..{:#x}): not \
             mapped, their accesses raise SIGSEGV",
            o.trace.display(),
            low * PAGE_SIZE,
            high * PAGE_SIZE
        );
    }
    let areas: Vec<Area> = areas
        .into_iter()
        .filter_map(|a| {
            let start = a.start.max(low);
            let end = (a.start + a.pages).min(high);
            (start < end).then(|| Area {
                start,
                pages: end - start,
                exec: a.exec,
            })
        })
        .collect();
    for a in &areas {
        let prot = PROT_READ | PROT_WRITE | if a.exec { PROT_EXEC } else { 0 };
        let (start, len) = (a.start * PAGE_SIZE, a.pages * PAGE_SIZE);
        k.mmap(
            p,
            VirtAddr(start),
            len,
            prot,
            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
        .map_err(|e| {
            (EXIT_SCRIPT, format!(
                "{}: cannot map the trace's area {:#x}..{:#x} on this machine: {e} ({})",
                o.trace.display(),
                start,
                start + len,
                match e {
                    vmem::Errno::ENOMEM =>
                        "more areas than max_map_count allows: raise it with -c max_map_count=N",
                    _ => "see the machine's settings with vmem api machine",
                }
            ))
        })?;
    }

    // Pass 2: the accesses, from the records kept or from the file again.
    let read_twice = kept.is_none();
    let mut r = match kept {
        Some(v) => Source::Kept(v.into_iter()),
        None => Source::File(Reader::open(o.trace)?),
    };
    let mut tally = Tally::default();
    let mut batch: Vec<TraceAccess> = Vec::with_capacity(CHUNK + 1);
    let mut lines: Vec<u64> = Vec::with_capacity(CHUNK + 1);
    let mut values: Vec<u64> = Vec::with_capacity(CHUNK + 1);
    let mut signals: Vec<(u64, Signal)> = Vec::new();
    let mut nsignals = 0u64;
    let mut in_model = Duration::ZERO;
    let mut done = false;
    while !done {
        batch.clear();
        lines.clear();
        while batch.len() < CHUNK {
            if o.limit.is_some_and(|l| tally.records() >= l) {
                done = true;
                break;
            }
            let Some((rec, line)) = r.next()? else {
                done = true;
                break;
            };
            let (va, size) = (VirtAddr(rec.addr), rec.size);
            match rec.kind {
                Kind::Instr => {
                    tally.instr += 1;
                    batch.push(TraceAccess::fetch(va, size));
                }
                Kind::Load => {
                    tally.loads += 1;
                    batch.push(TraceAccess::read(va, size));
                }
                Kind::Store => {
                    tally.stores += 1;
                    batch.push(TraceAccess::write(va, size));
                }
                Kind::Modify => {
                    // A load, then a store of the same bytes: two accesses, one line.
                    tally.modifies += 1;
                    batch.push(TraceAccess::read(va, size));
                    batch.push(TraceAccess::write(va, size));
                    lines.push(line);
                }
            }
            lines.push(line);
        }
        values.clear();
        values.resize(batch.len(), 0);
        let mut i = 0;
        let t = Instant::now();
        while i < batch.len() {
            // Narrated: one record at a time, under its trace line.
            let n = if o.explain {
                let a = batch[i];
                out.borrow_mut().print(&format!(
                    "\n{}:{}: {} {:#x}, {} bytes\n",
                    o.trace.display(),
                    lines[i],
                    a.access.name(),
                    a.va.0,
                    a.size
                ));
                i + 1
            } else {
                batch.len()
            };
            match k.access_batch(p, &batch[i..n], &mut values[i..n]) {
                Ok(()) => i = n,
                Err((j, sig)) => {
                    nsignals += 1;
                    if signals.len() < SIGNALS_SHOWN {
                        signals.push((lines[i + j], sig));
                    }
                    if matches!(sig, Signal::OomKill { .. }) {
                        // SIGKILL (out of memory) cannot be caught: the program ends here.
                        // (The machine returns the signal and keeps the process, so the
                        // report still has its counters.)
                        done = true;
                        break;
                    }
                    let x = i + j;
                    // A modify is one instruction: when its load faults, its store (the
                    // next access, from the same line) does not run.
                    let modify_load = batch[x].access == Access::Read
                        && lines.get(x + 1) == Some(&lines[x])
                        && batch[x + 1].access == Access::Write;
                    i = x + 1 + usize::from(modify_load);
                }
            }
        }
        in_model += t.elapsed();
    }
    let total = started.elapsed();
    out.borrow_mut().flush();
    k.set_observer(None);
    Ok(Replayed {
        k,
        p,
        areas,
        touched: pages.len() as u64,
        tally,
        signals,
        nsignals,
        timing: Timing {
            in_model,
            total,
            read_twice,
        },
        out,
    })
}

/// Prints the replay's report (text or JSON).
fn report(o: &Options, r: &Replayed) {
    let (k, p, t, areas) = (&r.k, r.p, &r.tally, &r.areas);
    let (signals, nsignals, touched) = (&r.signals, r.nsignals, r.touched);
    let Timing {
        in_model,
        total,
        read_twice,
    } = r.timing;
    let c = k.process_stats(p).unwrap_or_else(|_| k.stats());
    let (rss, pt) = k
        .mm(p)
        .map(|m| (m.rss_anon + m.rss_file, m.pt_frames))
        .unwrap_or((0, 0));
    let area_pages: u64 = areas.iter().map(|a| a.pages).sum();
    let accesses = t.records() + t.modifies;
    let lookups = c.tlb_hits + c.tlb_misses;
    let rate = |n: u64, d: Duration| n as f64 / d.as_secs_f64().max(1e-9) / 1e6;
    let cfg = k.config();
    for (line, sig) in signals {
        eprintln!("{}:{line}: {sig}", o.trace.display());
    }
    if nsignals > signals.len() as u64 {
        eprintln!(
            "{}: {} more signals",
            o.trace.display(),
            nsignals - signals.len() as u64
        );
    }
    if o.json {
        let j = serde_json::json!({
            "trace": o.trace.display().to_string(),
            "records": t.records(),
            "instr": t.instr,
            "loads": t.loads,
            "stores": t.stores,
            "modifies": t.modifies,
            "accesses": accesses,
            "areas": areas.len(),
            "area_pages": area_pages,
            "pages_touched": touched,
            "page_size": PAGE_SIZE,
            "tlb_sets": cfg.tlb_sets,
            "tlb_ways": cfg.tlb_ways,
            "tlb_hits": c.tlb_hits,
            "tlb_misses": c.tlb_misses,
            "tlb_hit_rate": if lookups == 0 { 0.0 } else { c.tlb_hits as f64 / lookups as f64 },
            "page_walks": c.page_walks,
            "minor_faults": c.minor_faults,
            "major_faults": c.major_faults,
            "resident_pages": rss,
            "page_table_frames": pt,
            "signals": nsignals,
            "seconds": total.as_secs_f64(),
            "model_seconds": in_model.as_secs_f64(),
            "counters": c.fields().into_iter().collect::<HashMap<_, _>>(),
        });
        println!("{j}");
        return;
    }
    let mut s = String::new();
    let pct = |a: u64, b: u64| {
        if b == 0 {
            0.0
        } else {
            100.0 * a as f64 / b as f64
        }
    };
    s += &format!(
        "vmem replay {}: {} records: {} instruction fetches, {} loads, {} stores, {} modifies\n",
        o.trace.display(),
        t.records(),
        t.instr,
        t.loads,
        t.stores,
        t.modifies
    );
    s += &format!(
        "  {} pages touched, mapped as {} anonymous areas of {} pages; {} resident ({} KiB: \
         pages only read share the zero page)\n",
        touched,
        areas.len(),
        area_pages,
        rss,
        rss * PAGE_SIZE / 1024
    );
    s += &format!(
        "  TLB ({} sets x {} ways): {} hits, {} misses ({:.2}% hits); {} page walks\n",
        cfg.tlb_sets,
        cfg.tlb_ways,
        c.tlb_hits,
        c.tlb_misses,
        pct(c.tlb_hits, lookups),
        c.page_walks
    );
    s += &format!(
        "  faults: {} minor, {} major; {} page-table frames; {} signals\n",
        c.minor_faults, c.major_faults, pt, nsignals
    );
    s += &format!(
        "  time: {:.3} s in all ({:.1} M records/s, reading the trace {}); {:.3} s in the machine ({:.1} M accesses/s)\n",
        total.as_secs_f64(),
        rate(t.records(), total),
        if read_twice { "twice" } else { "once" },
        in_model.as_secs_f64(),
        rate(accesses, in_model)
    );
    let mut w = r.out.borrow_mut();
    w.print(&s);
    w.summary(&c, k.frames_in_use(), k.total_frames(), k.pids().len());
    w.flush();
    let _ = std::io::stdout().flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lackey_lines_parse() {
        let r = |kind, addr, size| Ok(Some(Record { kind, addr, size }));
        assert_eq!(parse_line(b"I  0401ab70,3"), r(Kind::Instr, 0x401ab70, 3));
        assert_eq!(
            parse_line(b" S 1fff000778,8"),
            r(Kind::Store, 0x1fff000778, 8)
        );
        assert_eq!(
            parse_line(b" L 04022ef8,16\r"),
            r(Kind::Load, 0x4022ef8, 16)
        );
        assert_eq!(parse_line(b" M 0x1000,4"), r(Kind::Modify, 0x1000, 4));
        for skip in [
            &b"==1683== Lackey, an example Valgrind tool"[..],
            b"--12-- x",
            b"",
            b"  ",
        ] {
            assert_eq!(parse_line(skip), Ok(None));
        }
        for bad in [
            &b"hello world"[..],
            b" L 1000",
            b" L zz,4",
            b" L 1000,0",
            b" L 1000,256",
            b" L 1000,x",
            b" X 1000,4",
            b" L ffffffffffffffff,8",
            b" L 10000000000000000,8",
            b" L +1000,8",
        ] {
            let e = parse_line(bad).unwrap_err();
            assert!(e.contains("Lackey record"), "{e}");
        }
    }

    /// Every line reads the same with a CRLF ending as with LF: the fast parser never
    /// takes a line ending in CR, so the careful one reads it, and the two must agree on
    /// every line the fast one takes (and the careful one alone decides the rest).
    #[test]
    fn lines_parse_the_same_with_crlf_endings() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        const ODD: &[u8] = b"0123456789abcdefABCDEFxXg+-, \t=ILSM\r\0";
        let mut fast = 0;
        for _ in 0..200_000 {
            // A record as Lackey writes it, then (half the time) one to three bytes
            // replaced, inserted or removed.
            let mut line: Vec<u8> = [&b"I  "[..], b" L ", b" S ", b" M "][next(4)].to_vec();
            for _ in 0..1 + next(17) {
                line.push(b"0123456789abcdef"[next(16)]);
            }
            line.push(b',');
            for _ in 0..1 + next(4) {
                line.push(b'0' + next(10) as u8);
            }
            if next(2) == 0 {
                for _ in 0..1 + next(3) {
                    let at = next(line.len() + 1);
                    let b = ODD[next(ODD.len())];
                    match next(3) {
                        0 if at < line.len() => line[at] = b,
                        1 if at < line.len() => {
                            line.remove(at);
                        }
                        _ => line.insert(at, b),
                    }
                }
            }
            if line.ends_with(b"\r") {
                continue;
            }
            let line = String::from_utf8(line).unwrap();
            let lf = parse_line(line.as_bytes());
            let crlf = parse_line(format!("{line}\r").as_bytes());
            assert_eq!(lf, crlf, "{line:?}");
            fast += usize::from(parse_record_fast(line.as_bytes()).is_some());
        }
        // The fast parser took a good share of them.
        assert!(fast > 10_000, "{fast}");
    }

    #[test]
    fn leading_zeros_and_long_lines() {
        let r = parse_line(b" L 00000000000000001000,8").unwrap().unwrap();
        assert_eq!((r.addr, r.size), (0x1000, 8));
        assert_eq!(parse_line(b" L 0000,8").unwrap().unwrap().addr, 0);
        let long = vec![b'x'; 1 << 20];
        let e = parse_line(&long).unwrap_err();
        assert!(e.contains("... (1048576 bytes)"), "{}", &e[..200]);
        assert!(e.len() < 1000, "{} bytes of message", e.len());
    }

    #[test]
    fn a_trace_read_twice_replays_as_one_kept_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.lackey");
        let mut text = String::from("==1== Lackey\n");
        for i in 0..5000u64 {
            let a = 0x40_0000 + (i * 4099) % (64 << 12);
            text += &match i % 4 {
                0 => format!("I  {a:08x},4\n"),
                1 => format!(" L {a:08x},8\n"),
                2 => format!(" S {a:08x},8\n"),
                _ => format!(" M {a:08x},4\n"),
            };
        }
        text += " L 00001000,8\n"; // below mmap_min_addr: one SIGSEGV
        std::fs::write(&path, text).unwrap();
        let run = |keep_records| {
            let o = Options {
                trace: &path,
                cfg: MachineConfig::default(),
                limit: None,
                explain: false,
                color: false,
                json: true,
                keep_records,
            };
            let r = replay(&o).unwrap();
            (
                r.timing.read_twice,
                r.k.process_stats(r.p).unwrap(),
                r.tally.records(),
                r.nsignals,
                r.signals
                    .iter()
                    .map(|(l, s)| format!("{l} {s}"))
                    .collect::<Vec<_>>(),
            )
        };
        let (twice, c1, n1, s1, l1) = run(100);
        let (once, c2, n2, s2, l2) = run(KEPT_RECORDS);
        assert!(twice && !once);
        assert_eq!((n1, s1, &l1), (n2, s2, &l2));
        assert_eq!((n1, s1), (5001, 1));
        assert_eq!(
            l1,
            ["5002 SIGSEGV (SEGV_MAPERR) at 0x1000: address not mapped"]
        );
        assert_eq!(c1.fields(), c2.fields());
        assert!(c1.tlb_hits > 1000 && c1.minor_faults > 10, "{c1:?}");
    }

    #[test]
    fn areas_join_small_gaps_and_keep_exec() {
        let pages: HashMap<u64, bool> = [
            (10, false),
            (11, true),
            (11 + GAP_PAGES + 1, false),
            (100, false),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            areas(&pages),
            vec![
                Area {
                    start: 10,
                    pages: GAP_PAGES + 3,
                    exec: true
                },
                Area {
                    start: 100,
                    pages: 1,
                    exec: false
                }
            ]
        );
    }
}
