//! Background work's CPU priority. A refit and the background thread pool
//! run at the lowest priority (nice 19 and `SCHED_IDLE`), so a lookup
//! thread that wakes preempts them at once. Under sustained load that alone
//! would starve a refit (measured: 1.85 s of CPU in 9 minutes beside two
//! compilers on 2 cores), so a refit's priority **ages**: still running
//! after [`AGING`]'s first step it moves to nice 10, after the second to
//! nice 0 (with every background pool thread), and back to the lowest when
//! it ends. Load delays a refit by minutes at most; it never waits forever.
//! Best effort: where the process may not raise a priority (no
//! `CAP_SYS_NICE`, a low `RLIMIT_NICE`) the threads stay where they are.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// How long a refit runs at the lowest priority, then at what nice level.
pub const AGING: [(Duration, i32); 2] = [(Duration::from_secs(60), 10), (Duration::from_secs(300), 0)];

/// Thread ids of the threads background work runs on now.
static BACKGROUND: Mutex<Vec<i64>> = Mutex::new(Vec::new());

/// A thread registered as background work; unregistered when dropped (a
/// thread's id may be reused by another thread after it ends).
pub struct Background(i64);

impl Drop for Background {
    fn drop(&mut self) {
        BACKGROUND.lock().retain(|t| *t != self.0);
    }
}

#[cfg(target_os = "linux")]
fn own_tid() -> i64 {
    // SAFETY: gettid has no preconditions.
    i64::from(unsafe { libc::gettid() })
}

#[cfg(not(target_os = "linux"))]
fn own_tid() -> i64 {
    0
}

/// Sets thread `tid` to nice `nice`, with `SCHED_IDLE` at 19 and
/// `SCHED_OTHER` below; `false` when the system refused.
#[cfg(target_os = "linux")]
fn set(tid: i64, nice: i32) -> bool {
    let (Ok(pid), Ok(id)) = (libc::pid_t::try_from(tid), libc::id_t::try_from(tid)) else { return false };
    let policy = if nice >= 19 { libc::SCHED_IDLE } else { libc::SCHED_OTHER };
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: plain syscalls on a thread id of this process; `param` outlives the call.
    unsafe {
        // SCHED_IDLE: a waking lookup thread preempts this one at once (nice 19
        // alone still lets it finish its slice first, which showed in lookup p99).
        let scheduled = libc::sched_setscheduler(pid, policy, &raw const param) == 0;
        scheduled && libc::setpriority(libc::PRIO_PROCESS, id, nice) == 0
    }
}

#[cfg(not(target_os = "linux"))]
fn set(_tid: i64, _nice: i32) -> bool {
    false
}

/// Lowers the calling thread to the lowest priority and registers it as
/// background work until the returned guard drops.
#[must_use]
pub fn lower_priority() -> Background {
    let tid = own_tid();
    set(tid, 19);
    BACKGROUND.lock().push(tid);
    Background(tid)
}

/// Lowers the priority of every thread of the global rayon pool, which only
/// background work uses (projection fits, graph rebuilds), so lookups come
/// first; they stay registered for the process's life.
pub fn lower_background_pool() {
    let _ = rayon::ThreadPoolBuilder::new().start_handler(|_| std::mem::forget(lower_priority())).build_global();
}

/// Sets every background thread to nice `nice` (19: the lowest); returns how many the system let change.
pub fn set_background(nice: i32) -> usize {
    let tids = BACKGROUND.lock().clone();
    tids.into_iter().filter(|t| set(*t, nice)).count()
}

/// Waits until `finished` disconnects (the refit's thread ended), raising the
/// background threads' priority as [`AGING`] says meanwhile, and lowers them
/// back to the lowest at the end if it raised them.
pub fn age_until(finished: &Receiver<()>) {
    let start = Instant::now();
    let mut raised = false;
    for (after, nice) in AGING {
        let wait = after.saturating_sub(start.elapsed());
        match finished.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {
                let n = set_background(nice);
                tracing::info!(seconds = start.elapsed().as_secs(), nice, threads = n, "refit still running under load: priority raised");
                raised = true;
            }
            Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    // Past the last step (or done): wait for the end, then lower back.
    while finished.recv().is_ok() {}
    if raised {
        set_background(19);
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// (scheduling policy, nice) of thread `tid`.
    fn priority_of(tid: i64) -> (i32, i32) {
        // SAFETY: plain syscalls reading a thread's settings.
        unsafe {
            *libc::__errno_location() = 0;
            let nice = libc::getpriority(libc::PRIO_PROCESS, libc::id_t::try_from(tid).unwrap());
            (libc::sched_getscheduler(libc::pid_t::try_from(tid).unwrap()), nice)
        }
    }

    #[test]
    fn background_threads_start_lowest_are_raised_by_aging_and_lowered_again() {
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let worker = std::thread::spawn(move || {
            let _background = lower_priority();
            tid_tx.send(own_tid()).unwrap();
            let _ = stop_rx.recv();
        });
        let tid = tid_rx.recv().unwrap();
        assert_eq!(priority_of(tid), (libc::SCHED_IDLE, 19));
        // Raising needs CAP_SYS_NICE (root has it: CI runs as root); elsewhere the thread stays lowest.
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let raised = set_background(10);
        if root {
            assert!(raised >= 1);
            assert_eq!(priority_of(tid), (libc::SCHED_OTHER, 10));
        }
        set_background(19);
        assert_eq!(priority_of(tid), (libc::SCHED_IDLE, 19));
        drop(stop_tx);
        worker.join().unwrap();
        assert!(!BACKGROUND.lock().contains(&tid), "an ended thread is no longer background work");
    }
}
