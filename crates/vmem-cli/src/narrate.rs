//! What the user sees: the explain narration, JSON lines, script output and the summary.
//!
//! Owns [`Out`], the one writer to standard output. The kernel's events arrive through
//! [`Tap`] (a [`vmem::Observer`]); while a script call runs they are buffered, so that
//! the call's headline (`[pid 1] mmap(...) = 0x7ffff7ffe000`) comes first and what the
//! machine did for it follows, indented. Text output fits 80 columns and is coloured only
//! when standard output is a terminal.

use serde_json::{json, Value};
use std::cell::RefCell;
use std::io::Write;
use std::rc::Rc;
use vmem::events::{Event, FaultKind};
use vmem::hw::pte::Pte;
use vmem::{Counters, Signal};

/// Columns of text output.
pub const WIDTH: usize = 80;

/// What standard output carries.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// Script output and the summary only.
    Quiet,
    /// Every step narrated as text.
    Explain,
    /// One JSON object per line.
    Json,
}

/// A text style (ANSI SGR codes).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Style {
    /// No styling.
    Plain,
    /// Faint.
    Dim,
    /// Bold.
    Bold,
    /// Errors and signals.
    Red,
    /// Hits.
    Green,
    /// Misses and faults.
    Yellow,
    /// Headings.
    Heading,
    /// Disk I/O.
    Magenta,
    /// Copy-on-write and frames.
    Cyan,
    /// Script source lines.
    Source,
}

impl Style {
    fn code(self) -> &'static str {
        match self {
            Style::Plain => "",
            Style::Dim => "2",
            Style::Bold => "1",
            Style::Red => "1;31",
            Style::Green => "32",
            Style::Yellow => "33",
            Style::Heading => "1;34",
            Style::Magenta => "35",
            Style::Cyan => "36",
            Style::Source => "2;36",
        }
    }
}

/// `text` in `style`, if `color`.
pub fn paint(color: bool, style: Style, text: &str) -> String {
    if !color || style == Style::Plain || text.is_empty() {
        text.to_string()
    } else {
        format!("\x1b[{}m{text}\x1b[0m", style.code())
    }
}

/// Splits `text` into lines of at most `width` columns, the first indented by `indent`
/// spaces and the rest by `indent + 4`. Breaks at spaces; overlong words are cut.
pub fn wrap(indent: usize, text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut cur = " ".repeat(indent);
    let mut cur_len = indent;
    let mut fresh = true;
    let cont = indent + 4;
    for word in text.split(' ') {
        let wlen = word.chars().count();
        if !fresh && cur_len + 1 + wlen > width {
            lines.push(std::mem::take(&mut cur));
            cur = " ".repeat(cont);
            cur_len = cont;
            fresh = true;
        }
        if !fresh {
            cur.push(' ');
            cur_len += 1;
        }
        let mut w: Vec<char> = word.chars().collect();
        // A word longer than a whole line: cut it.
        while cur_len + w.len() > width && w.len() > width.saturating_sub(cont).max(8) {
            let take = width.saturating_sub(cur_len).max(1);
            let head: String = w.drain(..take.min(w.len())).collect();
            cur.push_str(&head);
            lines.push(std::mem::take(&mut cur));
            cur = " ".repeat(cont);
            cur_len = cont;
        }
        let rest: String = w.into_iter().collect();
        cur_len += rest.chars().count();
        cur.push_str(&rest);
        fresh = false;
    }
    lines.push(cur);
    lines
}

