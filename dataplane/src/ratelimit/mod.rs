//! Counters for `rate-limit`: one count per exact key, shared by the workers without
//! locks, in bounded memory.
//!
//! ## Layout
//!
//! Each limit has a table of at most [`MAX_KEYS`] entries in [`LEVELS`] levels that
//! double in size and are allocated on first use, so a limit never requested costs
//! nothing and one with a few keys costs only its first level. An entry is a head —
//! the key's tag and the time the key was last requested — and two count slots per
//! worker, for the current and the previous fixed window; each slot packs a window
//! index and a count, and [`Window`] estimates the sliding count from the two. A
//! worker writes only its own slots; a request reads every worker's slots of its
//! entry. The tag is a 64-bit SipHash of the exact key bytes under a random key drawn
//! for these counters, so a client cannot aim two keys at one tag.
//!
//! A key is looked for at [`PROBES`] neighbouring positions of each allocated level.
//! Found nowhere, it takes the first free place among them: an entry never used, or
//! one whose key was idle (not requested since before the previous window, so none of
//! its counts still matter). With no free place, the next level is allocated; with
//! all levels allocated, the key takes the probed entry requested least recently and
//! that entry's key is forgotten. Claiming an entry is a compare-and-swap on its tag,
//! then the claimer zeroes the entry's slots (the only write to another worker's
//! slots; counting is itself a compare-and-swap so that it never undoes a zeroing).
//!
//! Per request: one SipHash, the heads of up to `PROBES` entries per allocated level
//! (two cache lines per level), the `2 × workers` slots of the entry and one
//! compare-and-swap on the worker's own slot. The last-request time is shared but
//! written at most [`SEEN_TICKS_PER_WINDOW`] times per window and key.
//!
//! Memory per limit, `(2 + 2 × workers) × 8` bytes per entry: with 2 workers 12 KiB
//! for the first level and 3 MiB when full; with 16 workers 68 KiB and 17 MiB.
//!
//! ## Tolerance
//!
//! - Requests of one key arriving at the same instant on different workers may each
//!   see the last free place, so the limit can be exceeded by at most `workers − 1`
//!   (counts are read and written sequentially consistently, so the last of those
//!   checks sees every earlier count).
//! - When an entry passes to a new key while a worker is counting a request of the
//!   old key, that request may add one count to the new key (at most one per worker,
//!   at that same instant). Two workers meeting a new key at the same instant may,
//!   rarely, give it two entries; the count in the one not found first is lost (at
//!   most one per worker). A claim that loses [`CLAIM_ATTEMPTS`] races in a row
//!   admits its request uncounted.
//! - Two distinct keys share a tag with probability about `n² / 2^65` for `n` active
//!   keys (about 10⁻¹⁰ at [`MAX_KEYS`]); they then count together, stricter for both.
//! - When more than [`MAX_KEYS`] keys are active (or one key's probed entries all
//!   are), a new key evicts the probed key requested least recently: that key's count
//!   is forgotten and its next request starts afresh. Eviction makes the limit more
//!   lenient for the forgotten key, never stricter for any other.

mod registry;

pub(crate) use registry::{EndpointLimits, RateRegistry};

use std::alloc::{self, Layout};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use innergate_table::policy::actions::rate_limit::Window;

/// Keys one limit counts at most. A limit is per node, and a key stays counted while
/// it was requested in the last two windows: 65,536 keys means, for a one-minute
/// window, some 550 new clients a second on one machine for one endpoint, beyond what
/// a per-client limit sees outside an attack, while the table of a 16-worker node
/// stays at 17 MiB. Past it, limits get lenient (see the tolerance above), not stricter.
pub(crate) const MAX_KEYS: usize = 65_536;

/// Entries of the first level; level `l > 0` has `FIRST_LEVEL_KEYS << (l − 1)`.
const FIRST_LEVEL_KEYS: usize = 256;

/// Levels of the table; together they hold [`MAX_KEYS`] entries.
const LEVELS: usize = 9;

/// Positions looked at per level: 8 heads are two cache lines.
const PROBES: usize = 8;

/// Claims one request tries before it is admitted uncounted.
const CLAIM_ATTEMPTS: usize = 4;

/// How many times per window a key's last-request time is refreshed at most: often
/// enough to tell recent keys from old ones, rarely enough not to share a written
/// cache line between workers on every request.
const SEEN_TICKS_PER_WINDOW: u64 = 16;

/// The tag of an entry never used; [`RateCounters::tag`] never yields it.
const EMPTY: u64 = 0;

