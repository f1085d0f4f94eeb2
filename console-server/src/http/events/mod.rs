//! `GET /api/v1/events`: a server-sent-events stream of the cluster's changes (added, issue 17).
//!
//! | event | data (JSON) |
//! |---|---|
//! | `hello` | `{"node", "resumed", "poll_interval_ms"}`: first, on every connection |
//! | `app_changed` | the app as `GET /api/v1/apps/{id}` shows it |
//! | `app_deleted` | `{"id"}` |
//! | `task_changed` | the task as `GET /api/v1/tasks/{id}` shows it |
//! | `node_joined`, `node_changed` | the node as `GET /api/v1/cluster/nodes` shows it |
//! | `node_left` | `{"id"}` |
//! | `resync` | `{"reason"}`: `slow_client`, `too_many_changes`, `resume_unavailable`; events were lost, reload what you show |
//!
//! Every event but `hello` and `resync` has an id; a client that reconnects with
//! `Last-Event-ID` gets what it missed (or `resync`). A comment line (`: heartbeat`) every
//! [`HEARTBEAT`] keeps proxies from closing an idle stream and lets the node notice a client
//! that went away. Any node serves the whole cluster's changes (see [`feed`]).

mod feed;
mod hub;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

pub use hub::EventHub;
use hub::{Event, Subscription};

use super::ApiState;

/// How often an idle stream gets a comment line.
pub const HEARTBEAT: Duration = Duration::from_secs(15);

/// `GET /api/v1/events`.
pub async fn events_stream(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok());
    let subscription = state.events.subscribe(last_event_id);
    if subscription.start_feed {
        tokio::spawn(feed::run(state.clone()));
    }
    let hello = Event::unsequenced(
        "hello",
        json!({
            "node": state.node.id(),
            "resumed": subscription.resumed,
            "poll_interval_ms": feed::POLL_INTERVAL.as_millis(),
        }),
    );
    let mut pending: VecDeque<Arc<Event>> = VecDeque::from([Arc::new(hello)]);
    pending.extend(subscription.first.iter().cloned());
    let stream = futures::stream::unfold(
        Client {
            pending,
            subscription,
        },
        Client::next,
    );
    Sse::new(stream).keep_alive(KeepAlive::new().interval(HEARTBEAT).text("heartbeat"))
}

/// One open stream: what it still has to send first, and its subscription.
struct Client {
    pending: VecDeque<Arc<Event>>,
    subscription: Subscription,
}

impl Client {
    /// The next SSE event, or `None` when the hub closes (the node shuts down). Dropping the
    /// stream (the client went away) drops the subscription and its guard.
    async fn next(mut self) -> Option<(Result<SseEvent, Infallible>, Self)> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some((Ok(to_sse(&event)), self));
            }
            if *self.subscription.closed.borrow() {
                return None;
            }
            let received = tokio::select! {
                received = self.subscription.receiver.recv() => received,
                _ = self.subscription.closed.changed() => return None,
            };
            match received {
                Ok(event) => self.pending.push_back(event),
                Err(RecvError::Lagged(missed)) => {
                    self.pending.push_back(Arc::new(Event::unsequenced(
                        "resync",
                        json!({ "reason": "slow_client", "missed": missed }),
                    )));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

fn to_sse(event: &Event) -> SseEvent {
    let sse = SseEvent::default()
        .event(event.name)
        .data(event.data.to_string());
    if event.id.is_empty() {
        sse
    } else {
        sse.id(&event.id)
    }
}
