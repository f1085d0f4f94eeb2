//! The node's fan-out of events to its `GET /api/v1/events` streams.
//!
//! One [`EventHub`] per node. Events get an id `<run>-<seq>`: `run` names one run of the
//! node's feed (it changes each time the feed starts), `seq` counts within it. The hub keeps
//! the last [`REPLAY`] events so that a client that reconnects with `Last-Event-ID` gets what
//! it missed; when that is not possible it gets a `resync` event instead.
//!
//! # Notable behaviors
//! - Bounded memory: events go through one `tokio::sync::broadcast` channel of [`BUFFER`]
//!   slots shared by every stream. A stream that falls more than that behind loses the oldest
//!   events and is sent `resync` (reason `slow_client`) instead; nothing grows per client.
//! - One feed per node, running only while someone listens: [`EventHub::subscribe`] says when
//!   the caller must start it, and [`EventHub::feed_may_stop`] ends it once the last stream
//!   is gone.
//! - [`EventHub::close`] ends every stream (graceful shutdown waits for open connections).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::metrics::gauge::Gauge;
use serde_json::Value;
use tokio::sync::{broadcast, watch};

/// Slots of the shared channel: how far a stream may fall behind before it is resynced.
pub const BUFFER: usize = 256;
/// How many recent events a reconnecting client can resume from.
pub const REPLAY: usize = 512;

/// One event of the stream: its SSE name (`app_changed`, ...), id and JSON payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub name: &'static str,
    /// `<run>-<seq>`; empty for events that are not part of the sequence (`hello`, `resync`).
    pub id: String,
    pub data: Value,
}

impl Event {
    /// An event outside the sequence (no id, not replayed).
    pub fn unsequenced(name: &'static str, data: Value) -> Self {
        Self {
            name,
            id: String::new(),
            data,
        }
    }
}

/// What a new stream starts from.
#[derive(Debug)]
pub struct Subscription {
    /// Events to send first: the missed ones on a successful resume, or one `resync`.
    pub first: Vec<Arc<Event>>,
    /// Whether `Last-Event-ID` was honoured (every missed event is in `first`).
    pub resumed: bool,
    pub receiver: broadcast::Receiver<Arc<Event>>,
    /// Completes when the hub closes.
    pub closed: watch::Receiver<bool>,
    /// The caller must start the feed (no feed was running).
    pub start_feed: bool,
    /// Counts the stream in `console_event_streams` until dropped.
    pub _guard: StreamGuard,
}

/// See the [module documentation](self). Cheap to clone.
#[derive(Debug, Clone)]
pub struct EventHub {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    shared: Mutex<Shared>,
    sender: broadcast::Sender<Arc<Event>>,
    closed: watch::Sender<bool>,
    streams: Gauge,
    feeds: Gauge,
}

#[derive(Debug)]
struct Shared {
    run: u64,
    next_seq: u64,
    recent: VecDeque<Arc<Event>>,
    feed_running: bool,
}

impl EventHub {
    /// A hub that reports its open streams and running feed in `streams` and `feeds`.
    pub fn new(streams: Gauge, feeds: Gauge) -> Self {
        let (sender, _) = broadcast::channel(BUFFER);
        let (closed, _) = watch::channel(false);
        Self {
            inner: Arc::new(Inner {
                shared: Mutex::new(Shared {
                    run: u64::try_from(task_dispatch::unix_millis()).unwrap_or(1),
                    next_seq: 1,
                    recent: VecDeque::new(),
                    feed_running: false,
                }),
                sender,
                closed,
                streams,
                feeds,
            }),
        }
    }

    /// Opens a stream. With `last_event_id` from the same feed run and still in the replay
    /// window, `first` holds every event after it; with an id that cannot be resumed, one
    /// `resync` event (reason `resume_unavailable`).
    pub fn subscribe(&self, last_event_id: Option<&str>) -> Subscription {
        let mut shared = self.lock();
        // Subscribing under the lock that publishing takes: no event falls between the replay
        // and the channel, none is in both.
        let receiver = self.inner.sender.subscribe();
        let (first, resumed) = match last_event_id {
            None => (Vec::new(), false),
            Some(id) => match shared.missed_since(id) {
                Some(missed) => (missed, true),
                None => (
                    vec![Arc::new(Event::unsequenced(
                        "resync",
                        serde_json::json!({ "reason": "resume_unavailable" }),
                    ))],
                    false,
                ),
            },
        };
        let start_feed = !shared.feed_running;
        if start_feed {
            shared.feed_running = true;
            self.inner.feeds.set(1);
        }
        drop(shared);
        self.inner.streams.inc();
        Subscription {
            first,
            resumed,
            receiver,
            closed: self.inner.closed.subscribe(),
            start_feed,
            _guard: StreamGuard {
                streams: self.inner.streams.clone(),
            },
        }
    }