const fn level_keys(level: usize) -> usize {
    if level == 0 {
        FIRST_LEVEL_KEYS
    } else {
        FIRST_LEVEL_KEYS << (level - 1)
    }
}

const _: () = {
    let (mut level, mut keys) = (0, 0);
    while level < LEVELS {
        assert!(level_keys(level).is_power_of_two() && level_keys(level) >= PROBES);
        keys += level_keys(level);
        level += 1;
    }
    assert!(keys == MAX_KEYS);
};

const COUNT_BITS: u32 = 40;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
const INDEX_MASK: u64 = (1 << (64 - COUNT_BITS)) - 1;

fn pack(index: u64, count: u64) -> u64 {
    ((index & INDEX_MASK) << COUNT_BITS) | (count & COUNT_MASK)
}

fn unpack(v: u64) -> (u64, u64) {
    (v >> COUNT_BITS, v & COUNT_MASK)
}

/// Milliseconds on one clock shared by all workers.
pub(crate) fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// The counters of one `rate-limit` action of one endpoint.
#[derive(Debug)]
pub(crate) struct RateCounters {
    capacity: u64,
    window_ms: u64,
    /// How far a key's last-request time may lag before a request refreshes it.
    seen_tick_ms: u64,
    workers: usize,
    /// Keys the tag hash; drawn per counters so that clients cannot aim at collisions.
    hasher: RandomState,
    /// Null until first needed; each set once, from `Box::into_raw`, freed in `Drop`.
    levels: [AtomicPtr<Level>; LEVELS],
}

/// How a place was found free, which says what its slots may still hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Vacancy {
    /// Never used: the slots are zero.
    Empty,
    /// Its key was idle: the slots hold only windows that no longer count.
    Idle,
    /// Its key was active and is evicted: the slots hold counts that do.
    Evicted,
}

impl RateCounters {
    /// Counters allowing `capacity` requests per `window_ms` to each key, written by
    /// `workers` workers.
    pub(crate) fn new(capacity: u64, window_ms: u64, workers: usize) -> Self {
        let window_ms = window_ms.max(1);
        RateCounters {
            capacity,
            window_ms,
            seen_tick_ms: (window_ms / SEEN_TICKS_PER_WINDOW).max(1),
            workers: workers.max(1),
            hasher: RandomState::new(),
            levels: std::array::from_fn(|_| AtomicPtr::new(std::ptr::null_mut())),
        }
    }

    /// The workers these counters have slots for.
    pub(crate) fn workers(&self) -> usize {
        self.workers
    }

    /// Counts a request of `key` (the exact bytes of the rendered bucket key) on
    /// `worker`, or refuses it with the seconds until one would pass (Retry-After,
    /// >= 1).
    pub(crate) fn admit(&self, worker: usize, key: &[u8], now_ms: u64) -> Result<(), u64> {
        let window = Window::at(now_ms, self.window_ms);
        let Some(place) = self.place(self.tag(key), now_ms, window.index) else {
            // Every claim lost a race: lenient, as the module doc says.
            return Ok(());
        };
        let seen = place.level.seen(place.entry);
        let last = seen.load(Ordering::Relaxed);
        if now_ms >= last.saturating_add(self.seen_tick_ms)
            || now_ms / self.window_ms != last / self.window_ms
        {
            seen.fetch_max(now_ms, Ordering::Relaxed);
        }
        let (current, previous) = place.counts(self.workers, window.index);
        if window.estimate(current, previous) + 1.0 > self.capacity as f64 {
            return Err(window.retry_after_secs(current, previous, self.capacity));
        }
        place.count(worker % self.workers, self.workers, window.index);
        Ok(())
    }

