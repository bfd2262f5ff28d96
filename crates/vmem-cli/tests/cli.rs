//! The `vmem` binary end to end: every example passes its own asserts, explain and JSON
//! output carry the steps, and broken scripts get the right exit status and a message
//! that names the file, line and cause.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vmem"))
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run vmem")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Writes `text` to a script file in a fresh directory; returns (dir guard, path).
fn script(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join(name);
    std::fs::write(&p, text).unwrap();
    (d, p)
}

fn run_script(name: &str, text: &str, extra: &[&str]) -> Output {
    let (_d, p) = script(name, text);
    let mut args = vec!["run", p.to_str().unwrap()];
    args.extend_from_slice(extra);
    run(&args)
}

fn example(name: &str, extra: &[&str]) -> Output {
    let p = examples().join(name);
    let mut args = vec!["run", p.to_str().unwrap()];
    args.extend_from_slice(extra);
    run(&args)
}

fn assert_ok(o: &Output) {
    assert_eq!(
        o.status.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        stdout(o),
        stderr(o)
    );
}

#[test]
fn every_example_passes_its_own_asserts() {
    let mut n = 0;
    for e in std::fs::read_dir(examples()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "rhai") {
            let o = run(&["run", p.to_str().unwrap()]);
            assert!(o.status.success(), "{}:\n{}", p.display(), stderr(&o));
            assert!(stdout(&o).contains("counters (whole machine)"));
            n += 1;
        }
    }
    assert!(n >= 6, "the tour and the five focused examples");
}

#[test]
fn focused_examples_pass_with_explain_and_json() {
    for name in [
        "lazy_loading.rhai",
        "shared_vs_private.rhai",
        "sigbus_sigsegv.rhai",
        "read_vs_mmap.rhai",
        "fork_cow.rhai",
        "hugetlb.rhai",
    ] {
        assert_ok(&example(name, &["--explain"]));
        assert_ok(&example(name, &["--json"]));
    }
}

#[test]
fn tour_explains_every_step_in_80_columns() {
    let o = example("tour.rhai", &["--explain"]);
    assert_ok(&o);
    let out = stdout(&o);
    for needle in [
        "nothing loaded yet",
        "TLB miss for",
        "TLB hit for",
        "PGD[",
        "PUD[",
        "PMD[",
        "PTE[",
        "page fault: read at",
        "page cache miss for data.txt page 0",
        "page cache hit",
        "disk read from data.txt",
        "frame 0x",
        "PTE for 0x",
        "major fault at",
        "handled by do_read_fault",
        "handled by do_anonymous_page",
        "handled by wp_page_copy",
        "handled by wp_page_shared",
        "copy-on-write at",
        "disk write to data.txt",
        "fault-around",
        "SIGSEGV (SEGV_MAPERR)",
        "SIGSEGV (SEGV_ACCERR)",
        "SIGBUS (BUS_ADRERR)",
        "VMA 0x",
        "removed",
        "fork() = ",
        "» line ",
        "Every claim held.",
        "frames in use:",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
    for l in out.lines() {
        assert!(l.chars().count() <= 80, "line over 80 columns: {l:?}");
    }
    assert!(
        !out.contains('\x1b'),
        "no colour when stdout is not a terminal"
    );
}

#[test]
fn quiet_run_prints_script_output_and_summary_only() {
    let o = example("tour.rhai", &[]);
    assert_ok(&o);
    let out = stdout(&o);
    assert!(out.contains("on disk after msync:  ALL WORK"));
    assert!(!out.contains("TLB miss for"));
    assert!(out.contains("major_faults"));
    assert!(out.contains("frames in use:"));
}

#[test]
fn json_lines_parse_and_carry_the_events() {
    let o = example("tour.rhai", &["--json"]);
    assert_ok(&o);
    let mut kinds = std::collections::BTreeSet::new();
    for l in stdout(&o).lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        kinds.insert(v["event"].as_str().expect("event field").to_string());
    }
    for k in [
        "syscall",
        "vma_mapped",
        "tlb_miss",
        "tlb_hit",
        "walk_step",
        "fault_begin",
        "fault",
        "cache_lookup",
        "disk_read",
        "disk_write",
        "frame_alloc",
        "pte_install",
        "cow_copy",
        "signal",
        "print",
        "section",
        "call",
        "summary",
    ] {
        assert!(kinds.contains(k), "no {k} event; saw {kinds:?}");
    }
    let last: serde_json::Value = serde_json::from_str(stdout(&o).lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "summary");
    assert!(last["counters"]["major_faults"].as_u64().unwrap() >= 1);
}