    /// Gives `event` the next id and sends it to every open stream.
    pub fn publish(&self, name: &'static str, data: Value) {
        let mut shared = self.lock();
        let event = Arc::new(Event {
            name,
            id: format!("{}-{}", shared.run, shared.next_seq),
            data,
        });
        shared.next_seq += 1;
        if shared.recent.len() == REPLAY {
            shared.recent.pop_front();
        }
        shared.recent.push_back(event.clone());
        // Fails only when nobody listens; the feed stops at its next check then.
        let _ = self.inner.sender.send(event);
    }

    /// Called by the feed between rounds: true (and the feed is marked stopped) when no
    /// stream is open or the hub is closed. A later subscriber starts a new feed run, whose
    /// ids cannot resume this run's.
    pub fn feed_may_stop(&self) -> bool {
        let mut shared = self.lock();
        if self.inner.sender.receiver_count() > 0 && !*self.inner.closed.borrow() {
            return false;
        }
        shared.feed_running = false;
        shared.run += 1;
        shared.next_seq = 1;
        shared.recent.clear();
        self.inner.feeds.set(0);
        true
    }

    /// Ends every open stream; new ones end at once.
    pub fn close(&self) {
        self.inner.closed.send_replace(true);
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // Every critical section leaves the state consistent: a poisoned lock is usable.
        self.inner
            .shared
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

impl Shared {
    /// The events after `id`, if `id` belongs to this run and nothing after it was dropped.
    fn missed_since(&self, id: &str) -> Option<Vec<Arc<Event>>> {
        let (run, seq) = id.split_once('-')?;
        let (run, seq): (u64, u64) = (run.parse().ok()?, seq.parse().ok()?);
        if run != self.run || seq >= self.next_seq {
            return None;
        }
        let oldest = self.next_seq - self.recent.len() as u64;
        // `seq` itself was seen; everything from seq + 1 must still be here.
        if seq + 1 < oldest {
            return None;
        }
        let skip = usize::try_from(seq + 1 - oldest).ok()?;
        Some(self.recent.iter().skip(skip).cloned().collect())
    }
}

/// Decrements `console_event_streams` when the stream it belongs to is dropped (the client
/// went away, or the hub closed).
#[derive(Debug)]
pub struct StreamGuard {
    streams: Gauge,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.streams.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub() -> EventHub {
        EventHub::new(Gauge::default(), Gauge::default())
    }

    #[test]
    fn a_reconnecting_client_gets_what_it_missed_or_a_resync() {
        let hub = hub();
        let first = hub.subscribe(None);
        assert!(first.start_feed, "the first stream starts the feed");
        for n in 0..3 {
            hub.publish("app_changed", serde_json::json!({ "n": n }));
        }
        let ids: Vec<String> = hub.lock().recent.iter().map(|e| e.id.clone()).collect();
        let again = hub.subscribe(Some(&ids[0]));
        assert!(again.resumed);
        assert!(!again.start_feed, "one feed per node");
        assert_eq!(
            again.first.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
            ids[1..]
        );
        let latest = hub.subscribe(Some(&ids[2]));
        assert!(latest.resumed && latest.first.is_empty());
        for unknown in ["garbage", "1-1", &format!("{}-99", hub.lock().run)] {
            let sub = hub.subscribe(Some(unknown));
            assert!(!sub.resumed, "{unknown}");
            assert_eq!(sub.first[0].name, "resync");
        }
    }

    #[test]
    fn the_feed_stops_with_the_last_stream_and_a_new_run_starts_after() {
        let hub = hub();
        let sub = hub.subscribe(None);
        hub.publish("app_changed", serde_json::json!({}));
        let old_id = hub.lock().recent[0].id.clone();
        assert!(!hub.feed_may_stop(), "a stream is open");
        drop(sub);
        assert!(hub.feed_may_stop());
        assert_eq!(hub.inner.feeds.get(), 0);
        let next = hub.subscribe(Some(&old_id));
        assert!(next.start_feed, "a new run");
        assert!(!next.resumed, "ids of the old run cannot be resumed");
        assert_eq!(
            hub.inner.streams.get(),
            1,
            "the dropped stream was uncounted"
        );
    }

    #[test]
    fn a_slow_stream_lags_instead_of_growing() {
        let hub = hub();
        let mut sub = hub.subscribe(None);
        for n in 0..BUFFER + 10 {
            hub.publish("task_changed", serde_json::json!({ "n": n }));
        }
        assert!(matches!(
            sub.receiver.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(10))
        ));
        assert_eq!(hub.lock().recent.len(), REPLAY.min(BUFFER + 10));
    }

    #[test]
    fn closing_tells_every_stream() {
        let hub = hub();
        let sub = hub.subscribe(None);
        hub.close();
        assert!(*sub.closed.borrow());
        assert!(hub.feed_may_stop(), "a closed hub stops its feed");
    }
}
