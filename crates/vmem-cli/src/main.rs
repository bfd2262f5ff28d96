//! `vmem`: scenario scripts and a shell over the emulated machine, with every step
//! explained.
//!
//! ```text
//! vmem run examples/tour.rhai --explain     # narrate every step
//! vmem run script.rhai --json               # the same events as JSON lines
//! vmem shell                                # the same functions at a prompt
//! vmem api                                  # the script API reference
//! vmem bench [--quick] [--json]             # the model side by side with the real thing
//! ```
//!
//! Exit status: 0 ok, 1 a failed assertion, 2 a script error (syntax, runtime, uncaught
//! signal, limits), 3 usage or I/O error, 4 a bug in vmem.

#![deny(unsafe_code)]

mod bench;
mod doc;
mod narrate;
mod replay;
mod report;
mod script;
mod shell;

use clap::{Args, Parser, Subcommand};
use narrate::{Mode, Out};
use report::{Failure, Src, EXIT_INTERNAL, EXIT_OK, EXIT_SCRIPT, EXIT_USAGE};
use script::{Limits, State};
use std::cell::RefCell;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The Linux memory-mapping system in user space: run scenario scripts on an emulated
/// machine and see every step.
#[derive(Parser, Debug)]
#[command(name = "vmem", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a scenario script (Rhai).
    Run {
        /// The script, e.g. examples/tour.rhai.
        script: PathBuf,
        #[command(flatten)]
        opts: Opts,
        /// Narrate every step: syscalls, VMAs, TLB, page walks, faults, cache, disk, signals.
        #[arg(long, short = 'e', conflicts_with = "json")]
        explain: bool,
    },
    /// Type the same functions at a prompt, with each step explained.
    Shell {
        #[command(flatten)]
        opts: Opts,
        /// Do not narrate (script output and results only).
        #[arg(long, short = 'q', conflicts_with = "json")]
        quiet: bool,
    },
    /// Generate an address-translation exercise (OSTEP style); -c shows the answers,
    /// worked out by the emulated machine's own MMU.
    Translate {
        /// linear (one page table), multi (two levels), seg (segmentation) or segpage
        /// (segments, then pages).
        #[arg(long, short = 'm', default_value = "linear")]
        mode: String,
        /// The same seed gives the same problem.
        #[arg(long, short = 's', default_value_t = 0)]
        seed: u64,
        /// How many addresses to translate.
        #[arg(long, short = 'n', default_value_t = 5)]
        count: usize,
        /// Compute the answers and show each step.
        #[arg(short = 'c', long = "compute")]
        compute: bool,
        /// For multi: walk the page tables of a real machine (i386, sv39, x86-64 or la57)
        /// instead of the small two-level ones; entries show as that hardware stores them.
        #[arg(long, short = 'g')]
        geometry: Option<String>,
    },
    /// Measure the model side by side with the real hardware and kernel, and print a
    /// table: model, real, ratio, target, met.
    Bench {
        /// CI-sized runs (a few seconds in total).
        #[arg(long)]
        quick: bool,
        /// One JSON object per row instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Replay a real program's memory trace (Valgrind Lackey: valgrind --tool=lackey
    /// --trace-mem=yes --log-file=TRACE PROGRAM) on the emulated machine, and report its
    /// TLB hits and misses, page walks and faults.
    Replay {
        /// The trace file.
        trace: PathBuf,
        /// Machine setting, e.g. tlb_sets=16 or ram_mib=256 (repeatable; see `vmem api
        /// machine`).
        #[arg(long = "config", short = 'c', value_name = "KEY=VALUE")]
        config: Vec<String>,
        /// Replay only the first N records.
        #[arg(long, value_name = "N")]
        limit: Option<u64>,
        /// Narrate every step (TLB, page walks, faults): for short traces or with --limit.
        #[arg(long, short = 'e', conflicts_with = "json")]
        explain: bool,
        /// The report as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Print the script API reference (or one function's entry).
    Api {
        /// A function name, e.g. mmap.
        name: Option<String>,
    },
}

#[derive(Args, Debug)]
struct Opts {
    /// Write events as JSON lines instead of text.
    #[arg(long)]
    json: bool,
    /// Data directory for the script's files (default: a new temporary directory).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Machine setting, e.g. ram_mib=16 (repeatable; overrides machine() in the script).
    #[arg(long = "config", short = 'c', value_name = "KEY=VALUE")]
    config: Vec<String>,
    /// Let scripts also create, write and truncate files under PATH (repeatable).
    #[arg(long = "allow-write", value_name = "PATH")]
    allow_write: Vec<PathBuf>,
    /// Stop the run after SECS seconds.
    #[arg(long, value_name = "SECS")]
    timeout: Option<f64>,
    /// Stop the script after N Rhai operations (0: no limit).
    #[arg(long, value_name = "N", default_value_t = 100_000_000)]
    max_ops: u64,
}

static PANIC: Mutex<Option<String>> = Mutex::new(None);

fn main() {
    // A panic anywhere is a bug in vmem: report it in one line, never as a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let msg = match info.payload().downcast_ref::<&str>() {
            Some(s) => s.to_string(),
            None => info
                .payload()
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_else(|| "unknown panic".into()),
        };
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        if let Ok(mut p) = PANIC.lock() {
            *p = Some(format!("{msg}{at}"));
        }
    }));
    let code = match Cli::try_parse() {
        Ok(cli) => dispatch(cli),
        Err(e) => {
            let _ = e.print();
            match e.kind() {
                clap::error::ErrorKind::DisplayHelp
                | clap::error::ErrorKind::DisplayVersion
                | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => EXIT_OK,
                _ => EXIT_USAGE,
            }
        }
    };
    std::process::exit(code);
}

