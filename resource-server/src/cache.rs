//! A bounded, time-limited cache keyed by token hash, with single flight: concurrent lookups of
//! one uncached key share one fetch instead of each starting their own.
//!
//! Keys are [`TokenHash`]es, never raw tokens, so a heap dump or a debug print of the cache
//! reveals no bearer credential.

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use shared::secret::TokenHash;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// The fetch task ended without an answer (it panicked or the runtime shut down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskFailed;

/// How a lookup was answered, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// From the cache.
    Hit,
    /// This lookup started the fetch.
    Miss,
    /// Another lookup's fetch was already under way; this one waited for it.
    Joined,
}

type Flight<V, E> = Shared<BoxFuture<'static, Result<V, E>>>;

struct Entry<V> {
    value: V,
    expires: Instant,
}

struct Inner<V, E> {
    entries: HashMap<TokenHash, Entry<V>>,
    inflight: HashMap<TokenHash, Flight<V, E>>,
}

/// See the module documentation. Cloning shares the cache.
pub struct SingleFlightCache<V, E> {
    inner: Arc<Mutex<Inner<V, E>>>,
    capacity: usize,
}

impl<V, E> Clone for SingleFlightCache<V, E> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            capacity: self.capacity,
        }
    }
}

impl<V, E> SingleFlightCache<V, E>
where
    V: Clone + Send + Sync + 'static,
    E: Clone + Send + Sync + From<TaskFailed> + 'static,
{
    /// A cache holding at most `capacity` answers.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                entries: HashMap::new(),
                inflight: HashMap::new(),
            })),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<V, E>> {
        // A panic while holding the lock leaves the maps consistent (each step is one insert
        // or remove), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached value for `key` if still fresh at `now`; otherwise runs `fetch` (once for
    /// all concurrent callers) in its own task, so a caller that goes away does not cancel it
    /// for the others. `fetch` returns the value and how long it may be reused (`None` or
    /// zero: not at all). Errors are never cached.
    pub async fn get_or_fetch<F, Fut>(
        &self,
        key: TokenHash,
        now: Instant,
        fetch: F,
    ) -> (Result<V, E>, Lookup)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(V, Option<Duration>), E>> + Send + 'static,
    {
        let (flight, lookup) = {
            let mut inner = self.lock();
            if let Some(entry) = inner.entries.get(&key) {
                if entry.expires > now {
                    return (Ok(entry.value.clone()), Lookup::Hit);
                }
                inner.entries.remove(&key);
            }
            if let Some(flight) = inner.inflight.get(&key) {
                (flight.clone(), Lookup::Joined)
            } else {
                let fut = fetch();
                let cache = self.clone();
                let task_key = key.clone();
                let handle = tokio::spawn(async move {
                    let result = fut.await;
                    cache.finish(task_key, &result);
                    result.map(|(value, _)| value)
                });
                let flight: Flight<V, E> = async move {
                    match handle.await {
                        Ok(result) => result,
                        Err(_) => Err(E::from(TaskFailed)),
                    }
                }
                .boxed()
                .shared();
                inner.inflight.insert(key, flight.clone());
                (flight, Lookup::Miss)
            }
        };
        (flight.await, lookup)
    }

    /// Stores a finished fetch (before the in-flight marker goes, so a caller arriving in
    /// between finds one or the other).
    fn finish(&self, key: TokenHash, result: &Result<(V, Option<Duration>), E>) {
        let now = Instant::now();
        let mut inner = self.lock();
        if let Ok((value, Some(ttl))) = result
            && !ttl.is_zero()
        {
            if inner.entries.len() >= self.capacity && !inner.entries.contains_key(&key) {
                evict(&mut inner.entries, now, self.capacity);
            }
            inner.entries.insert(
                key.clone(),
                Entry {
                    value: value.clone(),
                    expires: now + *ttl,
                },
            );
        }
        inner.inflight.remove(&key);
    }

    /// Forgets the cached value of `key` (e.g. TaskManager refused a cached upstream token).
    pub fn invalidate(&self, key: &TokenHash) {
        self.lock().entries.remove(key);
    }

    /// Number of cached answers (fresh or not yet swept).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Makes room for one entry: drops the expired ones, then, if still full, the one closest to
/// expiry (it would have been dropped first anyway).
fn evict<V>(entries: &mut HashMap<TokenHash, Entry<V>>, now: Instant, capacity: usize) {
    entries.retain(|_, e| e.expires > now);
    while entries.len() >= capacity {
        let Some(victim) = entries
            .iter()
            .min_by_key(|(_, e)| e.expires)
            .map(|(k, _)| k.clone())
        else {
            break;
        };
        entries.remove(&victim);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Debug, Clone, PartialEq)]
    struct Failed;
    impl From<TaskFailed> for Failed {
        fn from(_: TaskFailed) -> Self {
            Failed
        }
    }

    type Cache = SingleFlightCache<u32, Failed>;

    #[tokio::test]
    async fn concurrent_misses_share_one_fetch() {
        let cache = Cache::new(10);
        let calls = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let cache = cache.clone();
            let calls = calls.clone();
            let gate = gate.clone();
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_fetch(TokenHash::of("t"), Instant::now(), move || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        gate.notified().await;
                        Ok((7, Some(Duration::from_secs(5))))
                    })
                    .await
            }));
        }
        // Let every task reach the cache before the one fetch completes.
        tokio::time::sleep(Duration::from_millis(50)).await;
        gate.notify_waiters();
        gate.notify_one();
        let mut misses = 0;
        for t in tasks {
            let (value, lookup) = t.await.unwrap();
            assert_eq!(value, Ok(7));
            misses += usize::from(lookup == Lookup::Miss);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(misses, 1);
        let (v, lookup) = cache
            .get_or_fetch(TokenHash::of("t"), Instant::now(), || async { Err(Failed) })
            .await;
        assert_eq!((v, lookup), (Ok(7), Lookup::Hit));
    }

    #[tokio::test]
    async fn entries_expire_and_errors_are_not_cached() {
        let cache = Cache::new(10);
        let key = TokenHash::of("t");
        let (v, _) = cache
            .get_or_fetch(key.clone(), Instant::now(), || async {
                Ok((1, Some(Duration::from_secs(2))))
            })
            .await;
        assert_eq!(v, Ok(1));
        // Two seconds later the entry is stale: a new fetch runs.
        let later = Instant::now() + Duration::from_secs(3);
        let (v, lookup) = cache
            .get_or_fetch(key.clone(), later, || async { Err(Failed) })
            .await;
        assert_eq!((v, lookup), (Err(Failed), Lookup::Miss));
        let (v, lookup) = cache
            .get_or_fetch(key.clone(), Instant::now(), || async { Ok((2, None)) })
            .await;
        assert_eq!((v, lookup), (Ok(2), Lookup::Miss));
        assert!(cache.is_empty(), "no lifetime: not cached");
    }

    #[tokio::test]
    async fn size_is_bounded() {
        let cache = Cache::new(3);
        for i in 0..10u32 {
            let _ = cache
                .get_or_fetch(
                    TokenHash::of(&i.to_string()),
                    Instant::now(),
                    move || async move { Ok((i, Some(Duration::from_secs(60 + u64::from(i))))) },
                )
                .await;
        }
        assert_eq!(cache.len(), 3);
        // The newest (latest-expiring) entries survive.
        let (v, lookup) = cache
            .get_or_fetch(TokenHash::of("9"), Instant::now(), || async { Err(Failed) })
            .await;
        assert_eq!((v, lookup), (Ok(9), Lookup::Hit));
    }

    #[tokio::test]
    async fn invalidate_forgets() {
        let cache = Cache::new(3);
        let key = TokenHash::of("x");
        let _ = cache
            .get_or_fetch(key.clone(), Instant::now(), || async {
                Ok((1, Some(Duration::from_secs(60))))
            })
            .await;
        cache.invalidate(&key);
        assert!(cache.is_empty());
    }
}