/// Cuts `s` to `max` characters, ending with `…` if it was longer.
pub fn ellipsize(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// How a finished call is headed.
#[derive(Debug)]
pub enum Head {
    /// By the last syscall event it produced (its C spelling and result).
    Syscall,
    /// By this line (memory accesses and calls the CLI refused itself).
    Text {
        /// Process.
        pid: u32,
        /// The call, e.g. `load_u8(0x7ffff7ffe000)`.
        call: String,
        /// `= 104`, `: SIGSEGV`, or empty.
        result: String,
        /// Whether it failed.
        failed: bool,
    },
}

/// The writer to standard output and its state.
pub struct Out {
    mode: Mode,
    color: bool,
    w: Box<dyn Write>,
    /// Standard output is gone (a closed pipe): stop writing, stop the script.
    pub broken: bool,
    /// Narration switched off by the script (`explain(false)`).
    pub muted: bool,
    /// Prefixes to strip from paths in text output (the data directory).
    strip: Vec<String>,
    /// Events of the call in progress.
    buf: Option<Vec<Event>>,
    /// Script source, to echo the line a call comes from.
    source: Option<Vec<String>>,
    pending_line: Option<usize>,
    last_line: Option<usize>,
    /// A heading to print before the next narrated event (e.g. the final sync).
    pending_heading: Option<String>,
    /// More than one process has existed: lines name their pid.
    multi: bool,
}

impl std::fmt::Debug for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Out")
            .field("mode", &self.mode)
            .field("color", &self.color)
            .finish()
    }
}

impl Out {
    /// A writer in `mode` to `w`.
    pub fn new(mode: Mode, color: bool, w: Box<dyn Write>) -> Out {
        Out {
            mode,
            color: color && mode != Mode::Json,
            w,
            broken: false,
            muted: false,
            strip: Vec::new(),
            buf: None,
            source: None,
            pending_line: None,
            last_line: None,
            pending_heading: None,
            multi: false,
        }
    }

    /// The output mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Whether text is coloured.
    pub fn color(&self) -> bool {
        self.color
    }

    /// Paths under `dir` are shown relative to it in text output.
    pub fn strip_prefix(&mut self, dir: &str) {
        let d = format!("{}/", dir.trim_end_matches('/'));
        if !self.strip.contains(&d) {
            self.strip.push(d);
        }
    }

    /// The script's source, so that narration can show which line a call comes from.
    pub fn set_source(&mut self, text: &str) {
        self.source = Some(text.lines().map(str::to_string).collect());
    }

    fn short(&self, s: &str) -> String {
        let mut s = s.to_string();
        for p in &self.strip {
            s = s.replace(p.as_str(), "");
        }
        s
    }

    fn raw_line(&mut self, line: &str) {
        if self.broken {
            return;
        }
        if writeln!(self.w, "{line}").is_err() {
            self.broken = true;
        }
    }

    fn styled(&mut self, indent: usize, style: Style, text: &str) {
        for l in wrap(indent, text, WIDTH) {
            let (pad, body) = l.split_at(l.len() - l.trim_start().len());
            let painted = format!("{pad}{}", paint(self.color, style, body));
            self.raw_line(&painted);
        }
    }

    fn json(&mut self, v: Value) {
        let s = v.to_string();
        self.raw_line(&s);
    }

    /// Flushes standard output (before writing to standard error, and at the end).
    pub fn flush(&mut self) {
        if !self.broken && self.w.flush().is_err() {
            self.broken = true;
        }
    }

    fn narrating(&self) -> bool {
        !self.muted && self.mode != Mode::Quiet
    }

    // ----- what the script says -------------------------------------------------------

    /// `print(...)` from the script.
    pub fn print(&mut self, text: &str) {
        match self.mode {
            Mode::Json => self.json(json!({"event": "print", "text": text})),
            _ => {
                for l in text.split('\n') {
                    let l = paint(self.color, Style::Bold, l);
                    self.raw_line(&l);
                }
            }
        }
    }

    /// `section("title")` from the script: a heading.
    pub fn section(&mut self, title: &str) {
        match self.mode {
            Mode::Json => self.json(json!({"event": "section", "title": title})),
            _ => {
                self.raw_line("");
                let bar = format!("== {title} ");
                let fill = WIDTH.saturating_sub(bar.chars().count());
                let line = format!("{bar}{}", "=".repeat(fill.min(WIDTH)));
                self.styled(0, Style::Heading, &line);
            }
        }
        self.last_line = None;
    }

