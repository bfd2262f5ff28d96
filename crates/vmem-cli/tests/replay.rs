//! `vmem replay`: Lackey traces run on the emulated machine, as a user runs the binary.
//! The small traces under tests/data have counts worked out by hand; a real program's
//! trace is made with Valgrind when it is installed (CI installs it).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn vmem(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vmem"))
        .args(args)
        .output()
        .expect("run vmem")
}

fn json(args: &[&str]) -> serde_json::Value {
    let o = vmem(args);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("one JSON object")
}

/// Replays `text` as the trace file `name` (in a temporary directory) that must run to
/// the end: its report, and what it wrote to standard error (the signals).
fn replay_text(name: &str, text: &str) -> (serde_json::Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    let o = vmem(&["replay", p.to_str().unwrap(), "--json"]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(0), "{err}");
    (
        serde_json::from_slice(&o.stdout).expect("one JSON object"),
        err,
    )
}

#[test]
fn six_accesses_fault_and_hit_as_worked_out_by_hand() {
    let t = data("six.lackey");
    let j = json(&["replay", t.to_str().unwrap(), "--json"]);
    // Three fetches from a text page, a load, a store and a load on a data page.
    assert_eq!(j["records"], 6);
    assert_eq!(
        (&j["instr"], &j["loads"], &j["stores"]),
        (&3.into(), &2.into(), &1.into())
    );
    assert_eq!(j["areas"], 2);
    // The first fetch misses, faults (zero page, read-only) and misses again; the next
    // two hit. The load does the same on the data page. The store hits a read-only
    // entry, faults (copy-on-write of the zero page: a frame of its own), misses and
    // walks; the last load hits.
    assert_eq!(j["tlb_hits"], 4);
    assert_eq!(j["tlb_misses"], 5);
    assert_eq!(j["page_walks"], 5);
    assert_eq!(j["minor_faults"], 3);
    assert_eq!(j["counters"]["cow_faults"], 1);
    assert_eq!(j["resident_pages"], 1);
    assert_eq!(j["signals"], 0);
    assert_eq!(j["counters"]["mapped_loads"], 16);
    assert_eq!(j["counters"]["mapped_stores"], 8);
}

#[test]
fn the_tlb_size_decides_the_misses() {
    let t = data("pingpong.lackey");
    let t = t.to_str().unwrap();
    // Two pages in one set of the default 64x4 TLB: after their first touch, every load
    // hits.
    let j = json(&["replay", t, "--json"]);
    assert_eq!((&j["tlb_hits"], &j["tlb_misses"]), (&6.into(), &4.into()));
    // One entry: the pages evict each other, and every access misses and walks.
    let j = json(&[
        "replay",
        t,
        "--json",
        "-c",
        "tlb_sets=1",
        "-c",
        "tlb_ways=1",
    ]);
    assert_eq!((&j["tlb_hits"], &j["tlb_misses"]), (&0.into(), &10.into()));
    assert_eq!(j["page_walks"], 10);
    assert_eq!(j["minor_faults"], 2);
    assert_eq!((&j["tlb_sets"], &j["tlb_ways"]), (&1.into(), &1.into()));
    // --limit stops after N records.
    let j = json(&["replay", t, "--json", "--limit", "3"]);
    assert_eq!(j["records"], 3);
}

#[test]
fn the_text_report_and_the_narration_name_the_trace_lines() {
    let t = data("six.lackey");
    let o = vmem(&["replay", t.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0));
    let out = String::from_utf8(o.stdout).unwrap();
    assert!(
        out.contains("6 records: 3 instruction fetches, 2 loads, 1 stores"),
        "{out}"
    );
    assert!(out.contains("4 hits, 5 misses"), "{out}");
    assert!(out.contains("tlb_misses"), "the counter table:\n{out}");
    let o = vmem(&["replay", t.to_str().unwrap(), "--explain", "--limit", "2"]);
    let out = String::from_utf8(o.stdout).unwrap();
    // Records start at line 4 of the file (three Valgrind lines first).
    assert!(
        out.contains("six.lackey:4: exec 0x400000, 4 bytes"),
        "{out}"
    );
    assert!(
        out.contains("six.lackey:5: exec 0x400004, 4 bytes"),
        "{out}"
    );
    assert!(!out.contains("six.lackey:6:"), "--limit 2:\n{out}");
    assert!(out.contains("TLB miss for 0x400000"), "{out}");
    assert!(out.contains("TLB hit for 0x400004"), "{out}");
}

#[test]
fn bad_traces_get_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &str); 4] = [
        (
            "I  00400000,4\n L 00600000,8\nhello\n",
            ":3: unknown record kind in `hello`",
        ),
        (" L 00600000\n", ":1: no `,SIZE`"),
        (
            "==1== x\n L 0060zz00,8\n",
            ":2: the address is not hexadecimal",
        ),
        (" S 00600000,0\n", ":1: the size is not 1..=255"),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let p = dir.path().join(format!("bad{i}.lackey"));
        std::fs::write(&p, text).unwrap();
        let o = vmem(&["replay", p.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(&format!("bad{i}.lackey{want}")), "{err}");
    }
    let o = vmem(&["replay", dir.path().join("missing").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("No such file"));
    let o = vmem(&[
        "replay",
        data("six.lackey").to_str().unwrap(),
        "-c",
        "tlb_sets=3",
    ]);
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("power of two"));
}