#[test]
fn syntax_error_exits_2_with_file_line_column() {
    let o = run_script(
        "bad.rhai",
        "let p = spawn();\nlet x = p.mmap(0, 4096,\nprint(\"x\");\n",
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("bad.rhai:3:11: syntax error"), "{err}");
    assert!(err.contains("Expecting"), "says what was expected: {err}");
    assert!(err.contains("    3 | print(\"x\");"), "{err}");
}

#[test]
fn failed_assert_exits_1_naming_the_line() {
    let o = run_script(
        "check.rhai",
        "let p = spawn();\nlet a = 1;\nassert_eq(a + 1, 3, \"arithmetic\");\nprint(\"unreached\");\n",
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("check.rhai:3:1: assertion failed: arithmetic"),
        "{err}"
    );
    assert!(
        err.contains("left:  2") && err.contains("right: 3"),
        "{err}"
    );
    assert!(!stdout(&o).contains("unreached"));
}

#[test]
fn assert_inside_try_still_fails_the_run() {
    let o = run_script(
        "try.rhai",
        "try { assert(false, \"inside try\"); } catch (e) { print(\"caught\"); }\n",
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(!stdout(&o).contains("caught"));
    assert!(stderr(&o).contains("inside try"));
}

#[test]
fn uncaught_sigsegv_exits_2_naming_line_and_address() {
    let o = run_script(
        "segv.rhai",
        "let p = spawn();\n\nfn touch(p, a) {\n    p.load_u8(a)\n}\ntouch(p, 0x1000);\n",
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("segv.rhai:4:"), "{err}");
    assert!(
        err.contains("SIGSEGV (SEGV_MAPERR) in pid 1 at 0x1000: address not mapped"),
        "{err}"
    );
    assert!(
        err.contains("in function `touch` called at") && err.contains("segv.rhai:6:"),
        "{err}"
    );
}

#[test]
fn caught_signal_is_a_map() {
    let o = run_script(
        "bus.rhai",
        r#"
let f = file("one.txt", "x");
let p = spawn();
let a = p.mmap(0, 2 * PAGE_SIZE, PROT_READ, MAP_SHARED, p.open(f, O_RDONLY).fd, 0).addr;
let got = #{};
try { p.load_u8(a + PAGE_SIZE) } catch (e) { got = e; }
assert_eq(got.signal, "SIGBUS");
assert_eq(got.code, "BUS_ADRERR");
assert_eq(got.addr, a + PAGE_SIZE);
assert_eq(got.number, 7);
assert(got.reason.contains("past end of file"));
"#,
        &[],
    );
    assert_ok(&o);
}

#[test]
fn missing_script_exits_3_naming_the_path() {
    let o = run(&["run", "no/such/script.rhai"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("no/such/script.rhai"), "{}", stderr(&o));
}

#[test]
fn usage_errors_exit_3() {
    assert_eq!(run(&["frobnicate"]).status.code(), Some(3));
    assert_eq!(run(&["run"]).status.code(), Some(3));
    let (_d, p) = script("s.rhai", "spawn();");
    let o = run(&["run", p.to_str().unwrap(), "--config", "ram_mib=99999"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("out of range"));
    let o = run(&["run", p.to_str().unwrap(), "--config", "warp=9"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("unknown machine setting `warp`"));
    assert_eq!(run(&["--help"]).status.code(), Some(0));
}

#[test]
fn misspelled_function_suggests_the_right_one() {
    let o = run_script(
        "typo.rhai",
        "let p = spawn();\np.mmapp(0, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);\n",
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("did you mean `mmap`?"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn failed_syscall_returns_an_errno_and_value_of_a_failure_stops() {
    let o = run_script(
        "errno.rhai",
        r#"
let p = spawn();
let r = p.mmap(0, 0, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
assert(!r.ok);
assert_eq(r.errno, EINVAL);
assert_eq(r.error, "EINVAL");
let ok = p.mmap(0, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
assert(ok.ok);
assert_eq(ok.errno, 0);
assert_eq(ok.addr, ok.value);
let x = r.value;
"#,
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("errno.rhai:11:"), "{err}");
    assert!(err.contains("mmap() failed with EINVAL"), "{err}");
}

#[test]
fn runaway_loops_and_recursion_are_stopped() {
    let o = run_script(
        "loop.rhai",
        "let i = 0;\nloop { i += 1; }\n",
        &["--max-ops", "100000"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("100000 operations"), "{}", stderr(&o));
    let o = run_script(
        "loop.rhai",
        "loop { }\n",
        &["--timeout", "0.3", "--max-ops", "0"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--timeout"), "{}", stderr(&o));
    let o = run_script("rec.rhai", "fn f(n) { f(n + 1) }\nf(0);\n", &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("nested function calls"),
        "{}",
        stderr(&o)
    );
    let o = run_script("big.rhai", "let s = \"x\";\nloop { s += s; }\n", &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("larger than a script may build"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn writes_outside_the_data_directory_are_refused() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("victim.txt");
    std::fs::write(&target, "keep me").unwrap();
    let text = format!(
        r#"
let p = spawn();
let r = p.open("{t}", O_RDWR);
assert_eq(r.errno, EACCES);
assert_eq(p.open("{t}", O_RDONLY).errno, 0, "reading is fine");
assert_eq(p.open("../escape.txt", O_RDWR | O_CREAT).errno, EACCES);
assert_eq(p.open("inside.txt", O_RDWR | O_CREAT).errno, 0);
assert_eq(p.open("/dev/zero", O_RDWR).errno, 0);
"#,
        t = target.display()
    );
    let o = run_script("sandbox.rhai", &text, &[]);
    assert_ok(&o);
    assert!(stderr(&o).contains("--allow-write"), "{}", stderr(&o));
    assert_eq(std::fs::read_to_string(&target).unwrap(), "keep me");

    // With --allow-write the same open succeeds and can write.
    let text = format!(
        r#"
let p = spawn();
let fd = p.open("{t}", O_RDWR).fd;
assert_eq(p.pwrite(fd, "changed", 0).count, 7);
p.fsync(fd);
"#,
        t = target.display()
    );
    let o = run_script(
        "allowed.rhai",
        &text,
        &["--allow-write", outside.path().to_str().unwrap()],
    );
    assert_ok(&o);
    assert_eq(std::fs::read_to_string(&target).unwrap(), "changed");
}

fn assert_eq(a: String, b: &str) {
    assert_eq!(a, b);
}

#[test]
fn dir_and_config_shape_the_run() {
    let d = tempfile::tempdir().unwrap();
    let o = run_script(
        "cfg.rhai",
        r#"
let f = file("kept.txt", "data");
assert_eq(stats().total_frames, 4096, "16 MiB from --config");
assert(f.ends_with("kept.txt"));
"#,
        &[
            "--dir",
            d.path().to_str().unwrap(),
            "--config",
            "ram_mib=16",
        ],
    );
    assert_ok(&o);
    assert_eq!(
        std::fs::read_to_string(d.path().join("kept.txt")).unwrap(),
        "data"
    );
    let o = run_script(
        "late.rhai",
        "let p = spawn();\nmachine(#{ram_mib: 8});\n",
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("late.rhai:2:1"), "{}", stderr(&o));
    assert!(stderr(&o).contains("before the first spawn()"));
    let o = run_script("ram.rhai", "machine(#{ram_mib: 100000});\n", &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("out of range"));
}

#[test]
fn shell_reads_piped_lines() {
    let mut child = bin()
        .args(["shell"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("HOME", tempfile::tempdir().unwrap().path())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            b"let p = spawn();\n\
              let f = file(\"d\", 8192, \"hello \");\n\
              let a = p.mmap(0, 8192, PROT_READ, MAP_PRIVATE, p.open(f, O_RDONLY).fd, 0).addr;\n\
              p.load_str(a, 5)\n\
              help mmap\n\
              fn twice(x) {\n  x * 2\n}\n\
              twice(21)\n\
              p.load_u8(0x1000)\n\
              p.load_u8(a)\n\
              quit\n",
        )
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_ok(&o);
    let out = stdout(&o);
    assert!(out.contains("= \"hello\""), "{out}");
    assert!(
        out.contains("p.mmap(addr, len, prot, flags, fd, offset)"),
        "{out}"
    );
    assert!(out.contains("= 42"), "functions persist: {out}");
    assert!(out.contains("TLB miss"), "explained: {out}");
    assert!(
        out.contains("= 104"),
        "the shell goes on after a signal: {out}"
    );
    assert!(out.contains("frames in use:"), "{out}");
    assert!(stderr(&o).contains("SIGSEGV"), "{}", stderr(&o));
}

#[test]
fn api_reference_lists_the_functions() {
    let o = run(&["api"]);
    assert_ok(&o);
    let out = stdout(&o);
    for f in [
        "p.mmap(",
        "p.munmap(",
        "p.load_u8(",
        "p.fork()",
        "file(",
        "assert_eq(",
    ] {
        assert!(out.contains(f), "{f}");
    }
    assert_eq!(run(&["api", "nosuch"]).status.code(), Some(3));
}

#[test]
fn translate_exercises_are_seeded_and_answered_with_c() {
    for mode in ["linear", "multi", "seg", "segpage"] {
        let a = run(&["translate", "-m", mode, "-s", "42"]);
        let b = run(&["translate", "-m", mode, "-s", "42"]);
        assert!(a.status.success(), "{}", stderr(&a));
        assert_eq!(stdout(&a), stdout(&b), "same seed, same problem");
        assert!(stdout(&a).contains("-> ?"), "answers hidden without -c");
        let c = run(&["translate", "-m", mode, "-s", "42", "-c"]);
        let text = stdout(&c);
        assert!(
            text.contains("physical 0x") || text.contains("fault") || text.contains("violation"),
            "{text}"
        );
        assert!(!text.contains("-> ?"));
    }
    let bad = run(&["translate", "-m", "tlb"]);
    assert_eq!(bad.status.code(), Some(3));
    assert!(stderr(&bad).contains("unknown translation mode"));
}

#[test]
fn translate_walks_real_geometries_with_their_own_entries() {
    let o = run(&[
        "translate",
        "-m",
        "multi",
        "--geometry",
        "i386",
        "-s",
        "1",
        "-c",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("ARG geometry i386"), "{text}");
    // 4-byte entries: 8 hex digits, e.g. "[154] 0x0001a007  -> frame 0x1a".
    assert!(text.contains("[154] 0x0001a007  -> frame 0x1a"), "{text}");
    assert!(text.contains("PTE index 0x18e"), "{text}");
    let o = run(&["translate", "-m", "multi", "-g", "sv39", "-s", "1", "-c"]);
    let text = stdout(&o);
    assert!(text.contains("PMD index 0x134"), "{text}");
    assert!(text.contains("(ppn 0x28 DA-U-WRV)"), "{text}");
    let bad = run(&["translate", "-m", "multi", "--geometry", "vax"]);
    assert_eq!(bad.status.code(), Some(3));
    assert!(stderr(&bad).contains("unknown geometry `vax`"));
    let bad = run(&["translate", "-m", "seg", "--geometry", "i386"]);
    assert_eq!(bad.status.code(), Some(3));
    assert!(stderr(&bad).contains("applies to multi-level exercises"));
    // arm64 descriptors: a page is type 3 with AF and nG (0x...f43 or 0x...fc3 read-only).
    let o = run(&["translate", "-m", "multi", "-g", "arm64", "-s", "3", "-c"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("arm64 paging: 4 levels of 512 8-byte entries"),
        "{text}"
    );
    assert!(
        text.contains("[17] 0x0068000000019f43  -> frame 0x19"),
        "{text}"
    );
    // The 16 and 64 KiB granules need a kernel built with that page size.
    if vmem::PAGE_SIZE == 4096 {
        let bad = run(&["translate", "-m", "multi", "-g", "arm64-16k"]);
        assert_eq!(bad.status.code(), Some(3));
        assert!(
            stderr(&bad).contains("built with 4 KiB pages (build with `--features page-16k`)"),
            "{}",
            stderr(&bad)
        );
    }
}

#[test]
fn a_script_that_needs_another_page_size_says_how_to_get_it() {
    if vmem::PAGE_SIZE != 4096 {
        return; // the messages below are those of the default build
    }
    let o = run_script(
        "big.rhai",
        "let x = 1;\nmachine(#{page_size: 65536});\n",
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("big.rhai:2:"), "{err}");
    assert!(
        err.contains("page_size = 65536: this vmem was built with 4096 byte pages (build vmem with `--features page-64k`)"),
        "{err}"
    );
    let o = run_script(
        "ok.rhai",
        "machine(#{page_size: 4096, geometry: \"arm64\"});\nlet p = spawn();\n",
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn scripts_run_on_an_i386_machine() {
    let o = run_script(
        "i386.rhai",
        r#"
machine(#{geometry: "i386"});
let p = spawn();
let a = p.mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0).addr;
p.store_u64(a, 42);
print(`top ${a < 0xc0000000}`);
print(p.pte(a));
"#,
        &[],
    );
    assert_ok(&o);
    let text = stdout(&o);
    assert!(
        text.contains("top true"),
        "mapped below the 3G split: {text}"
    );
    // The PTE prints as the 4-byte hardware entry: frame << 12 | D A U W P.
    let line = text.lines().find(|l| l.contains("(pfn 0x")).unwrap_or("");
    assert!(
        line.starts_with("0x") && line.contains("067 (pfn 0x"),
        "{text}"
    );
    assert_eq!(line.split_whitespace().next().unwrap().len(), 10, "{line}");
    let o = run_script("bad.rhai", "machine(#{geometry: \"pdp11\"});\n", &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("expected x86-64, la57, i386, sv39, arm64"),
        "{}",
        stderr(&o)
    );
}
