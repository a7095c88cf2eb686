//! Gives the memory a finished task freed back to the system.
//!
//! glibc's allocator keeps the pages of freed blocks in its arenas instead of
//! returning them, unless they sit at the very top of a heap. A task that built
//! a large hash table and freed it leaves the process resident at that size,
//! and the next task's allocations land on top: the run's peak becomes the sum
//! of one task's leftovers and the next task's need (bench/README: the TPC-H
//! first run sat at ~614 MB of freed heap before `silver.lineitem` added its
//! own ~550 MB). `malloc_trim(0)` returns every whole free page of every arena
//! (glibc ≥ 2.8, by `madvise`), so the runner calls [`release_freed`] each time
//! a task ends.
//!
//! This is the workspace's one `unsafe` block: a foreign call that takes no
//! pointers and has no precondition (glibc documents it MT-safe).

/// Returns the pages of freed memory to the system (glibc's `malloc_trim(0)`);
/// whether any were returned. Elsewhere (musl, macOS, Windows, whose
/// allocators give memory back themselves or have no such call) it does
/// nothing and returns false.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn release_freed() -> bool {
    // SAFETY: `malloc_trim` takes no pointers and has no precondition; glibc
    // serialises it with every other allocator call (MT-safe).
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Returns the pages of freed memory to the system; a no-op off glibc.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_freed() -> bool {
    false
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// The process's resident set, in bytes (`VmRSS` of /proc/self/status).
    fn resident() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    #[test]
    fn freed_blocks_between_live_ones_go_back_to_the_system() {
        // 256 MiB in 4 KiB blocks (below glibc's mmap threshold, so on the
        // heap), every 64th kept alive: the freed ones are holes that free()
        // alone does not return, as a finished task's hash table leaves them.
        const BLOCK: usize = 4096;
        const COUNT: usize = 256 << 8;
        let mut blocks: Vec<Vec<u8>> = (0..COUNT).map(|i| vec![(i % 251) as u8; BLOCK]).collect();
        let mut kept = Vec::with_capacity(COUNT / 64);
        for (i, b) in blocks.drain(..).enumerate() {
            if i % 64 == 0 {
                kept.push(b);
            }
        }
        drop(blocks);
        let before = resident();
        assert!(release_freed(), "malloc_trim returned nothing");
        let after = resident();
        assert!(
            before.saturating_sub(after) > 128 << 20,
            "resident {before} -> {after} bytes: the freed 252 MiB stayed"
        );
        assert_eq!(kept.len(), COUNT / 64);
        assert!(
            kept.iter()
                .enumerate()
                .all(|(j, b)| b[0] == ((j * 64) % 251) as u8)
        );
    }
}