    /// The tag of `key`: its keyed hash, never [`EMPTY`].
    fn tag(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key).max(EMPTY + 1)
    }

    /// The entry of `tag`, found or claimed; `None` when every claim lost a race.
    fn place(&self, tag: u64, now_ms: u64, window_index: u64) -> Option<Place<'_>> {
        for _ in 0..CLAIM_ATTEMPTS {
            // The first free place in probe order, and the entry requested least
            // recently, with the tag each was seen with.
            let mut free: Option<(Place<'_>, u64, Vacancy)> = None;
            let mut oldest: Option<(Place<'_>, u64, u64)> = None;
            for l in 0..LEVELS {
                let Some(level) = self.level(l) else {
                    if free.is_none() {
                        let level = self.grow(l);
                        let entry = level.probes(tag, l).next().unwrap_or(0);
                        free = Some((Place { level, entry }, EMPTY, Vacancy::Empty));
                    }
                    break;
                };
                for entry in level.probes(tag, l) {
                    let found = level.tag(entry).load(Ordering::Acquire);
                    if found == tag {
                        return Some(Place { level, entry });
                    }
                    if free.is_some() {
                        continue;
                    }
                    let place = Place { level, entry };
                    if found == EMPTY {
                        free = Some((place, EMPTY, Vacancy::Empty));
                        continue;
                    }
                    let seen = level.seen(entry).load(Ordering::Relaxed);
                    if seen / self.window_ms + 1 < window_index {
                        free = Some((place, found, Vacancy::Idle));
                    } else if oldest.as_ref().is_none_or(|(_, _, s)| seen < *s) {
                        oldest = Some((place, found, seen));
                    }
                }
            }
            let (place, found, vacancy) =
                free.or(oldest.map(|(place, found, _)| (place, found, Vacancy::Evicted)))?;
            match place.claim(found, tag, vacancy, self.workers, now_ms) {
                Ok(()) => return Some(place),
                // Another worker claimed it for the same key.
                Err(now) if now == tag => return Some(place),
                Err(_) => continue,
            }
        }
        None
    }

    /// Level `l`, if allocated.
    fn level(&self, l: usize) -> Option<&Level> {
        let level = self.levels[l].load(Ordering::Acquire);
        // SAFETY: a non-null pointer in `levels` came from `Box::into_raw` in `grow`,
        // is published once (the Release of its compare-and-swap, paired with this
        // Acquire) and freed only in `Drop`, which takes `&mut self`: it points to a
        // live, initialized `Level` for as long as `self` is borrowed.
        unsafe { level.as_ref() }
    }

    /// Level `l`, allocated now unless another worker just did.
    fn grow(&self, l: usize) -> &Level {
        let fresh = Box::into_raw(Box::new(Level::new(level_keys(l), self.workers)));
        match self.levels[l].compare_exchange(
            std::ptr::null_mut(),
            fresh,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            // SAFETY: `fresh` is now published, and lives as long as `self` (see `level`).
            Ok(_) => unsafe { &*fresh },
            Err(theirs) => {
                // SAFETY: `fresh` came from `Box::into_raw` above and was never published.
                drop(unsafe { Box::from_raw(fresh) });
                // SAFETY: `theirs` is non-null (the exchange from null failed), so it was
                // published by another `grow` and lives as long as `self` (see `level`).
                unsafe { &*theirs }
            }
        }
    }

    /// Entries allocated, across levels.
    #[cfg(test)]
    fn allocated_keys(&self) -> usize {
        (0..LEVELS)
            .filter(|&l| self.level(l).is_some())
            .map(level_keys)
            .sum()
    }
}

impl Drop for RateCounters {
    fn drop(&mut self) {
        for level in &mut self.levels {
            let level = *level.get_mut();
            if !level.is_null() {
                // SAFETY: non-null pointers in `levels` came from `Box::into_raw` in
                // `grow`; `&mut self` means no reference into the level is left.
                drop(unsafe { Box::from_raw(level) });
            }
        }
    }
}

/// One level of a limit's table.
#[derive(Debug)]
struct Level {
    /// `keys − 1`, `keys` being a power of two.
    mask: usize,
    /// Per entry its tag and the time its key was last requested, in ms: apart from
    /// the counts so that probing reads few cache lines.
    heads: Box<[AtomicU64]>,
    /// Per entry, per worker, the slots of the two fixed windows by parity, at
    /// `(entry × workers + worker) × 2 + parity`: an entry's slots are adjacent, so a
    /// request reads `workers / 4` cache lines.
    slots: Box<[AtomicU64]>,
}

impl Level {
    fn new(keys: usize, workers: usize) -> Self {
        Level {
            mask: keys - 1,
            heads: zeroed(2 * keys),
            slots: zeroed(2 * workers * keys),
        }
    }

    fn tag(&self, entry: usize) -> &AtomicU64 {
        &self.heads[2 * entry]
    }

    fn seen(&self, entry: usize) -> &AtomicU64 {
        &self.heads[2 * entry + 1]
    }

    /// The positions of `tag` in level `l`: each level mixes other bits of the tag, so
    /// keys crowded together in one level spread out in the next.
    fn probes(&self, tag: u64, l: usize) -> impl Iterator<Item = usize> {
        let mixed = tag
            .rotate_left(7 * l as u32)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let (start, mask) = ((mixed >> 32) as usize, self.mask);
        (0..PROBES).map(move |i| (start + i) & mask)
    }
}

