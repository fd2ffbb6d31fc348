//! In-process live feed: a tokio broadcast channel. Bounded, so a slow SSE
//! client cannot make the process buffer without limit; a subscriber that
//! falls behind gets `FeedItem::Lagged` and re-reads from the store.

use async_trait::async_trait;
use domain::LiveEvent;
use domain::ports::{FeedItem, LiveFeed, PortResult};
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

#[derive(Clone)]
pub struct BroadcastFeed {
    tx: broadcast::Sender<LiveEvent>,
}

impl BroadcastFeed {
    pub fn new(capacity: usize) -> Self {
        Self {
            tx: broadcast::channel(capacity.max(1)).0,
        }
    }
}

#[async_trait]
impl LiveFeed for BroadcastFeed {
    async fn publish(&self, events: &[LiveEvent]) -> PortResult<()> {
        for e in events {
            // No subscribers is fine: nobody is watching.
            let _ = self.tx.send(e.clone());
        }
        Ok(())
    }

    async fn subscribe(&self) -> PortResult<BoxStream<'static, FeedItem>> {
        let stream = BroadcastStream::new(self.tx.subscribe()).map(|item| match item {
            Ok(e) => FeedItem::Event(e),
            Err(BroadcastStreamRecvError::Lagged(_)) => FeedItem::Lagged,
        });
        Ok(stream.boxed())
    }
}
