//! The translation trainer's answers, checked against translations worked out by hand
//! from the tables each problem prints (a separate, deliberately naive reading of the
//! setup text), for many seeds and every mode; plus examples worked on paper.

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