/// Reports the panic the hook recorded as a bug in vmem, in one line.
fn internal_error() -> i32 {
    let msg = PANIC
        .lock()
        .ok()
        .and_then(|p| p.clone())
        .unwrap_or_else(|| "unknown".into());
    eprintln!("vmem: internal error (a bug in vmem, please report it): {msg}");
    EXIT_INTERNAL
}

/// Applies `--config KEY=VALUE` settings to `cfg`, in order: the settings as
/// (key, value) pairs, or the message for the first bad one.
fn apply_config_args(
    args: &[String],
    cfg: &mut vmem::MachineConfig,
) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    for c in args {
        let Some((k, v)) = c.split_once('=') else {
            return Err(format!("--config {c}: expected KEY=VALUE, e.g. ram_mib=16"));
        };
        let (k, v) = (k.trim(), v.trim());
        script::apply_config(cfg, k, v).map_err(|e| format!("--config {c}: {e}"))?;
        pairs.push((k.to_string(), v.to_string()));
    }
    Ok(pairs)
}

fn usage_error(msg: &str) -> i32 {
    eprintln!("vmem: {msg}");
    EXIT_USAGE
}

fn dispatch(cli: Cli) -> i32 {
    match cli.command {
        Command::Api { name } => api(name.as_deref()),
        Command::Bench { quick, json } => bench::run(quick, json),
        Command::Replay {
            trace,
            config,
            limit,
            explain,
            json,
        } => {
            let mut cfg = vmem::MachineConfig::default();
            if let Err(e) = apply_config_args(&config, &mut cfg) {
                return usage_error(&e);
            }
            let o = replay::Options {
                trace: &trace,
                cfg,
                limit,
                explain,
                color: std::io::stdout().is_terminal(),
                json,
                keep_records: replay::KEPT_RECORDS,
            };
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| replay::run(&o))) {
                Ok(Ok(())) => EXIT_OK,
                Ok(Err((code, e))) => {
                    eprintln!("vmem: {e}");
                    code
                }
                Err(_) => internal_error(),
            }
        }
        Command::Translate {
            mode,
            seed,
            count,
            compute,
            geometry,
        } => match vmem::trainer::Mode::parse(&mode) {
            Some(m) => {
                let geom = match geometry.as_deref() {
                    None => None,
                    Some(_) if m != vmem::trainer::Mode::MultiLevel => {
                        return usage_error(&format!(
                            "--geometry applies to multi-level exercises (-m multi), not `{mode}`"
                        ))
                    }
                    Some(g) => match vmem::config::PagingGeometry::parse(g) {
                        Some(geom) => match geom.unfit_reason() {
                            None => Some(geom),
                            Some(why) => return usage_error(&why),
                        },
                        None => {
                            return usage_error(&format!(
                                "unknown geometry `{g}`: use {}",
                                vmem::config::PagingGeometry::names_for_this_kernel().join(", ")
                            ))
                        }
                    },
                };
                print!(
                    "{}",
                    vmem::trainer::generate_with(m, geom, seed, count.min(1000)).render(compute)
                );
                EXIT_OK
            }
            None => usage_error(&format!(
                "unknown translation mode `{mode}`: use linear, multi, seg or segpage"
            )),
        },
        Command::Run {
            script,
            opts,
            explain,
        } => {
            let mode = if opts.json {
                Mode::Json
            } else if explain {
                Mode::Explain
            } else {
                Mode::Quiet
            };
            run(&script, &opts, mode)
        }
        Command::Shell { opts, quiet } => {
            let mode = if opts.json {
                Mode::Json
            } else if quiet {
                Mode::Quiet
            } else {
                Mode::Explain
            };
            with_setup(&opts, mode, shell::shell)
        }
    }
}