    /// A heading printed only if narrated events follow (e.g. "end of script: sync");
    /// `None` drops a heading that nothing followed.
    pub fn heading_if_events(&mut self, title: Option<&str>) {
        self.pending_heading = title.map(str::to_string);
    }

    // ----- calls ------------------------------------------------------------------------

    /// A script call into the machine begins, from source line `line` (1-based).
    pub fn begin(&mut self, line: Option<usize>) {
        if self.narrating() {
            self.buf = Some(Vec::new());
            self.pending_line = line;
        }
    }

    /// The call ended: print its headline and what the machine did for it.
    pub fn finish(&mut self, head: Head) {
        let Some(mut events) = self.buf.take() else {
            return;
        };
        if !self.narrating() {
            return;
        }
        if self.mode == Mode::Json {
            // JSON keeps the kernel's order; accesses get their own record.
            for e in &events {
                let v = event_json(e);
                self.json(v);
            }
            if let Head::Text {
                pid,
                call,
                result,
                failed,
            } = head
            {
                self.json(json!({"event": "call", "pid": pid, "call": call,
                    "result": result.trim_start_matches(['=', ':', ' ']), "failed": failed}));
            }
            return;
        }
        let headline = match head {
            Head::Syscall => {
                let i = events
                    .iter()
                    .rposition(|e| matches!(e, Event::Syscall { .. }));
                match i.map(|i| events.remove(i)) {
                    Some(Event::Syscall { pid, call, result }) => {
                        let failed = result.starts_with("-1");
                        Some((pid.0, self.short(&call), format!("= {result}"), failed))
                    }
                    _ => None,
                }
            }
            Head::Text {
                pid,
                call,
                result,
                failed,
            } => Some((pid, call, result, failed)),
        };
        if headline.is_none() && events.is_empty() {
            return;
        }
        self.echo_source();
        if let Some((pid, call, result, failed)) = headline {
            self.note_pid(pid);
            let style = if failed { Style::Red } else { Style::Bold };
            let call = format!("{}{call}", self.pid_prefix(pid));
            self.headline(style, &call, &result);
        }
        let mmap = events.iter().any(|e| matches!(e, Event::VmaMapped { .. }));
        let mut faulted = false;
        for e in &events {
            let retry = faulted && matches!(e, Event::TlbMiss { .. });
            match e {
                Event::Fault { .. } => faulted = true,
                Event::TlbMiss { .. } => faulted = false,
                _ => {}
            }
            if retry {
                if let Event::TlbMiss { va } = e {
                    let text = format!("the access is retried: TLB miss for {va}, walk again");
                    self.styled(4, Style::Yellow, &text);
                    continue;
                }
            }
            self.narrate(e, mmap);
        }
    }

    /// `call = result` in `style`, breaking before `= result` rather than inside it.
    fn headline(&mut self, style: Style, call: &str, result: &str) {
        let joined = if result.is_empty() || result.starts_with(':') {
            format!("{call}{result}")
        } else {
            format!("{call} {result}")
        };
        if joined.chars().count() <= WIDTH || result.is_empty() {
            self.styled(0, style, &joined);
            return;
        }
        let mut lines = wrap(0, call, WIDTH);
        let last = lines.pop().unwrap_or_default();
        for l in lines {
            let painted = paint(self.color, style, &l);
            self.raw_line(&painted);
        }
        let tail = format!("{last} {result}");
        if tail.chars().count() <= WIDTH {
            let painted = paint(self.color, style, &tail);
            self.raw_line(&painted);
        } else {
            let painted = paint(self.color, style, &last);
            self.raw_line(&painted);
            self.styled(4, style, result);
        }
    }

    /// Remembers that a second process exists: from then on lines name their pid.
    fn note_pid(&mut self, pid: u32) {
        if pid > 1 {
            self.multi = true;
        }
    }

    fn pid_prefix(&self, pid: u32) -> String {
        if self.multi {
            format!("[pid {pid}] ")
        } else {
            String::new()
        }
    }

