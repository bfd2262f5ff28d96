use vmem::consts::*;
use vmem::*;

#[test]
fn smoke() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &data).unwrap();
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let fd = k.open(p, &path, O_RDWR, 0).unwrap();
    let va = k
        .mmap(
            p,
            VirtAddr(0),
            100_000,
            PROT_READ | PROT_WRITE,
            MAP_SHARED,
            fd,
            0,
        )
        .unwrap();
    println!("{}", k.maps(p).unwrap());
    assert_eq!(k.stats().disk_reads, 0);
    let got = k.load_vec(p, va, 100_000).unwrap();
    assert_eq!(got, data);
    println!("{}", k.stats());
    k.store(p, va.add(5000), b"HELLO").unwrap();
    let r = k.pread(p, fd, 5, 5000).unwrap();
    assert_eq!(r, b"HELLO");
    k.msync(p, va, 100_000, MS_SYNC).unwrap();
    let disk = std::fs::read(&path).unwrap();
    assert_eq!(&disk[5000..5005], b"HELLO");
    assert_eq!(disk.len(), 100_000);
    let e = k.load_vec(p, va.add(100_000), 10);
    println!("{e:?}");
    let e = k.load_vec(p, va.add(25 * 4096), 10);
    println!("{e:?}");
    let a = k
        .mmap(
            p,
            VirtAddr(0),
            8192,
            PROT_READ | PROT_WRITE,
            MAP_PRIVATE | MAP_ANONYMOUS,
            -1,
            0,
        )
        .unwrap();
    assert_eq!(k.load_u64(p, a).unwrap(), 0);
    k.store_u64(p, a.add(8), 42).unwrap();
    assert_eq!(k.load_u64(p, a.add(8)).unwrap(), 42);
    println!("{}", k.maps(p).unwrap());
    println!("{}", k.stats());
}
