//! The real-kernel side of the conformance harness: reads one JSON request per line on
//! standard input (a scenario and the directory holding its files), runs it on the running
//! kernel in a forked child, and writes one JSON report per line on standard output.
//! It is single-threaded on purpose, so that forking it is safe.

use std::io::{BufRead, Write};

fn main() {
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let reply = vmem_conformance::oracle_serve_line(&line);
        if writeln!(stdout, "{reply}")
            .and_then(|_| stdout.flush())
            .is_err()
        {
            break;
        }
    }
}