    fn echo_source(&mut self) {
        if let Some(h) = self.pending_heading.take() {
            self.raw_line("");
            self.styled(0, Style::Heading, &h);
        }
        let Some(line) = self.pending_line else {
            return;
        };
        if self.last_line == Some(line) {
            return;
        }
        self.last_line = Some(line);
        let Some(src) = self
            .source
            .as_ref()
            .and_then(|s| s.get(line.wrapping_sub(1)))
        else {
            return;
        };
        let prefix = format!("» line {line}: ");
        let room = WIDTH.saturating_sub(prefix.chars().count());
        let text = format!("{prefix}{}", ellipsize(src.trim(), room));
        let text = paint(self.color, Style::Source, &text);
        self.raw_line(&text);
    }

    /// An event from the kernel.
    pub fn event(&mut self, e: &Event) {
        if !self.narrating() {
            return;
        }
        if let Some(buf) = self.buf.as_mut() {
            buf.push(e.clone());
            return;
        }
        if self.mode == Mode::Json {
            let v = event_json(e);
            self.json(v);
        } else {
            self.echo_source();
            self.narrate(e, false);
        }
    }

    fn narrate(&mut self, e: &Event, in_mmap: bool) {
        if let Event::Syscall { pid, .. } | Event::Signal { pid, .. } = e {
            self.note_pid(pid.0);
        }
        let (indent, style, text) = describe(e, in_mmap, self.multi);
        let text = self.short(&text);
        self.styled(indent, style, &text);
    }

    // ----- the end ----------------------------------------------------------------------

    /// The counters table and frame use.
    pub fn summary(&mut self, c: &Counters, frames_in_use: u64, total_frames: u64, live: usize) {
        let fields = c.fields();
        if self.mode == Mode::Json {
            let mut m = serde_json::Map::new();
            for (k, v) in &fields {
                m.insert((*k).to_string(), json!(v));
            }
            self.json(json!({"event": "summary", "counters": m,
                "frames_in_use": frames_in_use, "total_frames": total_frames,
                "live_processes": live}));
            return;
        }
        self.raw_line("");
        let title = "-- counters (whole machine) ";
        let line = format!("{title}{}", "-".repeat(WIDTH.saturating_sub(title.len())));
        self.styled(0, Style::Heading, &line);
        let rows = fields.len().div_ceil(2);
        for r in 0..rows {
            let cell = |i: usize| -> String {
                fields
                    .get(i)
                    .map(|(k, v)| format!("{k:<24}{v:>13}"))
                    .unwrap_or_default()
            };
            let text = format!("{}   {}", cell(r), cell(r + rows));
            self.raw_line(text.trim_end());
        }
        let kib = |frames: u64| frames * (vmem::PAGE_SIZE >> 10);
        let text = format!(
            "frames in use: {frames_in_use} of {total_frames} ({} KiB of {} KiB RAM); \
             {live} live process{}",
            kib(frames_in_use),
            kib(total_frames),
            if live == 1 { "" } else { "es" }
        );
        self.styled(0, Style::Bold, &text);
    }
}

/// The kernel's observer: forwards every event to [`Out`].
#[derive(Debug)]
pub struct Tap(pub Rc<RefCell<Out>>);

impl vmem::Observer for Tap {
    fn event(&mut self, event: &Event) {
        self.0.borrow_mut().event(event);
    }
}

