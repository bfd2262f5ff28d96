//! Linux error numbers for the syscall surface.
//!
//! Owns [`Errno`] (with Linux's x86-64 numbers, so `Errno::EINVAL as i32 == 22`) and
//! [`SysResult`]. Host I/O errors from real files are translated with
//! [`Errno::from_io`]. Nothing here decides *when* an errno is returned: that is the job
//! of each syscall in `mm/` and `kernel.rs`, which follow the kernel's order of checks.

use std::fmt;

/// The result of a syscall: a value or Linux's errno.
pub type SysResult<T> = Result<T, Errno>;

macro_rules! errnos {
    ($($name:ident = $num:literal, $msg:literal;)*) => {
        /// A Linux errno value (x86-64 numbering).
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
        #[repr(i32)]
        #[allow(clippy::upper_case_acronyms)]
        pub enum Errno {
            $(#[doc = $msg] $name = $num,)*
        }

        impl Errno {
            /// Every errno this crate knows, in numeric order.
            pub const ALL: &'static [Errno] = &[$(Errno::$name,)*];

            /// The symbolic name, e.g. `"EINVAL"`.
            pub fn name(self) -> &'static str {
                match self { $(Errno::$name => stringify!($name),)* }
            }

            /// The message `strerror` gives for it.
            pub fn message(self) -> &'static str {
                match self { $(Errno::$name => $msg,)* }
            }

            /// The errno with Linux number `n`, if this crate knows it.
            pub fn from_raw(n: i32) -> Option<Errno> {
                match n { $($num => Some(Errno::$name),)* _ => None }
            }

            /// The errno named `name` (e.g. `"EACCES"`).
            pub fn from_name(name: &str) -> Option<Errno> {
                match name { $(stringify!($name) => Some(Errno::$name),)* _ => None }
            }
        }
    };
}

errnos! {
    EPERM = 1, "Operation not permitted";
    ENOENT = 2, "No such file or directory";
    ESRCH = 3, "No such process";
    EINTR = 4, "Interrupted system call";
    EIO = 5, "Input/output error";
    ENXIO = 6, "No such device or address";
    E2BIG = 7, "Argument list too long";
    ENOEXEC = 8, "Exec format error";
    EBADF = 9, "Bad file descriptor";
    ECHILD = 10, "No child processes";
    EAGAIN = 11, "Resource temporarily unavailable";
    ENOMEM = 12, "Cannot allocate memory";
    EACCES = 13, "Permission denied";
    EFAULT = 14, "Bad address";
    EBUSY = 16, "Device or resource busy";
    EEXIST = 17, "File exists";
    EXDEV = 18, "Invalid cross-device link";
    ENODEV = 19, "No such device";
    ENOTDIR = 20, "Not a directory";
    EISDIR = 21, "Is a directory";
    EINVAL = 22, "Invalid argument";
    ENFILE = 23, "Too many open files in system";
    EMFILE = 24, "Too many open files";
    ENOTTY = 25, "Inappropriate ioctl for device";
    ETXTBSY = 26, "Text file busy";
    EFBIG = 27, "File too large";
    ENOSPC = 28, "No space left on device";
    ESPIPE = 29, "Illegal seek";
    EROFS = 30, "Read-only file system";
    EPIPE = 32, "Broken pipe";
    ERANGE = 34, "Numerical result out of range";
    ENAMETOOLONG = 36, "File name too long";
    ENOSYS = 38, "Function not implemented";
    ELOOP = 40, "Too many levels of symbolic links";
    EOVERFLOW = 75, "Value too large for defined data type";
    EOPNOTSUPP = 95, "Operation not supported";
    EDQUOT = 122, "Disk quota exceeded";
}

impl Errno {
    /// Translates a host I/O error on a real file into the errno Linux would return;
    /// errors without an OS code become `EIO`.
    pub fn from_io(err: &std::io::Error) -> Errno {
        err.raw_os_error()
            .and_then(Errno::from_raw)
            .unwrap_or(Errno::EIO)
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.message())
    }
}

impl std::error::Error for Errno {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_linux_numbers() {
        assert_eq!(Errno::EINVAL as i32, 22);
        assert_eq!(Errno::EOPNOTSUPP as i32, 95);
        assert_eq!(Errno::from_raw(13), Some(Errno::EACCES));
        assert_eq!(Errno::from_name("ENODEV"), Some(Errno::ENODEV));
        assert_eq!(Errno::EBADF.to_string(), "EBADF (Bad file descriptor)");
    }
}
