//! The translation trainer's answers, checked against translations worked out by hand
//! from the tables each problem prints (a separate, deliberately naive reading of the
//! setup text), for many seeds and every mode; plus examples worked on paper.
// Written with the default build's 4 KiB pages in its numbers (x86 and RISC-V geometries,
// file sizes, counts of 4 KiB pages): it runs in that build; tests/page_sizes.rs covers the
// 16 and 64 KiB builds.
#![cfg(not(any(feature = "page-16k", feature = "page-64k")))]

use std::collections::HashMap;
use vmem::trainer::{generate, Mode};

/// VPN -> frame from the printed leaf tables ("(VPN 0x..)" lines).
fn leaf_map(setup: &str) -> HashMap<u64, u64> {
    let mut m = HashMap::new();
    for line in setup.lines() {
        if let Some(i) = line.find("(VPN 0x") {
            let vpn = u64::from_str_radix(line[i + 7..].split(')').next().unwrap(), 16).unwrap();
            let f = line.find("-> frame 0x").unwrap();
            let frame =
                u64::from_str_radix(line[f + 11..].split_whitespace().next().unwrap(), 16).unwrap();
            m.insert(vpn, frame);
        }
    }
    m
}

/// seg -> (base, limit, grows_down) from "segment N: base 0x.. limit 0x.." lines.
fn seg_table(setup: &str) -> HashMap<u64, (u64, u64, bool)> {
    let mut t = HashMap::new();
    for line in setup.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("segment ") {
            let w: Vec<&str> = rest.split_whitespace().collect();
            if w.len() < 5 || w[1] != "base" {
                continue;
            }
            let n: u64 = w[0].trim_end_matches(':').parse().unwrap();
            let base = u64::from_str_radix(w[2].trim_start_matches("0x"), 16).unwrap();
            let limit = u64::from_str_radix(w[4].trim_start_matches("0x"), 16).unwrap();
            t.insert(n, (base, limit, rest.contains("grows down")));
        }
    }
    t
}

fn by_hand_paging(map: &HashMap<u64, u64>, va: u64) -> Option<u64> {
    map.get(&(va >> 12)).map(|f| (f << 12) | (va & 0xfff))
}

fn by_hand_segment(t: &HashMap<u64, (u64, u64, bool)>, la: u64) -> Option<u64> {
    let (seg, off) = (la >> 32, la & 0xffff_ffff);
    let &(base, limit, down) = t.get(&seg)?;
    if down {
        let low = (1u64 << 32) - limit;
        (off >= low).then(|| base + off - low)
    } else {
        (off < limit).then(|| base + off)
    }
}

#[test]
fn answers_match_the_hand_method_for_many_seeds() {
    for seed in 0..60 {
        for mode in [
            Mode::Linear,
            Mode::MultiLevel,
            Mode::Segmentation,
            Mode::SegmentPaging,
        ] {
            let p = generate(mode, seed, 8);
            let map = leaf_map(&p.setup);
            let segs = seg_table(&p.setup);
            for q in &p.questions {
                let hand = match mode {
                    Mode::Linear | Mode::MultiLevel => by_hand_paging(&map, q.addr),
                    Mode::Segmentation => by_hand_segment(&segs, q.addr),
                    Mode::SegmentPaging => {
                        by_hand_segment(&segs, q.addr).and_then(|l| by_hand_paging(&map, l))
                    }
                };
                assert_eq!(
                    q.answer.clone().ok(),
                    hand,
                    "{mode:?} seed {seed} address {:#x}\n{}",
                    q.addr,
                    p.render(true)
                );
            }
        }
    }
}

#[test]
fn examples_worked_on_paper() {
    // Linear table, seed 1: VPN 5 maps frame 0x1c (read-only), so 0x5009 -> 0x1c009.
    let p = generate(Mode::Linear, 1, 4);
    assert!(
        p.setup
            .contains("[ 5] 0x000000000001c005  -> frame 0x1c  (VPN 0x5)  read-only"),
        "{}",
        p.setup
    );
    assert_eq!(p.questions[0].addr, 0x5009);
    assert_eq!(p.questions[0].answer, Ok(0x1c009));
    // Segmentation, seed 1: segment 2 is base 0x60400 limit 0x1000, so 2:0xd7 ->
    // 0x60400 + 0xd7 = 0x604d7; segment 1's limit is 0x400, so 1:0x765 is a violation.
    let s = generate(Mode::Segmentation, 1, 4);
    assert!(
        s.setup.contains("segment 2: base 0x60400 limit 0x1000 rw"),
        "{}",
        s.setup
    );
    assert_eq!(s.questions[0].addr, 0x2_0000_00d7);
    assert_eq!(s.questions[0].answer, Ok(0x604d7));
    assert_eq!(s.questions[2].addr, 0x1_0000_0765);
    assert!(s.questions[2]
        .answer
        .as_ref()
        .unwrap_err()
        .contains("beyond the limit"));
    // Without -c the answers are hidden.
    assert!(p.render(false).contains("Q0: translate 0x5009 -> ?"));
}

/// The tables a real-geometry exercise prints: frame -> (index -> raw entry bits).
fn tables(setup: &str) -> (u64, HashMap<u64, HashMap<u64, u64>>) {
    let mut t: HashMap<u64, HashMap<u64, u64>> = HashMap::new();
    let (mut root, mut cur) = (None, 0);
    for line in setup.lines() {
        if let Some(i) = line.find(" table at frame 0x") {
            cur = u64::from_str_radix(line[i + 18..].trim_end_matches(':'), 16).unwrap();
            root.get_or_insert(cur);
            t.entry(cur).or_default();
        } else if let Some(rest) = line.trim().strip_prefix('[') {
            let (idx, rest) = rest.split_once(']').unwrap();
            let raw = rest.split_whitespace().next().unwrap();
            let raw = u64::from_str_radix(raw.trim_start_matches("0x"), 16).unwrap();
            t.get_mut(&cur)
                .unwrap()
                .insert(idx.trim().parse().unwrap(), raw);
        }
    }
    (root.unwrap(), t)
}