fn api(name: Option<&str>) -> i32 {
    match name {
        None => {
            print!("{}", doc::reference());
            EXIT_OK
        }
        Some(n) => {
            let found = doc::find(n);
            if found.is_empty() {
                let hint = doc::suggest(n)
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                return usage_error(&format!("no function `{n}` in the script API{hint}"));
            }
            for e in found {
                println!("{}\n    {}", e.sig, e.doc);
            }
            EXIT_OK
        }
    }
}

/// What a run needs, ready: output, machine state, limits.
#[derive(Debug)]
pub struct Setup {
    /// Output mode.
    pub mode: Mode,
    /// Colour.
    pub color: bool,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Extra writable roots.
    pub allow_write: Vec<PathBuf>,
    /// Checked `--config` settings.
    pub overrides: Vec<(String, String)>,
    /// Rhai operations limit.
    pub max_ops: u64,
    /// `--timeout`.
    pub timeout: Option<Duration>,
}

impl Setup {
    /// A fresh state and its output.
    pub fn state(&self) -> std::io::Result<Rc<State>> {
        let stdout: Box<dyn std::io::Write> = Box::new(std::io::BufWriter::new(std::io::stdout()));
        let out = Rc::new(RefCell::new(Out::new(self.mode, self.color, stdout)));
        Ok(Rc::new(State::new(
            out,
            &self.data_dir,
            &self.allow_write,
            self.overrides.clone(),
        )?))
    }

    /// The limits for a run starting now.
    pub fn limits(&self) -> Limits {
        Limits {
            max_ops: self.max_ops,
            deadline: Rc::new(std::cell::Cell::new(
                self.timeout.map(|t| Instant::now() + t),
            )),
        }
    }
}

