//! Maps a real file into an emulated process, reads it through the mapping, writes one
//! page through a shared mapping and msyncs it, and prints what the machine did.
//!
//! ```text
//! cargo run --release --example map_file            # a fresh 64 KiB file in a temp dir
//! cargo run --release --example map_file -- FILE    # your file, mapped read-only
//! ```

use std::path::PathBuf;
use vmem::consts::*;
use vmem::events::PrintObserver;
use vmem::{Kernel, MachineConfig, VirtAddr};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let arg = std::env::args_os().nth(1).map(PathBuf::from);
    let tmp = std::env::temp_dir().join(format!("vmem-map-file-{}", std::process::id()));
    let (path, own) = match arg {
        Some(p) => (p, false),
        None => {
            std::fs::create_dir_all(&tmp)?;
            let p = tmp.join("data.bin");
            let text: Vec<u8> = (0..16 * 4096)
                .map(|i| b"abcdefghijklmnopqrstuvwxyz\n"[i % 27])
                .collect();
            std::fs::write(&p, text)?;
            (p, true)
        }
    };
    let len = std::fs::metadata(&path)?.len();
    if len == 0 {
        return Err(format!("{}: file is empty, nothing to map", path.display()).into());
    }

    let mut k = Kernel::new(MachineConfig::default());
    let p = k.spawn()?;
    println!(
        "== open and mmap {} ({len} bytes) with every step explained",
        path.display()
    );
    k.set_observer(Some(Box::new(PrintObserver)));
    let flags = if own { O_RDWR } else { O_RDONLY };
    let fd = k
        .open(p, &path, flags, 0)
        .map_err(|e| format!("open {}: {e}", path.display()))?;
    let prot = if own {
        PROT_READ | PROT_WRITE
    } else {
        PROT_READ
    };
    let va = k.mmap(p, VirtAddr(0), len, prot, MAP_SHARED, fd, 0)?;
    println!("\n== first touch: load 16 bytes at {va}");
    let first = k.load_vec(p, va, 16.min(len as usize))?;
    println!("   -> {:?}", String::from_utf8_lossy(&first));
    println!("\n== second touch of the same page: a TLB hit");
    k.load_u8(p, va.add(1))?;
    k.set_observer(None);

    println!("\n== reading the whole file through the mapping (events off)");
    let all = k.load_vec(p, va, len as usize)?;
    let on_disk = std::fs::read(&path)?;
    println!(
        "   {} bytes, identical to the file on disk: {}",
        all.len(),
        all == on_disk
    );

    if own {
        println!("\n== store through the shared mapping, then msync(MS_SYNC)");
        k.set_observer(Some(Box::new(PrintObserver)));
        k.store(p, va.add(4096), b"HELLO FROM VMEM")?;
        k.msync(p, va, len, MS_SYNC)?;
        k.set_observer(None);
        let back = std::fs::read(&path)?;
        println!(
            "   file on disk now has {:?} at offset 4096",
            String::from_utf8_lossy(&back[4096..4111])
        );
    }

    let s = k.process_stats(p)?;
    println!("\n== counters for pid {p}");
    println!("{s}");
    println!(
        "frames in use {} of {}",
        k.frames_in_use(),
        k.total_frames()
    );
    drop(k);
    if own {
        std::fs::remove_dir_all(&tmp)?;
    }
    Ok(())
}
