//! Stopping on a signal. Ctrl-C (SIGINT), SIGTERM (what Slurm sends a preempted or timed-out
//! task, and Kubernetes a pod it stops) and SIGHUP ask a run or a search to stop at its
//! next mini-batch with a checkpoint; a second signal a second or more later exits at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Exit code of a run stopped by a signal (128 + SIGINT, as shells report Ctrl-C).
pub const INTERRUPTED: u8 = 130;

/// A repeat within this time is the same request (Slurm signals every process of a task,
/// and a batch script may pass the signal on as well), not a second Ctrl-C.
const REPEAT: Duration = Duration::from_secs(1);

/// Installs the handler (once per process) and returns the flag it raises.
pub fn stop_on_signal() -> Arc<AtomicBool> {
    let hangup_ignored = hangup_ignored();
    let stop = Arc::new(AtomicBool::new(false));
    let (flag, first) = (stop.clone(), Mutex::new(None::<Instant>));
    // ctrlc runs this on a thread of its own, not in the signal handler: locking is fine.
    let _ = ctrlc::set_handler(move || {
        let mut first = first.lock().expect("not poisoned");
        match *first {
            None => {
                *first = Some(Instant::now());
                flag.store(true, Ordering::SeqCst);
            }
            Some(at) if at.elapsed() >= REPEAT => std::process::exit(INTERRUPTED.into()),
            Some(_) => {}
        }
    });
    if hangup_ignored {
        ignore_hangup();
    }
    stop
}

/// Whether SIGHUP was ignored when `mlp` started (`nohup mlp train …`): ctrlc's handler
/// would otherwise stop the run when the terminal goes away.
fn hangup_ignored() -> bool {
    #[cfg(unix)]
    // SAFETY: sigaction with a null new action only reads the current one into `old`.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGHUP, std::ptr::null(), &mut old) == 0
            && old.sa_sigaction == libc::SIG_IGN
    }
    #[cfg(not(unix))]
    false
}

/// Ignores SIGHUP again after ctrlc installed its handler.
fn ignore_hangup() {
    #[cfg(unix)]
    // SAFETY: sets the disposition of one signal to "ignore"; no handler code is involved.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
}