/// Checks the options, makes the data directory, and runs `f` on a thread with a large
/// stack (deeply nested scripts stay within Rhai's own limits, not the thread's).
fn with_setup(opts: &Opts, mode: Mode, f: impl FnOnce(&Setup) -> i32 + Send) -> i32 {
    let overrides = match apply_config_args(&opts.config, &mut vmem::MachineConfig::default()) {
        Ok(o) => o,
        Err(e) => return usage_error(&e),
    };
    let timeout = match opts.timeout {
        None => None,
        Some(t) if t.is_finite() && t > 0.0 && t < 1e9 => Some(Duration::from_secs_f64(t)),
        Some(t) => {
            return usage_error(&format!(
                "--timeout {t}: expected a positive number of seconds"
            ))
        }
    };
    let _tmp;
    let data_dir = match &opts.dir {
        Some(d) => {
            if let Err(e) = std::fs::create_dir_all(d) {
                return usage_error(&format!("--dir {}: {e}", d.display()));
            }
            d.clone()
        }
        None => match tempfile::Builder::new().prefix("vmem-").tempdir() {
            Ok(t) => {
                let p = t.path().to_path_buf();
                _tmp = t;
                p
            }
            Err(e) => return usage_error(&format!("cannot create a temporary directory: {e}")),
        },
    };
    let color = mode != Mode::Json
        && std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let setup = Setup {
        mode,
        color,
        data_dir,
        allow_write: opts.allow_write.clone(),
        overrides,
        max_ops: opts.max_ops,
        timeout,
    };
    let r = std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("vmem".into())
            .stack_size(256 << 20)
            .spawn_scoped(s, || f(&setup))
            .map(|h| h.join())
    });
    match r {
        Ok(Ok(code)) => code,
        Ok(Err(_)) => internal_error(),
        Err(e) => usage_error(&format!("cannot start the script thread: {e}")),
    }
}

fn run(path: &std::path::Path, opts: &Opts, mode: Mode) -> i32 {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            return usage_error(&format!("cannot read script {}: {e}", path.display()));
        }
    };
    let name = path.display().to_string();
    with_setup(opts, mode, |setup| run_script(setup, &name, &text))
}

fn run_script(setup: &Setup, name: &str, text: &str) -> i32 {
    let st = match setup.state() {
        Ok(s) => s,
        Err(e) => return usage_error(&format!("data directory: {e}")),
    };
    st.out.borrow_mut().set_source(text);
    let src = Src {
        name,
        text,
        color: std::io::stderr().is_terminal() && setup.color,
    };
    let limits = setup.limits();
    let engine = script::build_engine(&st, limits);
    let ast = match engine.compile(text) {
        Ok(a) => a,
        Err(e) => {
            let f = report::parse_failure(src, &e);
            return finish(&st, None, Some(f));
        }
    };
    let result = engine.run_ast(&ast);
    drop(engine);
    let failure = match result {
        Ok(()) => st
            .assertion
            .borrow()
            .as_ref()
            .map(|a| report::caught_assertion(src, a)),
        Err(e) => Some(report::eval_failure(src, &e, setup.max_ops)),
    };
    finish(&st, Some(()), failure)
}

/// The end of a run: write back dirty pages, print the summary, then the failure if any.
fn finish(st: &Rc<State>, ran: Option<()>, failure: Option<Failure>) -> i32 {
    if ran.is_some() && !failure.as_ref().is_some_and(|f| f.quiet) {
        end_of_machine(st);
    }
    let mut out = st.out.borrow_mut();
    out.flush();
    drop(out);
    match failure {
        None => EXIT_OK,
        Some(f) if f.quiet => EXIT_OK,
        Some(f) => {
            eprint!("{}", f.message);
            if f.message.is_empty() {
                EXIT_SCRIPT
            } else {
                f.code
            }
        }
    }
}

/// Writes back every dirty page (narrated under a heading if anything happens) and prints
/// the counters; then powers the machine off.
pub fn end_of_machine(st: &Rc<State>) {
    st.out.borrow_mut().heading_if_events(Some(
        "== end of run: sync() writes back every dirty page ==",
    ));
    let (c, used, total, live) = st.with_kernel(|k| {
        let _ = k.sync();
        (
            k.stats(),
            k.frames_in_use(),
            k.total_frames(),
            k.pids().len(),
        )
    });
    st.out.borrow_mut().heading_if_events(None);
    st.out.borrow_mut().summary(&c, used, total, live);
    if let Some(mut k) = st.take_kernel() {
        k.set_observer(None);
    }
    st.out.borrow_mut().flush();
}
