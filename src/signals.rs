//! SIGTERM and SIGINT, received by one thread with `sigwait` rather than by a handler, so
//! that the shutdown code is ordinary code and not restricted to async-signal-safe calls.
//!
//! The signals are blocked before any other thread starts (threads inherit the mask), so
//! no other thread is interrupted. This also works as PID 1 in a container: the kernel never
//! discards a blocked signal as "ignored by init".

use std::io;
use std::mem::MaybeUninit;

/// The blocked termination signals, to be waited for.
pub struct Signals {
    set: libc::sigset_t,
}

impl Signals {
    /// Blocks SIGTERM and SIGINT in the calling thread. Call it first in `main`, before any
    /// thread is started.
    pub fn block() -> io::Result<Signals> {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigemptyset initialises the set; sigaddset and pthread_sigmask only read and
        // write the set and this thread's mask.
        unsafe {
            libc::sigemptyset(set.as_mut_ptr());
            let mut set = set.assume_init();
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGINT);
            let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
            Ok(Signals { set })
        }
    }

    /// Waits for the next SIGTERM or SIGINT and returns its name.
    pub fn wait(&self) -> &'static str {
        loop {
            let mut signal = 0;
            // SAFETY: `set` was initialised in `block`; sigwait writes one int.
            if unsafe { libc::sigwait(&self.set, &mut signal) } == 0 {
                return if signal == libc::SIGINT {
                    "SIGINT"
                } else {
                    "SIGTERM"
                };
            }
        }
    }
}
