//! Coalescing of concurrent requests into batches, the way group commit works: a lone request
//! goes out at once, and requests arriving while `in_flight` batches run wait for the next
//! batch, so batches grow with the load and round trips do not. A batch is bounded in count and
//! in weight (roughly the bytes its requests add to a statement), so many large reports never
//! add up to a statement the server refuses; a request heavier than the bound goes alone.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Semaphore};

/// A request and where its answer goes.
pub(crate) struct Waiting<Req, Resp> {
    pub(crate) request: Req,
    reply: oneshot::Sender<Resp>,
}

impl<Req, Resp> Waiting<Req, Resp> {
    /// Whether the caller gave up waiting (its future was dropped).
    pub(crate) fn abandoned(&self) -> bool {
        self.reply.is_closed()
    }

    /// Answers the caller (if it is still waiting).
    pub(crate) fn answer(self, response: Resp) {
        let _ = self.reply.send(response);
    }
}

/// How large batches may get.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Most requests in one batch.
    pub(crate) max_batch: usize,
    /// Most total weight of one batch (a single heavier request still goes, alone).
    pub(crate) max_weight: usize,
    /// Most batches handled at once.
    pub(crate) in_flight: usize,
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
    /// calls at a time, each with the requests (whose callers still wait) that fit `limits`,
    /// weighed by `weigh`.
    pub(crate) fn start<H, Fut>(limits: Limits, weigh: fn(&Req) -> usize, handler: H) -> Self
    where
        H: Fn(Vec<Waiting<Req, Resp>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (queue, waiting) = mpsc::unbounded_channel();
        tokio::spawn(serve(waiting, limits, weigh, handler));
        Self { queue }
    }

    /// Queues `request` and waits for its answer; `None` if the background task is gone.
    pub(crate) async fn call(&self, request: Req) -> Option<Resp> {
        let (reply, answer) = oneshot::channel();
        self.queue.send(Waiting { request, reply }).ok()?;
        answer.await.ok()
    }
}

async fn serve<Req, Resp, H, Fut>(
    mut waiting: mpsc::UnboundedReceiver<Waiting<Req, Resp>>,
    limits: Limits,
    weigh: fn(&Req) -> usize,
    handler: H,
) where
    Req: Send + 'static,
    Resp: Send + 'static,
    H: Fn(Vec<Waiting<Req, Resp>>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.in_flight.max(1)));
    // A request that did not fit the previous batch starts the next one.
    let mut carried = None;
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let first = match carried.take() {
            Some(first) => first,
            None => match waiting.recv().await {
                Some(first) => first,
                None => return,
            },
        };
        let mut weight = weigh(&first.request);
        let mut batch = vec![first];
        while batch.len() < limits.max_batch.max(1) {
            let Ok(next) = waiting.try_recv() else {
                break;
            };
            let more = weigh(&next.request);
            if weight + more > limits.max_weight {
                carried = Some(next);
                break;
            }
            weight += more;
            batch.push(next);
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

    /// Requests queued while the only slot is busy arrive together in the next batches, as many
    /// as their weights allow, and every caller gets its own answer.
    #[tokio::test]
    async fn requests_arriving_together_share_a_batch() {
        let batches = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = batches.clone();
        let gate = Arc::new(tokio::sync::Notify::new());
        let release = gate.clone();
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let limits = Limits {
            max_batch: 8,
            max_weight: 10,
            in_flight: 1,
        };
        let batcher = Arc::new(Batcher::<u32, u32>::start(
            limits,
            |n| *n as usize,
            move |batch| {
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
            },
        ));
        let first = tokio::spawn({
            let b = batcher.clone();
            async move { b.call(1).await }
        });
        while calls.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let rest: Vec<_> = [2, 3, 4, 5, 9, 11]
            .into_iter()
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
        for (n, handle) in [2, 3, 4, 5, 9, 11].into_iter().zip(rest) {
            assert_eq!(handle.await.unwrap(), Some(n * 10));
        }
        // Weights bound the batches: 2+3+4 fit 10, 5 starts the next, 5+9 would not fit,
        // and 11 is heavier than the bound, so it goes alone.
        let batches = batches.lock().unwrap().clone();
        assert_eq!(
            batches,
            vec![vec![1], vec![2, 3, 4], vec![5], vec![9], vec![11]]
        );
    }
}
