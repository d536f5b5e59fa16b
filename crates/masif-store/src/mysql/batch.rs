//! Coalescing of concurrent requests into batches, the way group commit works: a lone request
//! goes out at once, and requests arriving while `in_flight` batches run wait for the next
//! batch, so batches grow with the load and round trips do not.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Semaphore};

/// A request and where its answer goes.
pub(crate) struct Waiting<Req, Resp> {
    pub request: Req,
    reply: oneshot::Sender<Resp>,
}

impl<Req, Resp> Waiting<Req, Resp> {
    /// Whether the caller gave up waiting (its future was dropped).
    pub fn abandoned(&self) -> bool {
        self.reply.is_closed()
    }

    /// Answers the caller (if it is still waiting).
    pub fn answer(self, response: Resp) {
        let _ = self.reply.send(response);
    }
}

/// The queue in front of a background task that hands batches of waiting requests to a
/// handler. The task ends when the `Batcher` is dropped.
pub(crate) struct Batcher<Req, Resp> {
    queue: mpsc::UnboundedSender<Waiting<Req, Resp>>,
}

impl<Req, Resp> std::fmt::Debug for Batcher<Req, Resp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").finish_non_exhaustive()
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> Batcher<Req, Resp> {
    /// Starts the background task (on the current tokio runtime): at most `in_flight` handler
    /// calls at a time, each with 1 to `max_batch` requests whose callers still wait.
    pub fn start<H, Fut>(max_batch: usize, in_flight: usize, handler: H) -> Self
    where
        H: Fn(Vec<Waiting<Req, Resp>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (queue, waiting) = mpsc::unbounded_channel();
        tokio::spawn(serve(waiting, max_batch, in_flight, handler));
        Self { queue }
    }

    /// Queues `request` and waits for its answer; `None` if the background task is gone.
    pub async fn call(&self, request: Req) -> Option<Resp> {
        let (reply, answer) = oneshot::channel();
        self.queue.send(Waiting { request, reply }).ok()?;
        answer.await.ok()
    }
}

async fn serve<Req, Resp, H, Fut>(
    mut waiting: mpsc::UnboundedReceiver<Waiting<Req, Resp>>,
    max_batch: usize,
    in_flight: usize,
    handler: H,
) where
    Req: Send + 'static,
    Resp: Send + 'static,
    H: Fn(Vec<Waiting<Req, Resp>>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(in_flight.max(1)));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = waiting.recv().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < max_batch.max(1) {
            match waiting.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        batch.retain(|w| !w.abandoned());
        if batch.is_empty() {
            continue;
        }
        let work = handler(batch);
        tokio::spawn(async move {
            work.await;
            drop(slot);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Requests queued while the only slot is busy arrive together in the next batch, and
    /// every caller gets its own answer.
    #[tokio::test]
    async fn requests_arriving_together_share_a_batch() {
        let batches = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = batches.clone();
        let gate = Arc::new(tokio::sync::Notify::new());
        let release = gate.clone();
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let batcher = Arc::new(Batcher::<u32, u32>::start(8, 1, move |batch| {
            let (seen, gate, counted) = (seen.clone(), gate.clone(), counted.clone());
            async move {
                // The first batch waits until the test has queued the others.
                if counted.fetch_add(1, Ordering::SeqCst) == 0 {
                    gate.notified().await;
                }
                seen.lock()
                    .unwrap()
                    .push(batch.iter().map(|w| w.request).collect::<Vec<_>>());
                for w in batch {
                    let n = w.request;
                    w.answer(n * 10);
                }
            }
        }));
        let first = tokio::spawn({
            let b = batcher.clone();
            async move { b.call(1).await }
        });
        while calls.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let rest: Vec<_> = (2..=5)
            .map(|n| {
                let b = batcher.clone();
                tokio::spawn(async move { b.call(n).await })
            })
            .collect();
        // Let the four calls reach the queue, then free the slot.
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        release.notify_one();
        assert_eq!(first.await.unwrap(), Some(10));
        for (n, handle) in (2..=5).zip(rest) {
            assert_eq!(handle.await.unwrap(), Some(n * 10));
        }
        let batches = batches.lock().unwrap().clone();
        assert_eq!(batches, vec![vec![1], vec![2, 3, 4, 5]]);
    }
}
