//! Wake-ups gathered per object: the first one starts a wait of `window`, those arriving meanwhile join it,
//! then the object is woken once. kube's own debounce restarts the wait at every request, so an object woken
//! without pause (a space while 1,000 links converge) would wait for the whole convergence; here the wait is
//! bounded: an object follows its triggers at most `window` late and is woken at most once per `window`.

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::time::Instant;

/// The objects waiting, by the end of their wait (first come, first due: every wait is as long).
struct Gathered<T> {
    window: Duration,
    queue: VecDeque<(Instant, T)>,
    queued: HashSet<T>,
}

impl<T: Hash + Eq + Clone> Gathered<T> {
    /// A wake-up at `now`: joins the wait under way for the same object, or starts one.
    fn offer(&mut self, item: T, now: Instant) {
        if self.queued.insert(item.clone()) {
            self.queue.push_back((now + self.window, item));
        }
    }

    /// The next object whose wait is over at `now`.
    fn pop_due(&mut self, now: Instant) -> Option<T> {
        let (due, _) = self.queue.front()?;
        if *due > now {
            return None;
        }
        let (_, item) = self.queue.pop_front()?;
        self.queued.remove(&item);
        Some(item)
    }

    fn next_due(&self) -> Option<Instant> {
        self.queue.front().map(|(due, _)| *due)
    }
}

pub fn throttle<T, S>(input: S, window: Duration) -> impl Stream<Item = T> + Send + 'static
where
    T: Hash + Eq + Clone + Send + 'static,
    S: Stream<Item = T> + Send + Unpin + 'static,
{
    let gathered = Gathered { window, queue: VecDeque::new(), queued: HashSet::new() };
    futures::stream::unfold((input, gathered, false), |(mut input, mut gathered, mut ended)| async move {
        loop {
            if let Some(item) = gathered.pop_due(Instant::now()) {
                return Some((item, (input, gathered, ended)));
            }
            let due = gathered.next_due();
            if ended {
                // Nothing more comes: hand on what waits, then end.
                tokio::time::sleep_until(due?).await;
                continue;
            }
            tokio::select! {
                next = input.next() => match next {
                    Some(item) => gathered.offer(item, Instant::now()),
                    None => ended = true,
                },
                () = sleep_until(due) => {}
            }
        }
    })
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wake_ups_during_a_wait_join_it_and_the_wait_is_never_longer_than_the_window() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut g = Gathered { window: Duration::from_millis(4500), queue: VecDeque::new(), queued: HashSet::new() };
        let mut woken = Vec::new();
        // "space" woken every second for 12 s (a convergence), "other" once at 3 s.
        for ms in (0..15_000).step_by(500) {
            while let Some(item) = g.pop_due(at(ms)) {
                woken.push((item, ms));
            }
            if ms % 1000 == 0 && ms < 12_000 {
                g.offer("space", at(ms));
            }
            if ms == 3000 {
                g.offer("other", at(ms));
            }
        }
        assert_eq!(woken, vec![("space", 4500), ("other", 7500), ("space", 9500), ("space", 14500)]);
    }

    #[tokio::test]
    async fn the_stream_hands_on_what_waits_when_its_input_ends() {
        let input = futures::stream::iter(vec!["a", "b", "a", "a", "b"]);
        let out: Vec<&str> = throttle(input, Duration::from_millis(10)).collect().await;
        assert_eq!(out, vec!["a", "b"]);
    }
}
