//! The engine's own threads: a fixed team that waits for the next phase of a step by
//! spinning briefly, then parking, with the calling thread taking part.
//!
//! A step of 784-128-10 is two phases of ~100–200 µs with a join after each. On a rayon
//! pool the other thread had gone to sleep between them and, by timers around the joins on
//! the Zen 3 VM, started each phase 10.6–13.9 µs late (the futex wake-up of an idle VM
//! core); a helper of this team, spinning through the few microseconds between phases,
//! starts 1.3–6.1 µs late, and epochs measured 14 % faster (docs/PERFORMANCE.md). Helpers
//! spin only while there are at least as many cores as threads and only for [`SPIN`]; past
//! that (between epochs, or with more threads than cores) they park, as a pool's threads
//! would.
//!
//! A job borrows the caller's data, as `rayon::join`'s closures do: [`Team::run`] returns
//! only once every thread has finished with it, even when the job panics (the panic is then
//! raised on the calling thread), so the borrow outlives every use. On that promise a
//! [`Split`] hands each thread its own stretch of a slice, as `split_at_mut` would.

use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

/// How long a waiting thread spins before it parks: longer than the gap between the phases
/// of a step (a few µs), far shorter than the work between epochs.
pub(super) const SPIN: Duration = Duration::from_micros(200);

/// A job for thread `t` of a run, its borrow's lifetime erased while it is published.
type Job = dyn Fn(usize) + Sync + 'static;

/// What the caller and the helpers share.
struct Shared {
    /// The run's number (high 32 bits), bumped by the caller to publish a job or to stop, and
    /// how many threads take part in it (low 32 bits; the caller is thread 0), read together
    /// so that a helper outside the run never looks at its job. (A helper parked through
    /// exactly 2³² runs it sits out would miss the next: not a concern for a training run.)
    run: AtomicU64,
    /// The current job. Written by the caller only between runs, while every helper that
    /// took part in the last run has reported; read by a helper only after it has seen the
    /// run that published it, and only if it takes part.
    job: UnsafeCell<*const Job>,
    /// Helpers still running the current job.
    pending: AtomicUsize,
    /// Whether a helper's job panicked in this run.
    panicked: AtomicBool,
    stop: AtomicBool,
    /// Per helper, whether it is parked (or about to be) and needs an unpark.
    asleep: Vec<AtomicBool>,
    /// The caller, when it parks waiting for the helpers.
    caller: Mutex<Option<Thread>>,
    caller_asleep: AtomicBool,
    /// Whether waiting threads spin before parking (not when threads outnumber cores).
    spin: bool,
}

// SAFETY: every field but `job` is Sync; `job` is written and read only as its comment says,
// and the sequentially consistent store and loads of `run` order those accesses.
unsafe impl Sync for Shared {}
// SAFETY: the raw pointer in `job` is only dereferenced under the same protocol.
unsafe impl Send for Shared {}

/// `threads` threads: the caller of [`Team::run`] and `threads − 1` helpers of its own.
pub(super) struct Team {
    shared: Arc<Shared>,
    helpers: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Team {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Team")
            .field("threads", &self.threads())
            .field("spin", &self.shared.spin)
            .finish()
    }
}

impl Team {
    /// A team of `threads` (at least 1). If the system refuses a thread, the team has fewer
    /// helpers and the caller runs the missing threads' jobs itself: slower, the same results.
    pub(super) fn new(threads: usize) -> Self {
        let helpers = threads.clamp(1, u32::MAX as usize) - 1;
        let cores = thread::available_parallelism().map_or(1, |n| n.get());
        let shared = Arc::new(Shared {
            run: AtomicU64::new(0),
            job: UnsafeCell::new(std::ptr::null::<fn(usize)>() as *const Job),
            pending: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            asleep: (0..helpers).map(|_| AtomicBool::new(false)).collect(),
            caller: Mutex::new(None),
            caller_asleep: AtomicBool::new(false),
            spin: threads <= cores,
        });
        let helpers = (1..=helpers)
            .map_while(|t| {
                let shared = Arc::clone(&shared);
                thread::Builder::new()
                    .name(format!("mlp-train-{t}"))
                    .spawn(move || helper(&shared, t))
                    .ok()
            })
            .collect();
        Self { shared, helpers }
    }