/// A walk on paper from the printed raw entries, with the hardware's own rule for where
/// the frame number sits in an entry (`frame_of`).
fn by_hand_walk(
    setup: &str,
    va: u64,
    levels: u32,
    bits: u32,
    frame_of: fn(u64) -> u64,
) -> Option<u64> {
    let (mut table, t) = tables(setup);
    for level in (0..levels).rev() {
        let index = (va >> (12 + level * bits)) & ((1 << bits) - 1);
        let raw = *t.get(&table)?.get(&index)?;
        assert_eq!(raw & 1, 1, "only present entries are printed");
        table = frame_of(raw);
    }
    Some((table << 12) | (va & 0xfff))
}

#[test]
fn real_geometry_answers_match_a_walk_on_paper() {
    use vmem::config::PagingGeometry;
    use vmem::trainer::generate_with;
    // Frame numbers: i386 bits 31..12, Sv39 bits 53..10, x86-64 bits 51..12, arm64 47..12.
    let i386: fn(u64) -> u64 = |raw| (raw & 0xffff_f000) >> 12;
    let sv39: fn(u64) -> u64 = |raw| (raw >> 10) & ((1 << 44) - 1);
    let x86_64: fn(u64) -> u64 = |raw| (raw & 0x000f_ffff_ffff_f000) >> 12;
    // arm64 (4 KiB granule): the output address is bits 47..12.
    let arm64: fn(u64) -> u64 = |raw| (raw & 0x0000_ffff_ffff_f000) >> 12;
    for (geom, levels, bits, frame_of, digits) in [
        (PagingGeometry::I386, 2, 10, i386, 8),
        (PagingGeometry::SV39, 3, 9, sv39, 16),
        (PagingGeometry::X86_64_4LEVEL, 4, 9, x86_64, 16),
        (PagingGeometry::ARM64_4K, 4, 9, arm64, 16),
    ] {
        for seed in 0..25 {
            let p = generate_with(Mode::MultiLevel, Some(geom), seed, 9);
            assert_eq!(p.geometry, geom.name());
            let mut answered = 0;
            for q in &p.questions {
                assert!(q.addr < geom.task_size(), "{:#x}", q.addr);
                let hand = by_hand_walk(&p.setup, q.addr, levels, bits, frame_of);
                assert_eq!(
                    q.answer.clone().ok(),
                    hand,
                    "{geom:?} seed {seed} {:#x}\n{}",
                    q.addr,
                    p.render(true)
                );
                answered += usize::from(hand.is_some());
                // Every step shows the entry with the format's width.
                for s in q.steps.iter().filter(|s| s.contains("= 0x")) {
                    let hex = s.split("= 0x").nth(1).unwrap();
                    let n = hex.chars().take_while(|c| c.is_ascii_hexdigit()).count();
                    assert_eq!(n, digits, "{s}");
                }
            }
            assert!(answered > 0, "seed {seed}: every question faults");
        }
    }
}

#[test]
fn i386_and_sv39_examples_worked_on_paper() {
    use vmem::config::PagingGeometry;
    use vmem::trainer::generate_with;
    // i386, seed 1: 0x2698e150 has PGD index 0x2698e150 >> 22 = 154, whose entry
    // 0x0001a007 (P|RW|US) points to the page table in frame 0x1a; PTE index
    // (0x2698e150 >> 12) & 0x3ff = 398 holds 0x00021027 (P|RW|US|A, frame 0x21), so the
    // physical address is 0x21 << 12 | 0x150 = 0x21150.
    let p = generate_with(Mode::MultiLevel, Some(PagingGeometry::I386), 1, 4);
    assert!(
        p.setup.contains("[154] 0x0001a007  -> frame 0x1a"),
        "{}",
        p.setup
    );
    assert!(
        p.setup.contains("[398] 0x00021027  -> frame 0x21"),
        "{}",
        p.setup
    );
    assert_eq!(p.questions[0].addr, 0x2698_e150);
    assert_eq!(p.questions[0].answer, Ok(0x21150));
    assert!(p.render(true).contains("ARG geometry i386"));
    // Sv39, seed 1: 0x31e69b4150 has VPN[2] = va >> 30 = 199 (entry 0x6801: V only, a
    // pointer, PPN 0x6801 >> 10 = 0x1a), VPN[1] = (va >> 21) & 0x1ff = 308 (0x6c01, PPN
    // 0x1b), VPN[0] = (va >> 12) & 0x1ff = 436 (0xa0d7: D A U W R V, PPN 0x28), so the
    // physical address is 0x28 << 12 | 0x150 = 0x28150.
    let s = generate_with(Mode::MultiLevel, Some(PagingGeometry::SV39), 1, 4);
    assert!(
        s.setup.contains("[199] 0x0000000000006801  -> frame 0x1a"),
        "{}",
        s.setup
    );
    assert!(
        s.setup.contains("[308] 0x0000000000006c01  -> frame 0x1b"),
        "{}",
        s.setup
    );
    assert!(
        s.setup.contains("[436] 0x000000000000a0d7  -> frame 0x28"),
        "{}",
        s.setup
    );
    assert_eq!(s.questions[0].addr, 0x31_e69b_4150);
    assert_eq!(s.questions[0].answer, Ok(0x28150));
    assert!(s.questions[0]
        .steps
        .iter()
        .any(|l| l.contains("PMD index 0x134") && l.contains("0x0000000000006c01")));
}
