//! After `flush()` returns, the bytes are on disk: a process killed with SIGKILL right
//! after leaves them there (and leaves no unflushed write behind either).

mod common;

use std::io::{BufRead, BufReader, Write};

use common::{child_scenario, file_with, pattern, spawn_child_env};
use vmem_uffd::{Delivery, MapOptions};

const PAGES: usize = 64;

fn child(scenario: &str) {
    let path = std::env::var("VMEM_UFFD_TEST_FILE").unwrap();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let delivery = if scenario == "threads" {
        Delivery::Threads
    } else {
        Delivery::Signal
    };
    let mut map = MapOptions::new(file)
        .shared()
        .delivery(delivery)
        .map()
        .unwrap();
    let half = PAGES / 2 * 4096;
    map[..half].fill(0xAA);
    map.flush().unwrap();
    map[half..].fill(0xBB); // not flushed
    println!("flushed");
    std::io::stdout().flush().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(60));
    unreachable!("the parent kills us");
}

#[test]
fn flushed_bytes_survive_a_sigkill() {
    if let Some(s) = child_scenario() {
        return child(&s);
    }
    for delivery in ["signal", "threads"] {
        let data = pattern(PAGES * 4096);
        let file = file_with(&data);
        let path = file.path().to_str().unwrap().to_string();
        let mut c = spawn_child_env(
            "flushed_bytes_survive_a_sigkill",
            delivery,
            &[("VMEM_UFFD_TEST_FILE", &path)],
        );
        // Wait (bounded) for the child to report its flush.
        let stdout = c.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // The test harness prints its own lines first.
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            while r.read_line(&mut line).unwrap_or(0) > 0 && !line.trim().ends_with("flushed") {
                line.clear();
            }
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(std::time::Duration::from_secs(60));
        c.kill().unwrap(); // SIGKILL
        let status = c.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{delivery}");
        assert!(
            line.expect("child did not report (hang?)")
                .trim()
                .ends_with("flushed"),
            "{delivery}"
        );
        let disk = std::fs::read(file.path()).unwrap();
        let half = PAGES / 2 * 4096;
        assert!(
            disk[..half].iter().all(|&b| b == 0xAA),
            "{delivery}: flushed bytes lost"
        );
        assert!(
            disk[half..] == data[half..],
            "{delivery}: unflushed bytes reached the file"
        );
    }
}