/// What a fault handler did, in words.
fn fault_words(kind: FaultKind) -> &'static str {
    #[allow(unreachable_patterns)]
    match kind {
        FaultKind::AnonZeroPage => {
            "read of untouched anonymous memory: the shared zero page, mapped read-only"
        }
        FaultKind::AnonNewPage => "write to anonymous memory: a fresh zero-filled frame",
        FaultKind::ReadFault => "the page-cache page, mapped read-only",
        FaultKind::CowFault => "private write: a private copy of the page-cache page",
        FaultKind::SharedFault => "shared write: the page-cache page, mapped writable and dirty",
        FaultKind::WpCopy => "write to a page shared with others: copied (copy-on-write)",
        FaultKind::WpReuse => "write to a page no one else maps: made writable in place",
        FaultKind::WpShared => "write to a shared mapping: the page is marked dirty",
        FaultKind::Spurious => "the PTE was already right: only the TLB was stale",
        FaultKind::SwapIn => "the page was in swap: read back into a frame",
        FaultKind::HugetlbNoPage => {
            "first touch of a hugetlb page: a zeroed 2 MiB page from the pool, mapped by its PMD"
        }
        FaultKind::HugetlbWpReuse => {
            "write to a hugetlb page no one else maps: made writable in place"
        }
        FaultKind::HugetlbWpCopy => {
            "write to a hugetlb page shared since fork: its 2 MiB copied into a page from the pool"
        }
        _ => "",
    }
}

/// `(indent, style, text)` for one event.
fn describe(e: &Event, in_mmap: bool, multi: bool) -> (usize, Style, String) {
    let who = |pid: &vmem::Pid| {
        if multi {
            format!("[pid {pid}] ")
        } else {
            String::new()
        }
    };
    #[allow(unreachable_patterns)]
    match e {
        Event::Syscall { pid, call, result } => {
            let style = if result.starts_with("-1") {
                Style::Red
            } else {
                Style::Dim
            };
            (4, style, format!("{}{call} = {result}", who(pid)))
        }
        Event::VmaMapped {
            start, end, desc, ..
        } => {
            let pages = (end.0 - start.0) / vmem::PAGE_SIZE;
            let tail = if in_mmap { ": nothing loaded yet" } else { "" };
            (
                4,
                Style::Plain,
                format!(
                    "VMA {start}-{end} ({pages} page{}) {desc}{tail}",
                    if pages == 1 { "" } else { "s" }
                ),
            )
        }
        Event::VmaUnmapped { start, end, .. } => {
            (4, Style::Plain, format!("VMA {start}-{end} removed"))
        }
        Event::TlbHit { va, pfn } => (
            4,
            Style::Green,
            format!("TLB hit for {va}: frame 0x{:x}", pfn.0),
        ),
        Event::TlbMiss { va } => (
            4,
            Style::Yellow,
            format!("TLB miss for {va}: the MMU walks the page tables"),
        ),
        Event::WalkStep {
            level,
            index,
            entry_pa,
            raw,
            ..
        } => (
            6,
            Style::Dim,
            format!("{level}[{index:3}] @ {entry_pa} = {raw}"),
        ),
        Event::FaultBegin {
            va,
            access,
            present,
            ..
        } => (
            4,
            Style::Yellow,
            format!(
                "page fault: {} at {va} ({}): the kernel takes over",
                access.name(),
                if *present {
                    "page present, access not allowed by the PTE"
                } else {
                    "no page mapped"
                }
            ),
        ),
        Event::Fault {
            va, kind, major, ..
        } => {
            let words = fault_words(*kind);
            let sep = if words.is_empty() { "" } else { ": " };
            (
                4,
                Style::Yellow,
                format!(
                    "{} fault at {va} handled by {}{sep}{words}",
                    if *major { "major" } else { "minor" },
                    kind.linux_name()
                ),
            )
        }
        Event::CacheLookup { file, pgoff, hit } => (
            6,
            if *hit { Style::Green } else { Style::Yellow },
            format!(
                "page cache {} for {file} page {}{}",
                if *hit { "hit" } else { "miss" },
                pgoff.0,
                if *hit { "" } else { ": must read the disk" }
            ),
        ),
        Event::DiskRead {
            file,
            pgoff,
            pages,
            bytes,
        } => (
            6,
            Style::Magenta,
            format!(
                "disk read from {file}: page{} {} ({bytes} bytes)",
                if *pages == 1 { "" } else { "s" },
                page_range(pgoff.0, *pages)
            ),
        ),
        Event::DiskWrite {
            file,
            pgoff,
            pages,
            bytes,
        } => (
            6,
            Style::Magenta,
            format!(
                "disk write to {file}: page{} {} ({bytes} bytes): write-back",
                if *pages == 1 { "" } else { "s" },
                page_range(pgoff.0, *pages)
            ),
        ),
        Event::FrameAlloc { pfn, purpose } => (
            6,
            Style::Cyan,
            format!("frame 0x{:x} allocated ({purpose})", pfn.0),
        ),
        Event::CowCopy { va, from, to, .. } => (
            6,
            Style::Cyan,
            format!(
                "copy-on-write at {va}: frame 0x{:x} copied into frame 0x{:x}",
                from.0, to.0
            ),
        ),
        Event::PteInstall { va, raw, .. } => {
            (6, Style::Plain, format!("PTE for {va} := {raw}"))
        }
        Event::FaultAround { start, pages, .. } => (
            6,
            Style::Plain,
            format!(
                "fault-around: {pages} more cached page{} mapped from {start} (no fault there later)",
                if *pages == 1 { "" } else { "s" }
            ),
        ),
        Event::TlbFlush { va, .. } => match va {
            Some(va) => (6, Style::Dim, format!("TLB entry for {va} flushed")),
            None => (6, Style::Dim, "TLB flushed (whole address space)".to_string()),
        },
        Event::Signal { pid, signal } => (
            4,
            Style::Red,
            format!("{}{}", who(pid), signal_words(signal)),
        ),
        Event::SwapOut { pfn, slot } => (
            6,
            Style::Magenta,
            format!(
                "reclaim: frame 0x{:x} written to swap slot {slot} and freed",
                pfn.0
            ),
        ),
        Event::SwapIn { va, slot, .. } => (
            6,
            Style::Magenta,
            format!("swap-in: {va} read back from swap slot {slot}"),
        ),
        Event::CacheEvict { file, pgoff } => (
            6,
            Style::Yellow,
            format!("page cache evicts {file} page {}", pgoff.0),
        ),
        other => (4, Style::Plain, other.to_string().trim().to_string()),
    }
}

