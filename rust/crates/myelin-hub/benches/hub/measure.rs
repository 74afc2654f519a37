//! What the benchmark reads: per-thread CPU time and heap, a process's memory, statistics.

use std::collections::HashMap;
use std::time::Duration;

const KIB_PER_MIB: f64 = 1024.0;

/// Heap bytes each thread allocated and has not freed, frees counted on the thread that frees.
/// The clients allocate and free on their own thread, so its count is what they hold.
struct Counting;

thread_local! {
    static LIVE: std::cell::Cell<i64> = const { std::cell::Cell::new(0) };
}

fn count(delta: i64) {
    // A thread that is exiting has no count left to keep.
    let _ = LIVE.try_with(|l| l.set(l.get() + delta));
}

// SAFETY: every call goes to the system allocator unchanged; only sizes are counted, in a
// thread-local that needs no allocation (const-initialised, no destructor).
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        count(layout.size() as i64);
        // SAFETY: the caller upholds GlobalAlloc's contract, which is System's.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        count(layout.size() as i64);
        // SAFETY: as for alloc.
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        count(-(layout.size() as i64));
        // SAFETY: `ptr` came from System with this layout (every allocation goes there).
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
        // SAFETY: as for dealloc.
        let p = unsafe { std::alloc::System.realloc(ptr, layout, new) };
        if !p.is_null() {
            count(new as i64 - layout.size() as i64);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Heap bytes the calling thread holds (see [`Counting`]).
pub(crate) fn thread_heap() -> i64 {
    LIVE.with(std::cell::Cell::get)
}

// ---------------------------------------------------------------------------------------------
// Measuring

/// CPU time of the calling thread.
pub(crate) fn thread_cpu() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .expect("CLOCK_THREAD_CPUTIME_ID")
        .into()
}

/// Memory of a process, from /proc/<pid>/status (KiB).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Memory {
    /// VmRSS.
    pub(crate) rss: u64,
    /// RssAnon: the process's own memory.
    pub(crate) anon: u64,
    /// RssFile: mapped files (code, libraries).
    pub(crate) file: u64,
    /// VmHWM: the peak of VmRSS.
    pub(crate) hwm: u64,
    /// Threads.
    pub(crate) threads: u64,
}

pub(crate) fn memory(pid: &str) -> Memory {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let mut m = Memory::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let n = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        match key {
            "VmRSS" => m.rss = n,
            "RssAnon" => m.anon = n,
            "RssFile" => m.file = n,
            "VmHWM" => m.hwm = n,
            "Threads" => m.threads = n,
            _ => {}
        }
    }
    m
}

/// Resident KiB of each mapped file of a process (/proc/<pid>/smaps), largest first.
pub(crate) fn file_rss(pid: &str) -> Vec<(String, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut by_file: HashMap<String, u64> = HashMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if let Some(kib) = line.strip_prefix("Rss:") {
            if let Some(file) = &current {
                let kib: u64 = kib
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .unwrap_or(0);
                *by_file.entry(file.clone()).or_default() += kib;
            }
        } else {
            // A mapping's header: address-range perms offset dev inode [path].
            let fields: Vec<&str> = line.split_whitespace().collect();
            let is_header = fields
                .first()
                .and_then(|a| a.split_once('-'))
                .is_some_and(|(x, y)| {
                    u64::from_str_radix(x, 16).is_ok() && u64::from_str_radix(y, 16).is_ok()
                });
            if is_header {
                current = fields
                    .get(5)
                    .filter(|p| p.starts_with('/'))
                    .map(|p| p.rsplit('/').next().unwrap_or(p).to_owned());
            }
        }
    }
    let mut v: Vec<_> = by_file.into_iter().filter(|(_, k)| *k > 0).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

pub(crate) fn mib(kib: u64) -> f64 {
    kib as f64 / KIB_PER_MIB
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Median, 90th percentile and mean, in ms.
pub(crate) fn stats(mut v: Vec<Duration>) -> (f64, f64, f64) {
    v.sort_unstable();
    let at = |p: f64| ms(v[((v.len() as f64 - 1.0) * p).round() as usize]);
    let mean = v.iter().map(|d| ms(*d)).sum::<f64>() / v.len() as f64;
    (at(0.5), at(0.9), mean)
}
