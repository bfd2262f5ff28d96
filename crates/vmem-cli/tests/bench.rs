//! `vmem bench --quick`: the table has every row and column, and `--json` gives one JSON
//! object per row. Timings are never asserted (they depend on the machine).

use std::process::{Command, Output};

const IDS: [&str; 10] = [
    "load_tlb_hit",
    "load_page_walk",
    "load_page_walk_single",
    "anon_first_touch",
    "file_read_fault",
    "scan_mmap",
    "scan_read",
    "fork_cow",
    "frame_meta_bytes",
    "vma_bytes",
];

fn bench(extra: &[&str]) -> Output {
    let o = Command::new(env!("CARGO_BIN_EXE_vmem"))
        .arg("bench")
        .arg("--quick")
        .args(extra)
        .output()
        .expect("run vmem bench");
    assert_eq!(
        o.status.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

#[test]
fn table_has_every_row_and_column() {
    let o = bench(&[]);
    let out = String::from_utf8(o.stdout).unwrap();
    let header = out
        .lines()
        .find(|l| l.starts_with("measure"))
        .unwrap_or_else(|| panic!("no header line:\n{out}"));
    let cols: Vec<&str> = header.split_whitespace().collect();
    assert_eq!(cols, ["measure", "model", "real", "ratio", "target", "met"]);
    assert!(out.contains("runs 3 times"), "repetition count:\n{out}");
    for measure in [
        "u64 loads, 1 MiB resident (TLB hits)",
        "u64 loads, 32 MiB resident (TLB misses)",
        "same, one load_u64 call per load",
        "first touch, anonymous",
        "read faults, cached file",
        "sequential scan, 32 MiB file (mmap)",
        "same, real side read()",
        "fork, 16 MiB touched, then 1 write/page",
        "metadata per 4 KiB frame",
        "bytes per VMA",
    ] {
        let line = out
            .lines()
            .find(|l| l.trim_start().starts_with(measure))
            .unwrap_or_else(|| panic!("no row `{measure}`:\n{out}"));
        let last = line.split_whitespace().last().unwrap();
        assert!(["yes", "no", "-"].contains(&last), "met column of `{line}`");
    }
    assert!(out.contains("prefault_ram"), "footnote:\n{out}");
}

#[test]
fn json_is_one_object_per_row() {
    let o = bench(&["--json"]);
    let out = String::from_utf8(o.stdout).unwrap();
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, IDS);
    for r in &rows {
        for key in ["measure", "unit", "target"] {
            assert!(r[key].is_string(), "{key} in {r}");
        }
        assert!(r["model"].is_number(), "model in {r}");
        assert!(r["real"].is_number() || r["real"].is_null(), "real in {r}");
        assert!(
            r["ratio"].is_number() || r["ratio"].is_null(),
            "ratio in {r}"
        );
        assert!(r["met"].is_boolean() || r["met"].is_null(), "met in {r}");
        assert_eq!(r["reps"], 3);
        assert_eq!(r["quick"], true);
    }
    assert!(rows[5]["read_mb_s"].is_number());
    assert!(rows[0]["model_batch_ns_per_load"].is_number());
}