    /// Threads the team runs at once (the caller's included).
    pub(super) fn threads(&self) -> usize {
        self.helpers.len() + 1
    }

    /// Runs `job(t)` for every `t < jobs`, in parallel: job 0 on the calling thread, job t on
    /// helper t (the caller also runs any jobs past the team's threads, after its own).
    /// Returns when all have finished; a panic in any job is raised here, after all have.
    /// (`&mut self`: one run at a time, never a run from inside a job.)
    pub(super) fn run(&mut self, jobs: usize, job: &(dyn Fn(usize) + Sync)) {
        let shared = &*self.shared;
        let parallel = jobs.min(self.threads());
        if parallel <= 1 {
            (0..jobs).for_each(job);
            return;
        }
        // SAFETY: the lifetime is erased only while the job is published: this function
        // does not return (nor unwind) before every helper has finished with it (below).
        let erased: &'static Job = unsafe { std::mem::transmute(job) };
        // SAFETY: the helpers of the last run have all reported (it waited for them), and the
        // others do not read `job`, so nothing reads it while it is written.
        unsafe { *shared.job.get() = erased as *const Job };
        shared.panicked.store(false, Ordering::Relaxed);
        shared.pending.store(parallel - 1, Ordering::Relaxed);
        let number = (shared.run.load(Ordering::Relaxed) >> 32).wrapping_add(1);
        shared
            .run
            .store(number << 32 | parallel as u64, Ordering::SeqCst);
        for (t, asleep) in shared.asleep.iter().enumerate().take(parallel - 1) {
            if asleep.swap(false, Ordering::SeqCst) {
                self.helpers[t].thread().unpark();
            }
        }
        // Wait for the helpers however the caller's own jobs end, then raise their panics.
        let caller = catch_unwind(AssertUnwindSafe(|| {
            job(0);
            (parallel..jobs).for_each(job);
        }));
        wait_for_helpers(shared);
        if let Err(panic) = caller {
            resume_unwind(panic);
        }
        assert!(
            !shared.panicked.load(Ordering::Relaxed),
            "a training thread panicked"
        );
    }

    /// Runs `f` on every item of `items` (at most one per thread of the team and beyond
    /// that by the caller, as [`Team::run`] does), item t on thread t.
    pub(super) fn for_each_mut<T: Send>(&mut self, items: &mut [T], f: &(impl Fn(&mut T) + Sync)) {
        let len = items.len();
        let items = Split::new(items);
        // SAFETY: `run` calls each t < len once, so the ranges t..t + 1 are disjoint.
        self.run(len, &|t| f(&mut unsafe { items.take(t..t + 1) }[0]));
    }
}

/// A mutable slice whose disjoint stretches the threads of a run take, each its own: what
/// `split_at_mut` does for two halves, for any number of threads without allocating.
pub(super) struct Split<'a, T> {
    start: *mut T,
    len: usize,
    _borrow: PhantomData<&'a mut [T]>,
}

// SAFETY: a `Split` only hands out disjoint stretches (`take`'s contract), each to one
// thread, of items that may be sent to another thread.
unsafe impl<T: Send> Sync for Split<'_, T> {}

impl<'a, T> Split<'a, T> {
    pub(super) fn new(slice: &'a mut [T]) -> Self {
        Self {
            start: slice.as_mut_ptr(),
            len: slice.len(),
            _borrow: PhantomData,
        }
    }

    /// The stretch `range` of the slice.
    ///
    /// # Safety
    /// No two calls on the same `Split` may take overlapping ranges.
    pub(super) unsafe fn take(&self, range: Range<usize>) -> &'a mut [T] {
        assert!(
            range.start <= range.end && range.end <= self.len,
            "{range:?} is outside a slice of {}",
            self.len
        );
        // SAFETY: in bounds (checked), borrowed for 'a, and no other reference to these
        // items exists (the caller's promise).
        unsafe { std::slice::from_raw_parts_mut(self.start.add(range.start), range.len()) }
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        let shared = &*self.shared;
        shared.stop.store(true, Ordering::SeqCst);
        shared.run.fetch_add(1 << 32, Ordering::SeqCst);
        for helper in &self.helpers {
            helper.thread().unpark();
        }
        for helper in self.helpers.drain(..) {
            // A helper never panics itself (its jobs' panics are caught).
            let _ = helper.join();
        }
    }
}