/// One entry of one level.
#[derive(Clone, Copy, Debug)]
struct Place<'a> {
    level: &'a Level,
    entry: usize,
}

impl Place<'_> {
    fn slots(&self, workers: usize) -> &[AtomicU64] {
        let start = self.entry * workers * 2;
        &self.level.slots[start..start + workers * 2]
    }

    /// This window's and the previous window's counts, over all workers.
    fn counts(&self, workers: usize, window_index: u64) -> (u64, u64) {
        let (index, previous_index) = (
            window_index & INDEX_MASK,
            window_index.wrapping_sub(1) & INDEX_MASK,
        );
        let (mut current, mut previous) = (0, 0);
        for slot in self.slots(workers) {
            let (i, count) = unpack(slot.load(Ordering::SeqCst));
            if count > 0 && i == index {
                current += count;
            } else if count > 0 && i == previous_index {
                previous += count;
            }
        }
        (current, previous)
    }

    /// Counts one request on `worker`, in its own slot.
    fn count(&self, worker: usize, workers: usize, window_index: u64) {
        let slot = &self.slots(workers)[worker * 2 + (window_index % 2) as usize];
        let seen = slot.load(Ordering::SeqCst);
        let (i, count) = unpack(seen);
        let next = if i == window_index & INDEX_MASK {
            count + 1
        } else {
            1
        };
        // Only a claim writes another worker's slot, to zero it; if one did since the
        // load, the entry is another key's now and this request goes uncounted.
        let _ = slot.compare_exchange(
            seen,
            pack(window_index, next),
            Ordering::SeqCst,
            Ordering::Relaxed,
        );
    }

    /// Takes this entry, seen holding `found`, for `tag`; on failure, the tag it holds.
    fn claim(
        &self,
        found: u64,
        tag: u64,
        vacancy: Vacancy,
        workers: usize,
        now_ms: u64,
    ) -> Result<(), u64> {
        if vacancy == Vacancy::Evicted {
            // Forget the evicted key's counts before the new key can see them.
            self.reset(workers);
        }
        // Requested now, so that other claimers leave the entry alone.
        self.level
            .seen(self.entry)
            .fetch_max(now_ms, Ordering::Relaxed);
        self.level.tag(self.entry).compare_exchange(
            found,
            tag,
            Ordering::AcqRel,
            Ordering::Acquire,
        )?;
        if vacancy != Vacancy::Empty {
            // Counts of the old key written since, or so old their index wrapped.
            self.reset(workers);
        }
        Ok(())
    }

    fn reset(&self, workers: usize) {
        for slot in self.slots(workers) {
            slot.swap(0, Ordering::SeqCst);
        }
    }
}

