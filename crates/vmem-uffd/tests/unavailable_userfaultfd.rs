//! When the kernel refuses userfaultfd, `map()` says why and which setting would allow it.
//! Simulated with a seccomp filter in a child process (as a container runtime would do).

mod common;

use common::{child_scenario, run_child};
use vmem_uffd::{Error, MapOptions, MemStore};

/// Installs a seccomp filter: `userfaultfd(2)` and the `/dev/userfaultfd` ioctl fail with
/// `errno`; everything else is allowed.
fn refuse_userfaultfd(errno: u32) {
    use libc::{sock_filter, sock_fprog, BPF_ABS, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W};
    const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
    let ld = |k: u32| sock_filter {
        code: (BPF_LD | BPF_W | BPF_ABS) as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jeq = |k: u32, jt: u8, jf: u8| sock_filter {
        code: (BPF_JMP | BPF_JEQ | BPF_K) as u16,
        jt,
        jf,
        k,
    };
    let ret = |k: u32| sock_filter {
        code: (BPF_RET | BPF_K) as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let errno_ret = libc::SECCOMP_RET_ERRNO | errno;
    // struct seccomp_data { int nr; u32 arch; u64 ip; u64 args[6]; }; a jump goes to
    // the next instruction plus its offset.
    let prog = [
        ld(4),                                   // 0: arch
        jeq(AUDIT_ARCH_X86_64, 0, 5),            // 1: other arch: allow
        ld(0),                                   // 2: nr
        jeq(libc::SYS_userfaultfd as u32, 4, 0), // 3: -> refuse
        jeq(libc::SYS_ioctl as u32, 0, 2),       // 4: not ioctl: allow
        ld(24),                                  // 5: args[1], low half (the request)
        jeq(0xAA00, 1, 0),                       // 6: USERFAULTFD_IOC_NEW -> refuse
        ret(libc::SECCOMP_RET_ALLOW),            // 7
        ret(errno_ret),                          // 8
    ];
    let fprog = sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr() as *mut sock_filter,
    };
    // SAFETY: no_new_privs then a filter program that lives across the call; both prctls
    // only affect this thread (the one that calls map()).
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &fprog as *const sock_fprog
            ),
            0,
            "seccomp: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[test]
fn refused_userfaultfd_is_explained() {
    if let Some(s) = child_scenario() {
        let errno = if s == "enosys" {
            libc::ENOSYS
        } else {
            libc::EPERM
        };
        refuse_userfaultfd(errno as u32);
        let e = MapOptions::new(MemStore::new(vec![0; 4096]))
            .map()
            .unwrap_err();
        println!("{e}");
        assert!(
            matches!(e, Error::Unavailable { errno: got, .. } if got == errno),
            "{e:?}"
        );
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let r = run_child("refused_userfaultfd_is_explained", "eperm", 60);
        r.assert_success("eperm");
        for needle in [
            "EPERM",
            "vm.unprivileged_userfaultfd",
            "CAP_SYS_PTRACE",
            "/dev/userfaultfd",
            "seccomp",
        ] {
            assert!(
                r.stdout.contains(needle),
                "message lacks {needle}:\n{}",
                r.stdout
            );
        }
        let r = run_child("refused_userfaultfd_is_explained", "enosys", 60);
        r.assert_success("enosys");
        for needle in ["ENOSYS", "CONFIG_USERFAULTFD", "seccomp"] {
            assert!(
                r.stdout.contains(needle),
                "message lacks {needle}:\n{}",
                r.stdout
            );
        }
    }
}

#[test]
fn the_explanation_names_every_setting() {
    let m = Error::unavailable(libc::EPERM, Some(libc::EACCES)).to_string();
    for needle in [
        "EPERM",
        "EACCES",
        "vm.unprivileged_userfaultfd",
        "CAP_SYS_PTRACE",
        "/dev/userfaultfd",
        "seccomp",
    ] {
        assert!(m.contains(needle), "{needle} missing from: {m}");
    }
    let m = Error::unavailable(libc::ENOSYS, None).to_string();
    assert!(
        m.contains("CONFIG_USERFAULTFD") && m.contains("seccomp"),
        "{m}"
    );
    let io: std::io::Error = Error::unavailable(libc::EPERM, None).into();
    assert_eq!(io.kind(), std::io::ErrorKind::PermissionDenied);
}

#[test]
fn an_unprivileged_process_maps_with_user_mode_only_faults() {
    if let Some(_s) = child_scenario() {
        // SAFETY: getuid has no preconditions.
        if unsafe { libc::getuid() } == 0 {
            // SAFETY: dropping to nobody: no capabilities, no access to /dev/userfaultfd.
            unsafe {
                assert_eq!(libc::setgid(65534), 0);
                assert_eq!(libc::setuid(65534), 0);
            }
        }
        for d in [vmem_uffd::Delivery::Signal, vmem_uffd::Delivery::Threads] {
            let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
            let map = MapOptions::new(MemStore::new(data.clone()))
                .delivery(d)
                .map()
                .unwrap();
            assert_eq!(&map[..], &data[..]);
        }
        println!("mapped");
        return;
    }
    let r = run_child(
        "an_unprivileged_process_maps_with_user_mode_only_faults",
        "nobody",
        60,
    );
    r.assert_success("nobody");
    assert!(r.stdout.contains("mapped"));
}