fn page_range(first: u64, pages: u64) -> String {
    if pages <= 1 {
        format!("{first}")
    } else {
        format!("{first}..{}", first + pages - 1)
    }
}

/// `SIGSEGV (SEGV_MAPERR) at 0x1000: address not mapped`.
pub fn signal_words(s: &Signal) -> String {
    format!(
        "{} ({}) at {}: {}",
        s.name(),
        s.code_name(),
        s.addr(),
        s.reason()
    )
}

/// An entry as JSON: `raw` is the value in RAM in the machine's format (8 hex digits for
/// i386, 16 otherwise), the flags are the decoded ones.
fn pte_json(p: &Pte, raw: &vmem::hw::pte_format::RawPte) -> Value {
    let digits = raw.format.entry_size() as usize * 2;
    json!({
        "raw": format!("0x{:0digits$x}", raw.bits),
        "format": raw.format.name(),
        "present": p.present(),
        "pfn": if p.has_frame() { Some(p.pfn().0) } else { None },
        "writable": p.writable(),
        "accessed": p.accessed(),
        "dirty": p.dirty(),
        "nx": p.nx(),
        "huge": p.huge(),
    })
}

/// The name of an event's variant (`SwapIn { .. }` -> `swap_in`).
fn variant_name(e: &Event) -> String {
    let dbg = format!("{e:?}");
    let name: String = dbg
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// One event as a JSON object, built from the enum's fields.
pub fn event_json(e: &Event) -> Value {
    #[allow(unreachable_patterns)]
    match e {
        Event::Syscall { pid, call, result } => {
            json!({"event": "syscall", "pid": pid.0, "call": call, "result": result})
        }
        Event::VmaMapped {
            pid,
            start,
            end,
            desc,
        } => {
            json!({"event": "vma_mapped", "pid": pid.0, "start": start.0, "end": end.0, "desc": desc})
        }
        Event::VmaUnmapped { pid, start, end } => {
            json!({"event": "vma_unmapped", "pid": pid.0, "start": start.0, "end": end.0})
        }
        Event::TlbHit { va, pfn } => json!({"event": "tlb_hit", "va": va.0, "pfn": pfn.0}),
        Event::TlbMiss { va } => json!({"event": "tlb_miss", "va": va.0}),
        Event::WalkStep {
            level,
            index,
            entry_pa,
            entry,
            raw,
        } => json!({"event": "walk_step", "level": level, "index": index,
            "entry_pa": entry_pa.0, "entry": pte_json(entry, raw)}),
        Event::FaultBegin {
            pid,
            va,
            access,
            present,
        } => json!({"event": "fault_begin", "pid": pid.0, "va": va.0,
            "access": access.name(), "present": present}),
        Event::Fault {
            pid,
            va,
            kind,
            major,
        } => json!({"event": "fault", "pid": pid.0, "va": va.0, "kind": format!("{kind:?}"),
            "handler": kind.linux_name(), "major": major}),
        Event::CacheLookup { file, pgoff, hit } => {
            json!({"event": "cache_lookup", "file": file, "pgoff": pgoff.0, "hit": hit})
        }
        Event::DiskRead {
            file,
            pgoff,
            pages,
            bytes,
        } => json!({"event": "disk_read", "file": file, "pgoff": pgoff.0, "pages": pages,
            "bytes": bytes}),
        Event::DiskWrite {
            file,
            pgoff,
            pages,
            bytes,
        } => json!({"event": "disk_write", "file": file, "pgoff": pgoff.0, "pages": pages,
            "bytes": bytes}),
        Event::FrameAlloc { pfn, purpose } => {
            json!({"event": "frame_alloc", "pfn": pfn.0, "purpose": purpose})
        }
        Event::CowCopy { pid, va, from, to } => {
            json!({"event": "cow_copy", "pid": pid.0, "va": va.0, "from": from.0, "to": to.0})
        }
        Event::PteInstall { pid, va, pte, raw } => {
            json!({"event": "pte_install", "pid": pid.0, "va": va.0, "pte": pte_json(pte, raw)})
        }
        Event::PmdInstall { pid, va, pmd, raw } => {
            json!({"event": "pmd_install", "pid": pid.0, "va": va.0, "pmd": pte_json(pmd, raw)})
        }
        Event::FaultAround { pid, start, pages } => {
            json!({"event": "fault_around", "pid": pid.0, "start": start.0, "pages": pages})
        }
        Event::TlbFlush { pid, va } => {
            json!({"event": "tlb_flush", "pid": pid.0, "va": va.map(|v| v.0)})
        }
        Event::Signal { pid, signal } => json!({"event": "signal", "pid": pid.0,
            "signal": signal.name(), "code": signal.code_name(), "addr": signal.addr().0,
            "reason": signal.reason()}),
        Event::CacheEvict { file, pgoff } => {
            json!({"event": "cache_evict", "file": file, "pgoff": pgoff.0})
        }
        Event::SwapOut { pfn, slot } => json!({"event": "swap_out", "pfn": pfn.0, "slot": slot}),
        Event::SwapIn { pid, va, slot } => {
            json!({"event": "swap_in", "pid": pid.0, "va": va.0, "slot": slot})
        }
        other => json!({"event": variant_name(other), "text": other.to_string().trim()}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_keeps_lines_within_width() {
        let text = "word ".repeat(40);
        for l in wrap(4, text.trim(), 30) {
            assert!(l.chars().count() <= 30, "{l:?}");
        }
        let long = "x".repeat(100);
        for l in wrap(2, &long, 30) {
            assert!(l.chars().count() <= 30, "{l:?}");
        }
    }

    #[test]
    fn paint_only_with_color() {
        assert_eq!(paint(false, Style::Red, "a"), "a");
        assert_eq!(paint(true, Style::Red, "a"), "\x1b[1;31ma\x1b[0m");
    }

    #[test]
    fn variant_names_are_snake_case() {
        let e = Event::TlbMiss {
            va: vmem::VirtAddr(0),
        };
        assert_eq!(variant_name(&e), "tlb_miss");
    }
}