/// Helper `t`'s life: wait for a run, do its job of it if it takes part, report, again.
fn helper(shared: &Shared, t: usize) {
    let mut seen = 0;
    loop {
        let asleep = &shared.asleep[t - 1];
        wait_until(shared.spin, asleep, || {
            shared.run.load(Ordering::SeqCst) >> 32 != seen
        });
        let run = shared.run.load(Ordering::SeqCst);
        seen = run >> 32;
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        if t as u64 >= run & u64::from(u32::MAX) {
            continue;
        }
        // SAFETY: the caller wrote the job before publishing the run just seen, and does
        // not write it again before this helper has reported below.
        let job = unsafe { *shared.job.get() };
        // SAFETY: the job lives until the caller has seen every helper report.
        let job = unsafe { &*job };
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| job(t))) {
            shared.panicked.store(true, Ordering::Relaxed);
            // Even a payload whose drop panics must not stop this helper from reporting.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
        }
        // Sequentially consistent, as the caller's flag and its reads of `pending` are: with
        // acquire and release alone the caller could read the old count after announcing
        // its sleep while this swap reads the flag unset, and sleep for ever.
        if shared.pending.fetch_sub(1, Ordering::SeqCst) == 1
            && shared.caller_asleep.swap(false, Ordering::SeqCst)
            && let Some(caller) = shared.caller.lock().expect("never poisoned").as_ref()
        {
            caller.unpark();
        }
    }
}

/// Waits, on the calling thread, until every helper has finished the current job.
fn wait_for_helpers(shared: &Shared) {
    if shared.pending.load(Ordering::SeqCst) == 0 {
        return;
    }
    *shared.caller.lock().expect("never poisoned") = Some(thread::current());
    wait_until(shared.spin, &shared.caller_asleep, || {
        shared.pending.load(Ordering::SeqCst) == 0
    });
}

/// Returns once `done()` holds: spinning for up to [`SPIN`] if `spin`, then parked with
/// `asleep` set, so that whoever makes `done()` true unparks this thread.
fn wait_until(spin: bool, asleep: &AtomicBool, done: impl Fn() -> bool) {
    if spin {
        let start = Instant::now();
        loop {
            for _ in 0..64 {
                if done() {
                    return;
                }
                std::hint::spin_loop();
            }
            if start.elapsed() > SPIN {
                break;
            }
        }
    }
    loop {
        asleep.store(true, Ordering::SeqCst);
        // Checked again after announcing the sleep: the other side either saw the flag (and
        // will unpark) or made `done()` true before this check.
        if done() {
            asleep.store(false, Ordering::SeqCst);
            return;
        }
        thread::park();
        if done() {
            asleep.store(false, Ordering::SeqCst);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_job_runs_once_on_any_number_of_threads() {
        for threads in [1, 2, 3, 8] {
            let mut team = Team::new(threads);
            for jobs in [0, 1, 2, 3, 5, 8, 11] {
                let mut counts = vec![0u32; jobs];
                for _ in 0..50 {
                    team.for_each_mut(&mut counts, &|c| *c += 1);
                }
                assert_eq!(counts, vec![50; jobs], "{threads} threads, {jobs} jobs");
            }
        }
    }

    #[test]
    fn a_parked_team_wakes_for_the_next_run() {
        let mut team = Team::new(3);
        let mut items = [0u64; 3];
        team.for_each_mut(&mut items, &|x| *x += 1);
        thread::sleep(SPIN * 5);
        team.for_each_mut(&mut items, &|x| *x += 1);
        assert_eq!(items, [2, 2, 2]);
    }

    #[test]
    fn a_helpers_panic_reaches_the_caller_after_every_thread_is_done() {
        let mut team = Team::new(3);
        let finished = AtomicUsize::new(0);
        let result = catch_unwind(AssertUnwindSafe(|| {
            team.run(3, &|t| {
                if t == 2 {
                    panic!("job 2 fails");
                }
                thread::sleep(Duration::from_millis(20));
                finished.fetch_add(1, Ordering::SeqCst);
            })
        }));
        assert!(result.is_err());
        assert_eq!(
            finished.load(Ordering::SeqCst),
            2,
            "the others ran to the end"
        );
        // The team still works.
        let mut items = [0u8; 3];
        team.for_each_mut(&mut items, &|x| *x = 7);
        assert_eq!(items, [7; 3]);
    }
}