/// `len` atomics at zero, from zeroed memory: a level of a large table needs no
/// writing through, and its untouched pages no memory.
fn zeroed(len: usize) -> Box<[AtomicU64]> {
    assert!(len > 0, "a level has entries");
    // The largest level has MAX_KEYS / 2 entries of 2 × workers slots: far below
    // isize::MAX bytes for any number of workers a machine has.
    let layout = Layout::array::<AtomicU64>(len).expect("a level's size fits in isize");
    // SAFETY: `layout` has a non-zero size, since `len > 0`.
    let ptr = unsafe { alloc::alloc_zeroed(layout) }.cast::<AtomicU64>();
    if ptr.is_null() {
        alloc::handle_alloc_error(layout);
    }
    // SAFETY: `ptr` was allocated by the global allocator with the layout of
    // `[AtomicU64; len]`, which is the layout the box frees it with, and all-zero
    // bytes are a valid `AtomicU64` (the same as `AtomicU64::new(0)`).
    unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW_MS: u64 = 10_000;

    fn counters(capacity: u64, workers: usize) -> RateCounters {
        RateCounters::new(capacity, WINDOW_MS, workers)
    }

    #[test]
    fn every_key_has_its_own_count() {
        let c = counters(1, 2);
        let t = 100_000;
        let keys: Vec<String> = (0..10_000)
            .map(|i| format!("10.{}.{}.1", i / 256, i % 256))
            .collect();
        for (i, key) in keys.iter().enumerate() {
            assert!(c.admit(i % 2, key.as_bytes(), t).is_ok(), "first of {key}");
        }
        for (i, key) in keys.iter().enumerate() {
            assert!(
                c.admit(i % 2, key.as_bytes(), t).is_err(),
                "second of {key}"
            );
        }
    }

    #[test]
    fn an_attacker_cannot_spend_the_limit_of_another_key() {
        let c = counters(3, 2);
        let t = 100_000;
        for i in 0..3 {
            assert!(c.admit(i % 2, b"attacker-chosen", t).is_ok());
        }
        assert!(c.admit(0, b"attacker-chosen", t).is_err());
        for i in 0..3 {
            assert!(c.admit(i % 2, b"victim", t).is_ok(), "victim request {i}");
        }
        assert!(c.admit(1, b"victim", t).is_err());
        assert!(c.admit(1, b"attacker-chosen", t).is_err(), "and vice versa");

        // Two windows later, more distinct keys than the table holds, with the
        // victim's requests in between: the victim may be forgotten, never refused
        // under its limit.
        let t = t + 2 * WINDOW_MS;
        let mut victim = 0;
        for i in 0..2 * MAX_KEYS {
            let key = format!("spray-{i}");
            assert!(c.admit(i % 2, key.as_bytes(), t).is_ok(), "first of {key}");
            if i % 50_000 == 0 {
                assert!(c.admit(i % 2, b"victim", t).is_ok(), "victim at {i}");
                victim += 1;
            }
        }
        assert_eq!(victim, 3);
        assert_eq!(c.allocated_keys(), MAX_KEYS);
    }

    #[test]
    fn the_limit_holds_across_workers_and_slides() {
        let c = counters(10, 2);
        let t = 100_000;
        for i in 0..10 {
            assert!(c.admit(i % 2, b"7", t).is_ok(), "request {i}");
        }
        assert!(c.admit(0, b"7", t).is_err());
        assert!(c.admit(1, b"7", t).is_err());
        assert!(c.admit(0, b"8", t).is_ok(), "another key has its own count");
        // Half a window later half of the previous window still counts.
        let later = t + WINDOW_MS + WINDOW_MS / 2;
        for i in 0..5 {
            assert!(c.admit(i % 2, b"7", later).is_ok(), "request {i}");
        }
        assert!(c.admit(0, b"7", later).is_err());
        // Two windows later everything is free again.
        for _ in 0..10 {
            assert!(c.admit(1, b"7", t + 3 * WINDOW_MS).is_ok());
        }
    }

    #[test]
    fn idle_keys_make_room_and_memory_stays_bounded() {
        let c = counters(1, 2);
        let t = 100_000;
        assert_eq!(c.allocated_keys(), 0, "nothing before the first request");
        assert!(c.admit(0, b"first", t).is_ok());
        assert_eq!(c.allocated_keys(), FIRST_LEVEL_KEYS);
        for i in 0..MAX_KEYS + MAX_KEYS / 2 {
            assert!(c.admit(i % 2, format!("old-{i}").as_bytes(), t).is_ok());
        }
        assert_eq!(c.allocated_keys(), MAX_KEYS);

        // Two windows later the old keys are idle and give their places up.
        let later = t + 2 * WINDOW_MS;
        let keys: Vec<String> = (0..10_000).map(|i| format!("new-{i}")).collect();
        for key in &keys {
            assert!(c.admit(0, key.as_bytes(), later).is_ok(), "first of {key}");
        }
        for key in &keys {
            assert!(
                c.admit(1, key.as_bytes(), later).is_err(),
                "second of {key}"
            );
        }
        assert_eq!(c.allocated_keys(), MAX_KEYS);
    }

    #[test]
    fn retry_after_is_within_one_window() {
        let window_secs = WINDOW_MS / 1000;
        let c = counters(5, 2);
        let t = 100_000;
        // The current window alone full, then the previous one sliding out.
        for offset in [0, 1, 2_500, 5_000, 9_999] {
            let key = format!("key-{offset}");
            for at in [t + offset, t + WINDOW_MS + offset] {
                while c.admit(0, key.as_bytes(), at).is_ok() {}
                let retry = c.admit(1, key.as_bytes(), at).unwrap_err();
                assert!((1..=window_secs).contains(&retry), "{retry} at {at}");
            }
        }
    }

    #[test]
    fn concurrent_workers_exceed_the_limit_by_at_most_one_each() {
        let capacity = 1_000;
        let c = counters(capacity, 2);
        let t = 100_000;
        let admitted: u64 = std::thread::scope(|s| {
            let threads: Vec<_> = (0..2)
                .map(|worker| {
                    let c = &c;
                    s.spawn(move || {
                        (0..2 * capacity)
                            .filter(|_| c.admit(worker, b"shared", t).is_ok())
                            .count() as u64
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|thread| thread.join().expect("the thread does not panic"))
                .sum()
        });
        assert!(
            (capacity..=capacity + 1).contains(&admitted),
            "{admitted} admitted"
        );
    }
}