#[test]
fn a_real_programs_trace_replays_without_signals() {
    if Command::new("valgrind").arg("--version").output().is_err() {
        eprintln!("skipped: valgrind is not installed (.ci/run installs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("true.lackey");
    let st = Command::new("valgrind")
        .args(["--tool=lackey", "--trace-mem=yes"])
        .arg(format!("--log-file={}", trace.display()))
        .arg("/bin/true")
        .status()
        .expect("valgrind");
    assert!(st.success());
    let text = std::fs::read_to_string(&trace).unwrap();
    let records = text.lines().filter(|l| !l.starts_with("==")).count() as u64;
    let modifies = text.lines().filter(|l| l.starts_with(" M")).count() as u64;
    assert!(records > 10_000, "{records} records");
    let j = json(&["replay", trace.to_str().unwrap(), "--json"]);
    assert_eq!(j["records"], records);
    assert_eq!(j["signals"], 0);
    // Every access looks up the TLB at least once (one per page it touches).
    let lookups = j["tlb_hits"].as_u64().unwrap() + j["tlb_misses"].as_u64().unwrap();
    assert!(lookups >= records + modifies, "{lookups} lookups");
    // Each touched page faults at least once; a loader's pages are few and hot.
    assert!(j["minor_faults"].as_u64().unwrap() >= j["pages_touched"].as_u64().unwrap());
    assert!(j["tlb_hit_rate"].as_f64().unwrap() > 0.9, "{j}");
}

#[test]
fn pages_a_process_cannot_map_raise_sigsegv_at_their_lines() {
    // Below mmap_min_addr, the vsyscall page, the last page under TASK_SIZE.
    let (j, err) = replay_text(
        "edge.lackey",
        "I  00400000,4\n L 00001000,8\n L ffffffffff600000,8\n L 7ffffffff000,8\n S 00400010,8\n",
    );
    assert!(
        err.contains("3 pages lie outside what a process may map"),
        "{err}"
    );
    for (line, addr) in [
        (2, "0x1000"),
        (3, "0xffffffffff600000"),
        (4, "0x7ffffffff000"),
    ] {
        assert!(
            err.contains(&format!(
                "edge.lackey:{line}: SIGSEGV (SEGV_MAPERR) at {addr}"
            )),
            "{err}"
        );
    }
    assert_eq!(j["signals"], 3);
    assert_eq!(
        j["counters"]["mapped_stores"], 8,
        "the store after them ran"
    );
}

#[test]
fn limit_stops_before_reading_the_lines_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("cut.lackey");
    // A trace whose writer was killed: the last line is cut short.
    std::fs::write(&p, "I  00400000,4\n L 00600000,8\n S 0060").unwrap();
    let p = p.to_str().unwrap();
    let j = json(&["replay", p, "--json", "--limit", "2"]);
    assert_eq!((&j["records"], &j["loads"]), (&2.into(), &1.into()));
    let j = json(&["replay", p, "--json", "--limit", "0"]);
    assert_eq!((&j["records"], &j["tlb_misses"]), (&0.into(), &0.into()));
    // Without the limit the cut line is an error.
    let o = vmem(&["replay", p]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cut.lackey:3: no `,SIZE`"));
}

#[test]
fn a_modify_that_faults_is_one_signal() {
    // A modify below mmap_min_addr: its load faults, and the instruction ends there.
    let (j, err) = replay_text("m.lackey", " M 00001000,8\n M 00400000,8\n");
    assert_eq!(err.matches("m.lackey:1: SIGSEGV").count(), 1, "{err}");
    assert_eq!(j["signals"], 1);
    assert_eq!(j["counters"]["signals"], 1);
    // The modify of a mapped page loads and stores.
    assert_eq!(j["counters"]["mapped_loads"], 8);
    assert_eq!(j["counters"]["mapped_stores"], 8);
}

#[test]
fn an_address_with_its_top_bits_set_is_not_the_page_below_it() {
    // 0x400000 is mapped and in the TLB; 0xf000000000400000 is no user address.
    let (j, err) = replay_text("top.lackey", "I  00400000,4\n L f000000000400000,8\n");
    assert!(
        err.contains("top.lackey:2: SIGSEGV (SEGV_MAPERR) at 0xf000000000400000"),
        "{err}"
    );
    assert_eq!(j["signals"], 1);
}

#[test]
fn out_of_memory_kills_the_program_and_the_replay_stops_there() {
    // 300 pages stored to on a machine of 256 KiB (64 frames), no swap.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("oom.lackey");
    let text: String = (0..300)
        .map(|i| format!(" S {:08x},8\n", 0x60_0000 + i * 4096))
        .collect();
    std::fs::write(&p, text).unwrap();
    let o = vmem(&["replay", p.to_str().unwrap(), "-c", "ram_kib=256", "--json"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // One SIGKILL, and nothing after it runs.
    assert_eq!(err.matches("SIGKILL (OOM)").count(), 1, "{err}");
    assert_eq!(j["signals"], 1);
    assert_eq!(j["counters"]["oom_kills"], 1);
    let stored = j["counters"]["mapped_stores"].as_u64().unwrap();
    assert!(stored > 0 && stored < 300 * 8, "{stored} bytes stored");
}
