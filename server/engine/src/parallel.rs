//! A scoped parallel map over a slice: the run's independent steps (reading line tables, parsing
//! sources) use both cores without pulling in a thread-pool crate.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// `f` applied to every item, `jobs` items at a time; results in input order.
pub fn map<T: Sync, R: Send>(items: &[T], jobs: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let results: Vec<Mutex<Option<R>>> = items.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, items.len().max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { return };
                *results[i].lock().expect("result slot") = Some(f(item));
            });
        }
    });
    results
        .into_iter()
        .map(|slot| {
            slot.into_inner()
                .expect("result slot")
                .expect("every item mapped")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn keeps_input_order_whatever_the_job_count() {
        let items: Vec<u32> = (0..100).collect();
        for jobs in [1, 2, 7, 500] {
            assert_eq!(
                super::map(&items, jobs, |x| x * 2),
                (0..100).map(|x| x * 2).collect::<Vec<_>>()
            );
        }
        assert!(super::map(&[] as &[u32], 4, |x| *x).is_empty());
    }
}
