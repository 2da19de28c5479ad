//! Active expiry: a background thread that reclaims expired keys nobody reads, so
//! their memory stays bounded. Like Redis, it repeats a round at once while rounds
//! keep finding many expired keys, and otherwise sleeps 100 ms; each round holds one
//! shard lock at a time, so it never stalls the whole keyspace.

use std::sync::Arc;
use std::time::Duration;

use super::{now_ms, Store, SHARDS};

/// Starts the active expiry thread; it ends when `store` is the last reference.
pub fn spawn(store: Arc<Store>) -> std::io::Result<std::thread::JoinHandle<()>> {
    let weak = Arc::downgrade(&store);
    drop(store);
    std::thread::Builder::new().name("active-expiry".into()).spawn(move || {
        while let Some(store) = weak.upgrade() {
            let (checked, expired) = store.active_expire_round(SHARDS / 8, now_ms());
            let busy = checked > 0 && expired * 4 > checked;
            drop(store);
            if !busy {
                std::thread::sleep(Duration::from_millis(100 / 8));
            }
        }
    })
}
